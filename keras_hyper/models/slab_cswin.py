"""SLAB-CSwin (Guo, Chen, Tang, Wang, "SLAB: Efficient Transformers with Simplified Linear Attention and
Progressive Re-parameterized Batch Normalization", ICML 2024, arXiv:2405.11582; paper 59 in PAPERS.md): the CSWin
Transformer (Dong et al., arXiv:2107.00652) with every LayerNorm replaced by PRepBN and simplified linear attention
(SLA) in the first two stages, as the official `SLAB_CSWin_64_24181_tiny_224` / `..._24322_small_224`.

A 7x7 stride-4 convolution (padding 2) and PRepBN embed the image into a `(B, H/4, W/4, C)` token map; four stages
of pre-norm blocks `x + proj(attns(qkv(norm1(x))))`, `x + mlp(norm2(x))`, separated by 3x3 stride-2 convolutions
(padding 1) + PRepBN that double the width; a final PRepBN, the mean over tokens and a Linear head. `attns` is
`CrossShapedWindowAttention`: with `attn_type="LLSS"` the SLA stages use the official SLA split sizes
`la_split_sizes=(56, 28, 14, 7)`, as large as their 224-input maps, so they attend globally; stage 3 splits its
heads between vertical and horizontal 7-wide stripes of softmax attention; stage 4 is one global window (the
official `last_stage`). Every attention adds LePE, a 3x3 depthwise convolution of `v`.

Layer names follow the official state dict with '-' for '.' (`stage3-4-attns` for `stage3.4.attns`).
Input `(B, H, W, 3)`; features: each stage's map, `(B, H/32, W/32, 8C)` the last (sizes rounded up by the
strided convolutions); logits `(B, num_classes)`.
"""

import keras

from keras_hyper.convert import mapping
from keras_hyper.layers._args import check_positive
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.cswin_attention import CrossShapedWindowAttention
from keras_hyper.layers.prepbn import PRepBN
from keras_hyper.models import _base, _slab


def _conv(x, filters, kernel, stride, padding, name):
    """A PyTorch-padded convolution: explicit symmetric zero padding, then 'valid' (Keras' 'same' pads
    asymmetrically under stride 2)."""
    x = keras.layers.ZeroPadding2D(padding, name=f"{name}-pad")(x)
    return Conv2D(filters, kernel, strides=stride, name=name)(x)


