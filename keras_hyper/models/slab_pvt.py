"""SLAB-PVT (Guo, Chen, Tang, Wang, "SLAB: Efficient Transformers with Simplified Linear Attention and Progressive
Re-parameterized Batch Normalization", ICML 2024, arXiv:2405.11582; paper 59 in PAPERS.md): the Pyramid Vision
Transformer (Wang et al., arXiv:2102.12122) with every LayerNorm replaced by PRepBN and its spatial-reduction
attention by simplified linear attention (SLA), as the official `slab_pvt_tiny/small/medium/large`.

Four stages, each a patch embedding (a `patch_size` convolution for the first, 2x2 stride 2 after) with PRepBN,
a learned position table added to the token map, and pre-norm blocks `x + proj(SLA(qkv(norm1(x))))`, `x +
mlp(norm2(x))`; then the mean over the last stage's tokens and a Linear head (no final norm: the official one is
commented out). The official configurations train SLA without spatial reduction (config `PVT_LA_SR_RATIOS`
"1111"): keys and values come from every token, so a block has no `sr` convolution; its separate `q` and `kv`
projections are stored here as one `qkv` Dense (their concatenation), so that the norm before them folds into it.

Layer names follow the official state dict with '-' for '.' (`block3-1-attn-proj` for `block3.1.attn.proj`).
Input `(B, H, W, 3)`, H and W multiples of `patch_size * 8` (a remainder is cropped by the strided patch
convolutions); features: each stage's token map, `(B, H/32, W/32, C4)` the last; logits `(B, num_classes)`.
"""

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers._args import check_positive
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.linear_attention import PositionEmbedding, SimplifiedLinearAttention
from keras_hyper.layers.prepbn import PRepBN
from keras_hyper.models import _base, _slab


