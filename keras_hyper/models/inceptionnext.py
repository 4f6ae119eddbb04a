"""InceptionNeXt (Yu, Zhou, Yan, Wang, "InceptionNeXt: When Inception Meets ConvNeXt", CVPR 2024,
arXiv:2303.16900; paper 14 in PAPERS.md).

A MetaNeXt network: a 4x4 stride-4 stem, four stages of blocks
`x + gamma * ConvMlp(BN(InceptionDepthwiseConv2D(x)))` with a BN + 2x2 stride-2 convolution between stages,
and an MLP classification head (pool, Linear to 3C, GELU, LayerNorm, Linear). Layer names follow the official
state dict with '-' for '.' (`stem-0`, `stages-2-blocks-1-token_mixer`, `head-fc2`; PyTorch, which runs the
torch backend's variables, forbids '.' in their names), so that the converter is a direct map.

Input `(B, H, W, 3)` with H, W >= 32; features `(B, H/32, W/32, dims[-1])`; logits `(B, num_classes)`.
"""

import re

import keras

from keras_hyper.convert import mapping
from keras_hyper.layers import DropPath, InceptionDepthwiseConv2D, LayerScale
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.torch_defaults import batch_norm, trunc_normal
from keras_hyper.models import _base, _fusion


def _block(x, prefix, *, mlp_ratio, mixer_kwargs, ls_init_value, drop_path):
    dim = x.shape[-1]
    shortcut = x
    x = InceptionDepthwiseConv2D(**mixer_kwargs, name=f"{prefix}-token_mixer")(x)
    x = batch_norm(f"{prefix}-norm")(x)
    # A 1x1 convolution is a matmul over channels; Dense runs it as one on every backend.
    x = keras.layers.Dense(int(mlp_ratio * dim), kernel_initializer=trunc_normal(), name=f"{prefix}-mlp-fc1")(x)
    x = keras.layers.Activation("gelu", name=f"{prefix}-mlp-act")(x)
    x = keras.layers.Dense(dim, kernel_initializer=trunc_normal(), name=f"{prefix}-mlp-fc2")(x)
    if ls_init_value:
        x = LayerScale(ls_init_value, name=f"{prefix}-gamma")(x)
    if drop_path > 0.0:
        x = DropPath(drop_path, name=f"{prefix}-drop_path")(x)
    return keras.layers.Add(name=f"{prefix}-add")([shortcut, x])


def inceptionnext(
    x,
    depths=(3, 3, 9, 3),
    dims=(96, 192, 384, 768),
    mlp_ratios=(4, 4, 4, 3),
    square_kernel_size=3,
    band_kernel_size=11,
    branch_ratio=0.125,
    ls_init_value=1e-6,
    drop_path_rate=0.0,
    drop_rate=0.0,
    head_mlp_ratio=3,
):
    """Builds an InceptionNeXt model (the public builder is `keras_hyper.models.inceptionnext.inceptionnext`,
    which takes these arguments and the keras.applications ones; this network function maps an input tensor to
    the stage features P2..P5 and the MLP head).

    Args:
        depths: blocks per stage.
        dims: channels per stage.
        mlp_ratios: hidden/input ratio of each stage's MLP (one number for all stages, or one per stage).
        square_kernel_size, band_kernel_size, branch_ratio: the token mixer's kernels and channel split.
        ls_init_value: initial layer scale (0 or None: no layer scale).
        drop_path_rate: stochastic depth rate of the last block, rising linearly from 0 over all blocks as
            in the official schedule.
        drop_rate: dropout before the classifier.
        head_mlp_ratio: hidden/input ratio of the head's MLP.

    Features: `P2`..`P5` (strides 4, 8, 16, 32; `dims` channels). Example:

        model = inceptionnext(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320), num_classes=10)
        pyramid = inceptionnext(features_only=True)          # {"P2": (B, H/4, W/4, 96), ..., "P5": ...}
    """
    depths, dims = _base.stage_args(depths, dims)
    if isinstance(mlp_ratios, (int, float)):
        mlp_ratios = (mlp_ratios,) * len(depths)
    mlp_ratios = tuple(mlp_ratios)
    if len(mlp_ratios) != len(depths):
        raise ValueError(f"mlp_ratios must have one entry per stage ({len(depths)}), got {mlp_ratios}.")
    mixer_kwargs = dict(
        square_kernel_size=square_kernel_size, band_kernel_size=band_kernel_size, branch_ratio=branch_ratio
    )

    x = Conv2D(dims[0], 4, strides=4, kernel_initializer=trunc_normal(), name="stem-0")(x)
    x = batch_norm("stem-1")(x)

    features = {}
    rates = _base.drop_path_rates(drop_path_rate, sum(depths))
    block = 0
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        if i > 0:
            x = batch_norm(f"stages-{i}-downsample-0")(x)
            x = Conv2D(dim, 2, strides=2, kernel_initializer=trunc_normal(), name=f"stages-{i}-downsample-1")(x)
        for j in range(depth):
            x = _block(
                x,
                f"stages-{i}-blocks-{j}",
                mlp_ratio=mlp_ratios[i],
                mixer_kwargs=mixer_kwargs,
                ls_init_value=ls_init_value,
                drop_path=rates[block],
            )
            block += 1
        features[f"P{i + 2}"] = x

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="head-global_pool")(x)
        x = keras.layers.Dense(int(head_mlp_ratio * dims[-1]), kernel_initializer=trunc_normal(), name="head-fc1")(x)
        x = keras.layers.Activation("gelu", name="head-act")(x)
        x = keras.layers.LayerNormalization(epsilon=1e-6, name="head-norm")(x)
        if drop_rate:
            x = keras.layers.Dropout(drop_rate, name="head-drop")(x)
        return keras.layers.Dense(num_classes, kernel_initializer=trunc_normal(), name="head-fc2")(x)

    return _base.Network(features, head)


