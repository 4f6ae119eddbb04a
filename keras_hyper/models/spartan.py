"""SpaRTAN (Pay, Baskaran, Loo, Wong, See, "SpaRTAN: Spatial Reinforcement Token-based Aggregation Network for
Visual Recognition", IJCNN 2025, arXiv:2507.10999; paper 7 in PAPERS.md).

A two-convolution stride-4 stem, then levels of blocks with a 2x2 stride-2 ConvNormAct (SiLU) between them and
a global-average-pool + Linear head. Each block is `x + s1 * SMixer(GN(x))`, then `x + s2 * CMixer(GN(x))`, with
GN a one-group GroupNorm (statistics over H, W and C jointly) and s1, s2 layer scales:

- SMixer (multi-order spatial kernels): 1x1 to C/2, `FeatureDecompose`, then in parallel a 3x3 conv and two
  stacked dilation-2 3x3 convs (each branch ending in BN, GELU and squeeze-excitation), concatenated, 1x1 to C;
- CMixer: `WaveChannelAggregation` (C to r*C), a 3x3 conv + BN + GELU, squeeze-excitation, 1x1 back to C.

The first `num_levels // 2` levels use full 3x3 convs in SMixer and a depthwise conv in CMixer; the later ones
depthwise SMixer convs and a grouped CMixer conv (C groups of r channels). Layer names follow the official
state dict with '-' for '.' (`layers-6-smixer-h_conv-conv` for `layers.6.smixer.h_conv.conv`), so the converter
is a direct map; `layers-i` counts blocks and downsampling layers together, as the official `nn.Sequential`.

Input `(B, H, W, 3)` with H, W >= 32; features `(B, H/32, W/32, C_last)`; logits `(B, num_classes)`.
"""

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers import (
    DepthwiseConv2D,
    DropPath,
    FeatureDecompose,
    LayerScale,
    SqueezeExcite,
    WaveChannelAggregation,
)
from keras_hyper.layers._args import check_rate
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.torch_defaults import batch_norm, conv_fan_out_normal, torch_padding, trunc_normal
from keras_hyper.models import _base, _fusion

EPSILON = 1e-6  # the official eps of every BatchNorm and of the GroupNorm(1) before each mixer
SCALE_INIT = 1e-5


def _conv_norm_act(x, prefix, filters, kernel, *, stride=1, dilation=1, groups=1, act="gelu", norm=True):
    """The official ConvNormAct: a bias-free convolution, BatchNorm, activation. Stride-1 3x3 convs pad
    `dilation` on each side ("same"); the strided stem convs pad 1 explicitly, since "same" would pad only
    the bottom/right of an even input."""
    channels = x.shape[-1]
    x, padding = torch_padding(x, kernel, stride, f"{prefix}-pad")
    init = conv_fan_out_normal(kernel, filters, groups)  # the official init of every convolution
    if groups == channels == filters and groups > 1:
        x = DepthwiseConv2D(
            kernel,
            strides=stride,
            padding=padding,
            dilation_rate=dilation,
            use_bias=False,
            depthwise_initializer=init,
            name=f"{prefix}-conv",
        )(x)
    else:
        x = Conv2D(
            filters,
            kernel,
            strides=stride,
            padding=padding,
            dilation_rate=dilation,
            groups=groups,
            use_bias=False,
            kernel_initializer=init,
            name=f"{prefix}-conv",
        )(x)
    if norm:
        x = batch_norm(f"{prefix}-norm", epsilon=EPSILON)(x)
    if act:
        x = keras.layers.Activation(act, name=f"{prefix}-act")(x)
    return x


def _dense(units, name):
    """A 1x1 convolution (bias, official N(0, 2 / fan_out) init) as one matmul over channels."""
    return keras.layers.Dense(units, kernel_initializer=conv_fan_out_normal(1, units), name=name)


