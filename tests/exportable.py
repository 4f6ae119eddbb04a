"""A small model made of the ops InceptionNeXt needs, for the export tests (LiteRT and ONNX).

It lives in an importable module, not in a test file, because exports under JAX and torch load the model in a
TensorFlow-backend worker, which must import the module that defines its custom layer.
"""

import keras
import numpy as np
from keras import layers, ops

SHAPE = (32, 32, 3)


@keras.saving.register_keras_serializable(package="keras_hyper_tests")
class Scale(layers.Layer):
    """Per-channel learnable scale; being custom, the LiteRT worker must import this module to load it."""

    def build(self, input_shape: tuple) -> None:
        self.gamma = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.gamma


def _block(x, dim: int, ratio: int):
    """InceptionNeXt-style block: split depthwise mixer, BN, exact-GELU MLP, scale."""
    g = dim // 4
    identity, square, wide, tall = ops.split(x, [dim - 3 * g, dim - 2 * g, dim - g], axis=-1)
    square = layers.DepthwiseConv2D(3, padding="same")(square)
    wide = layers.DepthwiseConv2D((1, 7), padding="same")(wide)
    tall = layers.DepthwiseConv2D((7, 1), padding="same")(tall)
    y = layers.Concatenate()([identity, square, wide, tall])
    y = layers.BatchNormalization()(y)
    y = layers.Conv2D(dim * ratio, 1)(y)
    y = layers.Activation("gelu")(y)  # Keras' "gelu" is the exact (erf) form.
    y = layers.Conv2D(dim, 1)(y)
    return layers.Add()([x, Scale()(y)])


def build_model(input_shape: tuple = SHAPE) -> keras.Model:
    """Build a ~10k-parameter classifier with random weights and BN statistics."""
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(16, 4, strides=4)(inputs)
    x = layers.BatchNormalization()(x)
    x = _block(x, 16, 4)
    x = layers.LayerNormalization()(x)
    x = layers.Conv2D(32, 2, strides=2)(x)
    x = _block(x, 32, 2)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.LayerNormalization()(x)
    model = keras.Model(inputs, layers.Dense(10, activation="softmax", name="predictions")(x))
    rng = np.random.default_rng(0)
    for w in model.weights:
        # Non-trivial moving statistics make BatchNorm folding matter.
        if w.path.endswith("moving_variance"):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        else:
            w.assign(rng.normal(0.0, 0.3, w.shape).astype("float32"))
    return model
