"""SpaRTAN's operators (keras_hyper.layers.multiorder) against NumPy transcriptions of the official computation
(argmax + gather + complex product), which share nothing with the layers' one-hot formulation."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.layers.multiorder import FeatureDecompose, WaveChannelAggregation


def _x(shape=(2, 5, 7, 8), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _erf_gelu(x):
    from math import erf

    return 0.5 * x * (1.0 + np.vectorize(erf)(x / np.sqrt(2.0)))


def _wave_reference(layer, x):
    """The official CMixer front end, written with argmax, take_along_axis and NumPy complex numbers."""
    kt, bt = (to_numpy(w).astype("float64") for w in layer.theta.weights)
    kp, bp = (to_numpy(w).astype("float64") for w in layer.proj.weights)
    x = x.astype("float64")
    theta = _erf_gelu(x @ kt + bt)
    value = x @ kp + bp
    index = np.argmax(x, axis=-1)[..., None]
    feat = value * theta + np.take_along_axis(value, index, -1) * np.take_along_axis(theta, index, -1)
    w = to_numpy(layer.complex).astype("float64")
    z = (feat[..., 0::2] + 1j * feat[..., 1::2]) * (w[:, 0] + 1j * w[:, 1])
    return np.stack([z.real, z.imag], axis=-1).reshape(feat.shape)


def test_feature_decompose_matches_its_formula():
    layer = FeatureDecompose(0.5)
    x = _x()
    layer.build(x.shape)
    gamma = np.linspace(-1.0, 2.0, 8).astype("float32")
    layer.gamma.assign(gamma)
    expected = x + gamma * (x - x.mean(axis=(1, 2), keepdims=True))
    np.testing.assert_allclose(to_numpy(layer(x)), expected, atol=1e-5)


@pytest.mark.parametrize("ratio", [1, 3])
def test_wave_aggregation_matches_the_official_computation(ratio):
    layer = WaveChannelAggregation(ratio)
    x = _x()
    out = to_numpy(layer(x))
    assert out.shape == (2, 5, 7, 8 * ratio)
    np.testing.assert_allclose(out, _wave_reference(layer, x), atol=1e-4)


def test_wave_aggregation_takes_the_first_maximum_on_ties():
    layer = WaveChannelAggregation(2)
    x = _x((1, 3, 3, 8))
    x[..., 5] = x[..., 2] = np.abs(x).max() + 1.0  # channels 2 and 5 tie for the maximum
    x[0, 0, 0, :] = 0.0  # all channels tie
    np.testing.assert_allclose(to_numpy(layer(x)), _wave_reference(layer, x), atol=1e-4)


def test_wave_aggregation_dominant_channel_changes_every_output():
    """Raising one channel to the maximum moves the whole token: the dominant channel reaches all others."""
    layer = WaveChannelAggregation(2)
    x = _x((1, 1, 1, 8))
    moved = x.copy()
    moved[..., np.argmin(x[0, 0, 0])] = x.max() + 1e-3
    changed = np.abs(to_numpy(layer(moved)) - to_numpy(layer(x)))[0, 0, 0] > 1e-6
    assert changed.all()


def test_wave_aggregation_is_float32_inside_under_mixed_precision():
    layer = WaveChannelAggregation(2, dtype="mixed_float16")
    x = _x()
    out = to_numpy(layer(x))
    assert out.dtype == np.float16
    np.testing.assert_allclose(out, _wave_reference(layer, x), atol=5e-2, rtol=1e-2)


def test_layers_round_trip_through_config():
    x = _x()
    for layer in (FeatureDecompose(0.3), WaveChannelAggregation(3)):
        y = to_numpy(layer(x))
        clone = layer.__class__.from_config(layer.get_config())
        clone.build(x.shape)
        clone.set_weights(layer.get_weights())
        np.testing.assert_array_equal(to_numpy(clone(x)), y)
        assert tuple(layer.compute_output_shape(x.shape)) == y.shape


def test_layers_inside_a_saved_model(tmp_path):
    inputs = keras.Input((6, 6, 8))
    model = keras.Model(inputs, WaveChannelAggregation(2)(FeatureDecompose()(inputs)))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = _x((1, 6, 6, 8))
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(model(x)))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="expand_ratio must be a positive integer, got 0"):
        WaveChannelAggregation(0)
    with pytest.raises(ValueError, match="expand_ratio must be a positive integer, got 1.5"):
        WaveChannelAggregation(1.5)
    with pytest.raises(ValueError, match=r"must be even, got 3 \* 1 = 3"):
        WaveChannelAggregation(1).build((None, 4, 4, 3))
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        WaveChannelAggregation(2).build((None, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        FeatureDecompose().build((None, 8))
