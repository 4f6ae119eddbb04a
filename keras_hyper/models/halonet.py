"""HaloNet (Vaswani, Ramachandran, Srinivas, Parmar, Hechtman, Shlens, "Scaling Local Self-Attention for Parameter
Efficient Visual Backbones", CVPR 2021, arXiv:2103.12731; paper 52 in PAPERS.md), as timm builds it.

timm (Apache-2.0) holds the only public HaloNet checkpoints; its halo models are "bring-your-own-blocks" networks
(`ByobNet`): a stem, four stages of ResNet-style blocks and a global-average-pool + Linear head, where some
bottleneck blocks have their kxk convolution replaced by `HaloAttention`:

- stems: `tiered` (three 3x3 convs, 3C/8, C/2, C), `7x7`, `3x3` (one conv), each optionally followed by a
  3x3/2 max pool (`stem_pool="maxpool"`); without the pool a tiered stem strides in its last conv too;
- `bottle`: 1x1 -> kxk (stride, groups of `gs` channels) -> [SE/ECA] -> 1x1 (no act) + shortcut -> act;
- `self_attn`: 1x1 -> HaloAttention (stride) -> BN + act -> 1x1 (no act) + shortcut -> act, or with
  `self_attn_layer="bottleneck"` the global BottleneckAttention (halo2botnet50ts's last stage; static input
  size only);
- `basic`: kxk (stride) -> kxk (no act) + shortcut -> act;
- shortcut: identity, or a 1x1 conv (stride) + BN where the shape changes (`downsample="conv1x1"`); with
  `downsample=""` a block that changes the shape has no residual at all (haloregnetz_b);
- `bottle_in` takes the block width from the input, `linear_out` drops the block's final activation;
- an optional 1x1 conv + BN + act (`num_features`) before the head.

The configuration is timm's `ByoModelCfg` written as plain data: `blocks` holds one entry per stage, a block
dict (`type`, `d` repeats, `c` channels, `s` stage stride, `gs` group size, `br` bottleneck ratio, and the
per-block overrides `attn_layer`, `attn_kwargs`, `self_attn_kwargs`, `block_kwargs`) or a sequence of them.
Layer names follow the timm state dict with '-' for '.' (`stages-2-1-self_attn` for `stages.2.1.self_attn`), so
the converter is a direct map.

Input `(B, H, W, 3)`; H and W must be multiples of `block_size` times the feature stride at every halo layer
(timm asserts it inside `HaloAttn`; here the builder checks it up front): multiples of 256 for the registered
variants with 8x8 blocks (a halo block at stride 32), of 224 for haloregnetz_b (7x7 blocks at stride 32), which
are also their default and minimum sizes; logits `(B, num_classes)`.
"""

import math

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers import Conv2D, DropPath, SqueezeExcite
from keras_hyper.layers.halo import BottleneckAttention, HaloAttention, PaddedMaxPool2D, _make_divisible
from keras_hyper.models import _base

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1 counts the other way round.
BLOCK_TYPES = ("bottle", "self_attn", "basic")
BLOCK_KEYS = (
    "type",
    "d",
    "c",
    "s",
    "gs",
    "br",
    "attn_layer",
    "attn_kwargs",
    "self_attn_layer",
    "self_attn_kwargs",
    "block_kwargs",
)
SELF_ATTN_LAYERS = ("halo", "bottleneck")
ATTN_LAYERS = (None, "", "se", "eca")
STEMS = ("tiered", "7x7", "3x3")
BLOCK_KWARGS = ("bottle_in", "linear_out", "kernel_size")


def _conv_bn_act(x, prefix, filters, kernel, *, stride=1, groups=1, act="relu"):
    """timm's ConvNormAct: bias-free conv (symmetric PyTorch padding), BatchNorm, optional activation."""
    padding = "same"
    if stride > 1:
        padding = "valid"
        if kernel > 1:
            x = keras.layers.ZeroPadding2D((kernel - 1) // 2, name=f"{prefix}-pad")(x)
    fan_out = kernel * kernel * filters // groups
    x = Conv2D(
        filters,
        kernel,
        strides=stride,
        padding=padding,
        groups=groups,
        use_bias=False,
        kernel_initializer=keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / fan_out)),
        name=f"{prefix}-conv",
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{prefix}-bn")(x)
    if act:
        x = keras.layers.Activation(act, name=f"{prefix}-act")(x)
    return x


