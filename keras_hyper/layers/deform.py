"""Deformable convolution layers (DCNv1, Dai et al., arXiv:1703.06211; DCNv2, Zhu et al., arXiv:1811.11168), in the
form detection necks and heads use them: mmcv's `DeformConv2dPack` / `ModulatedDeformConv2dPack`, which predict
their own offsets (and masks) with a convolution of the same geometry."""

import keras
from keras import ops

from keras_hyper import ops as hyper_ops
from keras_hyper.layers._args import check_positive, positive_ints
from keras_hyper.ops.deform import deform_output_size


def _padding_pair(value):
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in pair):
        raise ValueError(f"padding must be a non-negative integer or 2 non-negative integers, got {value!r}.")
    return pair


def _plain_conv(x, kernel, strides, padding, dilation):
    """A convolution with PyTorch's symmetric zero `padding` (pairs): the offset convolution's geometry."""
    ph, pw = padding
    padded = ops.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0))) if ph or pw else x
    if max(strides) > 1 and max(dilation) > 1:
        # TensorFlow's convolution refuses strides and dilation together: convolve densely and subsample
        y = hyper_ops.conv2d(padded, kernel, dilation=dilation)
        return y[:, :: strides[0], :: strides[1], :]
    return hyper_ops.conv2d(padded, kernel, strides=strides, dilation=dilation)


