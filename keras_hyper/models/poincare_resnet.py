"""Poincaré ResNet (van Spengler, Berkhout, Mettes, "Poincaré ResNet", ICCV 2023, arXiv:2303.14027; paper 17 in
PAPERS.md): a CIFAR ResNet whose convolutions, batch norms, residual additions and classifier all live on the
Poincaré ball.

Stem: Poincaré 3x3 convolution, Poincaré batch norm, ReLU. Three groups of residual blocks (the first block of
groups 2 and 3 strides by 2 and has a 1x1 stride-2 Poincaré convolution on its shortcut); a block is
`relu(mobius_add(bn2(conv2(relu(bn1(conv1(x))))), shortcut))`. Head: the mean of the top-left 8x8 window of
the last map, which is the official `nn.AvgPool2d(8)` wherever the official model runs (`head_pooling="global"`
averages the whole map), and a Poincaré fully-connected layer. As in the official code every layer maps
tangent vectors at the origin to tangent vectors at the origin (`keras_hyper.layers.hyperbolic`), so the ReLUs
and the pooling act on tangent vectors and the logits are a tangent vector.

Each Poincaré layer has its own curvature (a non-trainable weight, `curvature` at init; the official
`learnable=False`), the residual additions use the fixed `curvature`. Layer names follow the official state
dict with '-' for '.' (`group2-0-conv1` for `group2.0.conv1`).

Input `(B, H, W, 3)` with H, W >= 32 (CIFAR: 32x32, normalised with mean = std = 0.5); features
`(B, H/4, W/4, channel_dims[2])`; logits `(B, num_classes)`.
"""

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers.hyperbolic import (
    INFERENCE_STATISTICS,
    MobiusAdd,
    PoincareBatchNormalization,
    PoincareConv2D,
    PoincareDense,
)
from keras_hyper.layers.pooling import TopLeftAveragePooling2D
from keras_hyper.models import _base

SKIP_ORDERS = ("fr", "rf")
SKIP_AXES = {"width": 2, "channels": -1}
HEAD_POOLINGS = ("official", "global")
# The Poincaré ResNet code's FC uses 2 (1 - c|x|^2) where HNN++ has the conformal factor 2 / (1 - c|x|^2);
# its checkpoints need it.
CONFORMAL_FACTOR = "reference"


def _conv(x, name, filters, kernel, stride, curvature):
    return PoincareConv2D(
        filters,
        kernel,
        strides=stride,
        padding=kernel // 2,
        curvature=curvature,
        conformal_factor=CONFORMAL_FACTOR,
        name=name,
    )(x)


def _bn(x, name, curvature, inference_statistics):
    return PoincareBatchNormalization(curvature, inference_statistics=inference_statistics, name=name)(x)


def _block(x, prefix, filters, stride, *, curvature, skip_order, skip_axis, inference_statistics):
    shortcut = x
    y = _conv(x, f"{prefix}-conv1", filters, 3, stride, curvature)
    y = _bn(y, f"{prefix}-bn1", curvature, inference_statistics)
    y = keras.layers.ReLU(name=f"{prefix}-act1")(y)
    y = _conv(y, f"{prefix}-conv2", filters, 3, 1, curvature)
    y = _bn(y, f"{prefix}-bn2", curvature, inference_statistics)
    if stride != 1:
        shortcut = _conv(x, f"{prefix}-downsample", filters, 1, stride, curvature)
    pair = [y, shortcut] if skip_order == "fr" else [shortcut, y]
    y = MobiusAdd(curvature, axis=SKIP_AXES[skip_axis], name=f"{prefix}-skip")(pair)
    return keras.layers.ReLU(name=f"{prefix}-act2")(y)


