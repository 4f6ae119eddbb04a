"""Unit tests of the shared layers: behaviour, validation and serialization."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.layers import DropPath, InceptionDepthwiseConv2D, LayerScale


def _x(shape=(2, 9, 11, 16)):
    return np.random.default_rng(0).normal(size=shape).astype("float32")


def test_inception_mixer_branches_are_depthwise_convolutions():
    layer = InceptionDepthwiseConv2D(square_kernel_size=3, band_kernel_size=5, branch_ratio=0.25)
    x = _x()
    y = to_numpy(layer(x))
    assert y.shape == x.shape
    np.testing.assert_array_equal(y[..., :4], x[..., :4])  # identity branch comes first
    for i, (kernel, bias) in enumerate(zip(layer.kernels, layer.biases)):
        ref = keras.layers.DepthwiseConv2D(tuple(kernel.shape[:2]), padding="same")
        ref.build((None, None, None, 4))
        ref.set_weights([to_numpy(kernel), to_numpy(bias) + 0.5])
        bias.assign(to_numpy(bias) + 0.5)
        channels = slice(4 + 4 * i, 8 + 4 * i)
        np.testing.assert_allclose(to_numpy(layer(x))[..., channels], to_numpy(ref(x[..., channels])), atol=1e-5)


def test_inception_mixer_kernel_orientation():
    """The 1 x band kernel mixes along the width only, the band x 1 kernel along the height only."""
    layer = InceptionDepthwiseConv2D(band_kernel_size=3, branch_ratio=1 / 3)
    layer.build((None, 7, 7, 3))
    for kernel in layer.kernels:
        kernel.assign(np.ones(kernel.shape, "float32"))
    x = np.zeros((1, 7, 7, 3), "float32")
    x[0, 3, 3, :] = 1.0
    y = to_numpy(layer(x))[0]
    assert np.count_nonzero(y[..., 0]) == 9  # square 3x3
    assert set(zip(*np.nonzero(y[..., 1]))) == {(3, 2), (3, 3), (3, 4)}  # along W
    assert set(zip(*np.nonzero(y[..., 2]))) == {(2, 3), (3, 3), (4, 3)}  # along H


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(square_kernel_size=4), "positive odd"),
        (dict(band_kernel_size=0), "positive odd"),
        (dict(branch_ratio=0.5), "branch_ratio"),
    ],
)
def test_inception_mixer_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InceptionDepthwiseConv2D(**kwargs)


def test_inception_mixer_needs_channels_for_its_branches():
    with pytest.raises(ValueError, match="channels=4"):
        InceptionDepthwiseConv2D(branch_ratio=0.125)(_x((1, 8, 8, 4)))


@pytest.mark.parametrize(
    "layer", [InceptionDepthwiseConv2D(band_kernel_size=7), LayerScale(0.5), DropPath(0.2, seed=3)], ids=type
)
def test_config_round_trip(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_layer_scale_scales_channels():
    layer = LayerScale(0.5)
    x = _x((2, 3, 4))
    np.testing.assert_allclose(to_numpy(layer(x)), 0.5 * x)
    assert layer.trainable_weights[0].shape == (4,)


def test_drop_path_is_identity_at_inference_and_drops_whole_samples_in_training():
    layer = DropPath(0.5, seed=1)
    x = np.ones((64, 4, 4, 2), "float32")
    np.testing.assert_array_equal(to_numpy(layer(x)), x)
    y = to_numpy(layer(x, training=True))
    per_sample = y.reshape(64, -1)
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))  # all or nothing per sample
    assert 10 < np.count_nonzero(per_sample[:, 0]) < 54


def test_drop_path_rejects_bad_rate():
    with pytest.raises(ValueError, match="rate"):
        DropPath(1.0)
