"""A stack of same-width residual convolution layers in its deep (sequential) or shallow (parallel) form, after
Bermeitinger, Hrycej, Handschuh, "Make Deep Networks Shallow Again" (DeLTA 2023, arXiv:2309.08414; paper 12 in
PAPERS.md).

The deep form applies `x_i = x_{i-1} + f_i(x_{i-1})`. Expanding it, `x_L = x + sum_i f_i(x) + (terms in which
some f_j acts on the output of earlier f_i)`, a Taylor-like series; truncated after the first-order terms it is the
shallow form `x + sum_i f_i(x)`: every layer reads the same input, side by side, one broad layer instead of L
stacked ones. Both forms hold exactly the same weights, so one converts into the other by copying them; the two
agree to first order in the branches (the difference shrinks with the square of the branches' size) and
exactly for a single layer.
"""

import keras

from keras_hyper.layers._args import check_positive
from keras_hyper.layers.conv import Conv2D

FORMS = ("deep", "shallow")


@keras.saving.register_keras_serializable(package="keras_hyper")
class ResidualStack(keras.layers.Layer):
    """`depth` residual layers `f_i(x) = activation(conv_i(x))` (a `kernel_size` 'same' convolution keeping the
    C channels), composed (`form="deep"`: `x + f_1(x)`, then `+ f_2(...)`, ...) or summed (`form="shallow"`:
    `x + sum_i f_i(x)`).

    Args:
        depth: number of residual layers.
        kernel_size: of each convolution.
        activation: of each branch (any Keras activation).
        form: "deep" or "shallow".

    Shape: `(B, H, W, C)` -> same.
    """

    def __init__(self, depth, kernel_size=3, activation="relu", form="deep", **kwargs):
        super().__init__(**kwargs)
        check_positive(depth=depth, kernel_size=kernel_size)
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}.")
        self.depth = depth
        self.kernel_size = kernel_size
        self.activation = keras.activations.get(activation)
        self.form = form

    def build(self, input_shape):
        channels = input_shape[-1]
        self.convs = [
            Conv2D(channels, self.kernel_size, padding="same", dtype=self.dtype_policy, name=f"conv_{i}")
            for i in range(self.depth)
        ]
        for conv in self.convs:
            conv.build(input_shape)

    def call(self, inputs):
        if self.form == "shallow":
            return inputs + sum(self.activation(conv(inputs)) for conv in self.convs)
        x = inputs
        for conv in self.convs:
            x = x + self.activation(conv(x))
        return x

    def with_form(self, form):
        """A built copy of this (built) layer in `form`, with the same name and weights."""
        other = self.__class__.from_config({**self.get_config(), "form": form})
        other.build((None, None, None, self.convs[0].filters))
        other.set_weights(self.get_weights())
        return other

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            depth=self.depth,
            kernel_size=self.kernel_size,
            activation=keras.activations.serialize(self.activation),
            form=self.form,
        )
        return config