def _eca(x, prefix):
    """timm's EcaModule (Wang et al., "ECA-Net", arXiv:1910.03151): a k-tap 1-D conv across the pooled channels,
    k the odd number nearest (log2(C) + 1) / 2, at least 3, then a sigmoid gate."""
    channels = x.shape[-1]
    t = int(abs(math.log(channels, 2) + 1) / 2)
    kernel = max(t if t % 2 else t + 1, 3)
    y = keras.layers.GlobalAveragePooling2D(name=f"{prefix}-pool")(x)
    y = keras.layers.Reshape((channels, 1), name=f"{prefix}-expand")(y)
    y = keras.layers.Conv1D(1, kernel, padding="same", use_bias=False, name=f"{prefix}-conv")(y)
    y = keras.layers.Reshape((1, 1, channels), name=f"{prefix}-gate_shape")(y)
    y = keras.layers.Activation("sigmoid", name=f"{prefix}-gate")(y)
    return keras.layers.Multiply(name=f"{prefix}-scale")([x, y])


def _channel_attn(x, prefix, layer, kwargs):
    if layer == "se":
        ratio = kwargs.get("rd_ratio", 1.0 / 16)
        hidden = _make_divisible(x.shape[-1] * ratio, kwargs.get("rd_divisor", 8), round_limit=0.0)
        return SqueezeExcite(hidden, name=prefix)(x)
    return _eca(x, prefix)


def _block(x, prefix, cfg, *, stride, downsample, act, attn, self_attn, block_kwargs, drop_path):
    in_chs = x.shape[-1]
    out_chs = cfg["out_chs"]
    kernel = block_kwargs.get("kernel_size", 3)
    mid = _make_divisible((in_chs if block_kwargs.get("bottle_in") else out_chs) * cfg["br"])
    gs = cfg["gs"]
    groups = mid // gs if gs else 1
    shortcut = x
    kind = cfg["type"]
    if kind == "basic":
        if block_kwargs.get("bottle_in"):
            raise ValueError(f"Block {prefix}: a 'basic' block takes no bottle_in (timm's BasicBlock has none).")
        y = _conv_bn_act(x, f"{prefix}-conv1_kxk", mid, kernel, stride=stride, act=act)
        y = _conv_bn_act(y, f"{prefix}-conv2_kxk", out_chs, kernel, groups=groups, act=None)
        if attn[0]:
            y = _channel_attn(y, f"{prefix}-attn_last", *attn)
    else:
        y = _conv_bn_act(x, f"{prefix}-conv1_1x1", mid, 1, act=act)
        if kind == "bottle":
            y = _conv_bn_act(y, f"{prefix}-conv2_kxk", mid, kernel, stride=stride, groups=groups, act=act)
            if attn[0]:
                y = _channel_attn(y, f"{prefix}-attn", *attn)
        else:
            layer, kwargs = self_attn
            attention = HaloAttention if layer == "halo" else BottleneckAttention
            y = attention(stride=stride, **kwargs, name=f"{prefix}-self_attn")(y)
            y = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{prefix}-post_attn")(y)
            y = keras.layers.Activation(act, name=f"{prefix}-post_attn_act")(y)
        y = _conv_bn_act(y, f"{prefix}-conv3_1x1", out_chs, 1, act=None)
    if drop_path > 0.0:
        y = DropPath(drop_path, name=f"{prefix}-drop_path")(y)
    if in_chs != out_chs or stride != 1:
        if downsample:
            shortcut = _conv_bn_act(shortcut, f"{prefix}-shortcut", out_chs, 1, stride=stride, act=None)
        else:
            shortcut = None
    if shortcut is not None:
        y = keras.layers.Add(name=f"{prefix}-add")([y, shortcut])
    if not block_kwargs.get("linear_out"):
        y = keras.layers.Activation(act, name=f"{prefix}-act")(y)
    return y


def _override(block_value, model_value):
    """timm's override_kwargs: a block-level dict replaces the model-level one entirely (not merged)."""
    return dict((block_value if block_value is not None else model_value) or {})


