"""HaloNet (Vaswani, Ramachandran, Srinivas, Parmar, Hechtman, Shlens, "Scaling Local Self-Attention for Parameter
Efficient Visual Backbones", CVPR 2021, arXiv:2103.12731; paper 52 in PAPERS.md), as timm builds it.

timm (Apache-2.0) holds the only public HaloNet checkpoints; its halo models are "bring-your-own-blocks" networks
(`ByobNet`, built here by `keras_hyper.models._byobnet`): a stem, four stages of ResNet-style blocks and a
global-average-pool + Linear head, where some bottleneck blocks have their kxk convolution replaced by
`HaloAttention` (`self_attn_layer="halo"`), or by the global `BottleneckAttention` (`"bottleneck"`,
halo2botnet50ts's last stage; static input size only). This module holds the halo configurations, the input-size
rules of halo attention and the converter of timm's state dicts; layer names follow the timm state dict with '-'
for '.' (`stages-2-1-self_attn` for `stages.2.1.self_attn`), so the converter is a direct map.

Input `(B, H, W, 3)`; H and W must be multiples of `block_size` times the feature stride at every halo layer
(timm asserts it inside `HaloAttn`; here the network checks it up front): multiples of 256 for the registered
variants with 8x8 blocks (a halo block at stride 32), of 224 for haloregnetz_b (7x7 blocks at stride 32), which
are also their default and minimum sizes; logits `(B, num_classes)`.
"""

import math

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers import SqueezeExcite
from keras_hyper.layers.halo import BottleneckAttention, HaloAttention
from keras_hyper.models import _base, _byobnet

SELF_ATTN_LAYERS = {"halo": HaloAttention, "bottleneck": BottleneckAttention}


def _plan(blocks, drop_path_rate=0.0, drop_rate=0.0, **cfg):
    """The validated ByobNet plan of the network's arguments (the dropout rates play no part in it)."""
    return _byobnet.plan(blocks, **cfg, self_attn_layers=SELF_ATTN_LAYERS)


def _input_multiple(plan):
    """The number H and W must be multiples of: block_size times the feature stride at every halo layer."""
    multiple = 1
    stride = plan.stem_stride
    for stage, stage_stride in zip(plan.stages, plan.strides):
        for index, cfg in enumerate(stage):
            if cfg["type"] == "self_attn" and cfg["self_attn"][0] == "halo":
                block = cfg["self_attn"][1].get("block_size", 8)
                multiple = math.lcm(multiple, block * stride)
            if index == 0:
                stride = stage_stride
    return multiple


def _min_size(**kwargs):
    plan = _plan(**kwargs)
    return max(32, _input_multiple(plan), plan.strides[-1])


