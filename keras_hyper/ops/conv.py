"""Convolutions."""

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
    FFT convolution (13x13 at 56x56: 11x faster; 31x31: 26x). TensorFlow and PyTorch have fast native depthwise
    kernels and use `keras.ops`.
    """
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}.")
    if not isinstance(dilation, int) or isinstance(dilation, bool) or dilation < 1:
        raise ValueError(f"dilation must be a positive integer, got {dilation!r}.")
    kh, kw = kernel.shape[0], kernel.shape[1]
    if padding == "same" and (kh % 2 == 0 or kw % 2 == 0):
        raise ValueError(f"'same' padding needs an odd kernel to be symmetric, got a {kh}x{kw} kernel.")
    if keras.config.backend() == "jax":
        from keras_hyper.ops._backend import jax as fast

        if kh * kw <= MAX_TAPS:
            return fast.depthwise_conv2d(x, kernel, padding, dilation)
        return fast.depthwise_conv2d_fft(x, kernel, padding, dilation)
    return ops.depthwise_conv(x, kernel, padding=padding, dilation_rate=dilation)
