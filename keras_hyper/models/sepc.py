"""SEPC's neck ("Scale-Equalizing Pyramid Convolution for Object Detection", CVPR 2020; paper 25 in PAPERS.md), the
official `SEPC` of jshilong/SEPC (sepc/self_mmdet/models/necks/sepc.py with `sepc_conv` from
sepc/self_mmdet/ops/dcn/sepc_dconv.py, Apache-2.0).

A neck that sits between an FPN and a RetinaNet-style head: it takes the pyramid P3..P7 (all `out_channels` wide)
and returns, per level, the two features the head's classification and box branches read.

1. `Pconv_num` pyramid convolutions (PConv). For output level l, `y = conv1(x_l) + conv2(x_{l-1}) +
   up(conv0(x_{l+1}))`: a 3x3 convolution at the same level, a stride-2 3x3 convolution of the finer level, and a
   3x3 convolution of the coarser level at its own resolution, bilinearly resized to level l with
   `align_corners=True` (the official `F.upsample_bilinear`). Then, with integrated BN, one BatchNorm over the whole
   pyramid (`IntegratedBatchNorm`), and ReLU.
2. The head's first convolutions, shared over the levels: `cls = ReLU(cbn(cconv(x)))`, `loc = ReLU(lbn(lconv(x)))`,
   3x3 with NO padding (the official sepc_conv inherits mmdet's DeformConv default padding 0), so each output level
   is (H-2)x(W-2) of its input; cbn and lbn are integrated BNs (no BN without iBN).

Scale equalisation: with `pconv_deform` / `lcconv_deform` the convolutions are DCNv1 (their own offset
convolutions) at output levels P4..P7 only; P3 always runs the plain convolution with the same kernel
(`PartDeformConv2D`). The index that decides is the OUTPUT level: the stride-2 branch producing P4 from P3 is
deformable, the branch bringing P4 up to P3 is not.

The official variants (README, RetinaNet R-50 1x box AP): PConv (37.0), iBN + PConv (37.8), SEPC-lite (deformable
head convolutions, 38.5) and SEPC (every convolution, 39.6); `VARIANTS` and `sepc_variant`.

Spatial sizes must be static when the layers run (they are under JAX and PyTorch, and in TensorFlow's eager calls and
traced functions of fixed-size data): the upsampling matrices are built from them.
"""

import keras
import numpy as np
from keras import ops

from keras_hyper.convert.mapping import StateDictMapper, conv_kernel
from keras_hyper.layers._args import check_positive, static_spatial_size
from keras_hyper.layers.deform import PartDeformConv2D
from keras_hyper.layers.norms import IntegratedBatchNorm

# the official kwargs of the four README variants, all at width 256 over five levels (counts in variants.json)
VARIANTS = {
    "PConv": dict(pconv_deform=False, lcconv_deform=False, integrated_bn=False),
    "iBN_PConv": dict(pconv_deform=False, lcconv_deform=False, integrated_bn=True),
    "SEPC_lite": dict(pconv_deform=False, lcconv_deform=True, integrated_bn=True),
    "SEPC": dict(pconv_deform=True, lcconv_deform=True, integrated_bn=True),
}
DEFORM_FROM_LEVEL = 1  # the official sepc_conv's start_level: P3 is never deformed


def _sepc_conv(channels, strides, padding, deformable, name):
    """The official sepc_conv: its own init is N(0, 0.01) weights, zero bias and zero offset convolutions."""
    return PartDeformConv2D(
        channels,
        3,
        strides=strides,
        padding=padding,
        deformable=deformable,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        name=name,
    )


