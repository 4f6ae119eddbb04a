"""Complex-valued layers on real tensors (Trabelsi et al., "Deep Complex Networks", ICLR 2018, arXiv:1705.09792).

A tensor of `C` complex channels is a real tensor `(..., 2*C)`: real parts in the first half of the last axis,
imaginary parts in the second half (see `keras_hyper.ops.complex`). Every layer here maps such tensors to such
tensors (the output layers `Magnitude`, `Phase`, `ComplexToReal` map them to real tensors `(..., C)`), uses real
operators only (LiteRT has no complex dtype) and follows the dtype policy: kernels are float32 variables cast
to the compute dtype; batch statistics are taken in float32.

Weights are stored as the real and imaginary parts of the complex weights (`kernel_real`, `kernel_imag`, each
shaped like the kernel of the real Keras layer with `Cin -> filters` channels) and one real `bias` of `2*filters`
values `[real | imag]`. Their default initializer gives each part half the Glorot variance, so that the complex
weight `Wr + i Wi` has the variance `2 / (fan_in + fan_out)` of Trabelsi et al.'s complex Glorot criterion (with
uniform instead of Rayleigh-distributed moduli).
"""

import math

import keras
from keras import ops

from keras_hyper.layers._args import check_positive, check_rate, positive_ints
from keras_hyper.ops import complex as cops

PADDINGS = ("valid", "same")


def _complex_glorot():
    return keras.initializers.VarianceScaling(scale=0.5, mode="fan_avg", distribution="uniform")


def _independent_copy(initializer):
    """An initializer drawing independently of `initializer`, for the imaginary part: Keras initializers return
    the same values at every call, so one instance for both parts would make `Wi = Wr` (and keep the real and
    imaginary parts of every feature equal). A seeded one gets the next seed, so that results stay reproducible."""
    config = initializer.get_config()
    if isinstance(config.get("seed"), int):
        config["seed"] += 1
    return initializer.__class__.from_config(config)


def _complex_channels(layer, input_shape):
    channels = input_shape[-1]
    if channels is None or channels % 2:
        raise ValueError(
            f"{type(layer).__name__} expects a complex tensor (..., 2*C) with a known, even last axis "
            f"[real parts | imaginary parts], got input shape {tuple(input_shape)}."
        )
    return channels // 2


def _check_choice(value, choices, name):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")
    return value


