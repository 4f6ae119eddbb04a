"""Cross-D convolution (Yavuz, Yang, "Cross-D Conv: Cross-Dimensional Transferable Knowledge Base via Fourier
Shifting Operation", arXiv:2411.02441; paper 23 in PAPERS.md): a 2-D convolution whose kernel is the middle slice
of a learned 3-D kernel, shifted per sample in the 3-D Fourier domain by a small predicted rotation.

The Fourier phase shift is separable over the three kernel axes, so it is computed here as small DFT-matrix
products (K is 1..7) instead of an FFT: no complex dtype, the same code on every backend, builtin LiteRT ops only.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_hyper.layers._args import check_at_least
from keras_hyper.layers.torch_defaults import BN_EPSILON, batch_norm


def _fftfreq(size):
    return np.fft.fftfreq(size).astype("float64")


def _shift_operators(shift, size):
    """The complex 1-D operators of a fractional circular shift, one per sample and kernel axis.

    `A[b, d, a, c] = (1/K) sum_n exp(2 pi i (n (a - c) / K - shift[b, d] f_n))`, `f = fftfreq(K)`: applying
    `A[b, d]` along kernel axis `d` is `ifft(fft(w) * exp(-2 pi i shift f))`. Returns (real, imag), each
    `(B, 3, K, K)`, from `shift` `(B, 3)` (float32).
    """
    n = np.arange(size)
    diff = n[:, None] - n[None, :]
    base = 2.0 * np.pi * diff[:, :, None] * n[None, None, :] / size  # (a, c, n)
    freq = ops.convert_to_tensor(2.0 * np.pi * _fftfreq(size), "float32")
    angle = ops.convert_to_tensor(base, "float32")[None, None] - shift[:, :, None, None, None] * freq
    return ops.mean(ops.cos(angle), axis=-1), ops.mean(ops.sin(angle), axis=-1)


def slice_operator(shift, size):
    """The real linear map from a 3-D kernel to the middle slice (first axis) of its Fourier-shifted copy.

    `shift` `(B, 3)`: the per-sample shift `s = R^T (1, 1, 1)` (the phase `exp(-2 pi i (R f) . 1)` of the
    official layer is `exp(-2 pi i s . f)`). Returns `(B, K*K, K**3)`: row `(a1, a2)`, column `(c0, c1, c2)`,
    so that `slice[b] = T[b] @ kernel.reshape(K**3, -1)`. The imaginary part of the shifted kernel is dropped,
    as the official `real(ifftn(...))` does.
    """
    real, imag = _shift_operators(shift, size)
    mid = size // 2
    r0, i0 = real[:, 0, mid], imag[:, 0, mid]  # (B, K): the only row of axis 0 that is kept
    r1, i1 = real[:, 1, :, None, :, None], imag[:, 1, :, None, :, None]
    r2, i2 = real[:, 2, None, :, None, :], imag[:, 2, None, :, None, :]
    pr = ops.reshape(r1 * r2 - i1 * i2, (-1, size * size, 1, size * size))
    pi = ops.reshape(r1 * i2 + i1 * r2, (-1, size * size, 1, size * size))
    full = r0[:, None, :, None] * pr - i0[:, None, :, None] * pi
    return ops.reshape(full, (-1, size * size, size**3))


def kernel_2d_to_3d(kernel2d):
    """A 3-D Cross-D kernel whose layer, at zero rotation, convolves exactly with `kernel2d`.

    At angle 0 the layer's shift is `(1, 1, 1)`, a circular roll by one on every kernel axis; the 3-D kernel is
    therefore the 2-D kernel placed in the middle slice of the first axis and shifted back by the inverse phase
    `exp(+2 pi i (1, 1, 1) . f)`, the Fourier shifting operation of the paper run backwards (for K = 1 the
    kernel is unchanged). Used to start a Cross-D model from a trained 2-D one.

    Args:
        kernel2d: Keras Conv2D kernel `(K, K, C_in/groups, C_out)` (numpy).

    Returns:
        A float32 `(K, K, K, C_in/groups, C_out)` numpy array: a `CrossDConv2D` kernel.
    """
    kernel2d = np.asarray(kernel2d, dtype="float64")
    if kernel2d.ndim != 4 or kernel2d.shape[0] != kernel2d.shape[1]:
        raise ValueError(f"kernel2d must be a square Conv2D kernel (K, K, C_in, C_out), got shape {kernel2d.shape}.")
    size = kernel2d.shape[0]
    volume = np.zeros((size,) + kernel2d.shape, "float64")
    volume[size // 2] = kernel2d
    f = _fftfreq(size)
    phase = np.exp(2j * np.pi * (f[:, None, None] + f[None, :, None] + f[None, None, :]))
    shifted = np.fft.ifftn(np.fft.fftn(volume, axes=(0, 1, 2)) * phase[..., None, None], axes=(0, 1, 2))
    return np.real(shifted).astype("float32")


@keras.saving.register_keras_serializable(package="keras_hyper")
class CrossDConv2D(keras.layers.Layer):
    """Cross-D convolution (arXiv:2411.02441): per-sample 2-D kernels sliced from a rotated 3-D kernel.

    A rotation head (1x1 conv to 16 channels with bias, BatchNorm, ReLU, 1x1 conv to 4 with bias) predicts a
    4-vector per pixel; a softmax over the pixels of each channel weights them into one vector `v` per sample.
    Its first three entries give the unit axis `k = v[:3] / (|v[:3]| + 1e-8)`, the fourth the angle
    `theta = tanh(v[3]) * pi / 4`, and `R = I + theta [k]_x` (the linearised rotation of the official code). The
    3-D kernel is phase-shifted in the Fourier domain by `exp(-2 pi i (R f) . 1)`, `f` the DFT frequencies of the
    three kernel axes (a fractional circular shift by `R^T (1, 1, 1)`); the real part of its middle slice along
    the first kernel axis is the sample's 2-D kernel, applied with zero padding `padding`, stride `strides` and
    `groups` groups, without bias.

    Args:
        filters: output channels (divisible by `groups`).
        kernel_size: K, an odd or even positive integer (square kernels only, as in the official layer).
        strides: stride of the convolution.
        padding: zero padding on every side (an integer, as PyTorch's `padding`).
        groups: channel groups (input and output channels divisible by it).
        kernel_initializer: initializer of the 3-D kernel; default He normal with fan_out
            `filters * K**3`, the official `kaiming_normal_(mode="fan_out")`.
        hidden_units: width of the rotation head (16 in the official layer).
        epsilon: epsilon of the rotation head's BatchNorm (PyTorch's 1e-5).

    Variables: `kernel` `(K, K, K, C_in/groups, filters)` (the official `weights_3d` transposed); sublayers
    `rotation_conv1` (Dense), `rotation_norm` (BatchNormalization), `rotation_conv2` (Dense).

    Shape: `(B, H, W, C_in)` -> `(B, H', W', filters)`, `H' = (H + 2 padding - K) // strides + 1`.
    Each output sample depends on its own input sample only.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding=0,
        groups=1,
        kernel_initializer=None,
        hidden_units=16,
        epsilon=BN_EPSILON,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for label, value, low in (
            ("filters", filters, 1),
            ("kernel_size", kernel_size, 1),
            ("strides", strides, 1),
            ("padding", padding, 0),
            ("groups", groups, 1),
            ("hidden_units", hidden_units, 1),
        ):
            check_at_least(low, **{f"CrossDConv2D {label}": value})
        if filters % groups:
            raise ValueError(f"CrossDConv2D filters={filters} must be divisible by groups={groups}.")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.groups = groups
        self.hidden_units = hidden_units
        self.epsilon = float(epsilon)
        if kernel_initializer is None:
            kernel_initializer = keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / (filters * kernel_size**3)))
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"CrossDConv2D expects (B, H, W, C) with a known C, got {input_shape}.")
        channels = int(input_shape[-1])
        if channels % self.groups:
            raise ValueError(f"CrossDConv2D input channels {channels} must be divisible by groups={self.groups}.")
        self.in_channels = channels
        size = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel",
            shape=(size, size, size, channels // self.groups, self.filters),
            initializer=self.kernel_initializer,
        )
        self.rotation_conv1 = keras.layers.Dense(self.hidden_units, dtype=self.dtype_policy, name="rotation_conv1")
        self.rotation_norm = batch_norm("rotation_norm", epsilon=self.epsilon, dtype=self.dtype_policy)
        self.rotation_conv2 = keras.layers.Dense(4, dtype=self.dtype_policy, name="rotation_conv2")
        self.rotation_conv1.build((None, None, None, channels))
        self.rotation_norm.build((None, None, None, self.hidden_units))
        self.rotation_conv2.build((None, None, None, self.hidden_units))

    def rotation(self, inputs, training=None):
        """The per-sample `(axis (B, 3), angle (B, 1), R (B, 3, 3))`, in float32."""
        h = ops.relu(self.rotation_norm(self.rotation_conv1(inputs), training=training))
        rot = ops.cast(self.rotation_conv2(h), "float32")
        rot = ops.reshape(rot, (ops.shape(rot)[0], -1, 4))
        vec = ops.sum(rot * ops.softmax(rot, axis=1), axis=1)  # (B, 4)
        axis = vec[:, :3] / (ops.sqrt(ops.sum(ops.square(vec[:, :3]), axis=-1, keepdims=True)) + 1e-8)
        angle = ops.tanh(vec[:, 3:]) * (math.pi / 4)
        kx, ky, kz = axis[:, 0], axis[:, 1], axis[:, 2]
        zero = ops.zeros_like(kx)
        skew = ops.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], axis=-1)
        eye = ops.convert_to_tensor(np.eye(3).reshape(1, 9), "float32")
        return axis, angle, ops.reshape(eye + angle * skew, (-1, 3, 3))

    def sample_kernels(self, inputs, training=None):
        """The per-sample 2-D kernels `(B, K, K, C_in/groups, filters)` (compute dtype)."""
        _, _, rot = self.rotation(inputs, training=training)
        shift = ops.sum(rot, axis=1)  # R^T (1, 1, 1)
        size = self.kernel_size
        operator = ops.cast(slice_operator(shift, size), self.compute_dtype)
        kernel = ops.reshape(ops.cast(self.kernel, self.compute_dtype), (size**3, -1))
        return ops.reshape(
            ops.matmul(operator, kernel), (-1, size, size, self.in_channels // self.groups, self.filters)
        )

    def call(self, inputs, training=None):
        size, stride, groups = self.kernel_size, self.strides, self.groups
        kernels = self.sample_kernels(inputs, training=training)  # (B, K, K, C_in/groups, filters)
        x = inputs
        if self.padding:
            p = self.padding
            x = ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        # im2col as one depthwise convolution with one-hot kernels (a builtin op everywhere), output channel
        # c * K*K + tap; then one batched matmul per sample and group
        taps = np.eye(size * size, dtype="float32").reshape(size, size, 1, size * size)
        taps = ops.convert_to_tensor(np.tile(taps, (1, 1, self.in_channels, 1)), self.compute_dtype)
        patches = ops.depthwise_conv(x, taps, strides=stride, padding="valid")  # (B, H', W', C * K*K)
        shape = ops.shape(patches)
        batch, out_h, out_w = shape[0], shape[1], shape[2]
        cg, og = self.in_channels // groups, self.filters // groups
        patches = ops.reshape(patches, (batch, -1, groups, cg * size * size))
        patches = ops.reshape(ops.transpose(patches, (0, 2, 1, 3)), (batch * groups, -1, cg * size * size))
        kernels = ops.reshape(kernels, (batch, size * size, cg, groups, og))
        kernels = ops.reshape(ops.transpose(kernels, (0, 3, 2, 1, 4)), (batch * groups, cg * size * size, og))
        out = ops.matmul(patches, kernels)  # (B*groups, H'W', og)
        out = ops.reshape(out, (batch, groups, out_h, out_w, og))
        return ops.reshape(ops.transpose(out, (0, 2, 3, 1, 4)), (batch, out_h, out_w, self.filters))

    def compute_output_shape(self, input_shape):
        def out(size):
            return None if size is None else (size + 2 * self.padding - self.kernel_size) // self.strides + 1

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "groups": self.groups,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "hidden_units": self.hidden_units,
            "epsilon": self.epsilon,
        }
