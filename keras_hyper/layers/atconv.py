"""Attentive convolution: a depthwise convolution whose kernels are generated from the input."""

import keras
from keras import ops

from keras_hyper.layers.torch_defaults import trunc_normal


def adaptive_pool_matrix(length, bins, dtype):
    """`(bins, length)` averaging matrix of PyTorch's `AdaptiveAvgPool1d(bins)` over a sequence of `length`.

    Bin `i` averages positions `[floor(i * L / bins), ceil((i + 1) * L / bins))`: neighbouring bins overlap when
    `bins` does not divide `L`, and repeat positions when `L < bins`. `length` may be a symbolic scalar (the
    spatial size of a dynamic-size model), so the matrix is computed with `keras.ops`.
    """
    i = ops.arange(bins, dtype="int32")[:, None]
    start = ops.floor_divide(i * length, bins)
    end = ops.floor_divide((i + 1) * length + bins - 1, bins)
    position = ops.arange(length, dtype="int32")[None, :]
    inside = ops.cast(ops.logical_and(position >= start, position < end), dtype)
    return inside / ops.cast(end - start, dtype)


@keras.saving.register_keras_serializable(package="keras_hyper")
class ATConv(keras.layers.Layer):
    """Attentive Convolution (ATConv) of AttNet ("Attentive Convolution: Unifying the
    Expressivity of Self-Attention with Convolutional Efficiency", arXiv:2510.20092).

    Every sample gets its own `k x k` depthwise kernel per channel, generated from its content (adaptive
    routing), and the mean of each kernel is partly subtracted (lateral inhibition: taps compete, as attention
    scores do after a softmax):

    1. `g = kernel_proj(x)` (1x1 convolution), flattened row-major over `H * W` and average-pooled to `k * k`
       bins (PyTorch's `AdaptiveAvgPool1d`, see `adaptive_pool_matrix`);
    2. `K = kernel_gen(act(g))`, a Linear layer over the `k * k` bins shared by all channels, read as a
       `k x k` kernel indexed `[kh, kw]`;
    3. `K -= sigmoid(difference_control) * mean_{taps}(K)`, one learnt factor per channel;
    4. `y = proj(K * x_proj(x))` where `*` is the per-sample depthwise cross-correlation with zero padding
       `k // 2` and `proj`, `x_proj` are 1x1 convolutions.

    The per-sample convolution is a sum of `k * k` shifted slices of the padded input, each scaled by one tap:
    pads, slices, multiplies and adds only, which every backend fuses well and LiteRT runs with builtin ops.

    Args:
        kernel_size: odd size `k` of the generated kernels (padding `k // 2` keeps the spatial size).
        use_bias: biases of the four projections (the official `conv_bias`).
        activation: applied to the pooled kernel features (the official `act_layer`, GELU).
        kernel_initializer: of the four projections' weights.

    Weights: `kernel_proj_kernel`, `x_proj_kernel`, `proj_kernel` `(C, C)` (input, output), `kernel_gen_kernel`
    `(k*k, k*k)` (input, output), their biases, and `difference_control` `(C,)`.

    Shape: `(B, H, W, C)` -> `(B, H, W, C)`.
    """

    def __init__(self, kernel_size=3, use_bias=True, activation="gelu", kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 1 or kernel_size % 2 == 0:
            # padding k // 2 keeps the spatial size (and the residual connection around the layer) only for odd k
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}.")
        self.kernel_size = kernel_size
        self.use_bias = bool(use_bias)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or trunc_normal())

    def _projection(self, name, units_in, units_out):
        kernel = self.add_weight(
            name=f"{name}_kernel", shape=(units_in, units_out), initializer=self.kernel_initializer
        )
        bias = self.add_weight(name=f"{name}_bias", shape=(units_out,), initializer="zeros") if self.use_bias else None
        return kernel, bias

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"ATConv expects (batch, height, width, channels) with known channels, got {input_shape}.")
        channels, taps = input_shape[-1], self.kernel_size**2
        self.kernel_proj_kernel, self.kernel_proj_bias = self._projection("kernel_proj", channels, channels)
        self.kernel_gen_kernel, self.kernel_gen_bias = self._projection("kernel_gen", taps, taps)
        self.x_proj_kernel, self.x_proj_bias = self._projection("x_proj", channels, channels)
        self.proj_kernel, self.proj_bias = self._projection("proj", channels, channels)
        self.difference_control = self.add_weight(name="difference_control", shape=(channels,), initializer="zeros")

    @staticmethod
    def _linear(x, kernel, bias):
        x = ops.matmul(x, kernel)
        return x if bias is None else x + bias

    def _kernels(self, inputs):
        """`(B, k*k, C)`: tap `t = kh * k + kw` of every sample's and channel's kernel."""
        _, height, width, channels = ops.shape(inputs)
        taps = self.kernel_size**2
        g = self._linear(inputs, self.kernel_proj_kernel, self.kernel_proj_bias)
        g = ops.reshape(g, (-1, height * width, channels))
        g = ops.matmul(adaptive_pool_matrix(height * width, taps, g.dtype), g)
        # kernel_gen mixes the taps (axis 1): K = W^T g with W stored (input, output)
        kernels = ops.matmul(ops.transpose(self.kernel_gen_kernel), self.activation(g))
        if self.use_bias:
            kernels = kernels + self.kernel_gen_bias[:, None]
        factor = ops.sigmoid(self.difference_control)
        return kernels - factor * ops.mean(kernels, axis=1, keepdims=True)

    def call(self, inputs):
        k, pad = self.kernel_size, self.kernel_size // 2
        # (B, 1, 1, k*k, C): tap t scales the whole (B, H, W, C) window as kernels[:, :, :, t]
        kernels = ops.expand_dims(ops.expand_dims(self._kernels(inputs), 1), 1)
        x = self._linear(inputs, self.x_proj_kernel, self.x_proj_bias)
        x = ops.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        y = None
        for kh in range(k):
            for kw in range(k):
                # the window of output (h, w) starts at padded (h + kh, w + kw): a cross-correlation, as F.conv2d
                window = x[:, kh : kh - (k - 1) or None, kw : kw - (k - 1) or None, :]
                term = window * kernels[:, :, :, kh * k + kw]
                y = term if y is None else y + term
        return self._linear(y, self.proj_kernel, self.proj_bias)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "use_bias": self.use_bias,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