def _conv_length(length, kernel, stride, padding, dilation):
    if length is None:
        return None
    if padding == "same":
        return -(-length // stride)
    return (length - dilation * (kernel - 1) - 1) // stride + 1


def _deconv_length(length, kernel, stride, padding, dilation, output_padding):
    # keras.layers.ConvNDTranspose's output length, so that shapes match the real layers exactly
    if length is None:
        return None
    kernel = kernel + (kernel - 1) * (dilation - 1)
    if output_padding is None:
        return length * stride if padding == "same" else length * stride + max(kernel - stride, 0)
    pad = kernel // 2 if padding == "same" else 0
    return (length - 1) * stride + kernel - 2 * pad + output_padding


@keras.saving.register_keras_serializable(package="keras_hyper")
class ComplexDense(keras.layers.Layer):
    """Complex fully connected layer `z -> z W + b`, `W in C^{Cin x units}` (Trabelsi et al., arXiv:1705.09792).

    Args:
        units: complex output features.
        use_bias: learn the complex bias `b`.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer: as `keras.layers.Dense`; the
            kernel initializer draws the real and the imaginary part (default: half-variance Glorot uniform each).
        multiplication: `"standard"` (one real matmul with the block kernel) or `"gauss"` (three matmuls).

    Weights: `kernel_real`, `kernel_imag` `(Cin, units)`; `bias` `(2*units,)`.

    Shape: `(..., 2*Cin)` -> `(..., 2*units)`.
    """

    def __init__(
        self,
        units,
        use_bias=True,
        kernel_initializer=None,
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        multiplication="standard",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive(units=units)
        self.units = units
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or _complex_glorot())
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.multiplication = _check_choice(multiplication, cops.MULTIPLICATIONS, "multiplication")

    def build(self, input_shape):
        channels = _complex_channels(self, input_shape)
        shape = (channels, self.units)
        self.kernel_real = self.add_weight(
            name="kernel_real", shape=shape, initializer=self.kernel_initializer, regularizer=self.kernel_regularizer
        )
        self.kernel_imag = self.add_weight(
            name="kernel_imag",
            shape=shape,
            initializer=_independent_copy(self.kernel_initializer),
            regularizer=self.kernel_regularizer,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(2 * self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )

    def call(self, inputs):
        dtype = inputs.dtype
        y = cops.matmul(
            inputs,
            ops.cast(self.kernel_real, dtype),
            ops.cast(self.kernel_imag, dtype),
            multiplication=self.multiplication,
        )
        if self.use_bias:
            y = y + ops.cast(self.bias, dtype)
        return y

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 2 * self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "multiplication": self.multiplication,
        }


class _ComplexConv(keras.layers.Layer):
    """Shared body of the complex N-D (transposed) convolutions; see `ComplexConv2D`."""

    rank = None
    transpose = False

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        dilation_rate=1,
        use_bias=True,
        kernel_initializer=None,
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        multiplication="standard",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive(filters=filters)
        self.filters = filters
        self.kernel_size = positive_ints(kernel_size, self.rank, "kernel_size")
        self.strides = positive_ints(strides, self.rank, "strides")
        self.padding = _check_choice(padding, PADDINGS, "padding")
        self.dilation_rate = positive_ints(dilation_rate, self.rank, "dilation_rate")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or _complex_glorot())
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.multiplication = _check_choice(multiplication, cops.MULTIPLICATIONS, "multiplication")

    def build(self, input_shape):
        if len(input_shape) != self.rank + 2:
            raise ValueError(
                f"{type(self).__name__} expects (batch, {self.rank} spatial axes, 2*channels), "
                f"got {tuple(input_shape)}."
            )
        channels = _complex_channels(self, input_shape)
        io = (self.filters, channels) if self.transpose else (channels, self.filters)
        shape = (*self.kernel_size, *io)
        self.kernel_real = self.add_weight(
            name="kernel_real", shape=shape, initializer=self.kernel_initializer, regularizer=self.kernel_regularizer
        )
        self.kernel_imag = self.add_weight(
            name="kernel_imag",
            shape=shape,
            initializer=_independent_copy(self.kernel_initializer),
            regularizer=self.kernel_regularizer,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(2 * self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )

    def _product(self, inputs, kernel_real, kernel_imag):
        return cops.conv(
            inputs,
            kernel_real,
            kernel_imag,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            multiplication=self.multiplication,
        )

    def call(self, inputs):
        dtype = inputs.dtype
        y = self._product(inputs, ops.cast(self.kernel_real, dtype), ops.cast(self.kernel_imag, dtype))
        if self.use_bias:
            y = y + ops.cast(self.bias, dtype)
        return y

    def _spatial_output(self, spatial):
        return [
            _conv_length(n, k, s, self.padding, d)
            for n, k, s, d in zip(spatial, self.kernel_size, self.strides, self.dilation_rate)
        ]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self._spatial_output(input_shape[1:-1]), 2 * self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "multiplication": self.multiplication,
        }