def _expand(blocks, *, width_factor, attn_layer, attn_kwargs, self_attn_layer, self_attn_kwargs, block_kwargs):
    """The per-stage list of per-block settings (timm's `expand_blocks_cfg` + `update_block_kwargs`)."""
    if not blocks:
        raise ValueError(f"blocks must name at least one stage, got {blocks!r}.")
    stages = []
    for stage in blocks:
        cfgs = [stage] if isinstance(stage, dict) else list(stage)
        if not cfgs:
            raise ValueError(f"Every stage in blocks needs at least one block, got an empty stage in {blocks!r}.")
        expanded = []
        for cfg in cfgs:
            if not isinstance(cfg, dict):
                raise ValueError(f"A block must be a dict with keys from {BLOCK_KEYS}, got {cfg!r}.")
            unknown = set(cfg) - set(BLOCK_KEYS)
            if unknown:
                raise ValueError(f"Unknown block keys {sorted(unknown)} in {cfg!r}; expected keys from {BLOCK_KEYS}.")
            if cfg.get("type") not in BLOCK_TYPES:
                raise ValueError(f"Block type must be one of {BLOCK_TYPES}, got {cfg.get('type')!r} in {cfg!r}.")
            depth = cfg.get("d", 1)
            if not isinstance(depth, int) or depth < 1:
                raise ValueError(f"Block depth d must be a positive integer, got {depth!r} in {cfg!r}.")
            channels = cfg.get("c")
            if not isinstance(channels, int) or channels < 1:
                raise ValueError(f"Block channels c must be a positive integer, got {channels!r} in {cfg!r}.")
            stride = cfg.get("s", 2)
            if stride not in (1, 2):
                raise ValueError(f"Stage stride s must be 1 or 2, got {stride!r} in {cfg!r}.")
            layer = attn_layer
            kwargs = attn_kwargs
            if cfg.get("attn_layer") is not None or cfg.get("attn_kwargs") is not None:
                layer = cfg.get("attn_layer") if cfg.get("attn_layer") is not None else attn_layer
                kwargs = _override(cfg.get("attn_kwargs"), attn_kwargs)
            if layer not in ATTN_LAYERS:
                raise ValueError(f"attn_layer must be one of {ATTN_LAYERS}, got {layer!r}.")
            sa_layer, sa_kwargs = self_attn_layer, self_attn_kwargs
            if cfg.get("self_attn_layer") is not None or cfg.get("self_attn_kwargs") is not None:
                sa_layer = cfg.get("self_attn_layer") or self_attn_layer
                sa_kwargs = _override(cfg.get("self_attn_kwargs"), self_attn_kwargs)
            if cfg["type"] == "self_attn" and sa_layer not in SELF_ATTN_LAYERS:
                raise ValueError(
                    f"self_attn_layer must be one of {SELF_ATTN_LAYERS} (timm's lambda layer is not implemented), "
                    f"got {sa_layer!r} for {cfg!r}."
                )
            settings = dict(
                type=cfg["type"],
                out_chs=_make_divisible(channels * width_factor),
                s=stride,
                gs=cfg.get("gs"),
                br=cfg.get("br", 1.0),
                attn=(layer, dict(kwargs or {})),
                self_attn=(sa_layer, dict(sa_kwargs or {})),
                block_kwargs=_override(cfg.get("block_kwargs"), block_kwargs),
            )
            unknown = set(settings["block_kwargs"]) - set(BLOCK_KWARGS)
            if unknown:
                raise ValueError(f"Unknown block_kwargs {sorted(unknown)}; expected keys from {BLOCK_KWARGS}.")
            expanded += [settings] * depth
        stages.append(expanded)
    return stages


