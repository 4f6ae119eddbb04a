"""JAX fast paths."""

import jax.numpy as jnp


def _pad_same(x, kh, kw, dilation):
    ph, pw = dilation * (kh // 2), dilation * (kw // 2)
    return jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))


def depthwise_conv2d(x, kernel, padding, dilation=1):
    """Depthwise convolution as a sum of `kh * kw` shifted slices scaled per channel (see ops.conv)."""
    kh, kw = kernel.shape[0], kernel.shape[1]
    if padding == "same":
        x = _pad_same(x, kh, kw, dilation)
    height, width = x.shape[1] - dilation * (kh - 1), x.shape[2] - dilation * (kw - 1)
    taps = kernel[..., 0]
    out = None
    for i in range(kh):
        for j in range(kw):
            term = x[:, i * dilation : i * dilation + height, j * dilation : j * dilation + width, :] * taps[i, j]
            out = term if out is None else out + term
    return out


def depthwise_conv2d_fft(x, kernel, padding, dilation=1):
    """Depthwise convolution by FFT: cost independent of the kernel size (see ops.conv)."""
    kh, kw = kernel.shape[0], kernel.shape[1]
    taps = kernel[..., 0].astype(x.dtype)
    if dilation > 1:
        spread = jnp.zeros((dilation * (kh - 1) + 1, dilation * (kw - 1) + 1, taps.shape[-1]), taps.dtype)
        taps = spread.at[::dilation, ::dilation].set(taps)
        kh, kw = taps.shape[:2]
    if padding == "same":
        x = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    height, width = x.shape[1], x.shape[2]
    # FFTs multiply circularly: a product of transforms of size (H, W) is a full correlation whose valid part
    # starts at (kh - 1, kw - 1) once the kernel is flipped (correlation, as every deep learning framework).
    compute = jnp.float32 if x.dtype in (jnp.float16, jnp.bfloat16) else x.dtype
    spectrum = jnp.fft.rfft2(x.astype(compute), axes=(1, 2)) * jnp.fft.rfft2(
        taps[::-1, ::-1].astype(compute), s=(height, width), axes=(0, 1)
    )
    out = jnp.fft.irfft2(spectrum, s=(height, width), axes=(1, 2))
    return out[:, kh - 1 :, kw - 1 :, :].astype(x.dtype)