class _ComplexConvTranspose(_ComplexConv):
    """Shared body of the complex transposed convolutions; see `ComplexConv2DTranspose`."""

    transpose = True

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None, **kwargs):
        super().__init__(filters, kernel_size, strides=strides, padding=padding, **kwargs)
        if output_padding is not None:
            output_padding = tuple(
                int(p) for p in ((output_padding,) * self.rank if isinstance(output_padding, int) else output_padding)
            )
            if len(output_padding) != self.rank or any(not 0 <= p < s for p, s in zip(output_padding, self.strides)):
                raise ValueError(
                    f"output_padding must be None or {self.rank} ints, each in [0, stride), got {output_padding!r} "
                    f"with strides {self.strides}."
                )
        self.output_padding = output_padding

    def _product(self, inputs, kernel_real, kernel_imag):
        return cops.conv_transpose(
            inputs,
            kernel_real,
            kernel_imag,
            strides=self.strides,
            padding=self.padding,
            output_padding=self.output_padding,
            dilation_rate=self.dilation_rate,
            multiplication=self.multiplication,
        )

    def _spatial_output(self, spatial):
        paddings = self.output_padding or (None,) * self.rank
        return [
            _deconv_length(n, k, s, self.padding, d, p)
            for n, k, s, d, p in zip(spatial, self.kernel_size, self.strides, self.dilation_rate, paddings)
        ]

    def get_config(self):
        return {**super().get_config(), "output_padding": self.output_padding}


_CONV_DOC = """Complex {rank}-D {kind}, channels_last (Trabelsi et al., "Deep Complex Networks", arXiv:1705.09792):
    `W * z = (Wr * x - Wi * y) + i (Wi * x + Wr * y)` for `z = x + i y`, `W = Wr + i Wi`.

    Args:
        filters: complex output channels.
        kernel_size, strides, padding ("valid" | "same"), dilation_rate{extra}: as `keras.layers.{real}`.
        use_bias: learn the complex bias.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer: as `keras.layers.{real}`;
            the kernel initializer draws each part (default: half-variance Glorot uniform).
        multiplication: `"standard"` (one real {kind} with the block kernel `[[Wr, Wi], [-Wi, Wr]]`) or
            `"gauss"` (Gauss' trick: three real {kind}s, 25 % fewer multiplications).

    Weights: `kernel_real`, `kernel_imag` `{kernel}`; `bias` `(2*filters,)`.

    Shape: `(B, {spatial}, 2*Cin)` -> `(B, {spatial_out}, 2*filters)`.
    """


def _conv_doc(rank, transpose):
    spatial = ("D", "H", "W")[3 - rank :]
    kind = "transposed convolution" if transpose else "convolution"
    return _CONV_DOC.format(
        rank=rank,
        kind=kind,
        extra=", output_padding" if transpose else "",
        real=f"Conv{rank}D{'Transpose' if transpose else ''}",
        kernel=f"(*kernel_size, {'filters, Cin' if transpose else 'Cin, filters'})",
        spatial=", ".join(spatial),
        spatial_out=", ".join(s + "'" for s in spatial),
    )


@keras.saving.register_keras_serializable(package="keras_hyper")
class ComplexConv1D(_ComplexConv):
    __doc__ = _conv_doc(1, False)
    rank = 1


@keras.saving.register_keras_serializable(package="keras_hyper")
class ComplexConv2D(_ComplexConv):
    __doc__ = _conv_doc(2, False)
    rank = 2


@keras.saving.register_keras_serializable(package="keras_hyper")
class ComplexConv3D(_ComplexConv):
    __doc__ = _conv_doc(3, False)
    rank = 3


@keras.saving.register_keras_serializable(package="keras_hyper")
class ComplexConv1DTranspose(_ComplexConvTranspose):
    __doc__ = _conv_doc(1, True)
    rank = 1


@keras.saving.register_keras_serializable(package="keras_hyper")
class ComplexConv2DTranspose(_ComplexConvTranspose):
    __doc__ = _conv_doc(2, True)
    rank = 2


@keras.saving.register_keras_serializable(package="keras_hyper")
class ComplexConv3DTranspose(_ComplexConvTranspose):
    __doc__ = _conv_doc(3, True)
    rank = 3


