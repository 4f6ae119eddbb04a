"""A priori compressed convolutions: kernels in CP (canonical polyadic) format, products of one-way filters.

Boukraichi, Akkari, Casenave, Ryckelynck, "A priori compression of convolutional neural networks for wave
simulators", 2023, arXiv:2304.04964 (paper 57 in PAPERS.md): each filter of a convolution, a `(k_1, ..., k_d, C)`
tensor, is a sum of R rank-one terms, outer products of one vector per spatial axis and one over the input
channels, fixed before training (no decomposition of a trained kernel). Computed as what it is, a 1x1
convolution to `filters * R` channels, one depthwise convolution per spatial axis, and a sum over the R terms,
the layer costs `C * filters * R + filters * R * sum(k_i)` multiply-adds per output position instead of
`C * filters * prod(k_i)`.
"""

import keras

from keras_hyper.layers._args import check_positive, positive_ints


class _CPConv(keras.layers.Layer):
    rank = None

    def __init__(
        self,
        filters,
        kernel_size,
        cp_rank=1,
        strides=1,
        padding="valid",
        dilation_rate=1,
        use_bias=True,
        channel_initializer="glorot_uniform",
        axis_initializer=None,
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive(filters=filters, cp_rank=cp_rank)
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}.")
        self.filters = filters
        self.cp_rank = cp_rank
        self.kernel_size = positive_ints(kernel_size, self.rank, "kernel_size")
        self.strides = positive_ints(strides, self.rank, "strides")
        self.dilation_rate = positive_ints(dilation_rate, self.rank, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"strides > 1 cannot be combined with dilation_rate > 1, got strides={self.strides} and "
                f"dilation_rate={self.dilation_rate}."
            )
        self.padding = padding
        self.use_bias = bool(use_bias)
        self.channel_initializer = keras.initializers.get(channel_initializer)
        # unit expected norm per one-way filter: var 1/k per tap
        self.axis_initializer = keras.initializers.get(
            axis_initializer or keras.initializers.VarianceScaling(1.0, mode="fan_in", distribution="uniform")
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        terms = self.filters * self.cp_rank
        self.channel_factors = self.add_weight(
            shape=(input_shape[-1], terms), initializer=self.channel_initializer, name="channel_factors"
        )
        self.axis_factors = [
            self.add_weight(shape=(k, terms), initializer=self.axis_initializer, name=f"axis_factors_{axis}")
            for axis, k in enumerate(self.kernel_size)
        ]
        self.bias = (
            self.add_weight(shape=(self.filters,), initializer=self.bias_initializer, name="bias")
            if self.use_bias
            else None
        )

    def dense_kernel(self):
        """The full `(*kernel_size, C, filters)` kernel the factors represent (for checks and export to a plain
        convolution; `call` never builds it)."""
        terms = self.channel_factors.shape[-1]
        kernel = self.channel_factors
        for factor in reversed(self.axis_factors):
            kernel = factor[:, None, :] * keras.ops.reshape(kernel, (1, -1, terms))
        kernel = keras.ops.reshape(kernel, (*self.kernel_size, -1, self.filters, self.cp_rank))
        return keras.ops.sum(kernel, axis=-1)

    def _axis_conv(self, x, axis, factor):
        """The depthwise one-way convolution of `x` `(B, *spatial, T)` along spatial `axis`: that axis moved next to
        the channels and every other position folded into the batch, `(B * rest, L, T)`, for a 1-D depthwise
        convolution (Keras has no 3-D depthwise op). Not a `(k, 1)` kernel with strides `(s, 1)` on a 2-D map:
        TensorFlow's depthwise kernel without oneDNN (its default on AMD CPUs) refuses unequal strides, and a 1-D
        convolution's strides are equal on its two internal axes."""
        last = x.ndim - 2
        x = keras.ops.moveaxis(x, axis + 1, last)
        shape = keras.ops.shape(x)
        terms = factor.shape[-1]
        grid = keras.ops.reshape(x, (-1, shape[last], terms))
        grid = keras.ops.depthwise_conv(
            grid,
            keras.ops.reshape(factor, (factor.shape[0], terms, 1)),
            strides=self.strides[axis],
            padding=self.padding,
            dilation_rate=self.dilation_rate[axis],
        )
        x = keras.ops.reshape(grid, (*shape[:last], keras.ops.shape(grid)[1], terms))
        return keras.ops.moveaxis(x, last, axis + 1)

    def call(self, inputs):
        x = keras.ops.matmul(inputs, self.channel_factors)
        for axis, factor in enumerate(self.axis_factors):
            x = self._axis_conv(x, axis, factor)
        x = keras.ops.reshape(x, (*keras.ops.shape(x)[:-1], self.filters, self.cp_rank))
        x = keras.ops.sum(x, axis=-1)
        if self.bias is not None:
            x = x + self.bias
        return x

    def compute_output_shape(self, input_shape):
        sizes = []
        for axis, size in enumerate(input_shape[1:-1]):
            if size is None:
                sizes.append(None)
            elif self.padding == "same":
                sizes.append(-(-size // self.strides[axis]))
            else:
                span = self.dilation_rate[axis] * (self.kernel_size[axis] - 1) + 1
                sizes.append((size - span) // self.strides[axis] + 1)
        return (input_shape[0], *sizes, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            cp_rank=self.cp_rank,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            use_bias=self.use_bias,
            channel_initializer=keras.initializers.serialize(self.channel_initializer),
            axis_initializer=keras.initializers.serialize(self.axis_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config


_DOC = """A {rank}-D convolution whose kernel is in CP format, a priori (Boukraichi et al., arXiv:2304.04964):
    filter f is `sum_r {outer} c_fr`, with one one-way filter per spatial axis and one over the C input channels.

    Variables: `channel_factors` `(C, filters * cp_rank)`, `axis_factors_i` `(k_i, filters * cp_rank)` for each
    spatial axis i (column `f * cp_rank + r` is term r of filter f), `bias` `(filters,)`:

        params = filters * cp_rank * (C + {ksum}) + filters

    against `filters * {kprod} * C + filters` for the dense kernel (`dense_kernel()` builds it). It is computed as
    a 1x1 convolution to `filters * cp_rank` channels, one depthwise convolution along each spatial axis (these
    carry the stride, dilation and padding of that axis; "same" padding is per axis, as in a dense convolution),
    and the sum of the `cp_rank` terms of each filter.

    Args:
        filters: output channels.
        kernel_size, strides, dilation_rate: an integer or {rank} integers (strides and dilation not both > 1).
        cp_rank: R, the rank-one terms per filter.
        padding: "valid" or "same".
        use_bias: add a bias.
        channel_initializer, axis_initializer, bias_initializer: initialisers of the factors and the bias (the
            axis factors default to variance 1/k per tap).

    Shape: `(B, {spatial}, C)` -> `(B, {spatial_out}, filters)`.
    """


@keras.saving.register_keras_serializable(package="keras_hyper")
class CPConv1D(_CPConv):
    __doc__ = _DOC.format(rank=1, outer="a_fr ⊗", ksum="k", kprod="k", spatial="L", spatial_out="L'")
    rank = 1


@keras.saving.register_keras_serializable(package="keras_hyper")
class CPConv2D(_CPConv):
    __doc__ = _DOC.format(
        rank=2, outer="a_fr ⊗ b_fr ⊗", ksum="kh + kw", kprod="kh * kw", spatial="H, W", spatial_out="H', W'"
    )
    rank = 2


@keras.saving.register_keras_serializable(package="keras_hyper")
class CPConv3D(_CPConv):
    __doc__ = _DOC.format(
        rank=3,
        outer="a_fr ⊗ b_fr ⊗ d_fr ⊗",
        ksum="kd + kh + kw",
        kprod="kd * kh * kw",
        spatial="D, H, W",
        spatial_out="D', H', W'",
    )
    rank = 3
