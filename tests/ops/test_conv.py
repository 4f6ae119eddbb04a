"""keras_hyper.ops.depthwise_conv2d against a direct NumPy computation (values) and XLA's convolution (gradients)."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper import ops as hyper_ops


def _numpy_depthwise(x, kernel, padding):
    kh, kw = kernel.shape[:2]
    if padding == "same":
        x = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    height, width = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], height, width, x.shape[3]), "float64")
    for i in range(kh):
        for j in range(kw):
            out += x[:, i : i + height, j : j + width, :] * kernel[i, j, :, 0]
    return out


@pytest.mark.parametrize("shape", [(3, 3), (1, 11), (11, 1), (5, 7), (9, 9), (13, 13)])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_matches_numpy(shape, padding):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 15, 17, 6)).astype("float32")
    kernel = rng.normal(size=(*shape, 6, 1)).astype("float32")
    out = to_numpy(hyper_ops.depthwise_conv2d(x, kernel, padding=padding))
    np.testing.assert_allclose(out, _numpy_depthwise(x, kernel, padding), atol=2e-5)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the shifted-sum fast path exists on JAX only")
def test_jax_fast_path_gradients_match_xla_convolution():
    import jax

    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 9, 9, 4)).astype("float32")
    kernel = rng.normal(size=(3, 5, 4, 1)).astype("float32")

    def loss(fn):
        return jax.grad(lambda t, k: (fn(t, k) ** 2).sum(), argnums=(0, 1))(x, kernel)

    fast = loss(lambda t, k: hyper_ops.depthwise_conv2d(t, k, padding="same"))
    reference = loss(lambda t, k: keras.ops.depthwise_conv(t, k, padding="same"))
    for ours, theirs in zip(fast, reference):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-4, atol=1e-4)


def test_rejects_bad_arguments():
    x = np.zeros((1, 8, 8, 2), "float32")
    with pytest.raises(ValueError, match="odd kernel"):
        hyper_ops.depthwise_conv2d(x, np.zeros((2, 2, 2, 1), "float32"))
    with pytest.raises(ValueError, match="padding"):
        hyper_ops.depthwise_conv2d(x, np.zeros((3, 3, 2, 1), "float32"), padding="causal")