@keras.saving.register_keras_serializable(package="keras_hyper")
class ComplexBatchNormalization(keras.layers.Layer):
    """Complex batch normalisation of Trabelsi et al. ("Deep Complex Networks", arXiv:1705.09792, Sec. 3.5).

    Each complex channel is centred and whitened by the inverse square root of its 2x2 covariance matrix
    `V = [[Vrr, Vri], [Vri, Vii]]` (real and imaginary parts decorrelated, each of unit variance), then scaled by
    a learned 2x2 matrix `gamma` and shifted by a learned complex `beta`:
    `y = gamma V^{-1/2} (z - E[z]) + beta`.
    `gamma` is symmetric, `[[gamma_rr, gamma_ri], [gamma_ri, gamma_ii]]`, as in the paper (`scale_matrix=
    "symmetric"`, 3 weights per channel), or a general 2x2 matrix `[[gamma_rr, gamma_ri], [gamma_ir, gamma_ii]]`
    (`"full"`, 4 weights per channel), as in cplxmodule and the PyTorch libraries derived from it (torchcomplex,
    complextorch). `epsilon` is added to the diagonal of `V`. Training uses the (biased) batch statistics over
    every axis but the last and updates the moving ones, `moving = momentum * moving + (1 - momentum) * batch`
    (Keras' convention: `momentum=0.99` is PyTorch's 0.01); inference uses the moving statistics. Statistics are
    computed in float32 under mixed precision.

    Args:
        momentum: moving-average momentum.
        epsilon: added to `Vrr` and `Vii` (default 1e-5, that of PyTorch and of the complex PyTorch libraries).
        center: learn `beta` (initialised to 0).
        scale: learn `gamma` (initialised to `diag(1/sqrt(2))`, so that the output has unit complex variance).
        scale_matrix: `"symmetric"` or `"full"` `gamma`.

    Weights: `gamma_rr`, `gamma_ri`, (`gamma_ir` with `"full"`), `gamma_ii` `(C,)`; `beta` `(2*C,)`; non-trainable
    `moving_mean` `(2*C,)`, `moving_vrr`, `moving_vri`, `moving_vii` `(C,)` (initialised to the identity
    covariance).

    Shape: `(..., 2*C)` -> `(..., 2*C)`.
    """

    SCALE_MATRICES = ("symmetric", "full")

    def __init__(self, momentum=0.99, epsilon=1e-5, center=True, scale=True, scale_matrix="symmetric", **kwargs):
        super().__init__(**kwargs)
        check_rate(momentum=momentum)
        if not epsilon > 0:
            raise ValueError(f"epsilon must be positive, got {epsilon!r}.")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.scale_matrix = _check_choice(scale_matrix, self.SCALE_MATRICES, "scale_matrix")

    def build(self, input_shape):
        channels = _complex_channels(self, input_shape)

        def weight(name, shape, initializer, trainable=True):
            # the whole normalisation runs in float32: keep every weight out of the autocast to float16
            return self.add_weight(name=name, shape=shape, initializer=initializer, trainable=trainable, autocast=False)

        if self.scale:
            diagonal = keras.initializers.Constant(1.0 / math.sqrt(2.0))
            self.gamma_rr = weight("gamma_rr", (channels,), diagonal)
            self.gamma_ri = weight("gamma_ri", (channels,), "zeros")
            self.gamma_ir = weight("gamma_ir", (channels,), "zeros") if self.scale_matrix == "full" else None
            self.gamma_ii = weight("gamma_ii", (channels,), diagonal)
        if self.center:
            self.beta = weight("beta", (2 * channels,), "zeros")
        self.moving_mean = weight("moving_mean", (2 * channels,), "zeros", trainable=False)
        self.moving_vrr = weight("moving_vrr", (channels,), "ones", trainable=False)
        self.moving_vri = weight("moving_vri", (channels,), "zeros", trainable=False)
        self.moving_vii = weight("moving_vii", (channels,), "ones", trainable=False)

    def call(self, inputs, training=None):
        x = ops.cast(inputs, "float32")
        if training:
            axes = tuple(range(len(x.shape) - 1))
            mean = ops.mean(x, axis=axes)
            centred = x - mean
            real, imag = cops.split(centred)
            vrr = ops.mean(ops.square(real), axis=axes)
            vri = ops.mean(real * imag, axis=axes)
            vii = ops.mean(ops.square(imag), axis=axes)
            for variable, value in (
                (self.moving_mean, mean),
                (self.moving_vrr, vrr),
                (self.moving_vri, vri),
                (self.moving_vii, vii),
            ):
                variable.assign(self.momentum * variable + (1.0 - self.momentum) * ops.stop_gradient(value))
        else:
            centred = x - self.moving_mean
            real, imag = cops.split(centred)
            vrr, vri, vii = self.moving_vrr, self.moving_vri, self.moving_vii
        wrr, wri, wii = cops.inv_sqrt_2x2(vrr + self.epsilon, vri, vii + self.epsilon)
        real, imag = wrr * real + wri * imag, wri * real + wii * imag
        if self.scale:
            gamma_ir = self.gamma_ri if self.gamma_ir is None else self.gamma_ir
            real, imag = (
                self.gamma_rr * real + self.gamma_ri * imag,
                gamma_ir * real + self.gamma_ii * imag,
            )
        y = cops.merge(real, imag)
        if self.center:
            y = y + self.beta
        return ops.cast(y, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "scale_matrix": self.scale_matrix,
        }


