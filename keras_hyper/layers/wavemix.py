"""The WaveMix token mixer (Jeevan, Viswanathan, Anandu, Sethi, "WaveMix: A Resource-efficient Neural Network for
Image Analysis", arXiv:2205.14375).

A block reduces the channels to a quarter, takes a multi-level 2-D Haar DWT, and mixes the sub-bands from the
deepest level up: each level's feed-forward (1x1 conv, GELU, dropout, 1x1 conv, 4x4 stride-2 transposed conv,
BatchNorm) doubles the resolution, and its output joins the next shallower level's sub-bands. The first level's
feed-forward restores the input's channels and resolution.
"""

import keras

from keras_hyper.layers._args import check_positive, check_rate
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.torch_defaults import batch_norm
from keras_hyper.ops import wavelets

LEVELS = (1, 2, 3, 4)


@keras.saving.register_keras_serializable(package="keras_hyper")
class WaveMixBlock(keras.layers.Layer):
    """One WaveMix block (the official `Level{1,2,3,4}Waveblock`), without the residual connection.

    Input `(B, H, W, D)` with D divisible by 4 and H, W divisible by `2 ** level`; output `(B, H, W, D)`.

    Level j (1 = finest) of the Haar DWT of the reduced input gives `cat(LL_j, details_j)`, D channels at
    `H / 2**j`. The deepest level's feed-forward maps D to D/2 channels at twice its resolution; every shallower
    level j feeds `cat(level_j, that output)` (D + D/2 channels) to its own; the first level's outputs D.
    With one level there is a single feed-forward from D to D channels.

    Sub-layers carry the official module names (`reduction`, `feedforward{j}-{0,3,4,5}`, or `feedforward-*`
    at level 1) so that a converter maps them directly.

    Args:
        level: number of DWT levels, 1 to 4 (the official blocks).
        mult: expansion of each feed-forward's first 1x1 convolution (D * mult channels).
        ff_channel: channels of the second 1x1 convolution, the transposed convolution's input.
        dropout: dropout rate after the GELU.
    """

    def __init__(self, level=3, mult=2, ff_channel=192, dropout=0.5, **kwargs):
        super().__init__(**kwargs)
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}.")
        check_positive(mult=mult, ff_channel=ff_channel)
        check_rate(dropout=dropout)
        self.level = level
        self.mult = mult
        self.ff_channel = ff_channel
        self.dropout = dropout

    def _ff_names(self):
        return ["feedforward"] if self.level == 1 else [f"feedforward{j}" for j in range(1, self.level + 1)]

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None or dim % 4:
            raise ValueError(f"WaveMixBlock needs a channel count divisible by 4, got input shape {input_shape}.")
        policy = self.dtype_policy
        self.reduction = Conv2D(dim // 4, 1, name="reduction", dtype=policy)
        self.reduction.build(input_shape)
        self.feedforwards = []
        batch = input_shape[0]
        for j, name in enumerate(self._ff_names(), start=1):
            deepest = j == self.level
            in_dim = dim if deepest else dim + dim // 2
            out_dim = dim if j == 1 else dim // 2
            layers = [
                Conv2D(dim * self.mult, 1, name=f"{name}-0", dtype=policy),
                keras.layers.Activation("gelu", dtype=policy),  # exact (erf) GELU, as nn.GELU()
                keras.layers.Dropout(self.dropout, dtype=policy),
                Conv2D(self.ff_channel, 1, name=f"{name}-3", dtype=policy),
                keras.layers.Conv2DTranspose(out_dim, 4, strides=2, padding="same", name=f"{name}-4", dtype=policy),
                batch_norm(f"{name}-5", dtype=policy),
            ]
            shape = (batch, None, None, in_dim)
            for layer in layers:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
            self.feedforwards.append(layers)
        super().build(input_shape)

    def call(self, inputs, training=None):
        x = self.reduction(inputs)
        levels = []
        for _ in range(self.level):
            x, (details,) = wavelets.haar_dwt2d(x, 1)
            levels.append(keras.ops.concatenate([x, details], axis=-1))
        y = None
        for j in range(self.level, 0, -1):
            y = levels[j - 1] if y is None else keras.ops.concatenate([levels[j - 1], y], axis=-1)
            for layer in self.feedforwards[j - 1]:
                y = layer(y, training=training)
        return y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(level=self.level, mult=self.mult, ff_channel=self.ff_channel, dropout=self.dropout)
        return config
