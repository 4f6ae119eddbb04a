"""timm's ByobNet ("bring your own blocks", `timm/models/byobnet.py`, Apache-2.0) as a network engine: a stem,
stages of ResNet-style blocks and a global-average-pool + Linear head, configured by timm's `ByoModelCfg`
written as plain data. An architecture module (e.g. `halonet`) keeps its configurations, its converter and the
self-attention layers its blocks use; this module knows no particular attention.

- stems: `tiered` (three 3x3 convs, 3C/8, C/2, C), `7x7`, `3x3` (one conv), each optionally followed by a
  3x3/2 max pool (`stem_pool="maxpool"`); without the pool a tiered stem strides in its last conv too;
- `bottle`: 1x1 -> kxk (stride, groups of `gs` channels) -> [SE/ECA] -> 1x1 (no act) + shortcut -> act;
- `self_attn`: 1x1 -> self-attention (stride; the layer named by `self_attn_layer`, from the classes the caller
  passes) -> BN + act -> 1x1 (no act) + shortcut -> act;
- `basic`: kxk (stride) -> kxk (no act) + shortcut -> act;
- shortcut: identity, or a 1x1 conv (stride) + BN where the shape changes (`downsample="conv1x1"`); with
  `downsample=""` a block that changes the shape has no residual at all;
- `bottle_in` takes the block width from the input, `linear_out` drops the block's final activation;
- an optional 1x1 conv + BN + act (`num_features`) before the head.

`blocks` holds one entry per stage, a block dict (`type`, `d` repeats, `c` channels, `s` stage stride, `gs` group
size, `br` bottleneck ratio, and the per-block overrides `attn_layer`, `attn_kwargs`, `self_attn_layer`,
`self_attn_kwargs`, `block_kwargs`) or a sequence of them. Layer names follow the timm state dict with '-' for
'.' (`stages-2-1-self_attn` for `stages.2.1.self_attn`).

Features, as timm's `feature_info` minus the stem: each stage's output at its stride, the last stage at a stride
where several share one, and the final conv in place of the last stage where there is one.
"""

import dataclasses
import math

import keras

from keras_hyper.layers import Conv2D, DropPath, SqueezeExcite
from keras_hyper.layers._args import check_non_negative, check_positive, check_rate
from keras_hyper.layers.halo import (
    PaddedMaxPool2D,
    _make_divisible,  # timm's make_divisible, which the halo layers use too
)
from keras_hyper.layers.torch_defaults import batch_norm, conv_fan_out_normal, torch_padding
from keras_hyper.models import _base

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
ATTN_LAYERS = (None, "", "se", "eca")
STEMS = ("tiered", "7x7", "3x3")
BLOCK_KWARGS = ("bottle_in", "linear_out", "kernel_size")


@dataclasses.dataclass(frozen=True)
class Plan:
    """A validated ByobNet configuration: `stem` holds `(name, channels, kernel, stride)` per conv, `stages` the
    per-block settings of each stage (timm's expanded block configs), `num_features` the final conv's width (0:
    none)."""

    stem: tuple
    stem_pool: bool
    stages: tuple
    downsample: str
    act: str
    num_features: int

    @property
    def stem_stride(self) -> int:
        return 2 ** (sum(1 for *_, s in self.stem if s > 1) + self.stem_pool)

    @property
    def strides(self) -> tuple:
        """The stride of each stage's output relative to the input."""
        stride = self.stem_stride
        strides = []
        for stage in self.stages:
            stride *= stage[0]["s"]
            strides.append(stride)
        return tuple(strides)

    def features(self) -> tuple:
        """The backbone's `Feature`s (see the module docstring)."""
        channels = {stride: stage[-1]["out_chs"] for stage, stride in zip(self.stages, self.strides)}
        if self.num_features:
            channels[self.strides[-1]] = self.num_features
        return _base.pyramid(channels.values(), channels.keys())