def poincare_resnet(
    x,
    channel_dims=(8, 16, 32),
    depths=(3, 3, 3),
    curvature=0.1,
    skip_order="fr",
    skip_axis="width",
    inference_statistics="batch",
    head_pooling="official",
):
    """Builds a Poincaré ResNet (van Spengler, Berkhout, Mettes, "Poincaré ResNet", ICCV 2023, arXiv:2303.14027).
    The public builder `keras_hyper.models.poincare_resnet.poincare_resnet` takes these arguments and the
    keras.applications ones (default input 32x32, as CIFAR).

    Args:
        channel_dims: channels of the three groups (the official `channel_dims`).
        depths: residual blocks per group (the official `depths`; ResNet-n has `3 * [(n - 2) // 6]`).
        curvature: c of every ball at initialisation (the official `init_c`).
        skip_order: "fr" for `f(x) ⊕ x` (the official default) or "rf" for `x ⊕ f(x)`.
        skip_axis: the vector axis of the residual Möbius addition. "width" reproduces the official code,
            which adds along the last axis of its NCHW maps (the image width), and its checkpoints; "channels"
            adds channel vectors, as the paper describes.
        inference_statistics: "batch" (official: batch norms use the batch's statistics in inference too, so
            predictions depend on the batch) or "moving" (moving statistics accumulated while training; see
            `PoincareBatchNormalization`).
        head_pooling: "official" (default): the head averages the top-left 8x8 window of the last map's tangent
            vectors, which is the official `nn.AvgPool2d(8)` + squeeze wherever that runs (a last map of side 8
            to 15: inputs of 32 to 60 pixels, multiples of 4 for the official strided convolutions; at 32x32 the
            window is the whole 8x8 map) and extends it to any size. "global": global average pooling, which
            differs from the official head unless the last map is 8x8.

    Features: `P0`, `P1`, `P2`, the outputs of the three groups (strides 1, 2, 4; `channel_dims` channels),
    tangent vectors at the origin. Example:

        model = poincare_resnet(depths=(5, 5, 5), num_classes=100)
        pyramid = poincare_resnet(features_only=True)      # {"P0": (B, H, W, 8), ..., "P2": (B, H/4, W/4, 32)}
    """
    channel_dims, depths = _check(
        channel_dims, depths, curvature, skip_order, skip_axis, inference_statistics, head_pooling
    )
    x = _conv(x, "conv", channel_dims[0], 3, 1, curvature)
    x = _bn(x, "bn", curvature, inference_statistics)
    x = keras.layers.ReLU(name="act")(x)
    features = {}
    for group, (filters, depth) in enumerate(zip(channel_dims, depths)):
        for index in range(depth):
            stride = 2 if group and not index else 1
            x = _block(
                x,
                f"group{group + 1}-{index}",
                filters,
                stride,
                curvature=curvature,
                skip_order=skip_order,
                skip_axis=skip_axis,
                inference_statistics=inference_statistics,
            )
        features[f"P{group}"] = x

    def head(x, num_classes):
        # the official pooling averages tangent vectors, as these layers do
        if head_pooling == "official":
            x = TopLeftAveragePooling2D(8, name="avg_pool")(x)
        else:
            x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return PoincareDense(num_classes, curvature=curvature, conformal_factor=CONFORMAL_FACTOR, name="fc")(x)

    return _base.Network(features, head)


def _check(channel_dims, depths, curvature, skip_order, skip_axis, inference_statistics, head_pooling):
    channel_dims = tuple(channel_dims)
    depths = tuple(depths)
    if len(channel_dims) != 3 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in channel_dims):
        raise ValueError(f"channel_dims must be three positive integers, got {channel_dims}.")
    if len(depths) != 3 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in depths):
        raise ValueError(f"depths must be three positive integers, got {depths}.")
    if isinstance(curvature, bool) or not isinstance(curvature, (int, float)) or not curvature > 0:
        raise ValueError(f"curvature must be a positive number, got {curvature!r}.")
    if skip_order not in SKIP_ORDERS:
        raise ValueError(f"skip_order must be one of {SKIP_ORDERS}, got {skip_order!r}.")
    if skip_axis not in SKIP_AXES:
        raise ValueError(f"skip_axis must be one of {tuple(SKIP_AXES)}, got {skip_axis!r}.")
    if inference_statistics not in INFERENCE_STATISTICS:
        raise ValueError(f"inference_statistics must be one of {INFERENCE_STATISTICS}, got {inference_statistics!r}.")
    if head_pooling not in HEAD_POOLINGS:
        raise ValueError(f"head_pooling must be one of {HEAD_POOLINGS}, got {head_pooling!r}.")
    return channel_dims, depths


def _features(**kwargs):
    channel_dims, _ = _check(**kwargs)
    return _base.pyramid(channel_dims, (1, 2, 4))


def _conv_kernel(layer):
    """The official `(in * kh * kw, out)` matrix, rows in (channel, kh, kw) order -> `(kh, kw, in, out)`."""
    kh, kw, channels, filters = layer.kernel.shape

    def transform(w):
        if w.shape != (channels * kh * kw, filters):
            return w  # the mapper reports the shape mismatch with both names
        return np.transpose(w.reshape(channels, kh, kw, filters), (1, 2, 0, 3))

    return transform


