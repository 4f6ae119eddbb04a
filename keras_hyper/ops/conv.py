"""Convolutions."""

import os
import re

import keras
from keras import ops

# Up to this many kernel taps the JAX backend sums shifted slices; above it (the large kernels of UniRepLKNet,
# OverLoCK, ...) the slices stop fusing and compile slowly, and an FFT convolution is faster.
MAX_TAPS = 64


def depthwise_conv2d(x, kernel, padding="same", dilation=1):
    """Stride-1 depthwise convolution, channels last.

    Args:
        x: `(B, H, W, C)`.
        kernel: `(kh, kw, C, 1)`, as `keras.layers.DepthwiseConv2D` stores it.
        padding: "same" (odd kernels: symmetric `dilation * (k // 2)` on each side, as PyTorch's
            `padding=dilation * (k // 2)`) or "valid".
        dilation: spacing of the kernel taps (an int, the same on both axes).

    Returns:
        `(B, H', W', C)`.

    XLA's CPU grouped convolution is slow: on JAX, kernels of at most `MAX_TAPS` taps run as a sum of shifted,
    per-channel-scaled slices, which XLA fuses into one loop (some 40x faster at 7x7), and larger kernels as an
    FFT convolution (13x13 at 56x56: 11x faster; 31x31: 26x). The shifted sum needs LLVM's optimisations: where
    XLA compiles at -O0 (`--xla_backend_optimization_level=0` in `XLA_FLAGS`, for fast compiles) its forward
    and backward pass compiled 8x slower than XLA's convolution and ran 1.5x slower (7x7, 8x8 to 56x56 maps), so
    small kernels take XLA's convolution there. On PyTorch the native depthwise kernel runs on the
    channels-last tensor as it is (Keras' wrapper copies it twice: 13x slower at 3x3, see `_backend/torch.py`);
    TensorFlow uses `keras.ops`.
    """
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}.")
    if not isinstance(dilation, int) or isinstance(dilation, bool) or dilation < 1:
        raise ValueError(f"dilation must be a positive integer, got {dilation!r}.")
    kh, kw = kernel.shape[0], kernel.shape[1]
    if padding == "same" and (kh % 2 == 0 or kw % 2 == 0):
        raise ValueError(f"'same' padding needs an odd kernel to be symmetric, got a {kh}x{kw} kernel.")
    if keras.config.backend() == "jax":
        return jax_depthwise_path(kh * kw)(x, kernel, padding, dilation)
    if keras.config.backend() == "torch":
        from keras_hyper.ops._backend import torch as fast

        same = padding == "same"
        pads = (dilation * (kh // 2) * same, dilation * (kw // 2) * same)
        return fast.depthwise_conv2d(ops.convert_to_tensor(x), ops.convert_to_tensor(kernel), pads, dilation)
    return keras_depthwise_conv2d(x, kernel, padding, dilation)


def keras_depthwise_conv2d(x, kernel, padding, dilation=1):
    """`keras.ops.depthwise_conv`: XLA's grouped convolution on JAX (odd kernels, stride 1: symmetric padding)."""
    return ops.depthwise_conv(x, kernel, padding=padding, dilation_rate=dilation)


def jax_depthwise_path(taps):
    """The JAX implementation `depthwise_conv2d` uses for a kernel of `taps` taps (see its docstring)."""
    from keras_hyper.ops._backend import jax as fast

    if taps > MAX_TAPS:
        return fast.depthwise_conv2d_fft
    if _xla_unoptimized():
        return keras_depthwise_conv2d
    return fast.depthwise_conv2d


def _xla_unoptimized():
    levels = re.findall(r"--xla_backend_optimization_level=(\d+)", os.environ.get("XLA_FLAGS", ""))
    return bool(levels) and int(levels[-1]) == 0


def conv2d(x, kernel, strides=1, padding="valid", dilation=1):
    """2-D convolution, channels last, as `keras.ops.conv` with `groups` taken from the kernel.

    Args:
        x: `(B, H, W, Cin)`.
        kernel: `(kh, kw, Cin / groups, Cout)`, as `keras.layers.Conv2D` stores it.
        strides, dilation: ints or pairs.
        padding: "valid", or "same" (TensorFlow's rule: the extra pixel of an odd total goes after).

    Returns:
        `(B, H', W', Cout)`.

    On PyTorch, whenever the padding is symmetric (valid, or same with stride 1 and odd dilated kernel extents)
    the native convolution runs on the channels-last tensor as it is, without the two copies Keras' wrapper
    makes (see `_backend/torch.py`); everything else is `keras.ops.conv`.
    """
    strides, dilation = _pair(strides, "strides"), _pair(dilation, "dilation")
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}.")
    kh, kw = kernel.shape[0], kernel.shape[1]
    symmetric = padding == "valid" or (strides == (1, 1) and kh % 2 == 1 and kw % 2 == 1)
    if keras.config.backend() == "torch" and symmetric:
        from keras_hyper.ops._backend import torch as fast

        same = padding == "same"
        pads = (dilation[0] * (kh // 2) * same, dilation[1] * (kw // 2) * same)
        x, kernel = ops.convert_to_tensor(x), ops.convert_to_tensor(kernel)
        return fast.conv2d(x, kernel, strides, pads, dilation, x.shape[-1] // kernel.shape[2])
    return ops.conv(x, kernel, strides=strides, padding=padding, dilation_rate=dilation)


def _pair(value, name):
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}.")
    return pair