def _stem_layout(stem_type, stem_chs, stem_pool):
    """`[(name, channels, kernel, stride)]` of the stem convs and whether a max pool follows (total stride 4,
    except a single conv without pool: 2)."""
    if stem_type == "tiered":
        chs = (3 * stem_chs // 8, stem_chs // 2, stem_chs)
        strides = (2, 1, 1 if stem_pool else 2)
        return [(f"stem-conv{i + 1}", c, 3, s) for i, (c, s) in enumerate(zip(chs, strides))]
    kernel = 7 if stem_type == "7x7" else 3
    return [("stem-conv1" if stem_pool else "stem", stem_chs, kernel, 2)]


def _input_multiple(stages, stem_stride):
    """The number H and W must be multiples of: block_size times the feature stride at every halo layer."""
    multiple, stride = 1, stem_stride
    for stage in stages:
        for index, cfg in enumerate(stage):
            if cfg["type"] == "self_attn" and cfg["self_attn"][0] == "halo":
                block = cfg["self_attn"][1].get("block_size", 8)
                multiple = math.lcm(multiple, block * stride)
            if index == 0:
                stride *= cfg["s"]
    return multiple


def halonet(
    blocks,
    stem_chs=64,
    stem_type="tiered",
    stem_pool="maxpool",
    downsample="conv1x1",
    act="relu",
    num_features=0,
    width_factor=1.0,
    attn_layer=None,
    attn_kwargs=None,
    self_attn_layer="halo",
    self_attn_kwargs=None,
    block_kwargs=None,
    drop_path_rate=0.0,
    drop_rate=0.0,
    *,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    num_classes=1000,
    classifier_activation="softmax",
    include_preprocessing=False,
    name="halonet",
):
    """Builds a HaloNet-family ByobNet.

    Args:
        blocks: one entry per stage, a block dict or a sequence of block dicts (timm's `ByoBlockCfg` fields:
            `type` in ('bottle', 'self_attn', 'basic'), `d`, `c`, `s` (default 2), `gs` (None/0: no groups),
            `br` (default 1.0), and the per-block overrides `attn_layer`, `attn_kwargs`, `self_attn_kwargs`,
            `block_kwargs`).
        stem_chs, stem_type ('tiered', '7x7', '3x3'), stem_pool ('maxpool' or ''): the stem.
        downsample: 'conv1x1' (1x1 conv + BN shortcut where the shape changes) or '' (no residual there).
        act: activation ('relu', 'silu').
        num_features: channels of a final 1x1 conv + BN + act before the head (0: none).
        width_factor: multiplies every block width.
        attn_layer, attn_kwargs: channel attention in the bottleneck blocks (None, 'se', 'eca'; SE takes
            `rd_ratio`, default 1/16).
        self_attn_layer: 'halo' (HaloAttention) or 'bottleneck' (BottleneckAttention: global, needs a static input
            size); self_attn_kwargs: its arguments (block_size, halo_size, num_heads, dim_head, qk_ratio, ...).
        block_kwargs: `bottle_in`, `linear_out`, `kernel_size`.
        drop_path_rate: stochastic depth, linear over all blocks (timm's schedule); drop_rate: dropout before
            the classifier.
        include_top, weights, input_tensor, input_shape, pooling, num_classes, classifier_activation,
        include_preprocessing, name: as in `keras.applications`; `weights` here is a local file (use
            `keras_hyper.applications.load` or the variant builders for registered tags).

    Returns:
        A functional `keras.Model`.
    """
    if stem_type not in STEMS:
        raise ValueError(f"stem_type must be one of {STEMS}, got {stem_type!r}.")
    if stem_pool not in ("", None, "maxpool"):
        raise ValueError(f"stem_pool must be 'maxpool' or '', got {stem_pool!r}.")
    if downsample not in ("", "conv1x1"):
        raise ValueError(f"downsample must be 'conv1x1' or '', got {downsample!r}.")
    if not isinstance(stem_chs, int) or stem_chs < 1:
        raise ValueError(f"stem_chs must be a positive integer, got {stem_chs!r}.")
    if not isinstance(num_features, int) or num_features < 0:
        raise ValueError(f"num_features must be a non-negative integer, got {num_features!r}.")
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}.")
    _base.validate_head(include_top, pooling, num_classes, classifier_activation)
    stages = _expand(
        blocks,
        width_factor=width_factor,
        attn_layer=attn_layer,
        attn_kwargs=attn_kwargs or {},
        self_attn_layer=self_attn_layer,
        self_attn_kwargs=self_attn_kwargs or {},
        block_kwargs=block_kwargs or {},
    )
    stem = _stem_layout(stem_type, int(round(stem_chs * width_factor)), stem_pool)
    stem_stride = 2 ** (sum(1 for *_, s in stem if s > 1) + (1 if stem_pool else 0))
    multiple = _input_multiple(stages, stem_stride)
    total_stride = stem_stride * int(np.prod([stage[0]["s"] for stage in stages]))
    min_size = max(32, multiple, total_stride)
    # the default: the smallest valid size from 224 up (256 for the 8x8-block variants, 224 for haloregnetz_b)
    default_size = multiple * -(-224 // multiple)
    inputs = x = _base.image_input(input_tensor, input_shape, default_size=default_size, min_size=min_size)
    fixed = any(cfg["self_attn"][0] == "bottleneck" for stage in stages for cfg in stage if cfg["type"] == "self_attn")
    if fixed and None in tuple(inputs.shape[1:3]):
        raise ValueError(
            "A model with bottleneck (global) attention needs a static input height and width: its position tables "
            f"are sized by the feature map; got input_shape={tuple(inputs.shape[1:])}."
        )
    for size in inputs.shape[1:3]:
        if size is not None and size % multiple:
            raise ValueError(
                f"Input height and width must be multiples of {multiple} (block_size times the feature stride at "
                f"every halo layer), got input_shape={tuple(inputs.shape[1:])}."
            )
    if include_preprocessing:
        x = _base.preprocessing(x, ARCH.mean, ARCH.std)
    for prefix, chs, kernel, stride in stem:
        x = _conv_bn_act(x, prefix, chs, kernel, stride=stride, act=act)
    if stem_pool:
        x = PaddedMaxPool2D(3, 2, 1, name="stem-pool")(x)

    rates = _base.drop_path_rates(drop_path_rate, sum(len(stage) for stage in stages))
    index = 0
    for stage_index, stage in enumerate(stages):
        for block_index, cfg in enumerate(stage):
            x = _block(
                x,
                f"stages-{stage_index}-{block_index}",
                cfg,
                stride=stage[0]["s"] if block_index == 0 else 1,
                downsample=downsample,
                act=act,
                attn=cfg["attn"],
                self_attn=cfg["self_attn"],
                block_kwargs=cfg["block_kwargs"],
                drop_path=rates[index],
            )
            index += 1
    if num_features:
        x = _conv_bn_act(x, "final_conv", int(round(width_factor * num_features)), 1, act=act)

    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="head-global_pool")(x)
        if drop_rate > 0.0:
            x = keras.layers.Dropout(drop_rate, name="head-drop")(x)
        x = keras.layers.Dense(num_classes, name="head-fc")(x)
        x = _base.predictions(x, classifier_activation)
    else:
        x = _base.pool(x, pooling)
    return _base.finish(inputs, x, name=name, weights=weights, arch=ARCH)


