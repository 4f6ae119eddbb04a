"""SLAB-DeiT and SLAB-Swin (Guo, Chen, Tang, Wang, "SLAB: Efficient Transformers with Simplified Linear Attention
and Progressive Re-parameterized Batch Normalization", ICML 2024, arXiv:2405.11582; paper 59 in PAPERS.md). Two
architectures of the same paper sharing their blocks: `ARCH` ("slab", SLAB-DeiT) and `SWIN_ARCH` ("slab_swin").

SLAB-DeiT: DeiT with mean pooling instead of a class token, its softmax attention replaced by simplified linear
attention (`SimplifiedLinearAttention`) and every LayerNorm by PRepBN (`PRepBN`: LayerNorm progressively replaced by
RepBN during training, a BatchNorm at inference). A `patch_size` convolution embeds the image into a token map
`(B, H/p, W/p, C)`; a learned position table is added; pre-norm blocks `x + attn(norm1(x))`, `x +
mlp(norm2(x))`; a final norm, the mean over tokens and a Linear head.

`attention="softmax"`, `norm="layernorm"` give the DeiT baseline with the same layout and widths (registered as
`slab_deit_t_softmax` for side-by-side speed measurements). Layer names follow the official state dict with '-'
for '.' (`blocks-3-attn-qkv` for `blocks.3.attn.qkv`).

Input sizes: the position tables are stored at the `img_size / patch_size` grid (14x14 for the official 224 /
16); other inputs (448, 896, dynamic shapes) get both tables bilinearly resized to their token grid on each call
(the official code only runs at 224: its positional encoding is hard-coded to 14x14 tokens).

SLAB-Swin (`slab_swin`): Swin's four stages (patch embedding + PRepBN, PRepBN blocks, 2x2 patch merging with
PRepBN), SLA in the first two stages and (shifted-)window softmax attention with relative position bias in the
last two (`attn_type="LLSS"`); with the official window 56 the SLA stages attend globally at 224.

Input `(B, H, W, 3)`, H and W multiples of `patch_size` (a remainder is cropped by the patch convolution);
features `(B, H/p, W/p, C)` (SLAB-Swin: `(B, H/32, W/32, 8C)`); logits `(B, num_classes)`.
"""

import keras

from keras_hyper.convert import mapping
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.linear_attention import PositionEmbedding, SimplifiedLinearAttention, SoftmaxAttention
from keras_hyper.layers.prepbn import PRepBN
from keras_hyper.layers.window_attention import PatchMerging2x2, WindowSoftmaxAttention
from keras_hyper.models import _base, _slab

ATTENTIONS = ("linear", "softmax")
NORMS = _slab.NORMS


