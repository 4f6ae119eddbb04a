"""Attention gates and DropBlock: numpy references, statistics, serialization."""

import numpy as np
import pytest
from scipy import ndimage
from testutil import to_numpy

from keras_hyper.layers import BalancedAttention, CoordinateAttention, DropBlock2D, SqueezeExcite


def _x(shape=(2, 5, 7, 16), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


@pytest.mark.parametrize("use_bias", [True, False])
def test_squeeze_excite_matches_numpy(use_bias):
    layer = SqueezeExcite(4, use_bias=use_bias)
    x = _x()
    layer.build(x.shape)
    assert tuple(layer.reduce.kernel.shape) == (16, 4) and tuple(layer.expand.kernel.shape) == (4, 16)
    assert (layer.reduce.bias is not None) == use_bias and len(layer.weights) == (4 if use_bias else 2)
    rng = np.random.default_rng(1)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.weights])
    w = [to_numpy(v) for v in layer.weights]
    s = x.mean(axis=(1, 2))
    h = s @ w[0] + (w[1] if use_bias else 0)
    h = np.maximum(h, 0)
    g = _sigmoid(h @ w[2 if use_bias else 1] + (w[3] if use_bias else 0))
    np.testing.assert_allclose(to_numpy(layer(x)), x * g[:, None, None, :], atol=1e-5)


def test_squeeze_excite_activation_and_round_trip():
    layer = SqueezeExcite(3, activation="gelu", use_bias=False, name="se")
    x = _x((1, 4, 4, 8))
    y = to_numpy(layer(x))
    clone = SqueezeExcite.from_config(layer.get_config())
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(clone(x)), y, atol=1e-6)
    assert clone.get_config()["hidden_units"] == 3


def test_squeeze_excite_rejects_bad_input():
    with pytest.raises(ValueError, match="hidden_units must be >= 1, got 0"):
        SqueezeExcite(0)
    with pytest.raises(ValueError, match="expects \\(batch, height, width, channels\\)"):
        SqueezeExcite(2)(np.zeros((2, 8), "float32"))


def _randomise(layer, seed=2):
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        if "variance" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        else:
            w.assign(rng.normal(size=w.shape).astype("float32"))


def _coord_numpy(x, conv1, bn, conv_h, conv_w, training=False, eps=1e-5):
    """Hou et al.'s coordinate attention written out on channels-last arrays."""
    h = x.shape[1]
    y = np.concatenate([x.mean(axis=2), x.mean(axis=1)], axis=1) @ conv1
    gamma, beta, mean, var = bn
    if training:
        mean, var = y.mean(axis=(0, 1)), y.var(axis=(0, 1))
    y = np.maximum((y - mean) / np.sqrt(var + eps) * gamma + beta, 0)
    a_h, a_w = _sigmoid(y[:, :h] @ conv_h), _sigmoid(y[:, h:] @ conv_w)
    return x * a_h[:, :, None, :] * a_w[:, None, :, :]


@pytest.mark.parametrize("training", [False, True])
def test_coordinate_attention_matches_numpy_on_non_square_maps(training):
    layer = CoordinateAttention(reduction=4)
    x = _x((2, 5, 7, 16)) + 0.5 * _x((2, 1, 7, 16), seed=3)  # width-dependent, so swapped roles show
    layer.build(x.shape)
    assert tuple(layer.conv1.kernel.shape) == (16, 4) and tuple(layer.conv_h.kernel.shape) == (4, 16)
    _randomise(layer)
    bn = [to_numpy(v) for v in (layer.bn1.gamma, layer.bn1.beta, layer.bn1.moving_mean, layer.bn1.moving_variance)]
    kernels = [to_numpy(d.kernel) for d in (layer.conv1, layer.conv_h, layer.conv_w)]
    expected = _coord_numpy(x, kernels[0], bn, *kernels[1:], training=training)
    np.testing.assert_allclose(to_numpy(layer(x, training=training)), expected, atol=1e-5)