class _Elementwise(keras.layers.Layer):
    """A complex layer without weights whose output has the input's shape."""

    def build(self, input_shape):
        _complex_channels(self, input_shape)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_hyper")
class CReLU(_Elementwise):
    """CReLU of Trabelsi et al. (arXiv:1705.09792, Sec. 3.4): ReLU of the real and of the imaginary part,
    `ReLU(x) + i ReLU(y)`. Shape: `(..., 2*C)` -> `(..., 2*C)`."""

    def call(self, inputs):
        return ops.relu(inputs)


@keras.saving.register_keras_serializable(package="keras_hyper")
class ZReLU(_Elementwise):
    """zReLU of Guberman ("On Complex Valued Convolutional Neural Networks", arXiv:1602.09046): `z` where its
    phase lies in `[0, pi/2]` (both parts non-negative), 0 elsewhere. Shape: `(..., 2*C)` -> `(..., 2*C)`."""

    def call(self, inputs):
        real, imag = cops.split(inputs)
        keep = ops.cast(ops.logical_and(real >= 0, imag >= 0), inputs.dtype)
        return inputs * ops.concatenate([keep, keep], axis=-1)


@keras.saving.register_keras_serializable(package="keras_hyper")
class Cardioid(_Elementwise):
    """Complex cardioid of Virtue, Yu and Lustig ("Better than Real: Complex-valued Neural Nets for MRI
    Fingerprinting", ICIP 2017, arXiv:1707.00070): `(1 + cos(angle z)) / 2 * z`, a phase-sensitive gate that
    reduces to ReLU on the real axis. Shape: `(..., 2*C)` -> `(..., 2*C)`."""

    def call(self, inputs):
        cosine, _ = cops.split(cops.unit(inputs))
        gate = 0.5 * (1.0 + cosine)
        return inputs * ops.concatenate([gate, gate], axis=-1)