def conv_bn_act(x, prefix, filters, kernel, *, stride=1, groups=1, act="relu"):
    """timm's ConvNormAct: bias-free conv (symmetric PyTorch padding), BatchNorm, optional activation."""
    x, padding = torch_padding(x, kernel, stride, f"{prefix}-pad")
    x = Conv2D(
        filters,
        kernel,
        strides=stride,
        padding=padding,
        groups=groups,
        use_bias=False,
        kernel_initializer=conv_fan_out_normal(kernel, filters, groups),
        name=f"{prefix}-conv",
    )(x)
    x = batch_norm(f"{prefix}-bn")(x)
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


def _block(x, prefix, cfg, *, stride, downsample, act, self_attn_layers, drop_path):
    in_chs = x.shape[-1]
    out_chs = cfg["out_chs"]
    block_kwargs = cfg["block_kwargs"]
    attn = cfg["attn"]
    kernel = block_kwargs.get("kernel_size", 3)
    mid = _make_divisible((in_chs if block_kwargs.get("bottle_in") else out_chs) * cfg["br"])
    gs = cfg["gs"]
    groups = mid // gs if gs else 1
    shortcut = x
    kind = cfg["type"]
    if kind == "basic":
        if block_kwargs.get("bottle_in"):
            raise ValueError(f"Block {prefix}: a 'basic' block takes no bottle_in (timm's BasicBlock has none).")
        y = conv_bn_act(x, f"{prefix}-conv1_kxk", mid, kernel, stride=stride, act=act)
        y = conv_bn_act(y, f"{prefix}-conv2_kxk", out_chs, kernel, groups=groups, act=None)
        if attn[0]:
            y = _channel_attn(y, f"{prefix}-attn_last", *attn)
    else:
        y = conv_bn_act(x, f"{prefix}-conv1_1x1", mid, 1, act=act)
        if kind == "bottle":
            y = conv_bn_act(y, f"{prefix}-conv2_kxk", mid, kernel, stride=stride, groups=groups, act=act)
            if attn[0]:
                y = _channel_attn(y, f"{prefix}-attn", *attn)
        else:
            layer, kwargs = cfg["self_attn"]
            y = self_attn_layers[layer](stride=stride, **kwargs, name=f"{prefix}-self_attn")(y)
            y = batch_norm(f"{prefix}-post_attn")(y)
            y = keras.layers.Activation(act, name=f"{prefix}-post_attn_act")(y)
        y = conv_bn_act(y, f"{prefix}-conv3_1x1", out_chs, 1, act=None)
    if drop_path > 0.0:
        y = DropPath(drop_path, name=f"{prefix}-drop_path")(y)
    if in_chs != out_chs or stride != 1:
        if downsample:
            shortcut = conv_bn_act(shortcut, f"{prefix}-shortcut", out_chs, 1, stride=stride, act=None)
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


