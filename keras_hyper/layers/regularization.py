"""Structured dropout."""

import keras
from keras import ops

from keras_hyper.layers._args import check_rate


@keras.saving.register_keras_serializable(package="keras_hyper")
class DropBlock2D(keras.layers.Layer):
    """DropBlock (Ghiasi, Lin, Le, "DropBlock: A regularization method for convolutional networks",
    NeurIPS 2018, arXiv:1810.12890): dropout of contiguous `block_size x block_size` squares of a feature map,
    which a convolution cannot recover from its neighbours the way it recovers independently dropped units.

    In training, block centres are drawn with probability `gamma = rate / block_size**2` at every position
    (one mask shared by all channels of a sample, as in the balanced EuroSAT network, paper 49), each centre
    zeroes the square around it (clipped at the border), and the result is rescaled by
    `1 / mean(mask)` over the batch so that the expected activation is unchanged. Away from the border the
    fraction dropped is `1 - (1 - gamma)**(block_size**2) ~= rate`. (The paper's gamma adds a factor
    `(size / (size - block_size + 1))**2` for centres restricted to the interior; this follows the code it
    ports.) At inference the layer is the identity.

    Args:
        rate: the target fraction of units to drop, in [0, 1).
        block_size: side of the dropped squares, a positive odd integer (a centred square).
        seed: seed of the random masks.

    Shape: `(B, H, W, C)` -> `(B, H, W, C)`.
    """

    def __init__(self, rate, block_size=7, seed=None, **kwargs):
        super().__init__(**kwargs)
        check_rate(**{"DropBlock2D rate": rate})
        if int(block_size) != block_size or block_size < 1 or block_size % 2 == 0:
            raise ValueError(f"DropBlock2D block_size must be a positive odd integer, got {block_size!r}.")
        self.rate = float(rate)
        self.block_size = int(block_size)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"DropBlock2D expects (batch, height, width, channels), got {tuple(input_shape)}.")

    def call(self, inputs, training=False):
        if not training or self.rate == 0.0:
            return inputs
        shape = ops.shape(inputs)
        noise = keras.random.uniform((shape[0], shape[1], shape[2], 1), seed=self.seed_generator)
        centres = ops.cast(noise < self.rate / self.block_size**2, "float32")
        mask = 1.0 - ops.max_pool(centres, pool_size=self.block_size, strides=1, padding="same")
        mask = mask / (ops.mean(mask) + 1e-7)
        return inputs * ops.cast(mask, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "block_size": self.block_size, "seed": self.seed}
