"""DilatedReparamConv2D (against PyTorch convolutions with the official padding, and its fusion) and
GlobalResponseNorm (against its formula)."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.layers import DepthwiseConv2D, DilatedReparamConv2D, GlobalResponseNorm
from keras_hyper.layers.reparam import UNIREPLKNET_BRANCHES, dilate_kernel

CONFIGS = [
    dict(kernel_size=13),
    dict(kernel_size=7, use_bias=True),
    dict(kernel_size=17),
    dict(kernel_size=9, branches=((3, 1), (3, 4), (5, 2)), use_bias=True),  # OverLoCK-style custom list
]


def _randomised(layer, channels=6, seed=0):
    """Builds `layer` and draws every weight, with non-trivial BN statistics so that a wrong fold shows."""
    layer.build((None, None, None, channels))
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        if "moving_variance" in weight.path:
            value = rng.uniform(0.5, 1.5, weight.shape)
        else:
            value = rng.normal(0.0, 0.5, weight.shape)
        weight.assign(value.astype("float32"))
    return layer


def _sample(shape=(2, 19, 17, 6), seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _torch_reference(layer, x):
    """The official computation: per branch, a depthwise `nn.Conv2d` with padding `(r * (k - 1) + 1) // 2` and
    dilation `r`, then eval-mode BatchNorm; summed."""
    torch = pytest.importorskip("torch")
    xt = torch.from_numpy(np.transpose(x, (0, 3, 1, 2))).double()
    channels = x.shape[-1]
    out = 0.0
    specs = [(layer.kernel_size, 1)] + list(layer.branches)
    for i, ((k, r), kernel, norm) in enumerate(zip(specs, layer.kernels, layer.norms)):
        w = torch.from_numpy(np.transpose(to_numpy(kernel), (2, 3, 0, 1))).double()
        bias = torch.from_numpy(to_numpy(layer.bias)).double() if (i == 0 and layer.use_bias) else None
        y = torch.nn.functional.conv2d(xt, w, bias, padding=(r * (k - 1) + 1) // 2, dilation=r, groups=channels)
        stats = [torch.from_numpy(to_numpy(v)).double() for v in (norm.moving_mean, norm.moving_variance)]
        gamma, beta = (torch.from_numpy(to_numpy(v)).double() for v in (norm.gamma, norm.beta))
        y = torch.nn.functional.batch_norm(y, *stats, gamma, beta, training=False, eps=norm.epsilon)
        out = out + y
    return np.transpose(out.numpy(), (0, 2, 3, 1))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: str(c))
def test_matches_torch_reference(config):
    layer = _randomised(DilatedReparamConv2D(**config))
    x = _sample()
    np.testing.assert_allclose(to_numpy(layer(x, training=False)), _torch_reference(layer, x), atol=2e-5)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: str(c))
def test_fuse_equals_inference_output(config):
    layer = _randomised(DilatedReparamConv2D(**config, name="dw"))
    fused = layer.fuse()
    assert isinstance(fused, keras.layers.DepthwiseConv2D) and isinstance(fused, DepthwiseConv2D)
    assert fused.built and fused.name == "dw" and fused.padding == "same" and fused.use_bias
    assert tuple(fused.kernel.shape) == (config["kernel_size"],) * 2 + (6, 1)
    x = _sample()
    np.testing.assert_allclose(to_numpy(fused(x)), to_numpy(layer(x, training=False)), atol=2e-5)


def test_training_uses_batch_statistics():
    """In training each branch is batch-normalised: the per-channel mean of the sum is the sum of the betas."""
    layer = _randomised(DilatedReparamConv2D(7))
    out = to_numpy(layer(_sample(), training=True))
    betas = sum(to_numpy(norm.beta) for norm in layer.norms)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), betas, atol=1e-4)


def test_dilate_kernel_spreads_taps():
    kernel = np.arange(9.0).reshape(3, 3, 1, 1)
    dilated = dilate_kernel(kernel, 3)
    assert dilated.shape == (7, 7, 1, 1)
    np.testing.assert_array_equal(dilated[::3, ::3], kernel)
    assert np.count_nonzero(dilated) == 8  # the zero tap stays zero, the gaps are zeros


def test_default_branches_are_unireplknets_table():
    for size, branches in UNIREPLKNET_BRANCHES.items():
        assert DilatedReparamConv2D(size).branches == branches
    assert UNIREPLKNET_BRANCHES[13] == ((5, 1), (7, 2), (3, 3), (3, 4), (3, 5))


def test_config_round_trip():
    layer = DilatedReparamConv2D(9, branches=((3, 1), (3, 4)), use_bias=True, epsilon=1e-3, momentum=0.99)
    clone = DilatedReparamConv2D.from_config(layer.get_config())
    assert (clone.kernel_size, clone.branches, clone.use_bias) == (9, ((3, 1), (3, 4)), True)
    assert (clone.norms[0].epsilon, clone.norms[0].momentum) == (1e-3, 0.99)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kernel_size=8), "positive odd"),
        (dict(kernel_size=5), "branches=None"),
        (dict(kernel_size=9, branches=((4, 1),)), r"\(4, 1\)"),
        (dict(kernel_size=9, branches=((3, 5),)), r"dilated size"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DilatedReparamConv2D(**kwargs)


def test_global_response_norm_formula():
    layer = GlobalResponseNorm()
    x = _sample((2, 5, 4, 6))
    layer.build(x.shape)
    rng = np.random.default_rng(2)
    layer.gamma.assign(rng.normal(size=6).astype("float32"))
    layer.beta.assign(rng.normal(size=6).astype("float32"))
    g = np.sqrt((x.astype("float64") ** 2).sum(axis=(1, 2), keepdims=True))
    n = g / (g.mean(axis=-1, keepdims=True) + 1e-6)
    expected = (to_numpy(layer.gamma) * n + 1.0) * x + to_numpy(layer.beta)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, atol=1e-5)


def test_global_response_norm_without_bias_starts_as_identity():
    layer = GlobalResponseNorm(use_bias=False)
    x = _sample((1, 3, 3, 4))
    np.testing.assert_allclose(to_numpy(layer(x)), x, atol=1e-6)
    assert [w.name for w in layer.weights] == ["gamma"]
    with pytest.raises(ValueError, match="height, width, channels"):
        GlobalResponseNorm()(np.zeros((2, 4), "float32"))