def _expand(blocks, *, width_factor, attn_layer, attn_kwargs, self_attn_layer, self_attn_kwargs, block_kwargs, known):
    """The per-stage tuple of per-block settings (timm's `expand_blocks_cfg` + `update_block_kwargs`); `known`
    names the self-attention layers the caller provides."""
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
            if cfg["type"] == "self_attn" and sa_layer not in known:
                raise ValueError(
                    f"self_attn_layer must be one of {tuple(known)} (the self-attention layers this network "
                    f"provides), got {sa_layer!r} for {cfg!r}."
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
        stages.append(tuple(expanded))
    return tuple(stages)


def _stem_layout(stem_type, stem_chs, stem_pool):
    """`((name, channels, kernel, stride), ...)` of the stem convs (total stride 4 with the max pool or a tiered
    stem, else 2)."""
    if stem_type == "tiered":
        chs = (3 * stem_chs // 8, stem_chs // 2, stem_chs)
        strides = (2, 1, 1 if stem_pool else 2)
        return tuple((f"stem-conv{i + 1}", c, 3, s) for i, (c, s) in enumerate(zip(chs, strides)))
    kernel = 7 if stem_type == "7x7" else 3
    return (("stem-conv1" if stem_pool else "stem", stem_chs, kernel, 2),)


def plan(
    blocks,
    *,
    stem_chs,
    stem_type,
    stem_pool,
    downsample,
    act,
    num_features,
    width_factor,
    attn_layer,
    attn_kwargs,
    self_attn_layer,
    self_attn_kwargs,
    block_kwargs,
    self_attn_layers,
):
    """Validates a ByobNet configuration (the arguments of timm's `ByoModelCfg`, see the module docstring) and
    returns its `Plan`; `self_attn_layers` names the self-attention layers the caller provides."""
    if stem_type not in STEMS:
        raise ValueError(f"stem_type must be one of {STEMS}, got {stem_type!r}.")
    if stem_pool not in ("", None, "maxpool"):
        raise ValueError(f"stem_pool must be 'maxpool' or '', got {stem_pool!r}.")
    if downsample not in ("", "conv1x1"):
        raise ValueError(f"downsample must be 'conv1x1' or '', got {downsample!r}.")
    check_positive(stem_chs=stem_chs)
    check_non_negative(num_features=num_features)
    stages = _expand(
        blocks,
        width_factor=width_factor,
        attn_layer=attn_layer,
        attn_kwargs=attn_kwargs or {},
        self_attn_layer=self_attn_layer,
        self_attn_kwargs=self_attn_kwargs or {},
        block_kwargs=block_kwargs or {},
        known=tuple(self_attn_layers),
    )
    return Plan(
        stem=_stem_layout(stem_type, int(round(stem_chs * width_factor)), stem_pool),
        stem_pool=bool(stem_pool),
        stages=stages,
        downsample=downsample,
        act=act,
        num_features=int(round(width_factor * num_features)),
    )


def network(x, plan, *, self_attn_layers, drop_path_rate=0.0, drop_rate=0.0):
    """Builds the ByobNet of `plan` on `x`: its stage features and its head (`_base.Network`).
    `self_attn_layers` maps each self-attention name of the plan to a layer class called as
    `cls(stride=..., **self_attn_kwargs, name=...)`; `drop_path_rate` is timm's linear schedule over all blocks,
    `drop_rate` the dropout before the classifier."""
    check_rate(drop_rate=drop_rate)
    rates = _base.drop_path_rates(drop_path_rate, sum(len(stage) for stage in plan.stages))
    for prefix, chs, kernel, stride in plan.stem:
        x = conv_bn_act(x, prefix, chs, kernel, stride=stride, act=plan.act)
    if plan.stem_pool:
        x = PaddedMaxPool2D(3, 2, 1, name="stem-pool")(x)

    outputs = {}  # by stride: a later stage at the same stride replaces an earlier one, as in timm
    index = 0
    for stage_index, (stage, stride) in enumerate(zip(plan.stages, plan.strides)):
        for block_index, cfg in enumerate(stage):
            x = _block(
                x,
                f"stages-{stage_index}-{block_index}",
                cfg,
                stride=stage[0]["s"] if block_index == 0 else 1,
                downsample=plan.downsample,
                act=plan.act,
                self_attn_layers=self_attn_layers,
                drop_path=rates[index],
            )
            index += 1
        outputs[stride] = x
    if plan.num_features:
        x = outputs[plan.strides[-1]] = conv_bn_act(x, "final_conv", plan.num_features, 1, act=plan.act)
    features = dict(zip((f.key for f in plan.features()), outputs.values()))

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="head-global_pool")(x)
        if drop_rate > 0.0:
            x = keras.layers.Dropout(drop_rate, name="head-drop")(x)
        return keras.layers.Dense(num_classes, name="head-fc")(x)

    return _base.Network(features, head)