@keras.saving.register_keras_serializable(package="keras_hyper")
class DeformConv2D(keras.layers.Layer):
    """Deformable convolution that predicts its own sampling offsets (and, modulated, masks): mmcv's
    `ModulatedDeformConv2dPack` (DCNv2, "Deformable ConvNets v2", arXiv:1811.11168) or `DeformConv2dPack` (DCNv1,
    arXiv:1703.06211, `modulated=False`).

    An offset convolution of the same kernel size, strides, padding and dilation as the main one (with a bias,
    zero-initialised so that training starts from an ordinary convolution) maps the input to `3 * dg * kh * kw`
    channels (DCNv2) or `2 * dg * kh * kw` (DCNv1). The first `2 * dg * kh * kw` are the offsets, `(dy, dx)`
    interleaved per deformable group and kernel point (mmcv's layout); DCNv2's last `dg * kh * kw` go through a
    sigmoid and modulate the samples. Then `keras_hyper.ops.deform_conv2d` (gather-based: LiteRT builtin ops).

    Args:
        filters: output channels.
        kernel_size, strides, dilation: positive int or pair.
        padding: PyTorch's zero padding on both sides of each axis, a non-negative int or pair (1 for a 3x3
            convolution that keeps the size).
        groups: convolution groups (divides the input channels and `filters`).
        deformable_groups: groups of input channels sharing one set of offsets (mmcv's `deform_groups`).
        modulated: DCNv2 (masks) if True, DCNv1 if False.
        use_bias: bias of the main convolution (the offset convolution always has one).
        kernel_initializer: of the main kernel; default mmcv's `U(-1/sqrt(n), 1/sqrt(n))` with
            `n = kh * kw * channels / groups`.
        bias_initializer: of the main bias (mmcv: zeros).

    Weights: `kernel` `(kh, kw, C / groups, filters)`, optional `bias`, `offset_kernel`
    `(kh, kw, C, (3 or 2) * dg * kh * kw)` and `offset_bias` (mmcv's `weight`, `bias`, `conv_offset.weight`,
    `conv_offset.bias`).

    Shape: `(B, H, W, C)` -> `(B, Ho, Wo, filters)`, `Ho = (H + 2 ph - dh (kh - 1) - 1) // sh + 1`.

    Example:
        >>> layer = DeformConv2D(64, 3, padding=1, deformable_groups=2)
        >>> y = layer(np.zeros((1, 32, 32, 64), "float32"))  # (1, 32, 32, 64)
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding=0,
        dilation=1,
        groups=1,
        deformable_groups=1,
        modulated=True,
        use_bias=True,
        kernel_initializer=None,
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive(filters=filters, groups=groups, deformable_groups=deformable_groups)
        if filters % groups:
            raise ValueError(f"filters ({filters}) must be a multiple of groups ({groups}).")
        self.filters = filters
        self.kernel_size = positive_ints(kernel_size, 2, "kernel_size")
        self.strides = positive_ints(strides, 2, "strides")
        self.padding = _padding_pair(padding)
        self.dilation = positive_ints(dilation, 2, "dilation")
        self.groups = groups
        self.deformable_groups = deformable_groups
        self.modulated = bool(modulated)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer) if kernel_initializer else None
        self.bias_initializer = keras.initializers.get(bias_initializer)

    @property
    def offset_channels(self):
        """Channels of the offset convolution: `(3 or 2) * dg * kh * kw`."""
        return (3 if self.modulated else 2) * self.deformable_groups * self.kernel_size[0] * self.kernel_size[1]

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"DeformConv2D expects (batch, height, width, channels) with known channels, got {input_shape}."
            )
        channels = input_shape[-1]
        for name, value in (("groups", self.groups), ("deformable_groups", self.deformable_groups)):
            if channels % value:
                raise ValueError(f"{name} ({value}) must divide the {channels} input channels.")
        kh, kw = self.kernel_size
        initializer = self.kernel_initializer
        if initializer is None:
            # mmcv's init_weights: U(-stdv, stdv), stdv = 1 / sqrt(fan_in); VarianceScaling's uniform limit is
            # sqrt(3 * scale / fan_in)
            initializer = keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")
        self.kernel = self.add_weight(
            name="kernel", shape=(kh, kw, channels // self.groups, self.filters), initializer=initializer
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )
        if self._predicts_offsets:
            self.offset_kernel = self.add_weight(
                name="offset_kernel", shape=(kh, kw, channels, self.offset_channels), initializer="zeros"
            )
            self.offset_bias = self.add_weight(name="offset_bias", shape=(self.offset_channels,), initializer="zeros")

    # a subclass whose kernel may only ever run as a plain convolution builds no offset convolution
    _predicts_offsets = True

    def call(self, inputs):
        predicted = _plain_conv(inputs, self.offset_kernel, self.strides, self.padding, self.dilation)
        predicted = predicted + self.offset_bias
        split = 2 * self.deformable_groups * self.kernel_size[0] * self.kernel_size[1]
        offset = predicted[..., :split]
        mask = ops.sigmoid(predicted[..., split:]) if self.modulated else None
        return hyper_ops.deform_conv2d(
            inputs,
            offset,
            mask,
            self.kernel,
            self.bias,
            strides=self.strides,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            deformable_groups=self.deformable_groups,
        )

    def compute_output_shape(self, input_shape):
        sizes = []
        for axis in range(2):
            size = input_shape[1 + axis]
            if size is not None:
                k, s, p, d = (self.kernel_size[axis], self.strides[axis], self.padding[axis], self.dilation[axis])
                size = deform_output_size(size, k, s, p, d)
            sizes.append(size)
        return (input_shape[0], *sizes, self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "deformable_groups": self.deformable_groups,
            "modulated": self.modulated,
            "use_bias": self.use_bias,
            "kernel_initializer": (
                keras.initializers.serialize(self.kernel_initializer) if self.kernel_initializer else None
            ),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class PartDeformConv2D(DeformConv2D):
    """A deformable convolution whose kernel also runs as a plain convolution, chosen per call: the official
    `sepc_conv` of SEPC ("Scale-Equalizing Pyramid Convolution for Object Detection", CVPR 2020, paper 25 in
    PAPERS.md), which shares one kernel over the pyramid levels and deforms it only at the coarser ones.

    `call(x, deform=True)` is `DeformConv2D` (offsets from its own offset convolution, DCNv1 unless `modulated`);
    `call(x, deform=False)` is the ordinary convolution with the same kernel, bias, strides, padding and dilation.
    With `deformable=False` (the official `part_deform=False`) there is no offset convolution and every call is
    plain.

    Args:
        filters, kernel_size: as `DeformConv2D`.
        deformable: build the offset convolution (the official `part_deform`).
        **kwargs: the other `DeformConv2D` arguments; `modulated` defaults to False (the official DCNv1), and
            `groups` must be 1.

    Weights: `kernel`, `bias` and, if deformable, `offset_kernel` and `offset_bias` (the official `weight`, `bias`,
    `conv_offset.weight`, `conv_offset.bias`).

    Shape: `(B, H, W, C)` -> `(B, Ho, Wo, filters)`, as `DeformConv2D`.

    Example:
        >>> conv = PartDeformConv2D(16, 3, padding=1)
        >>> x = np.zeros((1, 8, 8, 16), "float32")
        >>> conv(x, deform=False).shape, conv(x).shape  # same kernel, plain then deformed
    """

    def __init__(self, filters, kernel_size, deformable=True, **kwargs):
        kwargs.setdefault("modulated", False)
        super().__init__(filters, kernel_size, **kwargs)
        if self.groups != 1:
            raise ValueError(f"PartDeformConv2D supports groups=1 only, got groups={self.groups!r}.")
        self.deformable = bool(deformable)

    @property
    def _predicts_offsets(self):
        return self.deformable

    def call(self, inputs, deform=True):
        if self.deformable and deform:
            return super().call(inputs)
        y = _plain_conv(inputs, self.kernel, self.strides, self.padding, self.dilation)
        return y if self.bias is None else y + self.bias

    def get_config(self):
        return {**super().get_config(), "deformable": self.deformable}
