"""Structurally re-parameterisable layers: parallel branches for training that merge into one kernel for
inference."""

import keras
import numpy as np
from keras import ops

from keras_hyper import ops as hyper_ops
from keras_hyper.layers.conv import DepthwiseConv2D
from keras_hyper.layers.torch_defaults import BN_EPSILON, BN_MOMENTUM, batch_norm

# UniRepLKNet's dilated branches per large kernel size, as (kernel size, dilation) pairs: small kernels with
# growing dilation, each spanning at most the large kernel (Ding et al. 2024, Sec. 3.3).
UNIREPLKNET_BRANCHES = {
    7: ((5, 1), (3, 2), (3, 3)),
    9: ((5, 1), (5, 2), (3, 3), (3, 4)),
    11: ((5, 1), (5, 2), (3, 3), (3, 4), (3, 5)),
    13: ((5, 1), (7, 2), (3, 3), (3, 4), (3, 5)),
    15: ((5, 1), (7, 2), (3, 3), (3, 5), (3, 7)),
    17: ((5, 1), (9, 2), (3, 4), (3, 5), (3, 7)),
}


def dilate_kernel(kernel, rate):
    """Spreads a `(kh, kw, ...)` kernel's taps `rate` apart with zeros between them: the dense kernel of size
    `rate * (k - 1) + 1` that a convolution with dilation `rate` applies."""
    kh, kw = kernel.shape[:2]
    out = np.zeros((rate * (kh - 1) + 1, rate * (kw - 1) + 1, *kernel.shape[2:]), kernel.dtype)
    out[::rate, ::rate] = kernel
    return out


