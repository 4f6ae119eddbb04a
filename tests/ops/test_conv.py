"""keras_hyper.ops.depthwise_conv2d against a direct NumPy computation (values) and XLA's convolution (gradients)."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper import layers as hyper_layers
from keras_hyper import ops as hyper_ops


def _numpy_depthwise(x, kernel, padding, dilation=1):
    kh, kw = kernel.shape[:2]
    ph, pw = dilation * (kh // 2), dilation * (kw // 2)
    if padding == "same":
        x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    height, width = x.shape[1] - dilation * (kh - 1), x.shape[2] - dilation * (kw - 1)
    out = np.zeros((x.shape[0], height, width, x.shape[3]), "float64")
    for i in range(kh):
        for j in range(kw):
            rows, cols = slice(i * dilation, i * dilation + height), slice(j * dilation, j * dilation + width)
            out += x[:, rows, cols, :] * kernel[i, j, :, 0]
    return out


# (9, 9) and (13, 13) lie on either side of the JAX switch to the FFT (MAX_TAPS)
@pytest.mark.parametrize("shape", [(3, 3), (1, 11), (11, 1), (5, 7), (9, 9), (13, 13), (3, 31)])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("dilation", [1, 2])
def test_matches_numpy(shape, padding, dilation):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 29, 31, 6)).astype("float32")
    kernel = rng.normal(size=(*shape, 6, 1)).astype("float32")
    if dilation * (max(shape) - 1) >= 29:
        pytest.skip("dilated kernel larger than the input")
    out = to_numpy(hyper_ops.depthwise_conv2d(x, kernel, padding=padding, dilation=dilation))
    expected = _numpy_depthwise(x, kernel, padding, dilation)
    np.testing.assert_allclose(out, expected, atol=2e-5 * max(1.0, np.abs(expected).max()))


# keras.ops' path (XLA's convolution, taken at -O0) is test_matches_numpy's under JAX
JAX_PATHS = ["depthwise_conv2d", "depthwise_conv2d_fft"]


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="checks each JAX implementation")
@pytest.mark.parametrize("path", JAX_PATHS, ids=["shifted-sum", "fft"])
@pytest.mark.parametrize("shape, padding, dilation", [((3, 5), "same", 1), ((3, 3), "valid", 2), ((9, 11), "same", 2)])
def test_each_jax_path_matches_numpy_and_xla_gradients(path, shape, padding, dilation):
    """The tests' process compiles at -O0, where `depthwise_conv2d` picks XLA's convolution for small kernels:
    each fast path is called here directly, whatever the flags."""
    import jax

    from keras_hyper.ops._backend import jax as fast

    fn = getattr(fast, path)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 13, 15, 4)).astype("float32")
    kernel = rng.normal(size=(*shape, 4, 1)).astype("float32")
    expected = _numpy_depthwise(x, kernel, padding, dilation)
    np.testing.assert_allclose(
        np.asarray(fn(x, kernel, padding, dilation)), expected, atol=2e-5 * np.abs(expected).max()
    )

    def grads(conv):
        return jax.grad(lambda t, k: (conv(t, k) ** 2).sum(), argnums=(0, 1))(x, kernel)

    ours = grads(lambda t, k: fn(t, k, padding, dilation))
    theirs = grads(lambda t, k: keras.ops.depthwise_conv(t, k, padding=padding, dilation_rate=dilation))
    for got, want in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.once
def test_jax_path_follows_the_kernel_size_and_the_optimisation_level(monkeypatch):
    pytest.importorskip("jax")
    from keras_hyper.ops import conv
    from keras_hyper.ops._backend import jax as fast

    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_thunk_runtime=true")
    assert conv.jax_depthwise_path(49) is fast.depthwise_conv2d
    assert conv.jax_depthwise_path(conv.MAX_TAPS + 1) is fast.depthwise_conv2d_fft
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    assert conv.jax_depthwise_path(49) is conv.keras_depthwise_conv2d
    assert conv.jax_depthwise_path(conv.MAX_TAPS + 1) is fast.depthwise_conv2d_fft
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_backend_optimization_level=2")
    assert conv.jax_depthwise_path(49) is fast.depthwise_conv2d


def test_rejects_bad_arguments():
    x = np.zeros((1, 8, 8, 2), "float32")
    with pytest.raises(ValueError, match="odd kernel"):
        hyper_ops.depthwise_conv2d(x, np.zeros((2, 2, 2, 1), "float32"))
    with pytest.raises(ValueError, match="padding"):
        hyper_ops.depthwise_conv2d(x, np.zeros((3, 3, 2, 1), "float32"), padding="causal")
    with pytest.raises(ValueError, match="dilation must be a positive integer, got 0"):
        hyper_ops.depthwise_conv2d(x, np.zeros((3, 3, 2, 1), "float32"), dilation=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=13, padding="same"),
        dict(kernel_size=3, padding="same", dilation_rate=3, use_bias=False),
        dict(kernel_size=(3, 5), padding="valid"),
        dict(kernel_size=3, padding="same", strides=2),  # falls back to Keras
        dict(kernel_size=3, padding="same", depth_multiplier=2),  # falls back to Keras
    ],
)
def test_depthwise_layer_equals_keras_layer(kwargs):
    x = np.random.default_rng(2).normal(size=(2, 16, 16, 4)).astype("float32")
    ours = hyper_layers.DepthwiseConv2D(**kwargs, bias_initializer="random_normal")
    ours.build(x.shape)
    theirs = keras.layers.DepthwiseConv2D.from_config(ours.get_config())
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(to_numpy(ours(x)), to_numpy(theirs(x)), atol=1e-4)


# the PyTorch fast path (symmetric padding) and each fallback: stride-2 'same', even kernels under 'same'
CONV_CASES = [
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=1, padding="valid"),
    dict(kernel_size=(3, 5), padding="same", dilation_rate=2),
    dict(kernel_size=4, padding="valid", strides=2),
    dict(kernel_size=3, padding="valid", strides=(2, 1), groups=2),
    dict(kernel_size=3, padding="same", strides=2),
    dict(kernel_size=2, padding="same"),
]


@pytest.mark.parametrize("kwargs", CONV_CASES)
def test_conv_layer_equals_keras_layer_forward_and_backward(kwargs):
    x = np.random.default_rng(3).normal(size=(2, 15, 16, 4)).astype("float32")
    ours = hyper_layers.Conv2D(6, **kwargs, bias_initializer="random_normal")
    ours.build(x.shape)
    theirs = keras.layers.Conv2D.from_config(ours.get_config())
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(to_numpy(ours(x)), to_numpy(theirs(x)), atol=1e-4)
    clone = hyper_layers.Conv2D.from_config(ours.get_config())
    assert clone.get_config() == ours.get_config()
    if keras.backend.backend() == "torch":  # the fast path's gradients are torch autograd's
        import torch

        grads = []
        for layer in (ours, theirs):
            t = torch.tensor(x, requires_grad=True)
            (layer(t) ** 2).sum().backward()
            grads.append((t.grad.numpy(), to_numpy(layer.kernel.value.grad)))
        for got, expected in zip(*grads):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_conv2d_takes_the_groups_from_the_kernel():
    rng = np.random.default_rng(4)
    x, kernel = rng.normal(size=(1, 6, 6, 4)).astype("float32"), rng.normal(size=(3, 3, 2, 6)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(hyper_ops.conv2d(x, kernel, padding="same")),
        to_numpy(keras.ops.conv(x, kernel, padding="same")),
        atol=1e-4,
    )


def test_conv2d_rejects_bad_arguments():
    x, kernel = np.zeros((1, 8, 8, 2), "float32"), np.zeros((3, 3, 2, 4), "float32")
    with pytest.raises(ValueError, match="padding must be 'same' or 'valid', got 'causal'"):
        hyper_ops.conv2d(x, kernel, padding="causal")
    with pytest.raises(ValueError, match=r"strides must be a positive int or a pair of them, got \(1, 0\)"):
        hyper_ops.conv2d(x, kernel, strides=(1, 0))