def convert_halonet(state_dict, model):
    """Fills `model` (built with `include_top=True`) from a timm ByobNet halo state dict.

    Strict: every tensor is consumed (BatchNorm's `num_batches_tracked` is a training counter and is ignored)
    and every model variable is assigned; shapes are checked against both names.
    """
    m = mapping.StateDictMapper(state_dict, model, ignore=(r".*\.num_batches_tracked$",))
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if isinstance(layer, keras.layers.Conv1D):  # ECA: PyTorch Conv1d (1, 1, k) -> Keras (k, 1, 1)
            m.assign(layer.kernel, f"{key}.weight", lambda w: np.transpose(w, (2, 1, 0)))
        elif m.standard(layer, key):
            continue
        elif isinstance(layer, SqueezeExcite):
            m.dense(layer.reduce, f"{key}.fc1")
            m.dense(layer.expand, f"{key}.fc2")
        elif isinstance(layer, HaloAttention | BottleneckAttention):
            if isinstance(layer, HaloAttention):
                m.conv2d(layer.q, f"{key}.q")
                m.conv2d(layer.kv, f"{key}.kv")
            else:
                m.conv2d(layer.qkv, f"{key}.qkv")
            m.assign(layer.height_rel, f"{key}.pos_embed.height_rel")
            m.assign(layer.width_rel, f"{key}.pos_embed.width_rel")
    m.finish()


_CFG_KEYS = (
    "stem_chs",
    "stem_type",
    "stem_pool",
    "downsample",
    "num_features",
    "width_factor",
    "attn_layer",
    "attn_kwargs",
    "self_attn_kwargs",
    "block_kwargs",
)


def _block_from_json(block):
    if isinstance(block, (list, tuple)):
        return tuple(_block_from_json(b) for b in block)
    return {k: v for k, v in block.items() if v is not None}