def _align_corners_matrix(out_size, in_size):
    """`(out_size, in_size)` weights of PyTorch's 1-D bilinear resize with `align_corners=True`."""
    source = np.zeros(out_size) if out_size == 1 else np.arange(out_size) * ((in_size - 1) / (out_size - 1))
    low = np.minimum(np.floor(source).astype(int), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    frac = source - low
    matrix = np.zeros((out_size, in_size), "float32")
    np.add.at(matrix, (np.arange(out_size), low), 1.0 - frac)
    np.add.at(matrix, (np.arange(out_size), high), frac)
    return matrix


def upsample_align_corners(x, size):
    """`F.upsample_bilinear(x, size)` (bilinear, `align_corners=True`) of a channels-last map with static sizes,
    as two small matrix products (PyTorch's sampling positions `i (in - 1) / (out - 1)`)."""
    own = static_spatial_size(x, "SEPC's pyramid convolution", "its upsampling matrices are built from them")
    if own == tuple(size):
        return x
    rows = ops.convert_to_tensor(_align_corners_matrix(size[0], own[0]), x.dtype)
    cols = ops.convert_to_tensor(_align_corners_matrix(size[1], own[1]), x.dtype)
    channels = x.shape[-1]
    # rows: (Ho, Hi) @ (B, Hi, W C); columns: (Wo, Wi) @ (B Ho, Wi, C). Matrix products over a -1 batch, with no
    # transposes, so that LiteRT converts the any-batch graph too
    x = ops.reshape(ops.matmul(rows, ops.reshape(x, (-1, own[0], own[1] * channels))), (-1, own[1], channels))
    return ops.reshape(ops.matmul(cols, x), (-1, size[0], size[1], channels))


def _check_halving(sizes):
    """Each level is the previous one halved rounding up: the stride-2 branch's output must add to the level."""
    for level in range(1, len(sizes)):
        expected = tuple(None if s is None else -(-s // 2) for s in sizes[level - 1])
        if any(a is not None and b is not None and a != b for a, b in zip(sizes[level], expected)):
            raise ValueError(
                f"SEPC's pyramid levels must halve rounding up: level {level} is {tuple(sizes[level])}, expected "
                f"{expected} from level {level - 1} of size {tuple(sizes[level - 1])}."
            )


@keras.saving.register_keras_serializable(package="keras_hyper")
class PyramidConv(keras.layers.Layer):
    """SEPC's pyramid convolution (the official `PConvModule`) over a list of levels, finest first.

    Output level l: `conv1(x_l) + [l > 0] conv2(x_{l-1}) + [l < L - 1] up(conv0(x_{l+1}))`, with conv1 3x3 stride 1,
    conv2 3x3 stride 2, conv0 3x3 stride 1 resized bilinearly (`align_corners=True`) to level l; every convolution
    has a bias and, with `deformable`, is DCNv1 at output levels >= 1. Then the integrated BatchNorm (optional) and
    ReLU. Level l + 1 must be level l halved rounding up (the stride-2 branch's size).

    Args:
        channels: width of every level.
        deformable: the official `part_deform`.
        integrated_bn: one BatchNorm over all levels (the official `iBN`).

    Sublayers: `Pconv-0`, `Pconv-1`, `Pconv-2` (`PartDeformConv2D`) and `bn` (`IntegratedBatchNorm`).

    Shape: list of `(B, Hl, Wl, channels)` -> the same.
    """

    def __init__(self, channels, deformable=False, integrated_bn=False, **kwargs):
        super().__init__(**kwargs)
        check_positive(channels=channels)
        self.channels = channels
        self.deformable = bool(deformable)
        self.integrated_bn = bool(integrated_bn)
        self.convs = [
            _sepc_conv(channels, strides, 1, self.deformable, f"Pconv-{i}") for i, strides in enumerate((1, 1, 2))
        ]
        # PyTorch's BatchNorm2d defaults, in Keras' momentum convention (the weight of the old average)
        self.bn = IntegratedBatchNorm(epsilon=1e-5, momentum=0.9, name="bn") if self.integrated_bn else None

    def build(self, input_shape):
        if not input_shape or any(len(s) != 4 or s[-1] != self.channels for s in input_shape):
            raise ValueError(f"PyramidConv expects a list of maps of {self.channels} channels, got {input_shape}.")
        for conv in self.convs:
            conv.build((None, None, None, self.channels))
        if self.bn is not None:
            self.bn.build([tuple(s) for s in input_shape])

    def call(self, inputs, training=None):
        up, same, down = self.convs
        sizes = [static_spatial_size(x, "SEPC's pyramid convolution", "its resizing depends on them") for x in inputs]
        _check_halving(sizes)
        outputs = []
        for level, x in enumerate(inputs):
            deform = level >= DEFORM_FROM_LEVEL
            y = same(x, deform=deform)
            if level > 0:
                y = y + down(inputs[level - 1], deform=deform)
            if level < len(inputs) - 1:
                y = y + upsample_align_corners(up(inputs[level + 1], deform=deform), sizes[level])
            outputs.append(y)
        if self.bn is not None:
            outputs = self.bn(outputs, training=training)
        return [ops.relu(y) for y in outputs]

    def compute_output_shape(self, input_shape):
        return [tuple(s) for s in input_shape]

    def get_config(self):
        return {
            **super().get_config(),
            "channels": self.channels,
            "deformable": self.deformable,
            "integrated_bn": self.integrated_bn,
        }


def sepc_neck(
    in_channels=(256,) * 5,
    out_channels=256,
    num_outs=5,
    pconv_deform=False,
    lcconv_deform=False,
    integrated_bn=False,
    pconv_num=4,
    input_names=None,
    input_shapes=None,
    name="sepc_neck",
):
    """Builds SEPC's neck (the official `SEPC`) as a Keras model from the FPN levels to per-level (cls, loc) features.

    The defaults are the official constructor's (the PConv variant: 8,261,120 parameters); `sepc_variant(name)`
    builds the README variants. Official argument names: `iBN` is `integrated_bn`, `Pconv_num` is `pconv_num`.

    Args:
        in_channels: the official list, one entry per level; entry i is the input width of PConv i, and since PConv
            i + 1 reads PConv i's output every entry must equal `out_channels` (the official configs: 256).
        out_channels: width of every level and output (the official class hard-codes 256 for the head
            convolutions and BatchNorms; here they follow `out_channels`, identical at 256).
        num_outs: number of pyramid levels (5 in every official config; `len(in_channels)` must equal it, as the
            official forward asserts).
        pconv_deform: DCNv1 in the pyramid convolutions at output levels P4 and coarser.
        lcconv_deform: DCNv1 in the head's cls/loc convolutions at P4 and coarser (SEPC-lite).
        integrated_bn: the integrated BatchNorm after every PConv and after the head convolutions.
        pconv_num: number of stacked pyramid convolutions (official 4; 0 gives the head convolutions alone).
        input_names: keys of the input dict (default "P3", "P4", ...).
        input_shapes: `(H, W)` per level, or None for any size (sizes must be known when the model runs; every level
            at least 3x3, each the previous one halved rounding up).
        name: the model's name.

    Returns:
        A `keras.Model` from `{name: (B, Hl, Wl, C)}` to `{f"{name}_cls": ..., f"{name}_loc": ...}` per level, each
        `(B, Hl - 2, Wl - 2, out_channels)` (the head convolutions are unpadded, as in the official code).

    Example:
        >>> neck = sepc_variant("SEPC", out_channels=64)
        >>> pyramid = {f"P{3 + i}": np.zeros((1, 64 // 2**i, 64 // 2**i, 64), "float32") for i in range(5)}
        >>> out = neck(pyramid)  # out["P3_cls"]: (1, 62, 62, 64), ..., out["P7_loc"]: (1, 2, 2, 64)
    """
    check_positive(out_channels=out_channels, num_outs=num_outs)
    in_channels = tuple(in_channels)
    if len(in_channels) != num_outs:
        raise ValueError(
            f"in_channels must hold one width per level ({num_outs}, num_outs), got {len(in_channels)}: "
            f"{in_channels!r}."
        )
    if any(c != out_channels for c in in_channels):
        raise ValueError(
            f"every in_channels entry must equal out_channels ({out_channels}): PConv i + 1 reads PConv i's output "
            f"and the head convolutions read out_channels, got {in_channels!r}."
        )
    if not isinstance(pconv_num, int) or isinstance(pconv_num, bool) or not 0 <= pconv_num <= num_outs:
        raise ValueError(
            f"pconv_num must be an integer in [0, {num_outs}] (PConv i reads in_channels[i]), got {pconv_num!r}."
        )
    input_names = tuple(input_names or (f"P{3 + i}" for i in range(num_outs)))
    if len(input_names) != num_outs or len(set(input_names)) != num_outs:
        raise ValueError(f"input_names must be {num_outs} distinct names, got {input_names!r}.")
    shapes = tuple(tuple(s) for s in input_shapes) if input_shapes is not None else ((None, None),) * num_outs
    if len(shapes) != num_outs or any(len(s) != 2 for s in shapes):
        raise ValueError(f"input_shapes must hold one (height, width) per level, got {input_shapes!r}.")
    if any(s is not None and s < 3 for shape in shapes for s in shape):
        raise ValueError(
            f"every level must be at least 3x3 (the head's 3x3 convolutions are unpadded), got {input_shapes!r}."
        )

    if pconv_num:
        _check_halving(shapes)
    inputs = {key: keras.Input((*shape, out_channels), name=key) for key, shape in zip(input_names, shapes)}
    levels = list(inputs.values())
    for i in range(pconv_num):
        levels = PyramidConv(out_channels, pconv_deform, integrated_bn, name=f"Pconvs-{i}")(levels)
    outputs = {}
    for branch, short in (("cls", "c"), ("loc", "l")):
        conv = _sepc_conv(out_channels, 1, 0, lcconv_deform, f"{short}conv")
        maps = [conv(x, deform=level >= DEFORM_FROM_LEVEL) for level, x in enumerate(levels)]
        if integrated_bn:
            maps = IntegratedBatchNorm(epsilon=1e-5, momentum=0.9, name=f"{short}bn")(maps)
        for key, x in zip(input_names, maps):
            outputs[f"{key}_{branch}"] = keras.layers.ReLU(name=f"{key}_{branch}")(x)
    # the official order: per level, cls then loc
    outputs = {f"{key}_{branch}": outputs[f"{key}_{branch}"] for key in input_names for branch in ("cls", "loc")}
    return keras.Model(inputs, outputs, name=name)


def neck_kwargs(official):
    """`sepc_neck` arguments from the official constructor's kwargs (an mmdet config's `neck` dict without `type`, or
    a fixture's `kwargs`): `iBN` becomes `integrated_bn`, `Pconv_num` `pconv_num`, and the official defaults fill
    what is absent."""
    known = {"type", "in_channels", "out_channels", "num_outs", "pconv_deform", "lcconv_deform", "iBN", "Pconv_num"}
    if official.get("type", "SEPC") != "SEPC":
        raise ValueError(f"neck_kwargs reads an official SEPC neck config, got type {official['type']!r}.")
    if set(official) - known:
        raise ValueError(f"unknown official SEPC arguments {sorted(set(official) - known)}; known: {sorted(known)}.")
    return dict(
        in_channels=tuple(official.get("in_channels", (256,) * 5)),
        out_channels=official.get("out_channels", 256),
        num_outs=official.get("num_outs", 5),
        pconv_deform=official.get("pconv_deform", False),
        lcconv_deform=official.get("lcconv_deform", False),
        integrated_bn=official.get("iBN", False),
        pconv_num=official.get("Pconv_num", 4),
    )


def sepc_variant(variant, **overrides):
    """One of the official README variants (`VARIANTS`: "PConv", "iBN_PConv", "SEPC_lite", "SEPC") at the official
    width 256 over five levels; `overrides` are further `sepc_neck` arguments (e.g. `out_channels` with a matching
    `in_channels`, which follows `out_channels` unless given)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}.")
    kwargs = {**VARIANTS[variant], **overrides}
    width, levels = kwargs.get("out_channels", 256), kwargs.get("num_outs", 5)
    kwargs.setdefault("in_channels", (width,) * levels)
    return sepc_neck(**kwargs)


def _sepc_conv_weights(mapper, conv, prefix):
    mapper.assign(conv.kernel, f"{prefix}.weight", conv_kernel)
    mapper.assign(conv.bias, f"{prefix}.bias")
    if conv.deformable:
        mapper.assign(conv.offset_kernel, f"{prefix}.conv_offset.weight", conv_kernel)
        mapper.assign(conv.offset_bias, f"{prefix}.conv_offset.bias")


def _bn_weights(mapper, bn, prefix):
    mapper.assign(bn.gamma, f"{prefix}.weight")
    mapper.assign(bn.beta, f"{prefix}.bias")
    mapper.assign(bn.moving_mean, f"{prefix}.running_mean")
    mapper.assign(bn.moving_variance, f"{prefix}.running_var")


def convert_sepc(state_dict, model):
    """Loads an official SEPC state dict (`Pconvs.{i}.Pconv.{j}.*`, `Pconvs.{i}.bn.*`, `lconv.*`, `cconv.*`, `lbn.*`,
    `cbn.*`; a detector checkpoint's `neck.` prefix stripped) into `sepc_neck(...)` of the same configuration.

    Strict: every tensor is consumed (BatchNorm's `num_batches_tracked` counters aside), every variable assigned and
    every shape checked; a checkpoint of another configuration (say, with deformable convolutions where the model
    has none) raises one error listing the missing and unexpected keys.
    """
    state_dict = {k.removeprefix("neck."): v for k, v in state_dict.items()}
    mapper = StateDictMapper(state_dict, model)
    for layer in model.layers:
        if isinstance(layer, PyramidConv):
            prefix = layer.name.replace("-", ".")
            for j, conv in enumerate(layer.convs):
                _sepc_conv_weights(mapper, conv, f"{prefix}.Pconv.{j}")
            if layer.bn is not None:
                _bn_weights(mapper, layer.bn, f"{prefix}.bn")
        elif isinstance(layer, PartDeformConv2D):
            _sepc_conv_weights(mapper, layer, layer.name)
        elif isinstance(layer, IntegratedBatchNorm):
            _bn_weights(mapper, layer, layer.name)
        elif layer.weights:
            raise ValueError(f"convert_sepc expects a model built by sepc_neck, found layer {layer.name!r}.")
    mapper.finish()
