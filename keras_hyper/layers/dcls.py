"""Dilated convolution with learnable spacings (Khalfaoui-Hassani, Pellegrini, Masquelier, "Dilated Convolution
with Learnable Spacings", ICLR 2023, arXiv:2112.03740; paper 55 in PAPERS.md).

A DCLS kernel has `kernel_count` non-zero elements per (input, output) channel pair, each with a learnable weight
and a learnable real-valued position inside a large "dilated" kernel of size `s0 x s1`. The dense kernel is built
by interpolating every element onto the integer grid, then an ordinary convolution runs. The interpolations are
those of the reference PyPI package `dcls` 0.1.1 (`Dcls2d`, `version=`):

- "v0": bilinear weights onto the four integer neighbours, unnormalised (what ConvNeXt-dcls uses);
- "v1": the same bilinear weights, each element divided by the part of its mass that falls inside the kernel;
- "gauss": a normalised Gaussian per element with a learnable per-axis width `|sigma| + 0.27`;
- "max": a normalised triangle `relu(|sigma| + 1 - |d|)` per axis with a learnable width.

Every interpolation here is separable (a product of one profile per axis), so the dense kernel of each channel
pair is a `(s0, count) @ (count, s1)` matrix product: batched matmuls, element-wise maths and transposes, all of
which have builtin LiteRT kernels (no scatter). Anything that falls outside the kernel is dropped, as in the
package.

Layouts (Keras style, `(..., in, out)`): weight `(kernel_count, in/groups, filters)`, positions
`(2, kernel_count, in/groups, filters)`, sigma like positions; the dense kernel is `(s0, s1, in/groups, filters)`.
The package's layouts are `(out, in/groups, count)` and `(2, out, in/groups, count)`. Axis convention, copied
from the package because checkpoints depend on it: in "v0" `positions[0]` is the row (height) coordinate and
`positions[1]` the column; in "v1", "gauss" and "max" the package pairs `positions[0] + s0 // 2` with the
columns and `positions[1] + s1 // 2` with the rows (the same thing for the square kernels everyone uses).
"""

import keras
import numpy as np
from keras import ops

from keras_hyper import ops as hyper_ops
from keras_hyper.layers._args import check_positive
from keras_hyper.layers.conv import Conv2D, DepthwiseConv2D

VERSIONS = ("v0", "v1", "gauss", "max")
# The package adds these to |sigma| so that a zero sigma still spreads over about one pixel.
SIGMA_OFFSET = {"gauss": 0.27, "max": 1.0}
SIGMA_INIT = {"gauss": 0.23, "max": 0.0}
NORM_EPSILON = 1e-7


def _pair(value, name):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        raise ValueError(f"{name} must be a positive integer or a pair of them, got {value!r}.")
    return value


def _profile(distance, version, sigma):
    if version in ("v0", "v1"):
        return ops.relu(1.0 - ops.abs(distance))
    width = ops.abs(sigma) + SIGMA_OFFSET[version]
    if version == "max":
        return ops.relu(width - ops.abs(distance))
    return ops.exp(-0.5 * ops.square(distance / width))