@keras.saving.register_keras_serializable(package="keras_hyper")
class DilatedReparamConv2D(keras.layers.Layer):
    """Dilated re-parameterisation block of UniRepLKNet (Ding, Zhang, Ge, Zhao, Song, Yue, Shan, "UniRepLKNet: A
    Universal Perception Large-Kernel ConvNet for Audio, Video, Point Cloud, Time-Series and Image
    Recognition", CVPR 2024, arXiv:2311.15599).

    A depthwise `kernel_size x kernel_size` convolution followed by BatchNormalization, plus parallel depthwise
    branches `(k, r)`, each a `k x k` convolution with dilation `r` (no bias) followed by its own
    BatchNormalization; the outputs are summed. Stride 1, 'same' size (padding `(r * (k - 1) + 1) // 2`, i.e.
    symmetric). The dilated branches add sparse large-range patterns to the dense large kernel while
    training; `fuse()` merges everything into one depthwise convolution for inference.

    Args:
        kernel_size: odd size of the large kernel.
        branches: `((k, dilation), ...)`, odd `k` and dilated size `dilation * (k - 1) + 1 <= kernel_size`;
            None = UniRepLKNet's table for `kernel_size` (7, 9, 11, 13, 15 or 17).
        use_bias: a bias on the large convolution (before its BatchNormalization).
        epsilon, momentum: of every BatchNormalization.
        kernel_initializer: of every depthwise kernel.

    Weights: `kernels[i]` `(k_i, k_i, C, 1)` and `norms[i]` (a `keras.layers.BatchNormalization`) for
    `i = 0` the large kernel and `i >= 1` the branches in the order of `branches`; `bias` `(C,)` with
    `use_bias`.

    Shape: `(B, H, W, C)` -> `(B, H, W, C)`.
    """

    def __init__(
        self,
        kernel_size,
        branches=None,
        use_bias=False,
        epsilon=BN_EPSILON,
        momentum=BN_MOMENTUM,
        kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}.")
        if branches is None:
            if kernel_size not in UNIREPLKNET_BRANCHES:
                raise ValueError(
                    f"branches=None takes UniRepLKNet's branches, defined for kernel_size in "
                    f"{sorted(UNIREPLKNET_BRANCHES)}; got kernel_size={kernel_size}. Pass branches explicitly."
                )
            branches = UNIREPLKNET_BRANCHES[kernel_size]
        branches = tuple((int(k), int(r)) for k, r in branches)
        for k, r in branches:
            if k < 1 or k % 2 == 0 or r < 1 or r * (k - 1) + 1 > kernel_size:
                raise ValueError(
                    f"Each branch (k, dilation) needs an odd k >= 1, dilation >= 1 and a dilated size "
                    f"dilation * (k - 1) + 1 <= kernel_size={kernel_size}; got ({k}, {r})."
                )
        self.kernel_size = kernel_size
        self.branches = branches
        self.use_bias = bool(use_bias)
        self.epsilon = float(epsilon)
        self.momentum = float(momentum)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or "glorot_uniform")
        self.norms = [
            batch_norm(name, epsilon=self.epsilon, momentum=self.momentum, dtype=self.dtype_policy)
            for name in ["origin_bn"] + [f"dil_bn_k{k}_{r}" for k, r in branches]
        ]

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("DilatedReparamConv2D needs a known channel dimension.")
        self.kernels = [
            self.add_weight(name=name, shape=(k, k, channels, 1), initializer=self.kernel_initializer)
            for name, k in [("lk_origin", self.kernel_size)] + [(f"dil_conv_k{k}_{r}", k) for k, r in self.branches]
        ]
        self.bias = self.add_weight(name="bias", shape=(channels,), initializer="zeros") if self.use_bias else None
        for norm in self.norms:
            norm.build(input_shape)

    def call(self, inputs, training=None):
        x = inputs
        y = hyper_ops.depthwise_conv2d(x, ops.cast(self.kernels[0], x.dtype), padding="same")
        if self.use_bias:
            y = y + ops.cast(self.bias, x.dtype)
        out = self.norms[0](y, training=training)
        for (_, rate), kernel, norm in zip(self.branches, self.kernels[1:], self.norms[1:]):
            y = hyper_ops.depthwise_conv2d(x, ops.cast(kernel, x.dtype), padding="same", dilation=rate)
            out = out + norm(y, training=training)
        return out

    def fused_weights(self):
        """`(kernel (K, K, C, 1), bias (C,))` in float64: every branch's BatchNormalization folded into its
        kernel, dilated kernels spread to their dilated size, all centred in the large kernel and summed."""
        channels = self.kernels[0].shape[2]
        size = self.kernel_size
        kernel = np.zeros((size, size, channels, 1))
        bias = np.zeros(channels)
        conv_bias = np.asarray(ops.convert_to_numpy(self.bias), "float64") if self.use_bias else np.zeros(channels)
        rates = (1,) + tuple(r for _, r in self.branches)
        for i, (w, norm, rate) in enumerate(zip(self.kernels, self.norms, rates)):
            scale, shift = _bn_affine(norm)
            w = dilate_kernel(np.asarray(ops.convert_to_numpy(w), "float64"), rate) * scale[:, None]
            pad = (size - w.shape[0]) // 2
            kernel[pad : size - pad, pad : size - pad] += w
            bias += shift + (conv_bias * scale if i == 0 else 0.0)
        return kernel, bias

    def fuse(self):
        """The inference form: one built `keras_hyper.layers.DepthwiseConv2D` (a `keras.layers.DepthwiseConv2D`
        with the fast JAX path; same name, 'same' padding, bias)."""
        kernel, bias = self.fused_weights()
        fused = DepthwiseConv2D(
            self.kernel_size, padding="same", use_bias=True, dtype=self.dtype_policy, name=self.name
        )
        fused.build((None, None, None, kernel.shape[2]))
        fused.set_weights([kernel.astype(fused.kernel.dtype), bias.astype(fused.bias.dtype)])
        return fused

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "branches": [list(b) for b in self.branches],
            "use_bias": self.use_bias,
            "epsilon": self.epsilon,
            "momentum": self.momentum,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


def _bn_affine(norm):
    """`(s, t)` in float64 with `BN(x) = x * s + t` in inference mode."""
    gamma, beta, mean, var = (
        np.asarray(ops.convert_to_numpy(v), "float64")
        for v in (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance)
    )
    scale = gamma / np.sqrt(var + norm.epsilon)
    return scale, beta - mean * scale