def fixture_kwargs(meta):
    """Builder kwargs of a fixture case from its timm `ByoModelCfg` (as recorded in the case JSON)."""
    cfg = meta["kwargs"]["cfg"]
    for key, supported in (
        ("stem_pool", ("", None, "maxpool")),
        ("norm_layer", ("batchnorm",)),
        ("aa_layer", ("", None)),
        ("head_type", ("classifier",)),
        ("head_hidden_size", (None,)),
        ("act_layer", ("relu", "silu")),
    ):
        if cfg.get(key, supported[0]) not in supported:
            raise ValueError(f"Unsupported ByoModelCfg {key}={cfg[key]!r}; this port implements {supported}.")
    kwargs = {k: cfg[k] for k in _CFG_KEYS if k in cfg}
    kwargs["stem_pool"] = kwargs.get("stem_pool") or ""
    kwargs["act"] = cfg.get("act_layer", "relu")
    # timm's model-level None leaves only blocks with their own self_attn_layer valid; those keep theirs
    kwargs["self_attn_layer"] = cfg.get("self_attn_layer") or "halo"
    kwargs["blocks"] = tuple(_block_from_json(b) for b in cfg["blocks"])
    return kwargs


def _bottle(d, c, s=2, gs=0, br=0.25, **kwargs):
    return dict(type="bottle", d=d, c=c, s=s, gs=gs, br=br, **kwargs)


def _attn(d, c, s=2, gs=0, br=0.25, **kwargs):
    return dict(type="self_attn", d=d, c=c, s=s, gs=gs, br=br, **kwargs)


def _interleave(d, c, every=1, **kwargs):
    """timm's `interleave_blocks(('bottle', 'self_attn'), ...)`: self-attention at the `every` positions."""
    if isinstance(every, int):
        every = list(range(every, d, every + 1)) or [d - 1]
    return tuple(dict(type="self_attn" if i in every else "bottle", d=1, c=c, **kwargs) for i in range(d))


_PAPER = _base.Paper("Scaling Local Self-Attention for Parameter Efficient Visual Backbones", "2103.12731", 52)

_HALONET_H1 = dict(
    blocks=(_attn(3, 64, s=1, br=1.0), _attn(3, 128, br=1.0), _attn(10, 256, br=1.0), _attn(3, 512, br=1.0)),
    stem_chs=64,
    stem_type="7x7",
    stem_pool="maxpool",
    self_attn_kwargs=dict(block_size=8, halo_size=3),
)
_HALONET26T = dict(
    blocks=(
        _bottle(2, 256, s=1),
        _bottle(2, 512),
        _interleave(2, 1024, s=2, gs=0, br=0.25),
        _attn(2, 2048),
    ),
    stem_type="tiered",
    self_attn_kwargs=dict(block_size=8, halo_size=2),
)
_SEHALONET33TS = dict(
    blocks=(
        _bottle(2, 256, s=1),
        _interleave(3, 512, every=[2], s=2, gs=0, br=0.25),
        _interleave(3, 1024, every=[2], s=2, gs=0, br=0.25),
        _attn(2, 1536, br=0.333),
    ),
    stem_type="tiered",
    stem_pool="",
    act="silu",
    num_features=1280,
    attn_layer="se",
    self_attn_kwargs=dict(block_size=8, halo_size=3),
)
_HALONET50TS = dict(
    blocks=(
        _bottle(3, 256, s=1),
        _interleave(4, 512, every=4, s=2, gs=0, br=0.25, self_attn_kwargs=dict(block_size=8, halo_size=3, num_heads=4)),
        _interleave(6, 1024, s=2, gs=0, br=0.25),
        _interleave(3, 2048, s=2, gs=0, br=0.25),
    ),
    stem_type="tiered",
    act="silu",
    self_attn_kwargs=dict(block_size=8, halo_size=3),
)
_ECA_HALONEXT26TS = dict(
    blocks=(
        _bottle(2, 256, s=1, gs=16),
        _bottle(2, 512, gs=16),
        _interleave(2, 1024, s=2, gs=16, br=0.25),
        _attn(2, 2048, gs=16),
    ),
    stem_type="tiered",
    act="silu",
    attn_layer="eca",
    self_attn_kwargs=dict(block_size=8, halo_size=2, dim_head=16),
)
_HALO2BOTNET50TS = dict(
    blocks=(
        _bottle(3, 256, s=1),
        _interleave(4, 512, s=2, gs=0, br=0.25, self_attn_layer="halo", self_attn_kwargs=dict(halo_size=3)),
        _interleave(6, 1024, s=2, gs=0, br=0.25, self_attn_layer="halo", self_attn_kwargs=dict(halo_size=3)),
        _interleave(3, 2048, s=2, gs=0, br=0.25, self_attn_layer="bottleneck", self_attn_kwargs=dict()),
    ),
    stem_type="tiered",
    stem_pool="",
    act="silu",
)
_HALOREGNETZ_B = dict(
    blocks=(
        _bottle(2, 48, gs=16, br=3),
        _bottle(6, 96, gs=16, br=3),
        _interleave(12, 192, every=3, s=2, gs=16, br=3),
        _attn(2, 288, gs=16, br=3),
    ),
    stem_chs=32,
    stem_type="3x3",
    stem_pool="",
    downsample="",
    num_features=1536,
    act="silu",
    attn_layer="se",
    attn_kwargs=dict(rd_ratio=0.25),
    block_kwargs=dict(bottle_in=True, linear_out=True),
    self_attn_kwargs=dict(block_size=7, halo_size=2, qk_ratio=0.33),
)