_MIXER_ARGS = ("square_kernel_size", "band_kernel_size", "branch_ratio")


def _mixer_kwargs(mixer):
    """The InceptionDWConv2d arguments of an official `token_mixers` entry: the class itself (its defaults), a
    `functools.partial` of it, or the text the reference fixtures record ("partial(InceptionDWConv2d, k=v, ...)")."""
    if isinstance(mixer, str):
        if "InceptionDWConv2d" not in mixer:
            raise ValueError(f"token_mixers={mixer!r}: only InceptionDWConv2d has a port here.")
        pairs = re.findall(r"(\w+)=([\w.]+)", mixer)
        return {k: (float(v) if "." in v else int(v)) for k, v in pairs}
    func, keywords = getattr(mixer, "func", mixer), dict(getattr(mixer, "keywords", None) or {})
    if getattr(func, "__name__", "") != "InceptionDWConv2d":
        raise ValueError(f"token_mixers={mixer!r}: only InceptionDWConv2d has a port here.")
    if keywords.get("dilation", 1) != 1:
        raise ValueError(f"token_mixers={mixer!r}: dilated mixers (output_stride < 32) have no port here.")
    keywords.pop("dilation", None)
    return keywords


def from_official(kwargs):
    """The builder kwargs of the official `MetaNeXt(**kwargs)` (sail-sg/inceptionnext and timm's
    `inception_next.MetaNeXt`: a variant's config or a reference fixture's `kwargs`). Arguments it leaves out take
    the builder's defaults, which are the official constructor's.

    `token_mixers` is InceptionDWConv2d, a `functools.partial` of it (or one per stage, all alike), or its text
    as the fixtures record it; `in_chans` sets the input channels. Arguments whose other values the port does not
    implement (`output_stride` < 32, another `norm_layer`/`act_layer`/`global_pool`, different mixers per stage)
    are refused rather than silently built as the defaults.
    """
    kwargs = dict(kwargs)
    for name, default in (("output_stride", 32), ("global_pool", "avg")):
        if kwargs.pop(name, default) != default:
            raise ValueError(f"{name}={kwargs.get(name)!r}: only {name}={default!r} has a port here.")
    for name, default in (("norm_layer", "BatchNorm2d"), ("act_layer", "GELU")):
        layer = kwargs.pop(name, None)
        if layer is not None and getattr(layer, "__name__", str(layer)).rsplit(".", 1)[-1] != default:
            raise ValueError(f"{name}={layer!r}: only {default} has a port here.")
    out = {}
    mixers = kwargs.pop("token_mixers", None)
    if mixers is not None:
        per_stage = [_mixer_kwargs(m) for m in (mixers if isinstance(mixers, (list, tuple)) else [mixers])]
        if any(m != per_stage[0] for m in per_stage):
            raise ValueError(f"token_mixers differ between stages ({per_stage}); the port takes one mixer for all.")
        unknown = sorted(set(per_stage[0]) - set(_MIXER_ARGS))
        if unknown:
            raise ValueError(f"InceptionDWConv2d takes no argument(s) {unknown} here.")
        out.update(per_stage[0])
    in_chans = kwargs.pop("in_chans", 3)
    if in_chans != 3:
        out["input_shape"] = (None, None, in_chans)
    known = {"depths", "dims", "mlp_ratios", "drop_rate", "drop_path_rate", "ls_init_value", "num_classes"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"MetaNeXt takes no argument(s) {unknown} here.")
    out.update({k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in kwargs.items()})
    return out