def _smixer(x, prefix, *, early):
    dim = x.shape[-1]
    half = dim // 2
    groups = 1 if early else half
    x = _dense(half, f"{prefix}-proj_in")(x)
    x = FeatureDecompose(SCALE_INIT, name=f"{prefix}-gamma")(x)
    h = _conv_norm_act(x, f"{prefix}-h_conv", half, 3, groups=groups)
    h = SqueezeExcite(half // 4, name=f"{prefix}-h_attn")(h)
    low = _conv_norm_act(x, f"{prefix}-l_conv-0", half, 3, dilation=2, groups=groups, act=None, norm=False)
    low = _conv_norm_act(low, f"{prefix}-l_conv-1", half, 3, dilation=2, groups=groups)
    low = SqueezeExcite(half // 4, name=f"{prefix}-l_attn")(low)
    x = keras.layers.Concatenate(name=f"{prefix}-cat")([h, low])
    return _dense(dim, f"{prefix}-proj_out")(x)


def _cmixer(x, prefix, *, expand_ratio, early):
    dim = x.shape[-1]
    neck = dim * expand_ratio
    x = WaveChannelAggregation(expand_ratio, name=prefix)(x)
    x = _conv_norm_act(x, f"{prefix}-conv", neck, 3, groups=neck if early else dim)
    x = SqueezeExcite(dim // 4, name=f"{prefix}-attn")(x)
    return _dense(dim, f"{prefix}-proj_out")(x)


def _residual(x, prefix, index, mixer, drop_path):
    """`x + scale_i * mixer(norm_i(x))`, with stochastic depth on the branch while training."""
    y = keras.layers.GroupNormalization(groups=1, epsilon=EPSILON, name=f"{prefix}-norm_{index}")(x)
    y = LayerScale(SCALE_INIT, name=f"{prefix}-scale_{index}")(mixer(y))
    if drop_path > 0.0:
        y = DropPath(drop_path, name=f"{prefix}-dropout_{index}")(y)
    return keras.layers.Add(name=f"{prefix}-add_{index}")([x, y])


def _block(x, prefix, *, expand_ratio, early, drop_path):
    x = _residual(x, prefix, 1, lambda y: _smixer(y, f"{prefix}-smixer", early=early), drop_path)
    return _residual(
        x, prefix, 2, lambda y: _cmixer(y, f"{prefix}-cmixer", expand_ratio=expand_ratio, early=early), drop_path
    )


def spartan(
    x,
    layer_depths=(3, 3, 12, 2),
    dims=(64, 128, 256),
    expand_ratios=(4, 4, 2, 2),
    init_dim=32,
    drop_path_rate=0.0,
):
    """Builds a SpaRTAN model (Pay et al., "SpaRTAN: Spatial Reinforcement Token-based Aggregation Network for
    Visual Recognition", IJCNN 2025, arXiv:2507.10999).

    Args:
        layer_depths: blocks per level (the official `layer_depths`; `num_layer` is its length). A level of
            depth 0 is skipped together with the downsampling after it, as in the official code.
        dims: channels after each downsampling, one per level but the first (`None` or empty: doubling the
            channels at each downsampling, as the official code).
        expand_ratios: CMixer expansion per level (integers; channels * ratio must be even).
        init_dim: channels of the stem and of the first level.
        drop_path_rate: the official `dropout`, i.e. stochastic depth; block `i` of `n` drops its branches
            with probability `drop_path_rate * i / n` while training (the official schedule).

    Every level's channel count must be a multiple of 8 (the official SMixer asserts it: it halves the
    channels and squeezes them by 4 again).

    Features: one per stride, the last map at it: `P2` (stride 4: the first non-empty level, or the stem), then
    one per downsampling (stride 8, 16, ...: the next non-empty level's output, or the downsampling's own when
    no blocks follow it). The official `spartan_t` gives P2..P5 with 32, 64, 128 and 256 channels. Example:

        model = spartan(layer_depths=(2, 2, 6, 2), dims=(64, 128, 256), num_classes=10)
        pyramid = spartan(features_only=True)                # {"P2": (B, H/4, W/4, 32), ..., "P5": ...}
    """
    layer_depths, widths = _plan(layer_depths, dims, init_dim)
    levels = len(layer_depths)
    expand_ratios = tuple(expand_ratios)
    if len(expand_ratios) != levels:
        raise ValueError(f"expand_ratios must have one entry per level ({levels}), got {expand_ratios}.")
    check_rate(drop_path_rate=drop_path_rate)

    x = _conv_norm_act(x, "conv-0", init_dim // 2, 3, stride=2)
    x = _conv_norm_act(x, "conv-1", init_dim, 3, stride=2)

    scale = 2  # log2 of the stride
    features = {"P2": x}
    downsamplings = iter(widths[1:])
    total = sum(layer_depths)
    index = block = 0
    for level, depth in enumerate(layer_depths):
        for _ in range(depth):
            x = _block(
                x,
                f"layers-{index}",
                expand_ratio=expand_ratios[level],
                early=level < levels // 2,
                drop_path=drop_path_rate * block / total,
            )
            block += 1
            index += 1
        features[f"P{scale}"] = x
        if depth and level != levels - 1:
            x = _conv_norm_act(x, f"layers-{index}", next(downsamplings), 2, stride=2, act="silu")
            index += 1
            scale += 1
            features[f"P{scale}"] = x

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        return keras.layers.Dense(num_classes, kernel_initializer=trunc_normal(), name="linear")(x)

    return _base.Network(features, head)


def _plan(layer_depths, dims, init_dim):
    """The validated `layer_depths` and the channels at each stride `4 * 2**i`: the stem's, then each
    downsampling's (one after every non-empty level but the last, as in the official code)."""
    layer_depths = tuple(layer_depths)
    levels = len(layer_depths)
    if levels < 1 or any(not isinstance(d, int) or d < 0 for d in layer_depths):
        raise ValueError(f"layer_depths must be a non-empty sequence of non-negative integers, got {layer_depths}.")
    dims = tuple(dims or ())
    if dims and len(dims) != levels - 1:
        raise ValueError(
            f"dims must have one entry per level but the first ({levels - 1} for layer_depths={layer_depths}), "
            f"got {dims}."
        )
    for dim in (init_dim, *dims):
        if not isinstance(dim, int) or dim < 8 or dim % 8:
            raise ValueError(
                f"init_dim and dims must be positive multiples of 8, got init_dim={init_dim}, dims={dims}."
            )
    widths = [init_dim]
    for level, depth in enumerate(layer_depths):
        if depth and level != levels - 1:
            widths.append(dims[level] if dims else 2 * widths[-1])
    return layer_depths, widths


def _features(layer_depths, dims, init_dim, **_):
    _, widths = _plan(layer_depths, dims, init_dim)
    return _base.pyramid(widths, [4 * 2**i for i in range(len(widths))])


def _min_size(layer_depths, dims, init_dim, **_):
    # the zoo-wide minimum of 32, and at least one pixel after the total stride
    _, widths = _plan(layer_depths, dims, init_dim)
    return max(32, 4 * 2 ** (len(widths) - 1))


def _flat(value):
    return value.reshape(-1)


def convert_spartan(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official SpaRTAN state dict.

    Strict: every tensor is consumed (BatchNorm's `num_batches_tracked` is a training counter and is ignored)
    and every model variable is assigned; shapes are checked against both names.
    """
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if m.standard(layer, key):
            continue
        if isinstance(layer, (LayerScale, FeatureDecompose)):
            m.assign(layer.gamma, key, _flat)
        elif isinstance(layer, WaveChannelAggregation):
            m.dense(layer.theta, f"{key}.theta")
            m.dense(layer.proj, f"{key}.proj")
            m.assign(layer.complex, f"{key}.complex", lambda w: w.reshape(-1, 2))
        elif isinstance(layer, SqueezeExcite):
            m.dense(layer.reduce, f"{key}.squeeze")
            m.dense(layer.expand, f"{key}.expand")
    m.finish()


def fixture_kwargs(meta):
    """Builder kwargs of a fixture case from the official constructor's kwargs."""
    kwargs = meta["kwargs"]
    return dict(
        layer_depths=tuple(kwargs["layer_depths"]),
        dims=tuple(kwargs.get("dims", ())),
        expand_ratios=tuple(kwargs["expand_ratios"]),
        init_dim=kwargs.get("init_dim", 32),
    )


def _sole_consumer(layer):
    nodes = layer._outbound_nodes
    return nodes[0].operation if len(nodes) == 1 else None


def _fold_plan(model):
    """`{dense_name: (kind, layer)}`: a LayerScale folded into the Dense before it ('scale'), a GroupNorm's
    affine folded into the Dense after it ('norm'; only SMixer's `proj_in` qualifies: CMixer takes the argmax of
    its normed input, which an affine map changes)."""
    plan = {}
    for layer in model.layers:
        if isinstance(layer, LayerScale):
            dense = layer._inbound_nodes[0].parent_nodes[0].operation
            if type(dense) is keras.layers.Dense and _sole_consumer(dense) is layer:
                plan[dense.name] = ("scale", layer)
        elif isinstance(layer, keras.layers.GroupNormalization) and layer.scale and layer.center:
            dense = _sole_consumer(layer)
            if type(dense) is keras.layers.Dense:
                plan[dense.name] = ("norm", layer)
    return plan


def reparameterize(model):
    """The inference model: every BatchNormalization folded into the convolution before it, each block's
    layer scales into the Dense (`proj_out`) before them, and the first GroupNorm's affine map into SMixer's
    `proj_in`. Returns a new model with the same outputs (up to float rounding); keep the original for
    training."""
    model = _fusion.fold_batch_norms(model)
    plan = _fold_plan(model)
    scales = {layer.name for kind, layer in plan.values() if kind == "scale"}
    norms = {layer.name for kind, layer in plan.values() if kind == "norm"}

    def clone(layer):
        config = layer.get_config()
        if layer.name in norms:
            config.update(scale=False, center=False)
        return layer.__class__.from_config(config)

    def call(layer, *args, **kwargs):
        return args[0] if layer.name in scales else layer(*args, **kwargs)

    fused = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for layer in fused.layers:
        source = model.get_layer(layer.name)
        if layer.name in plan:
            kind, other = plan[layer.name]
            kernel, bias = (np.asarray(keras.ops.convert_to_numpy(w), "float64") for w in source.weights)
            if kind == "scale":
                gamma = np.asarray(keras.ops.convert_to_numpy(other.gamma), "float64")
                kernel, bias = kernel * gamma, bias * gamma
            else:
                gamma, beta = (np.asarray(keras.ops.convert_to_numpy(w), "float64") for w in (other.gamma, other.beta))
                kernel, bias = kernel * gamma[:, None], bias + beta @ kernel  # beta meets the unscaled kernel
            layer.set_weights([kernel.astype("float32"), bias.astype("float32")])
        elif layer.weights and layer.name not in norms:
            layer.set_weights(source.get_weights())
    return fused


_PAPER = _base.Paper(
    "SpaRTAN: Spatial Reinforcement Token-based Aggregation Network for Visual Recognition", "2507.10999", 7
)

VARIANTS = (
    _base.Variant(
        "spartan_t",
        dict(
            layer_depths=(3, 3, 12, 2), dims=(64, 128, 256), expand_ratios=(4, 4, 2, 2), init_dim=32, drop_path_rate=0.1
        ),
        num_params=3_820_296,
        input_size=256,
        crop_pct=1.0,
        paper_top1=77.7,
        builder_name="SpaRTANT",
    ),
)

ARCH = _base.Architecture(
    name="spartan",
    network=spartan,
    features=_features,
    input_size=256,
    min_size=_min_size,
    convert=convert_spartan,
    paper=_PAPER,
    variants=VARIANTS,
    license="Apache-2.0",
    source="https://github.com/henry-pay/SpaRTAN",
    classifier="linear",
    classifier_key="linear.weight",
    testing=_base.Testing(
        # Three levels: at the harness' 32x32 input the last level is 2x2, where FeatureDecompose has a gradient (at
        # 1x1 a map equals its mean); the four-level fixture configuration comes from fixture_kwargs. 64 channels:
        # an SE bottleneck of C/8 units sees nearly equal positive GELU means in every sample, so each unit starts
        # dead for the whole batch with probability ~1/2; with 8 units one fit step updates every SE weight.
        tiny=dict(layer_depths=(1, 1, 1), dims=(64, 64), expand_ratios=(2, 2, 2), init_dim=64, num_classes=10),
        min_input_size=32,
    ),
    reference=_base.Reference(
        "spartan",
        kwargs=fixture_kwargs,
        features={"feat/layers.0": "P2", "feat/layers.2": "P3", "feat/layers.4": "P4", "feat/layers.6": "P5"},
    ),
    interpolation="bilinear",
    reparameterize=reparameterize,
)

spartan = ARCH.builder