def test_coordinate_attention_fuse_folds_its_batch_norm():
    layer = CoordinateAttention(reduction=2, name="ca")
    x = _x((2, 6, 4, 8))
    layer.build(x.shape)
    _randomise(layer)
    fused = layer.fuse()
    assert fused.name == "ca" and fused.built and fused.bn1 is None and fused.conv1.use_bias
    assert len(fused.weights) == len(layer.weights) - 3  # -4 BN statistics/affine, +1 bias
    np.testing.assert_allclose(to_numpy(fused(x)), to_numpy(layer(x)), atol=1e-5)
    with pytest.raises(ValueError, match="already fused"):
        fused.fuse()


def test_balanced_attention_is_a_learnt_mix_of_ca_and_se():
    layer = BalancedAttention(coord_reduction=4, se_reduction=8, name="attention")
    x = _x((2, 4, 6, 16))
    layer.build(x.shape)
    assert tuple(layer.alpha.shape) == () and float(to_numpy(layer.alpha)) == 0.5
    assert layer.se_attention.hidden_units == 2 and not layer.se_attention.use_bias
    _randomise(layer)
    mix = _sigmoid(float(to_numpy(layer.alpha)))
    ca = to_numpy(layer.coord_attention(x))
    se = to_numpy(layer.se_attention(x))
    np.testing.assert_allclose(to_numpy(layer(x)), mix * ca + (1 - mix) * se, atol=1e-5)
    fused = layer.fuse()
    assert fused.name == "attention" and not fused.coord_attention.normalize
    np.testing.assert_allclose(to_numpy(fused(x)), to_numpy(layer(x)), atol=1e-5)
    clone = BalancedAttention.from_config(layer.get_config())
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(clone(x)), to_numpy(layer(x)), atol=1e-6)


def test_attention_rejects_too_few_channels():
    with pytest.raises(ValueError, match="at least reduction=8 channels, got channels=4"):
        CoordinateAttention()(_x((1, 3, 3, 4)))
    with pytest.raises(ValueError, match="at least se_reduction=16 channels, got channels=8"):
        BalancedAttention(coord_reduction=2)(_x((1, 3, 3, 8)))
    with pytest.raises(ValueError, match="reduction must be >= 1, got 0"):
        CoordinateAttention(reduction=0)


def test_drop_block_is_the_identity_at_inference():
    x = _x()
    np.testing.assert_array_equal(to_numpy(DropBlock2D(0.3, block_size=3)(x)), x)
    np.testing.assert_array_equal(to_numpy(DropBlock2D(0.3, block_size=3)(x, training=False)), x)
    np.testing.assert_array_equal(to_numpy(DropBlock2D(0.0, block_size=3)(x, training=True)), x)


def test_drop_block_statistics_in_training():
    rate, size = 0.2, 5
    x = np.ones((32, 64, 56, 2), "float32")  # ~1000 block centres: the drop fraction is within ~0.006
    y = to_numpy(DropBlock2D(rate, block_size=size, seed=1)(x, training=True))
    dropped = y == 0
    assert np.array_equal(dropped, np.repeat(dropped[..., :1], 2, axis=-1))  # one mask for all channels
    # rescaled so that the batch mean is kept exactly
    np.testing.assert_allclose(y.mean(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(y[~dropped], 1.0 / (1.0 - dropped.mean()), rtol=1e-5)
    # away from the border a unit survives iff no centre falls in the size x size square around it
    gamma = rate / size**2
    interior = dropped[:, size:-size, size:-size, 0]
    assert abs(interior.mean() - (1 - (1 - gamma) ** (size * size))) < 0.025, interior.mean()
    # the dropped set is a union of whole squares (clipped at the border: pad with "dropped")
    r = size // 2
    for mask in dropped[..., 0]:
        padded = np.pad(mask, r, constant_values=True)
        opened = ndimage.binary_opening(padded, structure=np.ones((size, size)), border_value=1)
        np.testing.assert_array_equal(opened[r:-r, r:-r], mask)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(rate=1.0), "rate must be in \\[0, 1\\), got 1.0"),
        (dict(rate=0.1, block_size=4), "positive odd integer, got 4"),
        (dict(rate=0.1, block_size=0), "positive odd integer, got 0"),
    ],
)
def test_drop_block_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DropBlock2D(**kwargs)


def test_drop_block_round_trip():
    layer = DropBlock2D.from_config(DropBlock2D(0.15, block_size=3, seed=7).get_config())
    assert (layer.rate, layer.block_size, layer.seed) == (0.15, 3, 7)