def slab_deit(
    img_size=224,
    patch_size=16,
    embed_dim=192,
    depth=12,
    num_heads=3,
    mlp_ratio=4.0,
    qkv_bias=True,
    attention="linear",
    norm="prepbn",
    kernel_size=5,
    prepbn_steps=60000,
    prepbn_warmup=0,
    prepbn_r0=1.0,
    cls_token=True,
    drop_path_rate=0.0,
    *,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    num_classes=1000,
    classifier_activation="softmax",
    include_preprocessing=False,
    name="slab_deit",
):
    """Builds a SLAB-DeiT model (or, with `attention="softmax", norm="layernorm"`, its DeiT baseline).

    Args:
        img_size: the input size the position tables are stored for (`img_size / patch_size` tokens a side);
            also the default input size. Other input sizes resize the tables (see the module docstring).
        patch_size, embed_dim, depth, num_heads, mlp_ratio, qkv_bias: as in the official VisionTransformer.
        attention: "linear" (SLA, with its positional encoding and depthwise conv of `kernel_size`) or
            "softmax".
        norm: "prepbn" (the official `LinearNorm(LayerNorm, RepBN)`) or "layernorm" (eps 1e-6).
        prepbn_steps, prepbn_warmup, prepbn_r0: PRepBN's schedule (official `step`, `warm`, `r0`): the
            LayerNorm weight decays from `r0` to 0 over `prepbn_steps` training steps after `prepbn_warmup`.
        cls_token: keep the official, unused `cls_token` parameter (checkpoints and parameter counts match
            exactly; it never reaches the output).
        drop_path_rate: stochastic depth, linear over the blocks (official `drop_path_rate`).
        include_top, weights, input_tensor, input_shape, pooling, num_classes, classifier_activation,
        include_preprocessing, name: as in `keras.applications`; `weights` is a local file here.

    Returns:
        A functional `keras.Model`.
    """
    for label, value in (("patch_size", patch_size), ("embed_dim", embed_dim), ("depth", depth)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{label} must be a positive integer, got {value!r}.")
    if not isinstance(img_size, int) or img_size < patch_size or img_size % patch_size:
        raise ValueError(f"img_size must be a positive multiple of patch_size={patch_size}, got {img_size!r}.")
    if not isinstance(num_heads, int) or num_heads < 1 or embed_dim % num_heads:
        raise ValueError(f"num_heads must be a positive integer dividing embed_dim={embed_dim}, got {num_heads!r}.")
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}.")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")
    if mlp_ratio <= 0:
        raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio!r}.")
    rates = _base.drop_path_rates(drop_path_rate, depth)
    _base.validate_head(include_top, pooling, num_classes, classifier_activation)
    prepbn = dict(total_steps=prepbn_steps, warmup=prepbn_warmup, r0=prepbn_r0)
    if norm == "prepbn":
        PRepBN(**prepbn)  # validates the schedule before anything is built
    grid = (img_size // patch_size,) * 2

    inputs = x = _base.image_input(input_tensor, input_shape, default_size=img_size, min_size=max(32, patch_size))
    if include_preprocessing:
        x = _base.preprocessing(x, ARCH.mean, ARCH.std)
    x = Conv2D(embed_dim, patch_size, strides=patch_size, name="patch_embed-proj")(x)
    x = PositionEmbedding(grid, cls_token=cls_token, name="pos_embed")(x)
    for i in range(depth):
        name = f"blocks-{i}-attn"
        if attention == "linear":
            core = SimplifiedLinearAttention(num_heads, grid_size=grid, kernel_size=kernel_size, name=name)
        else:
            core = SoftmaxAttention(num_heads, name=name)
        x = _slab.block(
            x,
            f"blocks-{i}",
            core=core,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            norm_kind=norm,
            prepbn=prepbn,
            drop_path=rates[i],
        )
    x = _slab.norm(x, "norm", norm, prepbn)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        # truncated normal, not the official zeros: a zero head passes no gradient to the body in the first step
        x = _slab.dense(num_classes, "head")(x)
        x = _base.predictions(x, classifier_activation)
    else:
        x = _base.pool(x, pooling)
    return _base.finish(inputs, x, name=name, weights=weights, arch=ARCH)


def slab_swin(
    img_size=224,
    patch_size=4,
    embed_dim=96,
    depths=(2, 2, 6, 2),
    num_heads=(3, 6, 12, 24),
    window_size=56,
    attn_type="LLSS",
    softmax_window=None,
    mlp_ratio=4.0,
    qkv_bias=True,
    qk_scale=None,
    kernel_size=5,
    prepbn_steps=60000,
    prepbn_warmup=0,
    prepbn_r0=1.0,
    drop_path_rate=0.0,
    *,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    num_classes=1000,
    classifier_activation="softmax",
    include_preprocessing=False,
    name="slab_swin",
):
    """Builds a SLAB-Swin model (the official `SlabSwinTransformer`, PRepBN everywhere, no absolute position
    embedding).

    Stage `i` works on a `img_size / patch_size / 2**i` map. Its blocks use SLA (`attn_type[i] == "L"`) in
    windows of `window_size`, or softmax attention with relative position bias (`"S"`) in windows of
    `softmax_window` (official: 7, or 12 when `window_size > 56`), shifted by half a window in every odd block.
    A window at least as large as the map becomes one global window without shift (the official rule): with the
    official `window_size=56` every SLA stage is global at 224, and only the third stage's softmax windows are
    real (7x7, shifted). Windowed SLA (a map larger than `window_size`) is not implemented.

    Args:
        img_size: the input size the stage maps, windows and tables are laid out for; other input sizes resize
            the global stages' tables (as in `slab_deit`).
        patch_size, embed_dim, depths, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale, kernel_size:
            as in the official constructor (`kernel_size`: of SLA's depthwise conv).
        attn_type: one letter per stage, "L" (SLA) or "S" (softmax).
        softmax_window: window of the "S" stages (None: the official rule).
        prepbn_steps, prepbn_warmup, prepbn_r0, drop_path_rate: as in `slab_deit`.
        include_top, weights, input_tensor, input_shape, pooling, num_classes, classifier_activation,
        include_preprocessing, name: as in `keras.applications`.

    Returns:
        A functional `keras.Model`.
    """
    depths, num_heads = tuple(depths), tuple(num_heads)
    stages = len(depths)
    if stages < 1 or any(not isinstance(d, int) or d < 1 for d in depths):
        raise ValueError(f"depths must be a non-empty sequence of positive integers, got {depths!r}.")
    if len(num_heads) != stages:
        raise ValueError(f"num_heads must have one entry per stage ({stages}), got {num_heads!r}.")
    if not isinstance(attn_type, str) or len(attn_type) != stages or set(attn_type) - {"L", "S"}:
        raise ValueError(f"attn_type must be {stages} letters 'L' or 'S', got {attn_type!r}.")
    if not isinstance(embed_dim, int) or embed_dim < 1:
        raise ValueError(f"embed_dim must be a positive integer, got {embed_dim!r}.")
    for i, heads in enumerate(num_heads):
        if not isinstance(heads, int) or heads < 1 or (embed_dim * 2**i) % heads:
            raise ValueError(f"num_heads[{i}]={heads!r} must be a positive integer dividing {embed_dim * 2**i}.")
    total_stride = patch_size * 2 ** (stages - 1)
    if not isinstance(img_size, int) or img_size % total_stride:
        raise ValueError(
            f"img_size must be a multiple of patch_size * 2**(stages-1) = {total_stride}, got {img_size!r}."
        )
    softmax_window = softmax_window or (7 if window_size <= 56 else 12)
    rates = _base.drop_path_rates(drop_path_rate, sum(depths))
    _base.validate_head(include_top, pooling, num_classes, classifier_activation)
    prepbn = dict(total_steps=prepbn_steps, warmup=prepbn_warmup, r0=prepbn_r0)
    PRepBN(**prepbn)  # validates the schedule before anything is built

    inputs = x = _base.image_input(input_tensor, input_shape, default_size=img_size, min_size=max(32, total_stride))
    if include_preprocessing:
        x = _base.preprocessing(x, ARCH.mean, ARCH.std)
    x = Conv2D(embed_dim, patch_size, strides=patch_size, name="patch_embed-proj")(x)
    x = _slab.norm(x, "patch_embed-norm", "prepbn", prepbn)
    block = 0
    for i, depth in enumerate(depths):
        res = img_size // patch_size // 2**i
        for j in range(depth):
            prefix = f"layers-{i}-blocks-{j}"
            window = window_size if attn_type[i] == "L" else softmax_window
            shift = window // 2 if j % 2 else 0
            if res <= window:
                window, shift = None, 0
            if attn_type[i] == "L":
                if window is not None:
                    raise ValueError(
                        f"Stage {i} ({res}x{res} tokens at img_size={img_size}) would need windowed SLA (window "
                        f"{window_size}), which is not implemented; use a window_size of at least {res}."
                    )
                core = SimplifiedLinearAttention(
                    num_heads[i], grid_size=(res, res), kernel_size=kernel_size, name=f"{prefix}-attn"
                )
            else:
                core = WindowSoftmaxAttention(
                    num_heads[i], window, shift, grid_size=(res, res), qk_scale=qk_scale, name=f"{prefix}-attn"
                )
            x = _slab.block(
                x, prefix, core=core, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, prepbn=prepbn, drop_path=rates[block]
            )
            block += 1
        if i < stages - 1:
            x = PatchMerging2x2(name=f"layers-{i}-downsample")(x)
            x = _slab.norm(x, f"layers-{i}-downsample-norm", "prepbn", prepbn)
            x = _slab.dense(2 * x.shape[-1] // 4, f"layers-{i}-downsample-reduction", use_bias=False)(x)
    x = _slab.norm(x, "norm", "prepbn", prepbn)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        x = _slab.dense(num_classes, "head")(x)
        x = _base.predictions(x, classifier_activation)
    else:
        x = _base.pool(x, pooling)
    return _base.finish(inputs, x, name=name, weights=weights, arch=SWIN_ARCH)


def _table(layer_grid):
    def transform(w):
        return w.reshape(1, *layer_grid, w.shape[-1])

    return transform


def _convert(state_dict, model, ignore):
    m = mapping.StateDictMapper(state_dict, model, ignore=ignore)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if m.standard(layer, key):
            continue
        if isinstance(layer, PositionEmbedding):
            m.assign(layer.pos_embed, "pos_embed", _table(layer.grid_size))
            if layer.cls_token:
                m.assign(layer.cls, "cls_token")
        elif isinstance(layer, PRepBN):
            _slab.convert_prepbn(m, layer, key)
        elif isinstance(layer, SimplifiedLinearAttention):
            m.assign(layer.positional_encoding, f"{key}.positional_encoding", _table(layer.grid_size))
            m.conv2d(layer.dwc, f"{key}.dwc")
        elif isinstance(layer, WindowSoftmaxAttention):
            m.assign(layer.relative_position_bias_table, f"{key}.relative_position_bias_table")
    m.finish()


def convert_slab_deit(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official SLAB-DeiT state dict (slab_deit.py).

    Strict: every tensor is consumed or ignored with a reason (BatchNorm's `num_batches_tracked` is a training
    counter; `cls_token` when the model is built with `cls_token=False`, since no forward reads it). PRepBN's
    `warm`/`iter`/`total_step` buffers become the layer's `step`.
    """
    ignore = [r".*\.num_batches_tracked$"]
    pos = model.get_layer("pos_embed")
    if not pos.cls_token:
        ignore.append(r"cls_token")
    _convert(state_dict, model, ignore)


def convert_slab_swin(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official SLAB-Swin state dict (slab_swin.py).

    Strict; ignored: `num_batches_tracked` (a training counter), and the `relative_position_index` and
    `attn_mask` buffers (constants the layers recompute from the window geometry).
    """
    _convert(
        state_dict,
        model,
        [r".*\.num_batches_tracked$", r".*\.relative_position_index$", r".*\.attn_mask$"],
    )


def fixture_kwargs(meta):
    """Builder kwargs of a fixture case from the official VisionTransformer kwargs (PRepBN norm_layer)."""
    kwargs = meta["kwargs"]
    return dict(
        img_size=kwargs["img_size"],
        patch_size=kwargs["patch_size"],
        embed_dim=kwargs["embed_dim"],
        depth=kwargs["depth"],
        num_heads=kwargs["num_heads"],
        mlp_ratio=kwargs["mlp_ratio"],
        qkv_bias=kwargs["qkv_bias"],
    )


reparameterize = _slab.reparameterize


_DEIT_T = dict(patch_size=16, embed_dim=192, depth=12, num_heads=3, mlp_ratio=4.0)
_DEIT_S = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0)

VARIANTS = (
    _base.Variant("slab_deit_t", _DEIT_T, num_params=6_198_401, paper_top1=74.3),
    _base.Variant("slab_deit_s", _DEIT_S, num_params=22_992_641, paper_top1=80.0),
    # the softmax / LayerNorm baseline of the same layout (no official checkpoint; count ours)
    _base.Variant(
        "slab_deit_t_softmax",
        dict(_DEIT_T, attention="softmax", norm="layernorm", cls_token=False),
        num_params=5_717_032,
    ),
)

ARCH = _base.Architecture(
    name="slab",
    builder=slab_deit,
    convert=convert_slab_deit,
    paper=_slab.PAPER,
    variants=VARIANTS,
    license=_slab.LICENSE,
    source=_slab.SOURCE,
    classifier="head",
    classifier_key="head.weight",
    # r0 = 0.5: with the official r0 = 1 the first step weights RepBN by 0, so one fit step could not move it;
    # no cls_token: no forward reads it, so no step could move it either.
    tiny=dict(
        img_size=32,
        patch_size=4,
        embed_dim=32,
        depth=2,
        num_heads=2,
        mlp_ratio=3.0,
        cls_token=False,
        prepbn_r0=0.5,
        num_classes=10,
    ),
    fixture="slab",
    min_input_size=32,
    reparameterize=reparameterize,
    fixture_kwargs=fixture_kwargs,
)

_SWIN_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=56, attn_type="LLSS")

SWIN_VARIANTS = (
    _base.Variant("slab_swin_t", dict(_SWIN_T, drop_path_rate=0.2), num_params=29_216_605, paper_top1=81.8),
    _base.Variant(
        "slab_swin_s", dict(_SWIN_T, depths=(2, 2, 18, 2), drop_path_rate=0.3), num_params=50_552_965, paper_top1=83.6
    ),
    _base.Variant(
        "slab_swin_b",
        dict(_SWIN_T, embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5),
        num_params=89_029_373,
    ),
)

SWIN_ARCH = _base.Architecture(
    name="slab_swin",
    builder=slab_swin,
    convert=convert_slab_swin,
    paper=_slab.PAPER,
    variants=SWIN_VARIANTS,
    license=_slab.LICENSE,
    source=_slab.SOURCE,
    classifier="head",
    classifier_key="head.weight",
    # every path at 32 px: shifted 2x2 softmax windows (8x8 map), patch merging, a global SLA stage (4x4)
    tiny=dict(
        img_size=32,
        patch_size=4,
        embed_dim=16,
        depths=(2, 1),
        num_heads=(1, 2),
        window_size=8,
        attn_type="SL",
        softmax_window=2,
        prepbn_r0=0.5,
        num_classes=10,
    ),
    min_input_size=32,
    reparameterize=reparameterize,
)

SLABDeiTTiny = _base.variant_builder("SLABDeiTTiny", "slab_deit_t")
SLABDeiTSmall = _base.variant_builder("SLABDeiTSmall", "slab_deit_s")
SLABDeiTTinySoftmax = _base.variant_builder("SLABDeiTTinySoftmax", "slab_deit_t_softmax")
SLABSwinTiny = _base.variant_builder("SLABSwinTiny", "slab_swin_t")
SLABSwinSmall = _base.variant_builder("SLABSwinSmall", "slab_swin_s")
SLABSwinBase = _base.variant_builder("SLABSwinBase", "slab_swin_b")
