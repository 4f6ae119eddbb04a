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
last two (`attn_type="LLSS"`), each block's window chosen by the official rule from its map's actual size
(`swin_window`); with the official window 56 the SLA stages attend globally at 224. `from_official(kwargs)`
maps the official constructor's arguments (e.g. `shared/reference/slab/variants.json`) to the builder's.

Input `(B, H, W, 3)`, H and W multiples of `patch_size` (a remainder is cropped by the patch convolution;
SLAB-Swin: multiples of its total stride whose stage maps tile into the official windows); features: SLAB-DeiT
its one token grid `(B, H/p, W/p, C)`, SLAB-Swin one map per stage; logits `(B, num_classes)`.
"""

import re

import keras

from keras_hyper.convert import mapping
from keras_hyper.layers._args import check_positive
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.linear_attention import PositionEmbedding, SimplifiedLinearAttention, SoftmaxAttention
from keras_hyper.layers.prepbn import PRepBN
from keras_hyper.layers.window_attention import PatchMerging2x2, WindowSoftmaxAttention
from keras_hyper.models import _base, _slab, _vit

ATTENTIONS = ("linear", "softmax")
NORMS = _slab.NORMS
# the official SlabSwinTransformer's constructor defaults (not ours: its window_size is 7, its attn_type "LLLL")
OFFICIAL_SWIN = dict(
    img_size=224,
    patch_size=4,
    in_chans=3,
    num_classes=1000,
    embed_dim=96,
    depths=(2, 2, 6, 2),
    num_heads=(3, 6, 12, 24),
    window_size=7,
    mlp_ratio=4.0,
    qkv_bias=True,
    qk_scale=None,
    drop_rate=0.0,
    attn_drop_rate=0.0,
    drop_path_rate=0.1,
    ape=False,
    patch_norm=True,
    use_checkpoint=False,
    focusing_factor=3,
    kernel_size=5,
    attn_type="LLLL",
)


def slab_deit(
    x,
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
):
    """Builds a SLAB-DeiT model (or, with `attention="softmax", norm="layernorm"`, its DeiT baseline); the public
    builder `keras_hyper.models.slab.slab_deit` takes these arguments and the keras.applications ones.

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

    Features: one token grid, the final norm's output `(B, H/p, W/p, embed_dim)`, keyed by its stride
    `patch_size` (`"P4"` for the official 16). Example:

        model = slab_deit(embed_dim=384, num_heads=6)                # SLAB-DeiT-S
        grid = slab_deit(features_only=True)(images)["P4"]           # (B, 14, 14, 192) at 224
    """
    _deit_checks(img_size, patch_size, embed_dim, depth, num_heads)
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}.")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")
    if mlp_ratio <= 0:
        raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio!r}.")
    rates = _base.drop_path_rates(drop_path_rate, depth)
    prepbn = dict(total_steps=prepbn_steps, warmup=prepbn_warmup, r0=prepbn_r0)
    if norm == "prepbn":
        PRepBN(**prepbn)  # validates the schedule before anything is built
    grid = (img_size // patch_size,) * 2

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
    return _base.Network({_base.feature_key(patch_size): x}, _head)


def _deit_checks(img_size, patch_size, embed_dim, depth, num_heads):
    check_positive(patch_size=patch_size, embed_dim=embed_dim, depth=depth)
    if not isinstance(img_size, int) or img_size < patch_size or img_size % patch_size:
        raise ValueError(f"img_size must be a positive multiple of patch_size={patch_size}, got {img_size!r}.")
    if not isinstance(num_heads, int) or num_heads < 1 or embed_dim % num_heads:
        raise ValueError(f"num_heads must be a positive integer dividing embed_dim={embed_dim}, got {num_heads!r}.")


def _deit_input_size(img_size, patch_size, embed_dim, depth, num_heads, **_):
    _deit_checks(img_size, patch_size, embed_dim, depth, num_heads)  # before the input's size is checked
    return img_size


def _deit_features(patch_size, embed_dim, **_):
    return _vit.grid_feature(patch_size, embed_dim)


def _head(x, num_classes):
    """Mean over the tokens and a Linear (SLAB-DeiT and SLAB-Swin alike)."""
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    # truncated normal, not the official zeros: a zero head passes no gradient to the body in the first step
    return _slab.dense(num_classes, "head")(x)


def swin_window(resolution, window):
    """The official SLAB-Swin (and Swin) window of a block on a `(h, w)` token map: `(side, shifts)`. A window at
    least as large as the map's smaller side becomes a square of that side and is never shifted; otherwise it
    is `window` and shifts (by half) in odd blocks."""
    side = min(resolution)
    return (side, False) if side <= window else (window, True)


def _pair(img_size):
    """`img_size` as `(height, width)`: an int, or a pair of ints."""
    pair = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if len(pair) != 2 or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in pair):
        raise ValueError(f"img_size must be a positive integer or a (height, width) pair of them, got {img_size!r}.")
    return pair


def _swin_stages(img_size, patch_size, embed_dim, depths, num_heads, attn_type):
    """Validates the stage layout; returns `img_size` as `(height, width)` and the depths."""
    depths, num_heads = tuple(depths), tuple(num_heads)
    stages = len(depths)
    if stages < 1 or any(not isinstance(d, int) or d < 1 for d in depths):
        raise ValueError(f"depths must be a non-empty sequence of positive integers, got {depths!r}.")
    if len(num_heads) != stages:
        raise ValueError(f"num_heads must have one entry per stage ({stages}), got {num_heads!r}.")
    if not isinstance(attn_type, str) or len(attn_type) != stages or set(attn_type) - {"L", "S"}:
        raise ValueError(f"attn_type must be {stages} letters 'L' or 'S', got {attn_type!r}.")
    check_positive(embed_dim=embed_dim, patch_size=patch_size)
    for i, heads in enumerate(num_heads):
        if not isinstance(heads, int) or heads < 1 or (embed_dim * 2**i) % heads:
            raise ValueError(f"num_heads[{i}]={heads!r} must be a positive integer dividing {embed_dim * 2**i}.")
    size, total_stride = _pair(img_size), patch_size * 2 ** (stages - 1)
    if any(s % total_stride for s in size):
        raise ValueError(
            f"img_size must be a multiple of patch_size * 2**(stages-1) = {total_stride} (each side), got {img_size!r}."
        )
    return size, depths


def slab_swin(
    x,
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
):
    """Builds a SLAB-Swin model (the official `SlabSwinTransformer`, PRepBN everywhere, no absolute position
    embedding); the public builder `keras_hyper.models.slab.slab_swin` takes these arguments and the
    keras.applications ones, and `from_official(kwargs)` maps the official constructor's arguments to them.

    Stage `i` works on an `(H, W) / patch_size / 2**i` token map. Its blocks use SLA (`attn_type[i] == "L"`) in
    windows of `window_size`, or softmax attention with relative position bias (`"S"`) in windows of
    `softmax_window` (official: 7, or 12 when `window_size > 56`), shifted by half a window in every odd block.
    The official rule (`swin_window`) applies to the map's actual size: a window at least as large as the
    smaller side becomes a square of that side, unshifted; a square map then is one global window, a
    non-square one a row of square windows. With the official `window_size=56` every SLA stage is global at
    224, and only the third stage's softmax windows are real (7x7, shifted). SLA windows are attended one by
    one, as the official code (no mask in shifted SLA windows; each window its own positional encoding,
    normaliser and zero-padded depthwise convolution).

    Args:
        img_size: `H` or `(H, W)`, the input size the learned tables are laid out for (each block's table is
            stored for its window at this size, as the official checkpoint's). A static input of another size
            gets the official windows of its own size, with the tables resized where a window differs (refused
            where that would be a shifted softmax window: its bias table has no size to come from); a dynamic
            `(None, None)` input keeps the windows of `img_size`. A non-square `img_size` needs
            `input_shape=(H, W, 3)` (the default input is square).
        patch_size, embed_dim, depths, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale, kernel_size:
            as in the official constructor (`kernel_size`: of SLA's depthwise conv).
        attn_type: one letter per stage, "L" (SLA) or "S" (softmax).
        softmax_window: window of the "S" stages (None: the official rule).
        prepbn_steps, prepbn_warmup, prepbn_r0, drop_path_rate: as in `slab_deit`.

    Features: one per stage, `"P<log2 stride>"` for strides `patch_size * 2**i` (P2..P5 for the official
    layout) with `embed_dim * 2**i` channels: each stage's last block (before its patch merging), and the final
    norm for the last stage. Example:

        model = slab_swin(img_size=(224, 448), input_shape=(224, 448, 3))
        pyramid = slab_swin(features_only=True)          # {"P2": (B, 56, 56, 96), ..., "P5": (B, 7, 7, 768)}
    """
    size, depths = _swin_stages(img_size, patch_size, embed_dim, depths, num_heads, attn_type)
    stages = len(depths)
    softmax_window = softmax_window or (7 if window_size <= 56 else 12)
    check_positive(window_size=window_size, softmax_window=softmax_window)
    rates = _base.drop_path_rates(drop_path_rate, sum(depths))
    prepbn = dict(total_steps=prepbn_steps, warmup=prepbn_warmup, r0=prepbn_r0)
    PRepBN(**prepbn)  # validates the schedule before anything is built

    x = Conv2D(embed_dim, patch_size, strides=patch_size, name="patch_embed-proj")(x)
    x = _slab.norm(x, "patch_embed-norm", "prepbn", prepbn)
    features, block = {}, 0
    for i, depth in enumerate(depths):
        layout = tuple(s // patch_size // 2**i for s in size)
        actual = layout if None in x.shape[1:3] else tuple(x.shape[1:3])
        window = window_size if attn_type[i] == "L" else softmax_window
        stored, _ = swin_window(layout, window)
        side, shifts = swin_window(actual, window)
        if actual[0] % side or actual[1] % side:
            raise ValueError(
                f"Stage {i}'s {actual[0]}x{actual[1]} token map is not a whole number of the official "
                f"{side}x{side} windows (window {window}); the official model cannot run this input size."
            )
        whole = actual == (side, side)  # one window covering the map: global attention
        for j in range(depth):
            prefix = f"layers-{i}-blocks-{j}"
            shift = side // 2 if shifts and j % 2 else 0
            if attn_type[i] == "L":
                core = SimplifiedLinearAttention(
                    num_heads[i],
                    grid_size=(stored, stored),
                    kernel_size=kernel_size,
                    window_size=None if whole else side,
                    shift_size=shift,
                    name=f"{prefix}-attn",
                )
            else:
                if side != stored and not whole:
                    scale = patch_size * 2**i
                    raise ValueError(
                        f"Stage {i}: a {actual[0]}x{actual[1]} map takes {side}x{side} softmax windows, but its "
                        f"relative position tables are laid out for {stored}x{stored} windows at img_size="
                        f"{img_size!r}; build with img_size={(actual[0] * scale, actual[1] * scale)}."
                    )
                core = WindowSoftmaxAttention(
                    num_heads[i],
                    None if whole else side,
                    shift,
                    grid_size=(stored, stored),
                    qk_scale=qk_scale,
                    name=f"{prefix}-attn",
                )
            x = _slab.block(
                x, prefix, core=core, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, prepbn=prepbn, drop_path=rates[block]
            )
            block += 1
        if i < stages - 1:
            features[f"P{(patch_size * 2**i).bit_length() - 1}"] = x
            x = PatchMerging2x2(name=f"layers-{i}-downsample")(x)
            x = _slab.norm(x, f"layers-{i}-downsample-norm", "prepbn", prepbn)
            x = _slab.dense(2 * x.shape[-1] // 4, f"layers-{i}-downsample-reduction", use_bias=False)(x)
    features[f"P{(patch_size * 2 ** (stages - 1)).bit_length() - 1}"] = _slab.norm(x, "norm", "prepbn", prepbn)
    return _base.Network(features, _head)


def _swin_features(img_size, patch_size, embed_dim, depths, num_heads, attn_type, **_):
    _, depths = _swin_stages(img_size, patch_size, embed_dim, depths, num_heads, attn_type)
    strides = [patch_size * 2**i for i in range(len(depths))]
    return _base.pyramid([embed_dim * s // patch_size for s in strides], strides)


def _swin_input_size(img_size, patch_size, embed_dim, depths, num_heads, attn_type, **_):
    """The default input, `img_size` (`(H, W)` when not square); validates the layout before the input's size is
    checked."""
    size, _ = _swin_stages(img_size, patch_size, embed_dim, depths, num_heads, attn_type)
    return size[0] if size[0] == size[1] else size


def _swin_min_size(patch_size, depths, **_):
    return max(32, patch_size * 2 ** (len(tuple(depths)) - 1))


def from_official(kwargs):
    """The builder arguments of the official `SlabSwinTransformer(**kwargs)` (slab_swin.py; the official
    constructor's defaults fill what `kwargs` leaves out, e.g. its `window_size=7`, `attn_type="LLLL"`).

    The official model runs only at `img_size`, so the result fixes `input_shape=(H, W, in_chans)`; with
    `num_classes=0` (the official identity head) it gives `include_top=False, pooling="avg"`: the final norm's
    output averaged over the tokens, as the official `forward_features`. `use_checkpoint`
    (memory only) and `focusing_factor` (never read by the official SLA) are dropped. Raises TypeError for an
    argument the official constructor does not name, and ValueError for what this model does not implement:
    dropout (`drop_rate`, `attn_drop_rate` > 0), `ape=True`, `patch_norm=False`, the mixed "M" stages of
    `attn_type`, a norm layer other than `LinearNorm`.

    Example: `slab_swin(**from_official(json.load(f)["slab_swin_t"]["kwargs"]))`.
    """
    unknown = sorted(set(kwargs) - set(OFFICIAL_SWIN) - {"norm_layer"})
    if unknown:
        raise TypeError(f"SlabSwinTransformer takes no argument(s) {unknown}.")
    official = {**OFFICIAL_SWIN, **kwargs}
    for key, value in (("drop_rate", 0.0), ("attn_drop_rate", 0.0), ("ape", False), ("patch_norm", True)):
        if official[key] != value:
            raise ValueError(f"{key}={official[key]!r} is not implemented (only {key}={value!r}).")
    if "M" in str(official["attn_type"]):
        raise ValueError(f"attn_type={official['attn_type']!r}: the mixed 'M' stages are not implemented.")
    steps = {}
    if "norm_layer" in kwargs:
        norm = str(kwargs["norm_layer"])
        match = re.search(r"step=(\d+)", norm)
        if "LinearNorm" not in norm:
            raise ValueError(f"norm_layer={norm!r}: only the official LinearNorm (PRepBN) is implemented.")
        if match:
            steps["prepbn_steps"] = int(match.group(1))
    img_size = official["img_size"]
    height, width = _pair(img_size if isinstance(img_size, int) else tuple(img_size))
    patch = official["patch_size"]
    if not isinstance(patch, int):
        if len(set(patch)) != 1:
            raise ValueError(f"patch_size={patch!r}: only square patches are implemented.")
        patch = patch[0]
    result = dict(
        img_size=height if height == width else (height, width),
        patch_size=patch,
        embed_dim=official["embed_dim"],
        depths=tuple(official["depths"]),
        num_heads=tuple(official["num_heads"]),
        window_size=official["window_size"],
        attn_type=official["attn_type"],
        mlp_ratio=float(official["mlp_ratio"]),
        qkv_bias=official["qkv_bias"],
        qk_scale=official["qk_scale"],
        kernel_size=official["kernel_size"],
        drop_path_rate=float(official["drop_path_rate"]),
        **steps,
        input_shape=(height, width, official["in_chans"]),
    )
    if official["num_classes"] == 0:
        result.update(include_top=False, pooling="avg")
    else:
        result["num_classes"] = official["num_classes"]
    return result


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
    ignore = []
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
        [r".*\.relative_position_index$", r".*\.attn_mask$"],
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
    _base.Variant("slab_deit_t", _DEIT_T, num_params=6_198_401, paper_top1=74.3, builder_name="SLABDeiTTiny"),
    _base.Variant("slab_deit_s", _DEIT_S, num_params=22_992_641, paper_top1=80.0, builder_name="SLABDeiTSmall"),
    # the softmax / LayerNorm baseline of the same layout (no official checkpoint; count ours)
    _base.Variant(
        "slab_deit_t_softmax",
        dict(_DEIT_T, attention="softmax", norm="layernorm", cls_token=False),
        num_params=5_717_032,
        builder_name="SLABDeiTTinySoftmax",
    ),
)

ARCH = _base.Architecture(
    name="slab",
    network=slab_deit,
    features=_deit_features,
    input_size=_deit_input_size,
    min_size=lambda patch_size, **_: max(32, patch_size),
    convert=convert_slab_deit,
    paper=_slab.PAPER,
    variants=VARIANTS,
    license=_slab.LICENSE,
    source=_slab.SOURCE,
    classifier="head",
    classifier_key="head.weight",
    testing=_base.Testing(
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
        min_input_size=32,
    ),
    reference=_base.Reference(
        "slab",
        kwargs=fixture_kwargs,
        features={"feat/norm": "P2"},
    ),
    reparameterize=reparameterize,
)

_SWIN_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=56, attn_type="LLSS")

SWIN_VARIANTS = (
    _base.Variant(
        "slab_swin_t",
        dict(_SWIN_T, drop_path_rate=0.2),
        num_params=29_216_605,
        paper_top1=81.8,
        builder_name="SLABSwinTiny",
    ),
    _base.Variant(
        "slab_swin_s",
        dict(_SWIN_T, depths=(2, 2, 18, 2), drop_path_rate=0.3),
        num_params=50_552_965,
        paper_top1=83.6,
        builder_name="SLABSwinSmall",
    ),
    _base.Variant(
        "slab_swin_b",
        dict(_SWIN_T, embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5),
        num_params=89_029_373,
        builder_name="SLABSwinBase",
    ),
)

SWIN_ARCH = _base.Architecture(
    name="slab_swin",
    network=slab_swin,
    features=_swin_features,
    input_size=_swin_input_size,
    min_size=_swin_min_size,
    convert=convert_slab_swin,
    paper=_slab.PAPER,
    variants=SWIN_VARIANTS,
    license=_slab.LICENSE,
    source=_slab.SOURCE,
    classifier="head",
    classifier_key="head.weight",
    testing=_base.Testing(
        # every path at 32 px: shifted 4x4 SLA windows (16x16 map), shifted 2x2 softmax windows (8x8), two patch
        # mergings, a global SLA stage (4x4: its window 4 covers it); the dynamic-size check's 64x72 input still
        # tiles into these windows (32x36, 16x18) and leaves the global stage global (8x9)
        tiny=dict(
            img_size=32,
            patch_size=2,
            embed_dim=8,
            depths=(2, 2, 1),
            num_heads=(1, 2, 2),
            window_size=4,
            attn_type="LSL",
            softmax_window=2,
            prepbn_r0=0.5,
            num_classes=10,
        ),
        min_input_size=32,
    ),
    reparameterize=reparameterize,
)

ARCHITECTURES = (ARCH, SWIN_ARCH)

slab_deit = ARCH.builder
slab_swin = SWIN_ARCH.builder
