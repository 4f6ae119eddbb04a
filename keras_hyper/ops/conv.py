"""Convolutions."""

import keras
from keras import ops

# Above this many kernel taps the shifted-sum fast path stops paying off (and compiles slowly).
MAX_TAPS = 64


def depthwise_conv2d(x, kernel, padding="same"):
    """Stride-1 depthwise convolution, channels last.

    Args:
        x: `(B, H, W, C)`.
        kernel: `(kh, kw, C, 1)`, as `keras.layers.DepthwiseConv2D` stores it.
        padding: "same" (odd kernels: symmetric `k // 2` on each side, as PyTorch's `padding=k // 2`) or "valid".

    Returns:
        `(B, H', W', C)`.

    XLA's CPU grouped convolution is some 40x slower than the same depthwise convolution written as a sum of
    shifted, per-channel-scaled slices, which XLA fuses into one loop; the JAX backend takes that path for
    small kernels. TensorFlow and PyTorch have fast native depthwise kernels and use `keras.ops`.
    """
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}.")
    kh, kw = kernel.shape[0], kernel.shape[1]
    if padding == "same" and (kh % 2 == 0 or kw % 2 == 0):
        raise ValueError(f"'same' padding needs an odd kernel to be symmetric, got a {kh}x{kw} kernel.")
    if keras.config.backend() == "jax" and kh * kw <= MAX_TAPS:
        from keras_hyper.ops._backend import jax as fast

        return fast.depthwise_conv2d(x, kernel, padding)
    return ops.depthwise_conv(x, kernel, padding=padding)