def _default_size(**kwargs):
    """The smallest valid size from 224 up (256 for the 8x8-block variants, 224 for haloregnetz_b)."""
    multiple = _input_multiple(_plan(**kwargs))
    return multiple * -(-224 // multiple)


def _features(**kwargs):
    return _plan(**kwargs).features()


def halonet(
    x,
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
):
    """Builds a HaloNet-family ByobNet (the public builder `keras_hyper.models.halonet.halonet` takes these
    arguments and the keras.applications ones; this network function maps an input tensor to the stage features
    and the head).

    Args:
        blocks: one entry per stage, a block dict or a sequence of block dicts (timm's `ByoBlockCfg` fields:
            `type` in ('bottle', 'self_attn', 'basic'), `d`, `c`, `s` (default 2), `gs` (None/0: no groups),
            `br` (default 1.0), and the per-block overrides `attn_layer`, `attn_kwargs`, `self_attn_layer`,
            `self_attn_kwargs`, `block_kwargs`).
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

    Features: each stage's output at its stride (timm's `feature_info` without the stem), the final conv in place
    of the last stage where `num_features` is set: `P2`..`P5` (strides 4..32) for every registered variant, the
    stage widths as channels (`num_features` for the last of sehalonet33ts and haloregnetz_b). Example:

        kwargs = applications.model_info("halonet26t").builder_kwargs
        model = halonet(**kwargs, num_classes=10)            # 256 x 256 input by default
        pyramid = halonet(**kwargs, features_only=True)     # {"P2": (B, 64, 64, 256), ..., "P5": (B, 8, 8, 2048)}
    """
    plan = _plan(
        blocks,
        stem_chs=stem_chs,
        stem_type=stem_type,
        stem_pool=stem_pool,
        downsample=downsample,
        act=act,
        num_features=num_features,
        width_factor=width_factor,
        attn_layer=attn_layer,
        attn_kwargs=attn_kwargs,
        self_attn_layer=self_attn_layer,
        self_attn_kwargs=self_attn_kwargs,
        block_kwargs=block_kwargs,
    )
    sizes = tuple(x.shape[1:3])
    attention = {cfg["self_attn"][0] for stage in plan.stages for cfg in stage if cfg["type"] == "self_attn"}
    if "bottleneck" in attention and None in sizes:
        raise ValueError(
            "A model with bottleneck (global) attention needs a static input height and width: its position tables "
            f"are sized by the feature map; got input_shape={tuple(x.shape[1:])}."
        )
    multiple = _input_multiple(plan)
    for size in sizes:
        if size is not None and size % multiple:
            raise ValueError(
                f"Input height and width must be multiples of {multiple} (block_size times the feature stride at "
                f"every halo layer), got input_shape={tuple(x.shape[1:])}."
            )
    return _byobnet.network(
        x, plan, self_attn_layers=SELF_ATTN_LAYERS, drop_path_rate=drop_path_rate, drop_rate=drop_rate
    )


def convert_halonet(state_dict, model):
    """Fills `model` (built with `include_top=True`) from a timm ByobNet halo state dict.

    Strict: every tensor is consumed (BatchNorm's `num_batches_tracked` is a training counter and is ignored)
    and every model variable is assigned; shapes are checked against both names.
    """
    m = mapping.StateDictMapper(state_dict, model)
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


def _variant(name, kwargs, num_params, input_size, crop_pct, top1, builder_name):
    return _base.Variant(
        name,
        kwargs,
        num_params=num_params,
        input_size=input_size,
        crop_pct=crop_pct,
        paper_top1=top1,
        timm_name=name,
        builder_name=builder_name,
    )


VARIANTS = (
    _variant("halonet_h1", _HALONET_H1, 8_100_056, 256, 0.95, None, builder_name="HaloNetH1"),
    _variant("halonet26t", _HALONET26T, 12_480_288, 256, 0.95, 79.134, builder_name="HaloNet26T"),
    _variant("sehalonet33ts", _SEHALONET33TS, 13_691_712, 256, 0.94, 80.976, builder_name="SEHaloNet33TS"),
    _variant("halonet50ts", _HALONET50TS, 22_733_280, 256, 0.94, 81.64, builder_name="HaloNet50TS"),
    _variant("eca_halonext26ts", _ECA_HALONEXT26TS, 10_756_885, 256, 0.94, 79.518, builder_name="ECAHaloNeXt26TS"),
    _variant("haloregnetz_b", _HALOREGNETZ_B, 11_680_072, 224, 0.94, 81.058, builder_name="HaloRegNetZB"),
    _variant("halo2botnet50ts_256", _HALO2BOTNET50TS, 22_635_360, 256, 0.95, 82.084, builder_name="Halo2BotNet50TS256"),
)

ARCH = _base.Architecture(
    name="halonet",
    network=halonet,
    features=_features,
    input_size=_default_size,
    min_size=_min_size,
    convert=convert_halonet,
    paper=_PAPER,
    variants=VARIANTS,
    license="Apache-2.0",
    source="https://github.com/huggingface/pytorch-image-models",
    classifier="head-fc",
    classifier_key="head.fc.weight",
    testing=_base.Testing(
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
        min_input_size=32,
    ),
    reference=_base.Reference(
        "halonet",
        kwargs=fixture_kwargs,
        features={f"feat/stage{i}": f"P{i + 2}" for i in range(4)},
    ),
    interpolation="bicubic",
)

halonet = ARCH.builder