def _variant(name, kwargs, num_params, input_size, crop_pct, top1):
    return _base.Variant(
        name, kwargs, num_params=num_params, input_size=input_size, crop_pct=crop_pct, paper_top1=top1, timm_name=name
    )


VARIANTS = (
    _variant("halonet_h1", _HALONET_H1, 8_100_056, 256, 0.95, None),
    _variant("halonet26t", _HALONET26T, 12_480_288, 256, 0.95, 79.134),
    _variant("sehalonet33ts", _SEHALONET33TS, 13_691_712, 256, 0.94, 80.976),
    _variant("halonet50ts", _HALONET50TS, 22_733_280, 256, 0.94, 81.64),
    _variant("eca_halonext26ts", _ECA_HALONEXT26TS, 10_756_885, 256, 0.94, 79.518),
    _variant("haloregnetz_b", _HALOREGNETZ_B, 11_680_072, 224, 0.94, 81.058),
    _variant("halo2botnet50ts_256", _HALO2BOTNET50TS, 22_635_360, 256, 0.95, 82.084),
)

ARCH = _base.Architecture(
    name="halonet",
    builder=halonet,
    convert=convert_halonet,
    paper=_PAPER,
    variants=VARIANTS,
    license="Apache-2.0",
    source="https://github.com/huggingface/pytorch-image-models",
    classifier="head-fc",
    classifier_key="head.fc.weight",
    # 32x32 input, every halo layer at a multiple of 8 so that the harness' dynamic-size check (a side of
    # 2 * 32 + 8) works: a stride-2 halo block (4x4 blocks, 2x2 queries each) at stride 2 and a 1x1-block halo
    # (3x3 window) at stride 8; SE and a bottleneck fill the rest.
    tiny=dict(
        blocks=(
            dict(type="bottle", d=1, c=32, s=1, br=0.25, attn_layer="se"),
            dict(type="self_attn", d=1, c=32, s=2, br=0.5),
            (
                dict(type="bottle", d=1, c=48, s=2, br=0.25),
                dict(
                    type="self_attn",
                    d=1,
                    c=48,
                    s=1,
                    br=0.5,
                    self_attn_kwargs=dict(block_size=1, halo_size=1, num_heads=2),
                ),
            ),
        ),
        stem_chs=16,
        stem_type="3x3",
        stem_pool="",
        self_attn_kwargs=dict(block_size=4, halo_size=1, num_heads=2),
        num_classes=10,
    ),
    fixture="halonet",
    min_input_size=32,
    interpolation="bicubic",
    fixture_kwargs=fixture_kwargs,
)

HaloNetH1 = _base.variant_builder("HaloNetH1", "halonet_h1")
HaloNet26T = _base.variant_builder("HaloNet26T", "halonet26t")
SEHaloNet33TS = _base.variant_builder("SEHaloNet33TS", "sehalonet33ts")
HaloNet50TS = _base.variant_builder("HaloNet50TS", "halonet50ts")
ECAHaloNeXt26TS = _base.variant_builder("ECAHaloNeXt26TS", "eca_halonext26ts")
HaloRegNetZB = _base.variant_builder("HaloRegNetZB", "haloregnetz_b")
Halo2BotNet50TS256 = _base.variant_builder("Halo2BotNet50TS256", "halo2botnet50ts_256")
