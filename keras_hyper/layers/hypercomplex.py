"""Parameterised hypercomplex layers: PHM (dense) and PHC (1-D, 2-D, 3-D convolution) layers.

Grassucci, Zhang, Comminiello, "PHNNs: Lightweight Neural Networks via Parameterized Hypercomplex
Convolutions", IEEE TNNLS 2022, arXiv:2110.04176 (paper 1 in PAPERS.md). The weight of a layer on an n-dimensional
algebra is `sum_k kron(A[k], F[k])`: n learned `n x n` algebra rules A (the multiplication table, e.g. Hamilton's
for quaternions at n=4, learned from data instead of fixed) and n filter blocks F of `1/n` of the full weight, so
that the layer holds about `1/n` of the parameters of its real counterpart. The weight is rebuilt from A and F
at every call (`keras_hyper.ops.hypercomplex.phm_kernel`), so A and F are what trains and what is saved.
"""

import keras
import numpy as np

from keras_hyper.layers._args import check_positive, positive_ints
from keras_hyper.ops.hypercomplex import phm_kernel


def _check_n(n, name, value):
    check_positive(**{"n (the algebra dimension)": n})
    if value % n:
        raise ValueError(f"{name} must be divisible by n={n}, got {value}.")


@keras.saving.register_keras_serializable(package="keras_hyper")
class PHMDense(keras.layers.Layer):
    """A parameterised hypercomplex multiplication (PHM) layer: a Dense layer whose `(in, units)` kernel is
    `sum_k kron(A[k], S[k])` (PHNNs, arXiv:2110.04176; the official `PHMLinear`).

    Variables: `rules` `(n, n, n)` (A, indexed `[k, output block, input block]`), `factors` `(n, in/n, units/n)`
    (S), `bias` `(units,)`: `n**3 + in * units / n + units` parameters against `in * units + units`.

    Args:
        units: output features, a multiple of `n`.
        n: the algebra dimension (4: quaternion-like; 1: a plain Dense layer with a learned scale).
        use_bias: add a bias (the official layer does).
        rules_initializer, factors_initializer, bias_initializer: initialisers of A, S and the bias (Xavier-
            uniform for A and S as the official code).

    Shape: `(..., in)` -> `(..., units)`, `in` a multiple of `n`.
    """

    def __init__(
        self,
        units,
        n=4,
        use_bias=True,
        rules_initializer="glorot_uniform",
        factors_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive(units=units)
        _check_n(n, "units", units)
        self.units = units
        self.n = n
        self.use_bias = bool(use_bias)
        self.rules_initializer = keras.initializers.get(rules_initializer)
        self.factors_initializer = keras.initializers.get(factors_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        features = input_shape[-1]
        _check_n(self.n, "The input's last dimension", features)
        n = self.n
        self.rules = self.add_weight(shape=(n, n, n), initializer=self.rules_initializer, name="rules")
        self.factors = self.add_weight(
            shape=(n, features // n, self.units // n), initializer=self.factors_initializer, name="factors"
        )
        self.bias = (
            self.add_weight(shape=(self.units,), initializer=self.bias_initializer, name="bias")
            if self.use_bias
            else None
        )

    def effective_kernel(self):
        """The `(in, units)` kernel `sum_k kron(A[k], S[k])` (transposed against PyTorch's `(out, in)`)."""
        return phm_kernel(self.rules, self.factors)

    def call(self, inputs):
        outputs = keras.ops.matmul(inputs, phm_kernel(self.rules, self.factors))
        if self.bias is not None:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            n=self.n,
            use_bias=self.use_bias,
            rules_initializer=keras.initializers.serialize(self.rules_initializer),
            factors_initializer=keras.initializers.serialize(self.factors_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config


class _PHConv(keras.layers.Layer):
    """A parameterised hypercomplex convolution (PHC) of rank `self.rank` (PHNNs, arXiv:2110.04176)."""

    rank = None

    def __init__(
        self,
        filters,
        kernel_size,
        n=4,
        strides=1,
        padding="valid",
        dilation_rate=1,
        use_bias=True,
        rules_initializer="glorot_uniform",
        factors_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive(filters=filters)
        _check_n(n, "filters", filters)
        self.filters = filters
        self.n = n
        self.kernel_size = positive_ints(kernel_size, self.rank, "kernel_size")
        self.strides = positive_ints(strides, self.rank, "strides")
        self.dilation_rate = positive_ints(dilation_rate, self.rank, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            # TensorFlow has no strided dilated convolution; refusing it everywhere keeps models portable
            raise ValueError(
                f"strides > 1 cannot be combined with dilation_rate > 1, got strides={self.strides} and "
                f"dilation_rate={self.dilation_rate}."
            )
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"padding must be 'valid', 'same' or integers, got {padding!r}.")
            self.padding = padding
        else:
            pads = (padding,) * self.rank if isinstance(padding, int) else tuple(padding)
            if len(pads) != self.rank or any(not isinstance(p, int) or p < 0 for p in pads):
                raise ValueError(
                    f"padding must be 'valid', 'same', a non-negative integer or {self.rank} of them, got {padding!r}."
                )
            self.padding = pads
        self.use_bias = bool(use_bias)
        self.rules_initializer = keras.initializers.get(rules_initializer)
        self.factors_initializer = keras.initializers.get(factors_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        channels = input_shape[-1]
        _check_n(self.n, "The number of input channels", channels)
        n = self.n
        self.rules = self.add_weight(shape=(n, n, n), initializer=self.rules_initializer, name="rules")
        self.factors = self.add_weight(
            shape=(n, *self.kernel_size, channels // n, self.filters // n),
            initializer=self.factors_initializer,
            name="factors",
        )
        self.bias = (
            self.add_weight(shape=(self.filters,), initializer=self.bias_initializer, name="bias")
            if self.use_bias
            else None
        )

    def effective_kernel(self):
        """The `(*kernel_size, in, filters)` kernel `sum_k kron(A[k], F[k])`."""
        return phm_kernel(self.rules, self.factors)

    def call(self, inputs):
        padding = self.padding
        if not isinstance(padding, str):
            # PyTorch's symmetric zero padding: "same" pads the far side only when a strided window needs it
            inputs = keras.ops.pad(inputs, ((0, 0), *((p, p) for p in padding), (0, 0)))
            padding = "valid"
        outputs = keras.ops.conv(
            inputs,
            phm_kernel(self.rules, self.factors),
            strides=self.strides,
            padding=padding,
            dilation_rate=self.dilation_rate,
        )
        if self.bias is not None:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(self, input_shape):
        sizes = []
        for axis, size in enumerate(input_shape[1:-1]):
            if size is None:
                sizes.append(None)
                continue
            stride = self.strides[axis]
            if self.padding == "same":
                sizes.append(-(-size // stride))
                continue
            pad = 0 if self.padding == "valid" else 2 * self.padding[axis]
            span = self.dilation_rate[axis] * (self.kernel_size[axis] - 1) + 1
            sizes.append((size + pad - span) // stride + 1)
        return (input_shape[0], *sizes, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            n=self.n,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            use_bias=self.use_bias,
            rules_initializer=keras.initializers.serialize(self.rules_initializer),
            factors_initializer=keras.initializers.serialize(self.factors_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config


_PHC_DOC = """A parameterised hypercomplex {rank}-D convolution (PHC layer; PHNNs, arXiv:2110.04176): a
    convolution whose kernel `sum_k kron(A[k], F[k])` is rebuilt at every call from n algebra rules and n filter
    blocks (the official `{official}`).

    Variables: `rules` `(n, n, n)` (A, indexed `[k, output block, input block]`), `factors`
    `(n, {taps}, in/n, filters/n)` (F), `bias` `(filters,)`: `n**3 + {taps_prod} * in * filters / n + filters`
    parameters against `{taps_prod} * in * filters + filters` for the real convolution.

    The official PH convolutions own a bias that their forward never adds; keras-hyper adds it when `use_bias`
    (zero-initialised, and the PHC model converters write zeros), so that a model keeps the official parameter
    count and output.

    Args:
        filters: output channels, a multiple of `n`.
        kernel_size, strides, dilation_rate: an integer or {rank} integers (strides and dilation not both > 1).
        n: the algebra dimension.
        padding: "valid", "same", or integers: PyTorch-style symmetric zero padding on each spatial side.
        use_bias: add the bias.
        rules_initializer, factors_initializer, bias_initializer: initialisers of A, F and the bias.

    Shape: `(B, {spatial}, in)` -> `(B, {spatial_out}, filters)`, `in` a multiple of `n`.
    """


@keras.saving.register_keras_serializable(package="keras_hyper")
class PHConv1D(_PHConv):
    __doc__ = _PHC_DOC.format(rank=1, official="PHConv1D", taps="k", taps_prod="k", spatial="L", spatial_out="L'")
    rank = 1


@keras.saving.register_keras_serializable(package="keras_hyper")
class PHConv2D(_PHConv):
    __doc__ = _PHC_DOC.format(
        rank=2, official="PHConv2d", taps="kh, kw", taps_prod="kh * kw", spatial="H, W", spatial_out="H', W'"
    )
    rank = 2


@keras.saving.register_keras_serializable(package="keras_hyper")
class PHConv3D(_PHConv):
    __doc__ = _PHC_DOC.format(
        rank=3,
        official="PHConv3D",
        taps="kd, kh, kw",
        taps_prod="kd * kh * kw",
        spatial="D, H, W",
        spatial_out="D', H', W'",
    )
    rank = 3


@keras.saving.register_keras_serializable(package="keras_hyper")
class PrependZeroChannels(keras.layers.Layer):
    """Prepends `count` all-zero channels, the way PHNNs feeds an image whose channels are not a multiple of n:
    RGB becomes `[0, R, G, B]` for n=4, a quaternion with a zero real part (the official CIFAR pipeline's `Pad`).

    Shape: `(B, ..., C)` -> `(B, ..., C + count)`.
    """

    def __init__(self, count, **kwargs):
        super().__init__(**kwargs)
        check_positive(count=count)
        self.count = count

    def call(self, inputs):
        rank = len(inputs.shape)
        return keras.ops.pad(inputs, ((0, 0),) * (rank - 1) + ((self.count, 0),))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + self.count)

    def get_config(self):
        return {**super().get_config(), "count": self.count}


def factors_from_torch(value):
    """A PH factor tensor in the official PyTorch layout `(n, out/n, in/n, *taps)` (PHConv's F, PHMLinear's S)
    in keras-hyper's `(n, *taps, in/n, out/n)`; the algebra rules A `(n, n, n)` need no change."""
    return np.transpose(value, (0, *range(3, value.ndim), 2, 1))