def convert_inceptionnext(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official / timm InceptionNeXt state dict.

    Strict: every tensor is consumed (BatchNorm's `num_batches_tracked` is a training counter and is ignored)
    and every model variable is assigned; shapes are checked against both names.
    """
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if m.standard(layer, key):
            continue
        if isinstance(layer, LayerScale):
            m.assign(layer.gamma, key)
        elif isinstance(layer, InceptionDepthwiseConv2D):
            for branch, kernel, bias in zip(("dwconv_hw", "dwconv_w", "dwconv_h"), layer.kernels, layer.biases):
                m.assign(kernel, f"{key}.{branch}.weight", mapping.depthwise_kernel)
                m.assign(bias, f"{key}.{branch}.bias")
    m.finish()


def reparameterize(model):
    """The inference model: every BatchNormalization (stem, downsampling, blocks) folded into the convolution
    or Dense beside it. Returns a new model with the same outputs (up to float rounding) and layer names; keep
    the original for training."""
    return _fusion.fold_batch_norms(model)


_PAPER = _base.Paper("InceptionNeXt: When Inception Meets ConvNeXt", "2303.16900", 14)

VARIANTS = (
    _base.Variant(
        "inceptionnext_atto",
        dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320), band_kernel_size=9, branch_ratio=0.25),
        num_params=4_156_520,
        paper_top1=75.348,
        timm_name="inception_next_atto",
        builder_name="InceptionNeXtAtto",
    ),
    _base.Variant(
        "inceptionnext_tiny",
        dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
        num_params=28_055_680,
        paper_top1=82.508,
        timm_name="inception_next_tiny",
        builder_name="InceptionNeXtTiny",
    ),
    _base.Variant(
        "inceptionnext_small",
        dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),
        num_params=49_374_016,
        paper_top1=83.584,
        timm_name="inception_next_small",
        builder_name="InceptionNeXtSmall",
    ),
    _base.Variant(
        "inceptionnext_base",
        dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024)),
        num_params=86_672_136,
        crop_pct=0.95,
        paper_top1=84.098,
        timm_name="inception_next_base",
        builder_name="InceptionNeXtBase",
    ),
)

ARCH = _base.Architecture(
    name="inceptionnext",
    network=inceptionnext,
    features=_base.convnext_features,
    min_size=lambda depths, **_: 2 ** (len(depths) + 1),
    convert=convert_inceptionnext,
    paper=_PAPER,
    variants=VARIANTS,
    license="Apache-2.0",
    source="https://github.com/sail-sg/inceptionnext",
    classifier="head-fc2",
    classifier_key="head.fc2.weight",
    testing=_base.Testing(
        tiny=dict(depths=(1, 1, 2, 1), dims=(16, 32, 48, 64), band_kernel_size=7, branch_ratio=0.25, num_classes=10),
    ),
    reference=_base.Reference(
        "inceptionnext",
        kwargs=lambda meta: from_official(meta["kwargs"]),
        features={f"feat/stage{i}": f"P{i + 2}" for i in range(4)},
    ),
    reparameterize=reparameterize,
)

inceptionnext = ARCH.builder