@keras.saving.register_keras_serializable(package="keras_hyper")
class ModReLU(keras.layers.Layer):
    """modReLU of Arjovsky, Shah and Bengio ("Unitary Evolution Recurrent Neural Networks", arXiv:1511.06464),
    as used by Trabelsi et al. (arXiv:1705.09792): `ReLU(|z| + b) z / |z|` with a learned real bias `b` per
    channel (0 at `z = 0`). The phase is kept; moduli below `-b` are cut to 0.

    Args:
        bias_initializer: initial `b` (negative values make the layer non-linear from the start).

    Weights: `bias` `(C,)`.

    Shape: `(..., 2*C)` -> `(..., 2*C)`.
    """

    def __init__(self, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        channels = _complex_channels(self, input_shape)
        self.bias = self.add_weight(name="bias", shape=(channels,), initializer=self.bias_initializer)

    def call(self, inputs):
        modulus = ops.relu(cops.abs(inputs) + ops.cast(self.bias, inputs.dtype))
        return cops.unit(inputs) * ops.concatenate([modulus, modulus], axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "bias_initializer": keras.initializers.serialize(self.bias_initializer)}


class _Pooling2D(_Elementwise):
    def __init__(self, pool_size=2, strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = positive_ints(pool_size, 2, "pool_size")
        self.strides = positive_ints(self.pool_size if strides is None else strides, 2, "strides")
        self.padding = _check_choice(padding, PADDINGS, "padding")

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{type(self).__name__} expects (batch, height, width, 2*C), got {tuple(input_shape)}.")
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        spatial = [
            _conv_length(n, k, s, self.padding, 1) for n, k, s in zip(input_shape[1:3], self.pool_size, self.strides)
        ]
        return (input_shape[0], *spatial, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides, "padding": self.padding}


@keras.saving.register_keras_serializable(package="keras_hyper")
class ComplexAveragePooling2D(_Pooling2D):
    """Complex average pooling: the mean of the complex values of each window (real and imaginary parts pooled
    alike). Arguments as `keras.layers.AveragePooling2D`. Shape: `(B, H, W, 2*C)` -> `(B, H', W', 2*C)`."""

    def call(self, inputs):
        return ops.average_pool(
            inputs, self.pool_size, strides=self.strides, padding=self.padding, data_format="channels_last"
        )


@keras.saving.register_keras_serializable(package="keras_hyper")
class ComplexMaxPooling2D(_Pooling2D):
    """Complex max pooling by magnitude: in each window, the complex value of largest modulus (the first one on
    ties), as in Trabelsi et al.'s and complexPyTorch's `complex_max_pool2d`.

    It runs as `pool_h * pool_w` strided slices and selects, which are real builtin operators (a gather by argmax
    index would need Flex ops in LiteRT). "same" padding pads with zeros, which never wins a window (a window of
    zeros gives 0 either way). Arguments as `keras.layers.MaxPooling2D`.

    Shape: `(B, H, W, 2*C)` -> `(B, H', W', 2*C)`.
    """

    def call(self, inputs):
        (kh, kw), (sh, sw) = self.pool_size, self.strides
        x = inputs
        height, width = x.shape[1], x.shape[2]
        if self.padding == "same":
            if height is None or width is None:
                raise ValueError(
                    f"{type(self).__name__} with padding='same' needs known height and width, got {x.shape}."
                )
            pads = []
            for n, k, s in ((height, kh, sh), (width, kw, sw)):
                total = max((-(-n // s) - 1) * s + k - n, 0)
                pads.append((total // 2, total - total // 2))
            x = ops.pad(x, [(0, 0), *pads, (0, 0)])
            height, width = x.shape[1], x.shape[2]
        if height is None or width is None:
            shape = ops.shape(x)
            height, width = shape[1], shape[2]
        out_h = (height - kh) // sh + 1
        out_w = (width - kw) // sw + 1
        best, best_modulus = None, None
        for i in range(kh):
            for j in range(kw):
                candidate = x[:, i : i + (out_h - 1) * sh + 1 : sh, j : j + (out_w - 1) * sw + 1 : sw, :]
                modulus = cops.abs2(candidate)
                if best is None:
                    best, best_modulus = candidate, modulus
                    continue
                wins = modulus > best_modulus
                best = ops.where(ops.concatenate([wins, wins], axis=-1), candidate, best)
                best_modulus = ops.maximum(modulus, best_modulus)
        return best


@keras.saving.register_keras_serializable(package="keras_hyper")
class ComplexDropout(_Elementwise):
    """Dropout of complex values: one mask drops the real and the imaginary part of a value together (dropping
    them independently would change phases). Kept values are scaled by `1 / (1 - rate)` during training.

    Args:
        rate: fraction of complex values dropped, in [0, 1).
        seed: seed of the layer's `keras.random.SeedGenerator`.

    Shape: `(..., 2*C)` -> `(..., 2*C)`.
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        check_rate(rate=rate)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        real, _ = cops.split(inputs)
        noise = keras.random.uniform(ops.shape(real), seed=self.seed_generator, dtype=inputs.dtype)
        keep = ops.cast(noise >= self.rate, inputs.dtype) / (1.0 - self.rate)
        return inputs * ops.concatenate([keep, keep], axis=-1)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class _ToReal(keras.layers.Layer):
    def build(self, input_shape):
        _complex_channels(self, input_shape)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // 2)


@keras.saving.register_keras_serializable(package="keras_hyper")
class Magnitude(_ToReal):
    """The modulus `|z|` of each complex value (gradient 0 at `z = 0`). Shape: `(..., 2*C)` -> `(..., C)`."""

    def call(self, inputs):
        return cops.abs(inputs)


@keras.saving.register_keras_serializable(package="keras_hyper")
class Phase(_ToReal):
    """The argument `atan2(y, x)` in `(-pi, pi]` of each complex value (0 at `z = 0`). Shape: `(..., 2*C)` ->
    `(..., C)`."""

    def call(self, inputs):
        return cops.angle(inputs)


@keras.saving.register_keras_serializable(package="keras_hyper")
class ComplexToReal(_ToReal):
    """A real view of a complex tensor: its real part (`part="real"`), imaginary part (`"imag"`), or squared
    modulus (`"abs2"`, smooth everywhere, unlike the modulus). Shape: `(..., 2*C)` -> `(..., C)`."""

    PARTS = ("real", "imag", "abs2")

    def __init__(self, part="real", **kwargs):
        super().__init__(**kwargs)
        self.part = _check_choice(part, self.PARTS, "part")

    def call(self, inputs):
        if self.part == "abs2":
            return cops.abs2(inputs)
        real, imag = cops.split(inputs)
        return real if self.part == "real" else imag

    def get_config(self):
        return {**super().get_config(), "part": self.part}


@keras.saving.register_keras_serializable(package="keras_hyper")
class ComplexGlobalMaxPooling2D(keras.layers.Layer):
    """Global max pooling by modulus: per channel, the complex value of largest modulus over the whole map
    (values tied for the maximum are averaged). Shape: `(B, H, W, 2*C)` -> `(B, 2*C)`."""

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{type(self).__name__} expects (batch, height, width, 2*C), got {tuple(input_shape)}.")
        _complex_channels(self, input_shape)

    def call(self, inputs):
        modulus = cops.abs2(inputs)
        winners = ops.cast(modulus >= ops.max(modulus, axis=(1, 2), keepdims=True), inputs.dtype)
        winners = winners / ops.sum(winners, axis=(1, 2), keepdims=True)
        return ops.sum(inputs * ops.concatenate([winners, winners], axis=-1), axis=(1, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


@keras.saving.register_keras_serializable(package="keras_hyper")
class ComplexConcatenate(keras.layers.Layer):
    """Concatenates complex tensors along their channels (real parts together, imaginary parts together): the
    complex counterpart of `keras.layers.Concatenate(axis=-1)`, which would mix up the halves. Shape: a list of
    `(..., 2*C_k)` -> `(..., 2*sum C_k)`."""

    def build(self, input_shape):
        for shape in input_shape:
            _complex_channels(self, shape)

    def call(self, inputs):
        return cops.concatenate(inputs)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], sum(shape[-1] for shape in input_shape))


@keras.saving.register_keras_serializable(package="keras_hyper")
class RealToComplex(keras.layers.Layer):
    """A real tensor as the real part of a complex one with zero imaginary part: `x -> x + 0i`, the usual way a
    real image (an MRI magnitude image, an RGB photo) enters a complex-valued network. Shape: `(..., C)` ->
    `(..., 2*C)`."""

    def call(self, inputs):
        return cops.merge(inputs, ops.zeros_like(inputs))

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        return (*input_shape[:-1], None if channels is None else 2 * channels)