def slab_cswin(
    x,
    img_size=224,
    embed_dim=64,
    depths=(2, 4, 18, 1),
    num_heads=(2, 4, 8, 16),
    split_sizes=(1, 2, 7, 7),
    la_split_sizes=(56, 28, 14, 7),
    attn_type="LLSS",
    mlp_ratio=4.0,
    qkv_bias=True,
    kernel_size=5,
    unused_scale=True,
    prepbn_steps=120000,
    prepbn_warmup=0,
    prepbn_r0=1.0,
    drop_path_rate=0.0,
):
    """Builds a SLAB-CSwin model (the official `CSWinTransformer` of slab_cswin.py); the public builder
    `keras_hyper.models.slab_cswin.slab_cswin` takes these arguments and the keras.applications ones.

    Stage `i` works on a `img_size / 4 / 2**i` map. Its blocks use SLA (`attn_type[i] == "L"`) with stripes of
    `la_split_sizes[i]`, or softmax attention (`"S"`) with stripes of `split_sizes[i]`; a stripe as large as the
    map, and every block of the last stage, is one global window with all heads (the official rule).

    Args:
        img_size: the input size stage maps, stripes and SLA tables are laid out for (also the default input
            size). Other inputs resize SLA's tables; stripes then need map sides that are multiples of their width.
        embed_dim, depths, num_heads, mlp_ratio, qkv_bias: as in the official constructor (`depth` there).
        split_sizes, la_split_sizes: stripe widths of the softmax and of the SLA stages (official `split_size`,
            and `la_split_size` = config `CSWIN_LA_SPLIT_SIZE` "56-28-14-7").
        attn_type: one letter per stage, "L" (SLA) or "S" (softmax).
        kernel_size: of SLA's depthwise convolution of `v` (official 5).
        unused_scale: keep the official SLA modules' `scale` parameters, which no forward reads (counts and
            checkpoints then match exactly).
        prepbn_steps, prepbn_warmup, prepbn_r0: PRepBN's schedule (official `step=120000`, `warm=0`, `r0=1`).
        drop_path_rate: stochastic depth, linear over the blocks (official 0.1 for T, 0.3 for S).

    Features: one per stage, `"P<log2 stride>"` for strides `4 * 2**i` (P2..P5) with `embed_dim * 2**i`
    channels: each stage's last block (before the next merge), and the final norm for the last stage. Example:

        model = slab_cswin(depths=(2, 4, 32, 2), drop_path_rate=0.3)   # SLAB-CSwin-S
        pyramid = slab_cswin(features_only=True)       # {"P2": (B, 56, 56, 64), ..., "P5": (B, 7, 7, 512)}
    """
    depths, num_heads, split_sizes, la_split_sizes = _stages(
        img_size, embed_dim, depths, num_heads, split_sizes, la_split_sizes, attn_type
    )
    stages = len(depths)
    if mlp_ratio <= 0:
        raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio!r}.")
    rates = _base.drop_path_rates(drop_path_rate, sum(depths))
    # the official CSwin builds its LinearNorm on nn.LayerNorm's default eps, 1e-5
    prepbn = dict(total_steps=prepbn_steps, warmup=prepbn_warmup, r0=prepbn_r0, ln_epsilon=1e-5)
    PRepBN(**prepbn)  # validates the schedule before anything is built

    x = _conv(x, embed_dim, 7, 4, 2, "stage1_conv_embed-0")
    x = PRepBN(**prepbn, name="stage1_conv_embed-2")(x)
    features, block = {}, 0
    for i, depth in enumerate(depths):
        dim, res = embed_dim * 2**i, img_size // 4 // 2**i
        if i > 0:
            features[f"P{i + 1}"] = x
            x = _conv(x, dim, 3, 2, 1, f"merge{i}-conv")
            x = PRepBN(**prepbn, name=f"merge{i}-norm")(x)
        kind = "linear" if attn_type[i] == "L" else "softmax"
        split = la_split_sizes[i] if kind == "linear" else split_sizes[i]
        if i == stages - 1 or split >= res:
            split = None
        elif res % split:
            raise ValueError(
                f"Stage {i} ({res}x{res} tokens at img_size={img_size}) is not a whole number of {split}-wide stripes."
            )
        heads = num_heads[i]
        if (
            not isinstance(heads, int)
            or heads < 1
            or dim % heads
            or (split is not None and (heads < 2 or (dim // 2) % (heads // 2)))
        ):
            raise ValueError(f"num_heads[{i}]={heads!r} does not split the {dim} channels of stage {i} into heads.")
        for j in range(depth):
            prefix = f"stage{i + 1}-{j}"
            core = CrossShapedWindowAttention(
                heads,
                split,
                attention=kind,
                grid_size=(res, res),
                kernel_size=kernel_size,
                unused_scale=unused_scale and kind == "linear",
                name=f"{prefix}-attns",
            )
            x = _slab.block(
                x,
                prefix,
                core=core,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                prepbn=prepbn,
                drop_path=rates[block],
                attn="",
            )
            block += 1
    features[f"P{stages + 1}"] = PRepBN(**prepbn, name="norm")(x)

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        return _slab.dense(num_classes, "head")(x)

    return _base.Network(features, head)


def _stages(img_size, embed_dim, depths, num_heads, split_sizes, la_split_sizes, attn_type):
    """Validates the stage layout; returns the per-stage tuples."""
    depths, num_heads = tuple(depths), tuple(num_heads)
    split_sizes, la_split_sizes = tuple(split_sizes), tuple(la_split_sizes)
    stages = len(depths)
    if stages < 1 or any(not isinstance(d, int) or d < 1 for d in depths):
        raise ValueError(f"depths must be a non-empty sequence of positive integers, got {depths!r}.")
    for label, value in (("num_heads", num_heads), ("split_sizes", split_sizes), ("la_split_sizes", la_split_sizes)):
        if len(value) != stages:
            raise ValueError(f"{label} must have one entry per stage ({stages}), got {value!r}.")
    if not isinstance(attn_type, str) or len(attn_type) != stages or set(attn_type) - {"L", "S"}:
        raise ValueError(f"attn_type must be {stages} letters 'L' or 'S', got {attn_type!r}.")
    check_positive(embed_dim=embed_dim)
    total_stride = 4 * 2 ** (stages - 1)
    if not isinstance(img_size, int) or img_size < total_stride or img_size % total_stride:
        raise ValueError(
            f"img_size must be a positive multiple of 4 * 2**(stages-1) = {total_stride}, got {img_size!r}."
        )
    return depths, num_heads, split_sizes, la_split_sizes


def _input_size(img_size, embed_dim, depths, num_heads, split_sizes, la_split_sizes, attn_type, **_):
    # validated before the input's size is checked
    _stages(img_size, embed_dim, depths, num_heads, split_sizes, la_split_sizes, attn_type)
    return img_size


def _features(img_size, embed_dim, depths, num_heads, split_sizes, la_split_sizes, attn_type, **_):
    depths, *_ = _stages(img_size, embed_dim, depths, num_heads, split_sizes, la_split_sizes, attn_type)
    return _base.pyramid([embed_dim * 2**i for i in range(len(depths))], [4 * 2**i for i in range(len(depths))])


def convert_slab_cswin(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official SLAB-CSwin state dict (slab_cswin.py).

    Strict: every tensor is consumed or ignored with a reason (BatchNorm's `num_batches_tracked`, a training
    counter; the SLA modules' `scale`, never read by any forward, when the model is built with
    `unused_scale=False`). PRepBN's `warm`/`iter`/`total_step` buffers become the layer's `step`.
    """
    ignore = []
    cores = [layer for layer in model.layers if isinstance(layer, CrossShapedWindowAttention)]
    if any(core.attention == "linear" and not core.unused_scale for core in cores):
        ignore.append(r".*\.attns\.\d+\.scale$")
    m = mapping.StateDictMapper(state_dict, model, ignore=ignore)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if m.standard(layer, key):
            continue
        if isinstance(layer, PRepBN):
            _slab.convert_prepbn(m, layer, key)
        elif isinstance(layer, CrossShapedWindowAttention):
            for b, (core, lepe) in enumerate(zip(layer.cores, layer.lepe)):
                m.conv2d(lepe, f"{key}.{b}.get_v")
                if layer.attention == "linear":
                    grid = tuple(core.positional_encoding.shape)
                    m.assign(core.positional_encoding, f"{key}.{b}.positional_encoding", lambda w, g=grid: w.reshape(g))
                    m.conv2d(core.dwc, f"{key}.{b}.dwc")
                    if layer.unused_scale:
                        m.assign(layer.scales[b], f"{key}.{b}.scale")
    m.finish()


# the inference form: PRepBN -> BatchNorm, folded into the neighbouring convolution or Dense (see _slab)
reparameterize = _slab.reparameterize

VARIANTS = (
    _base.Variant(
        "slab_cswin_t",
        dict(depths=(2, 4, 18, 1), drop_path_rate=0.1),
        num_params=21_227_807,
        crop_pct=0.9,
        paper_top1=82.8,
        builder_name="SLABCSwinTiny",
    ),
    _base.Variant(
        "slab_cswin_s",
        dict(depths=(2, 4, 32, 2), drop_path_rate=0.3),
        num_params=35_494_205,
        crop_pct=0.9,
        builder_name="SLABCSwinSmall",
    ),
)

ARCH = _base.Architecture(
    name="slab_cswin",
    network=slab_cswin,
    features=_features,
    input_size=_input_size,
    min_size=lambda depths, **_: max(32, 4 * 2 ** (len(tuple(depths)) - 1)),
    convert=convert_slab_cswin,
    paper=_slab.PAPER,
    variants=VARIANTS,
    license=_slab.LICENSE,
    source=_slab.SOURCE,
    classifier="head",
    classifier_key="head.weight",
    testing=_base.Testing(
        # 32 px: an 8x8 stage of softmax attention in 2-wide vertical and horizontal stripes, a merge, a global 4x4
        # SLA stage; r0 = 0.5 and no unused scale, so that one fit step moves every variable
        tiny=dict(
            img_size=32,
            embed_dim=8,
            depths=(1, 1),
            num_heads=(2, 2),
            split_sizes=(2, 4),
            la_split_sizes=(8, 4),
            attn_type="SL",
            mlp_ratio=2.0,
            unused_scale=False,
            prepbn_r0=0.5,
            num_classes=10,
        ),
        min_input_size=32,
    ),
    reparameterize=_slab.reparameterize,
)

slab_cswin = ARCH.builder