def _shared(m, keys):
    """Consumes keys that hold one shared tensor (a ball registered under several modules), checking it."""
    values = [m.take(key) for key in keys]
    present = [(k, v) for k, v in zip(keys, values) if v is not None]
    for key, value in present[1:]:
        if not np.array_equal(value, present[0][1]):
            raise ValueError(f"'{key}' should hold the same shared curvature as '{present[0][0]}'.")


def convert_poincare_resnet(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official HyperbolicResNet state dict
    (`learnable=False`, where `isp_c` is the curvature itself).

    Strict: every tensor is consumed and every variable assigned. A ball registered under several modules
    (`conv_ball` and `conv.ball`; a batch norm's `ball` and `norm.ball`) must hold one value. The batch
    norms' running buffers, which the official code never updates, fill the moving statistics.
    """
    m = mapping.StateDictMapper(state_dict, model)
    _shared(m, ("conv_ball.isp_c", "conv.ball.isp_c"))
    _shared(m, ("bn_ball.isp_c", "bn.ball.isp_c"))
    _shared(m, ("linear_ball.isp_c", "fc.ball.isp_c"))
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if isinstance(layer, PoincareConv2D):
            m.assign(layer.kernel, f"{key}.weights", _conv_kernel(layer))
            m.assign(layer.bias, f"{key}.bias")
            m.assign(layer.c, f"{key}.ball.isp_c")
        elif isinstance(layer, PoincareBatchNormalization):
            m.assign(layer.mean, f"{key}.norm.mean")
            m.assign(layer.var, f"{key}.norm.var")
            m.assign(layer.moving_mean, f"{key}.norm.running_mean", lambda w: w.reshape(-1))
            m.assign(layer.moving_variance, f"{key}.norm.running_var")
            m.assign(layer.c, f"{key}.ball.isp_c")
            _shared(m, (f"{key}.ball.isp_c", f"{key}.norm.ball.isp_c"))
        elif isinstance(layer, PoincareDense):
            m.assign(layer.z, f"{key}.z")
            m.assign(layer.bias, f"{key}.bias")
            m.assign(layer.c, f"{key}.ball.isp_c")
    m.finish()


def fixture_kwargs(meta):
    """Builder kwargs of a fixture case from the official constructor's kwargs."""
    kwargs = meta["kwargs"]
    return dict(
        channel_dims=tuple(kwargs["channel_dims"]),
        depths=tuple(kwargs["depths"]),
        curvature=kwargs.get("init_c", 0.1),
        skip_order=kwargs.get("skip_connection", "fr"),
    )


_PAPER = _base.Paper("Poincaré ResNet", "2303.14027", 17)


def _variant(depth, classes, num_params):
    blocks = (depth - 2) // 6
    return _base.Variant(
        f"poincare_resnet{depth}_cifar{classes}",
        dict(channel_dims=(8, 16, 32), depths=(blocks,) * 3, num_classes=classes),
        num_params=num_params,
        input_size=32,
        crop_pct=1.0,
        builder_name=f"PoincareResNet{depth}CIFAR{classes}",
    )


# Official names hyperbolic-8-16-32-resnet-{20,32}; num_params counts the trainable parameters (the official
# count, 68_789 for ResNet-20/CIFAR-10, adds the 32 frozen curvature scalars, which are non-trainable weights
# here).
VARIANTS = (
    _variant(20, 10, 68_757),
    _variant(20, 100, 71_727),
    _variant(32, 10, 117_601),
    _variant(32, 100, 120_571),
)

ARCH = _base.Architecture(
    name="poincare_resnet",
    network=poincare_resnet,
    features=_features,
    num_classes=10,
    input_size=32,
    min_size=32,
    convert=convert_poincare_resnet,
    paper=_PAPER,
    variants=VARIANTS,
    license="Apache-2.0",
    source="https://github.com/maxvanspengler/poincare-resnet",
    classifier="fc",
    # the head's weight `fc.z` is (features, classes); its bias has the classes first, as the registry expects
    classifier_key="fc.bias",
    testing=_base.Testing(tiny=dict(channel_dims=(4, 8, 8), depths=(1, 1, 1), num_classes=10), min_input_size=32),
    reference=_base.Reference(
        "poincare_resnet",
        kwargs=fixture_kwargs,
        features={f"feat/group{i + 1}": f"P{i}" for i in range(3)},
    ),
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    interpolation="bilinear",
)

poincare_resnet = ARCH.builder