def dcls_kernel(weight, positions, dilated_kernel_size, version="v0", sigma=None):
    """The dense kernel of a DCLS convolution.

    Args:
        weight: `(count, in/groups, filters)`.
        positions: `(2, count, in/groups, filters)`, relative to the kernel centre (`s // 2`).
        dilated_kernel_size: `(s0, s1)`.
        version: one of `VERSIONS`.
        sigma: `(2, count, in/groups, filters)` for "gauss" and "max", else None.

    Returns:
        `(s0, s1, in/groups, filters)`, in the dtype of `weight`.
    """
    s0, s1 = dilated_kernel_size
    # (in, out, count): channel pairs lead, so that the interpolation is one batched matmul per pair
    weight = ops.transpose(weight, (1, 2, 0))
    positions = ops.transpose(positions, (0, 2, 3, 1))
    if version == "v0":
        rows, cols = positions[0] + float(s0 // 2), positions[1] + float(s1 // 2)
        row_sigma = col_sigma = None
    else:
        cols, rows = positions[0] + float(s0 // 2), positions[1] + float(s1 // 2)
        col_sigma = row_sigma = None
        if sigma is not None:
            sigma = ops.transpose(sigma, (0, 2, 3, 1))
            col_sigma, row_sigma = sigma[0][..., :, None], sigma[1][..., None, :]
    grid0 = ops.arange(s0, dtype=weight.dtype)[:, None]
    grid1 = ops.arange(s1, dtype=weight.dtype)
    a = _profile(grid0 - rows[..., None, :], version, row_sigma)  # (in, out, s0, count)
    b = _profile(cols[..., :, None] - grid1, version, col_sigma)  # (in, out, count, s1)
    if version != "v0":
        mass = ops.sum(a, axis=-2) * ops.sum(b, axis=-1)
        weight = weight / (mass + NORM_EPSILON)
    kernel = ops.matmul(a, weight[..., :, None] * b)  # (in, out, s0, s1)
    return ops.transpose(kernel, (2, 3, 0, 1))


@keras.saving.register_keras_serializable(package="keras_hyper")
class PositionClip(keras.constraints.Constraint):
    """Keeps DCLS positions inside the dilated kernel after every optimizer step: axis `i` of a
    `(2, ...)` position tensor is clipped to `[-limits[i], limits[i]]` (the package's `clamp_parameters()`,
    which the official training loops call after each step)."""

    def __init__(self, limits):
        self.limits = tuple(int(v) for v in limits)

    def __call__(self, w):
        return ops.stack([ops.clip(w[i], -lim, lim) for i, lim in enumerate(self.limits)])

    def get_config(self):
        return {"limits": self.limits}


def _add_positions(layer, shape, dilated_kernel_size, initializer, clip):
    limits = tuple(s // 2 for s in dilated_kernel_size)
    positions = layer.add_weight(
        name="positions",
        shape=shape,
        initializer=initializer,
        constraint=PositionClip(limits) if clip else None,
        autocast=False,
    )
    # the package draws N(0, 0.5) and clamps it into the kernel
    positions.assign(PositionClip(limits)(positions))
    return positions


def _default_positions_initializer():
    return keras.initializers.RandomNormal(stddev=0.5)


@keras.saving.register_keras_serializable(package="keras_hyper")
class DCLSPositions(keras.layers.Layer):
    """The positions of a DCLS kernel, as a layer of their own so that several `DCLSConv2D` layers can share them
    (ConvNeXt-dcls learns one position tensor per stage, used by every block of the stage).

    Call it on any tensor of the graph (the input only anchors it there) and pass its output to each sharing
    layer: `p = DCLSPositions(...)(x); y = DCLSConv2D(...)([x, p])`. Being one layer, its weight is counted,
    trained, saved and loaded once.

    Args:
        filters, kernel_count, dilated_kernel_size: as in `DCLSConv2D`.
        group_channels: input channels per group of the sharing layers (1 for depthwise).
        positions_initializer: default N(0, 0.5), clipped into the kernel (the package's).
        clip_positions: clip into the kernel after each optimizer step (see `PositionClip`).

    Shape: any -> `(2, kernel_count, group_channels, filters)`.
    """

    def __init__(
        self,
        filters,
        kernel_count,
        dilated_kernel_size,
        group_channels=1,
        positions_initializer=None,
        clip_positions=True,
        **kwargs,
    ):
        super().__init__(autocast=False, **kwargs)
        check_positive(filters=filters, kernel_count=kernel_count, group_channels=group_channels)
        self.filters = filters
        self.kernel_count = kernel_count
        self.dilated_kernel_size = _pair(dilated_kernel_size, "dilated_kernel_size")
        self.group_channels = group_channels
        self.positions_initializer = keras.initializers.get(positions_initializer or _default_positions_initializer())
        self.clip_positions = bool(clip_positions)

    @property
    def shape(self):
        return (2, self.kernel_count, self.group_channels, self.filters)

    def build(self, input_shape):
        self.positions = _add_positions(
            self, self.shape, self.dilated_kernel_size, self.positions_initializer, self.clip_positions
        )

    def call(self, inputs):
        return ops.convert_to_tensor(self.positions)

    def compute_output_shape(self, input_shape):
        return self.shape

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_count": self.kernel_count,
            "dilated_kernel_size": self.dilated_kernel_size,
            "group_channels": self.group_channels,
            "positions_initializer": keras.initializers.serialize(self.positions_initializer),
            "clip_positions": self.clip_positions,
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class DCLSConv2D(keras.layers.Layer):
    """2D convolution with learnable spacings (DCLS, arXiv:2112.03740), channels last; dense, grouped or
    depthwise (`groups == input channels`).

    Called on `x` the layer owns its positions; called on `[x, positions]` it uses the given ones (the output of
    a shared `DCLSPositions`) and owns none.

    Args:
        filters: output channels (a multiple of `groups`).
        kernel_count: kernel elements per (input, output) channel pair.
        dilated_kernel_size: `s` or `(s0, s1)`, the size of the dense kernel the elements move in.
        strides: an int or a pair.
        padding: "same" or "valid" (for an odd size and stride 1, "same" is the package's `padding=s // 2`).
        groups: channel groups; `groups == input channels` is a depthwise convolution.
        use_bias: add a bias.
        version: the interpolation, one of "v0", "v1", "gauss", "max" (see the module docstring).
        kernel_initializer: default the package's uniform `+-1/sqrt(fan_in)` (fan_in = in/groups * count).
        bias_initializer: default zeros.
        positions_initializer: default N(0, 0.5) clipped into the kernel (the package's).
        sigma_initializer: "gauss" / "max" only; default the package's constant 0.23 / 0.
        clip_positions: clip positions into the kernel after each optimizer step (see `PositionClip`).

    Shape: `(B, H, W, C)` (or `[that, (2, kernel_count, C/groups, filters)]`) -> `(B, H', W', filters)`.
    """

    def __init__(
        self,
        filters,
        kernel_count,
        dilated_kernel_size,
        strides=1,
        padding="same",
        groups=1,
        use_bias=True,
        version="v0",
        kernel_initializer=None,
        bias_initializer="zeros",
        positions_initializer=None,
        sigma_initializer=None,
        clip_positions=True,
        **kwargs,
    ):
        # Positions are coordinates: half precision would move them by up to 1/128 of a pixel, so the kernel is
        # built in the variables' dtype and only then cast to the compute dtype.
        super().__init__(autocast=False, **kwargs)
        check_positive(filters=filters, kernel_count=kernel_count, groups=groups)
        if filters % groups:
            raise ValueError(f"filters ({filters}) must be a multiple of groups ({groups}).")
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}.")
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS}, got {version!r}.")
        self.filters = filters
        self.kernel_count = kernel_count
        self.dilated_kernel_size = _pair(dilated_kernel_size, "dilated_kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = padding
        self.groups = groups
        self.use_bias = bool(use_bias)
        self.version = version
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer
            or keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.positions_initializer = keras.initializers.get(positions_initializer or _default_positions_initializer())
        self.sigma_initializer = keras.initializers.get(
            sigma_initializer or keras.initializers.Constant(SIGMA_INIT.get(version, 0.0))
        )
        self.clip_positions = bool(clip_positions)

    def build(self, input_shape):
        shared = isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple))
        x_shape = input_shape[0] if shared else input_shape
        channels = x_shape[-1]
        if channels is None or channels % self.groups:
            raise ValueError(
                f"DCLSConv2D needs input channels divisible by groups ({self.groups}), got input shape {x_shape}."
            )
        self.input_channels = channels
        shape = (self.kernel_count, channels // self.groups, self.filters)
        if shared:
            if tuple(input_shape[1]) != (2, *shape):
                raise ValueError(
                    f"Shared positions must have shape {(2, *shape)} (2, kernel_count, in/groups, filters), "
                    f"got {tuple(input_shape[1])}."
                )
            self.positions = None
        else:
            self.positions = _add_positions(
                self, (2, *shape), self.dilated_kernel_size, self.positions_initializer, self.clip_positions
            )
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer=self.kernel_initializer, autocast=False)
        self.sigma = None
        if self.version in SIGMA_OFFSET:
            self.sigma = self.add_weight(
                name="sigma", shape=(2, *shape), initializer=self.sigma_initializer, autocast=False
            )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.filters,), initializer=self.bias_initializer, autocast=False
            )

    @property
    def depthwise(self):
        return self.groups == self.input_channels

    def dense_kernel(self, positions=None):
        """The constructed kernel, `(s0, s1, in/groups, filters)` in the variables' dtype; `positions` are the
        shared ones where the layer owns none."""
        if positions is None:
            if self.positions is None:
                raise ValueError(
                    f"DCLSConv2D {self.name!r} shares its positions: pass them (the DCLSPositions output)."
                )
            positions = self.positions
        positions = ops.cast(positions, self.kernel.dtype)
        return dcls_kernel(self.kernel, positions, self.dilated_kernel_size, self.version, self.sigma)

    def call(self, inputs):
        x, positions = (inputs[0], inputs[1]) if isinstance(inputs, (list, tuple)) else (inputs, None)
        x = ops.cast(x, self.compute_dtype)
        kernel = ops.cast(self.dense_kernel(positions), x.dtype)
        if self.depthwise:
            kernel = ops.reshape(kernel, (*self.dilated_kernel_size, self.input_channels, -1))
            odd = all(s % 2 for s in self.dilated_kernel_size)
            # keras_hyper.ops.depthwise_conv2d: stride 1, one output per channel, symmetric padding
            if self.strides == (1, 1) and self.filters == self.input_channels and (odd or self.padding == "valid"):
                y = hyper_ops.depthwise_conv2d(x, kernel, padding=self.padding)
            else:
                y = ops.depthwise_conv(x, kernel, strides=self.strides, padding=self.padding)
        else:
            y = ops.conv(x, kernel, strides=self.strides, padding=self.padding)
        if self.bias is not None:
            y = y + ops.cast(self.bias, y.dtype)
        return y

    def compute_output_shape(self, input_shape):
        shared = isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple))
        batch, height, width, _ = input_shape[0] if shared else input_shape
        size = []
        for n, k, s in zip((height, width), self.dilated_kernel_size, self.strides):
            if n is None:
                size.append(None)
            elif self.padding == "same":
                size.append(-(-n // s))
            else:
                size.append((n - k) // s + 1)
        return (batch, *size, self.filters)

    def fuse(self, positions=None):
        """The inference form: a plain convolution layer (same name) holding the constructed kernel, so that
        nothing is interpolated per call. Depthwise layers become a `DepthwiseConv2D` (the keras-hyper one, which
        takes the fast depthwise path of `keras_hyper.ops` on JAX), the others a `Conv2D`.
        `positions` (an array) are needed where the layer shares them."""
        kernel = np.asarray(ops.convert_to_numpy(self.dense_kernel(positions)))
        common = dict(
            kernel_size=self.dilated_kernel_size,
            strides=self.strides,
            padding=self.padding,
            use_bias=self.use_bias,
            name=self.name,
            dtype=self.dtype_policy,
        )
        if self.depthwise:
            layer = DepthwiseConv2D(depth_multiplier=self.filters // self.input_channels, **common)
            kernel = kernel.reshape(*self.dilated_kernel_size, self.input_channels, -1)
        else:
            layer = Conv2D(self.filters, groups=self.groups, **common)
        layer.build((None, None, None, self.input_channels))
        weights = [kernel] + ([np.asarray(ops.convert_to_numpy(self.bias))] if self.use_bias else [])
        layer.set_weights(weights)
        return layer

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_count": self.kernel_count,
            "dilated_kernel_size": self.dilated_kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "groups": self.groups,
            "use_bias": self.use_bias,
            "version": self.version,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "positions_initializer": keras.initializers.serialize(self.positions_initializer),
            "sigma_initializer": keras.initializers.serialize(self.sigma_initializer),
            "clip_positions": self.clip_positions,
        }
