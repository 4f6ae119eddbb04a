"""Layers that act on a residual branch: per-channel layer scale and stochastic depth."""

import keras
from keras import ops

from keras_hyper.layers._args import check_rate


@keras.saving.register_keras_serializable(package="keras_hyper")
class LayerScale(keras.layers.Layer):
    """Learnable per-channel scale of a residual branch (CaiT, Touvron et al. 2021, arXiv:2103.17239).

    Args:
        init_value: initial value of every channel's scale (small, so that a deep stack starts close to the
            identity).

    Shape: `(..., C)` -> `(..., C)`.
    """

    def __init__(self, init_value=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.init_value = float(init_value)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma",
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value),
        )

    def call(self, inputs):
        return inputs * ops.cast(self.gamma, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "init_value": self.init_value}


@keras.saving.register_keras_serializable(package="keras_hyper")
class DropPath(keras.layers.Layer):
    """Stochastic depth: drops a whole residual branch per sample while training (Huang et al. 2016,
    arXiv:1603.09382), scaling the kept samples by `1 / (1 - rate)` so that inference needs no rescaling.

    Args:
        rate: probability of dropping the branch of a sample, in [0, 1).
        seed: seed of the layer's `keras.random.SeedGenerator`.

    Shape: `(B, ...)` -> `(B, ...)`.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        check_rate(**{"DropPath rate": rate})
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        noise = keras.random.uniform(shape, dtype=inputs.dtype, seed=self.seed_generator)
        mask = ops.floor(keep + noise)
        return inputs * mask / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
