"""JAX fast paths."""

import jax.numpy as jnp


def depthwise_conv2d(x, kernel, padding):
    """Depthwise convolution as a sum of `kh * kw` shifted slices scaled per channel (see ops.conv)."""
    kh, kw = kernel.shape[0], kernel.shape[1]
    if padding == "same":
        x = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    height, width = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    taps = kernel[..., 0]
    out = None
    for i in range(kh):
        for j in range(kw):
            term = x[:, i : i + height, j : j + width, :] * taps[i, j]
            out = term if out is None else out + term
    return out