def slab_pvt(
    x,
    img_size=224,
    patch_size=4,
    embed_dims=(64, 128, 320, 512),
    num_heads=(1, 2, 5, 8),
    mlp_ratios=(8, 8, 4, 4),
    depths=(2, 2, 2, 2),
    qkv_bias=True,
    kernel_size=5,
    prepbn_steps=300000,
    prepbn_warmup=0,
    prepbn_r0=1.0,
    drop_path_rate=0.0,
):
    """Builds a SLAB-PVT model (the official `PyramidVisionTransformer` of slab_pvt.py, `attn_type="LLLL"`,
    `la_sr_ratios="1111"`); the public builder `keras_hyper.models.slab_pvt.slab_pvt` takes these arguments and
    the keras.applications ones.

    Args:
        img_size: the input size the position tables and SLA's positional encodings are stored for
            (`img_size / patch_size / 2**i` tokens a side in stage `i`); other input sizes resize them.
        patch_size, embed_dims, num_heads, mlp_ratios, depths, qkv_bias: as in the official constructor, one
            entry per stage.
        kernel_size: of SLA's depthwise convolution of `v` (official 5).
        prepbn_steps, prepbn_warmup, prepbn_r0: PRepBN's schedule (official `LinearNorm` defaults: `step=300000`,
            `warm=0`, `r0=1`).
        drop_path_rate: stochastic depth, linear over the blocks (official 0 for T, 0.1 for S, 0.3 for M).

    Features: one per stage, each stage's last block: `"P<log2 stride>"` for strides `patch_size * 2**i` (P2..P5
    for the official layout) with `embed_dims[i]` channels. Example:

        model = slab_pvt(depths=(3, 4, 6, 3), drop_path_rate=0.1)      # SLAB-PVT-S
        pyramid = slab_pvt(features_only=True)         # {"P2": (B, 56, 56, 64), ..., "P5": (B, 7, 7, 512)}
    """
    embed_dims, num_heads, mlp_ratios, depths = _stages(img_size, patch_size, embed_dims, num_heads, mlp_ratios, depths)
    rates = _base.drop_path_rates(drop_path_rate, sum(depths))
    prepbn = dict(total_steps=prepbn_steps, warmup=prepbn_warmup, r0=prepbn_r0, ln_epsilon=1e-6)
    PRepBN(**prepbn)  # validates the schedule before anything is built

    features, block = {}, 0
    for i, depth in enumerate(depths):
        stride = patch_size if i == 0 else 2
        grid = (img_size // patch_size // 2**i,) * 2
        x = Conv2D(embed_dims[i], stride, strides=stride, name=f"patch_embed{i + 1}-proj")(x)
        x = PRepBN(**prepbn, name=f"patch_embed{i + 1}-norm")(x)
        x = PositionEmbedding(grid, name=f"pos_embed{i + 1}")(x)
        for j in range(depth):
            prefix = f"block{i + 1}-{j}"
            core = SimplifiedLinearAttention(
                num_heads[i], grid_size=grid, kernel_size=kernel_size, name=f"{prefix}-attn"
            )
            x = _slab.block(
                x,
                prefix,
                core=core,
                mlp_ratio=mlp_ratios[i],
                qkv_bias=qkv_bias,
                prepbn=prepbn,
                drop_path=rates[block],
            )
            block += 1
        features[f"P{(patch_size * 2**i).bit_length() - 1}"] = x

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        return _slab.dense(num_classes, "head")(x)

    return _base.Network(features, head)


def _stages(img_size, patch_size, embed_dims, num_heads, mlp_ratios, depths):
    """Validates the stage layout; returns the per-stage tuples."""
    embed_dims, num_heads, mlp_ratios, depths = (tuple(v) for v in (embed_dims, num_heads, mlp_ratios, depths))
    stages = len(depths)
    if stages < 1 or any(not isinstance(d, int) or d < 1 for d in depths):
        raise ValueError(f"depths must be a non-empty sequence of positive integers, got {depths!r}.")
    for label, value in (("embed_dims", embed_dims), ("num_heads", num_heads), ("mlp_ratios", mlp_ratios)):
        if len(value) != stages:
            raise ValueError(f"{label} must have one entry per stage ({stages}), got {value!r}.")
    for i, (dim, heads) in enumerate(zip(embed_dims, num_heads)):
        check_positive(**{f"embed_dims[{i}]": dim})
        if not isinstance(heads, int) or heads < 1 or dim % heads:
            raise ValueError(f"num_heads[{i}]={heads!r} must be a positive integer dividing embed_dims[{i}]={dim}.")
    if any(r <= 0 for r in mlp_ratios):
        raise ValueError(f"mlp_ratios must be positive, got {mlp_ratios!r}.")
    check_positive(patch_size=patch_size)
    total_stride = patch_size * 2 ** (stages - 1)
    if not isinstance(img_size, int) or img_size < total_stride or img_size % total_stride:
        raise ValueError(
            f"img_size must be a positive multiple of patch_size * 2**(stages-1) = {total_stride}, got {img_size!r}."
        )
    return embed_dims, num_heads, mlp_ratios, depths


def _input_size(img_size, patch_size, embed_dims, num_heads, mlp_ratios, depths, **_):
    _stages(img_size, patch_size, embed_dims, num_heads, mlp_ratios, depths)  # before the input's size is checked
    return img_size


def _features(img_size, patch_size, embed_dims, num_heads, mlp_ratios, depths, **_):
    embed_dims, *_ = _stages(img_size, patch_size, embed_dims, num_heads, mlp_ratios, depths)
    return _base.pyramid(embed_dims, [patch_size * 2**i for i in range(len(embed_dims))])


def _qkv(m, layer, key):
    """The official separate `q` (C -> C) and `kv` (C -> 2C) Linears as one `(C, 3C)` Dense: `[q | k | v]`."""
    attn = key[: -len(".qkv")]
    for suffix in ("weight", "bias") if layer.use_bias else ("weight",):
        q, kv = m.take(f"{attn}.q.{suffix}"), m.take(f"{attn}.kv.{suffix}")
        if q is None or kv is None:
            continue
        value = np.concatenate([q, kv], axis=0)
        variable = layer.kernel if suffix == "weight" else layer.bias
        if suffix == "weight":
            value = value.T
        if value.shape != tuple(variable.shape):
            raise ValueError(
                f"Shape mismatch: '{attn}.q.{suffix}' {q.shape} + '{attn}.kv.{suffix}' {kv.shape} give {value.shape} "
                f"in Keras layout, but variable '{variable.path}' has shape {tuple(variable.shape)}."
            )
        variable.assign(value.astype(variable.dtype))
        m.assigned.add(id(variable))


def convert_slab_pvt(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official SLAB-PVT state dict (slab_pvt.py, trained
    with `la_sr_ratios="1111"`).

    Strict: every tensor is consumed or ignored with a reason (BatchNorm's `num_batches_tracked` is a training
    counter). `attn.q` and `attn.kv` are concatenated into `attn-qkv`; PRepBN's `warm`/`iter`/`total_step`
    buffers become the layer's `step`. A checkpoint with spatial reduction (`attn.sr`) fails with its keys
    listed as unexpected.
    """
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if layer.name.endswith("-attn-qkv"):
            _qkv(m, layer, key)
        elif m.standard(layer, key):
            continue
        elif isinstance(layer, PRepBN):
            _slab.convert_prepbn(m, layer, key)
        elif isinstance(layer, PositionEmbedding):
            m.assign(layer.pos_embed, key, lambda w, g=tuple(layer.pos_embed.shape): w.reshape(g))
        elif isinstance(layer, SimplifiedLinearAttention):
            grid = tuple(layer.positional_encoding.shape)
            m.assign(layer.positional_encoding, f"{key}.positional_encoding", lambda w, g=grid: w.reshape(g))
            m.conv2d(layer.dwc, f"{key}.dwc")
    m.finish()


# the inference form: PRepBN -> BatchNorm, folded into the neighbouring convolution or Dense (see _slab)
reparameterize = _slab.reparameterize

VARIANTS = (
    _base.Variant(
        "slab_pvt_t", dict(depths=(2, 2, 2, 2)), num_params=12_157_692, paper_top1=76.5, builder_name="SLABPVTTiny"
    ),
    _base.Variant(
        "slab_pvt_s", dict(depths=(3, 4, 6, 3), drop_path_rate=0.1), num_params=21_683_788, builder_name="SLABPVTSmall"
    ),
    _base.Variant(
        "slab_pvt_m",
        dict(depths=(3, 4, 18, 3), drop_path_rate=0.3),
        num_params=37_267_300,
        builder_name="SLABPVTMedium",
    ),
    _base.Variant(
        "slab_pvt_l",
        dict(depths=(3, 8, 27, 3), drop_path_rate=0.1),
        num_params=50_684_478,
        builder_name="SLABPVTLarge",
    ),
)

ARCH = _base.Architecture(
    name="slab_pvt",
    network=slab_pvt,
    features=_features,
    input_size=_input_size,
    min_size=lambda patch_size, depths, **_: max(32, patch_size * 2 ** (len(tuple(depths)) - 1)),
    convert=convert_slab_pvt,
    paper=_slab.PAPER,
    variants=VARIANTS,
    license=_slab.LICENSE,
    source=_slab.SOURCE,
    classifier="head",
    classifier_key="head.weight",
    testing=_base.Testing(
        # 32 px: stages of 8x8 and 4x4 tokens; r0 = 0.5 so that one fit step moves RepBN too
        tiny=dict(
            img_size=32,
            patch_size=4,
            embed_dims=(8, 16),
            num_heads=(1, 2),
            mlp_ratios=(2, 2),
            depths=(1, 1),
            prepbn_r0=0.5,
            num_classes=10,
        ),
        min_input_size=32,
    ),
    reparameterize=_slab.reparameterize,
)

slab_pvt = ARCH.builder
