"""ATConv against a PyTorch transcription of the paper's operator (per-sample grouped F.conv2d), including
batches whose samples get different kernels, odd sizes and maps smaller than the kernel's tap count."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.layers import ATConv
from keras_hyper.layers.atconv import adaptive_pool_matrix

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _torch_atconv(x, w, kernel_size):
    """The official computation on NCHW tensors, with the layer's weights in PyTorch layout."""
    b, c, h, width = x.shape
    taps = kernel_size**2

    def conv1x1(t, name):
        return F.conv2d(t, w[f"{name}.weight"][:, :, None, None], w.get(f"{name}.bias"))

    g = conv1x1(x, "kernel_proj").reshape(b, c, h * width)
    g = F.gelu(torch.nn.AdaptiveAvgPool1d(taps)(g))
    kernels = F.linear(g, w["kernel_gen.weight"], w.get("kernel_gen.bias")).reshape(b, c, kernel_size, kernel_size)
    factor = torch.sigmoid(w["difference_control"]).reshape(1, -1, 1, 1)
    kernels = kernels - factor * kernels.mean(dim=(2, 3), keepdim=True)
    y = conv1x1(x, "x_proj").reshape(1, b * c, h, width)
    y = F.conv2d(y, kernels.reshape(b * c, 1, kernel_size, kernel_size), padding=kernel_size // 2, groups=b * c)
    return conv1x1(y.reshape(b, c, h, width), "proj")


def _randomise(layer, rng):
    for v in layer.weights:
        v.assign(rng.normal(size=v.shape).astype("float32") / np.sqrt(v.shape[0] if len(v.shape) == 2 else 4.0))


def _torch_weights(layer):
    w = {}
    for proj in ("kernel_proj", "kernel_gen", "x_proj", "proj"):
        w[f"{proj}.weight"] = torch.from_numpy(to_numpy(getattr(layer, f"{proj}_kernel")).T.copy())
        if layer.use_bias:
            w[f"{proj}.bias"] = torch.from_numpy(to_numpy(getattr(layer, f"{proj}_bias")))
    w["difference_control"] = torch.from_numpy(to_numpy(layer.difference_control))
    return w


@pytest.mark.parametrize(
    "size,kernel_size,use_bias",
    [((5, 7), 3, True), ((6, 6), 5, True), ((2, 2), 5, True), ((1, 3), 3, False), ((9, 4), 3, False)],
)
def test_matches_the_torch_operator(size, kernel_size, use_bias):
    rng = np.random.default_rng(0)
    layer = ATConv(kernel_size, use_bias=use_bias)
    x = rng.normal(size=(3, *size, 8)).astype("float32")
    layer.build(x.shape)
    _randomise(layer, rng)
    out = to_numpy(layer(x))
    with torch.no_grad():
        ref = _torch_atconv(torch.from_numpy(np.transpose(x, (0, 3, 1, 2))), _torch_weights(layer), kernel_size)
    ref = np.transpose(ref.numpy(), (0, 2, 3, 1))
    assert out.shape == x.shape
    np.testing.assert_allclose(out, ref, atol=1e-5 * max(1.0, np.abs(ref).max()))
    # the kernels are per sample: the same image alone gives the same output as inside the batch
    np.testing.assert_allclose(to_numpy(layer(x[1:2])), out[1:2], atol=1e-5 * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("length,bins", [(16, 9), (4, 25), (1, 9), (35, 25), (7, 7), (3136, 9)])
def test_pool_matrix_is_adaptive_avg_pool_1d(length, bins):
    matrix = to_numpy(adaptive_pool_matrix(length, bins, "float32"))
    seq = np.random.default_rng(1).normal(size=(1, 1, length)).astype("float32")
    expected = torch.nn.AdaptiveAvgPool1d(bins)(torch.from_numpy(seq)).numpy()[0, 0]
    np.testing.assert_allclose(matrix @ seq[0, 0], expected, atol=1e-5)


def test_dynamic_spatial_size():
    inputs = keras.Input((None, None, 4))
    model = keras.Model(inputs, ATConv(3)(inputs))
    for size in ((3, 5), (8, 8)):
        assert to_numpy(model(np.ones((2, *size, 4), "float32"))).shape == (2, *size, 4)


def test_config_round_trip():
    layer = ATConv(5, use_bias=False, activation="relu", name="mixer")
    clone = ATConv.from_config(layer.get_config())
    assert (clone.kernel_size, clone.use_bias, clone.name) == (5, False, "mixer")
    assert clone.activation is keras.activations.relu


@pytest.mark.parametrize("kernel_size", [0, 2, 4, 3.0, True])
def test_rejects_kernel_sizes_without_symmetric_padding(kernel_size):
    with pytest.raises(ValueError, match="kernel_size must be a positive odd integer"):
        ATConv(kernel_size)


def test_rejects_inputs_that_are_not_feature_maps():
    with pytest.raises(ValueError, match="batch, height, width, channels"):
        ATConv(3).build((2, 16, 8))
