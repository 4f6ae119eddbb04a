"""The generic inference fusions: `fuse()` replacement and BatchNormalization folding, on hand-made models."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.models import _fusion, reparameterize


def _randomise_batch_norms(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            for weight in layer.weights:
                low = 0.5 if weight is layer.moving_variance else -0.5
                weight.assign(rng.uniform(low, 1.5, weight.shape).astype("float32"))


@pytest.mark.parametrize("use_bias", [False, True])
def test_batch_norm_folds_into_the_depthwise_conv_before_it(use_bias):
    inputs = keras.Input((9, 9, 6))
    x = keras.layers.DepthwiseConv2D(5, padding="same", depth_multiplier=2, use_bias=use_bias, name="dw")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, x)
    _randomise_batch_norms(model)
    fused = reparameterize(model)
    x = np.random.default_rng(1).normal(size=(2, 9, 9, 6)).astype("float32")
    np.testing.assert_allclose(to_numpy(fused(x)), to_numpy(model(x)), atol=1e-5)
    assert [type(layer).__name__ for layer in fused.layers] == ["InputLayer", "DepthwiseConv2D"]


class _TwoScales(keras.layers.Layer):
    """Test layer: `a * x + b * x` with a `fuse()` that returns one Dense-free equivalent, a Rescaling."""

    def build(self, input_shape):
        self.a = self.add_weight(shape=(), initializer=keras.initializers.Constant(2.0), name="a")
        self.b = self.add_weight(shape=(), initializer=keras.initializers.Constant(0.5), name="b")

    def call(self, x):
        return self.a * x + self.b * x

    def fuse(self):
        scale = float(to_numpy(self.a) + to_numpy(self.b))
        fused = keras.layers.Rescaling(scale, name=self.name)
        fused.build(self.input.shape)
        return fused


def test_fuse_layers_replaces_layers_that_offer_fuse_and_keeps_the_rest():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="fc")(inputs)
    x = _TwoScales(name="scales")(x)
    model = keras.Model(inputs, x)
    fused = _fusion.fuse_layers(model)
    assert isinstance(fused.get_layer("scales"), keras.layers.Rescaling)
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(to_numpy(fused(x)), to_numpy(model(x)), rtol=1e-6)


def test_fuse_must_return_a_built_layer():
    class Unbuilt(_TwoScales):
        def fuse(self):
            return keras.layers.Rescaling(1.0, name=self.name)

    inputs = keras.Input((4,))
    model = keras.Model(inputs, Unbuilt(name="bad")(inputs))
    with pytest.raises(ValueError, match="'bad' returned an unbuilt layer"):
        _fusion.fuse_layers(model)
