"""Layers on the Poincaré ball: van Spengler, Berkhout, Mettes, "Poincaré ResNet" (arXiv:2303.14027), built on
the Poincaré fully-connected layer of Shimizu et al., "Hyperbolic Neural Networks++" (arXiv:2006.08210).

Every layer here takes and returns **tangent vectors at the origin** (plain Euclidean tensors), as the official
code does: it maps its input onto the ball with `expmap0`, applies its hyperbolic operation and maps the result
back with `logmap0`. Layers can therefore be stacked with Euclidean ones in between (ReLU, pooling) exactly as
in Poincaré ResNet. The ball's vector axis is the channel axis (channels_last), except where a layer says
otherwise.

Each layer's curvature c (the ball is {x : c|x|² < 1}) is a non-trainable scalar weight `curvature`, set from
the `curvature` argument, so that checkpoints whose balls carry their own c load exactly. The maths runs in
float32 whatever the dtype policy (the boundary of the ball is out of float16's reach); outputs have the
layer's compute dtype.
"""

import keras
import numpy as np
from keras import ops

from keras_hyper.layers._args import check_positive, check_rate
from keras_hyper.ops import poincare as P


def _value(variable):
    """A variable's current value as a tensor (None stays None), for the compiled ops."""
    return None if variable is None else ops.convert_to_tensor(variable)


def _check_curvature(curvature):
    if isinstance(curvature, bool) or not isinstance(curvature, (int, float)) or not curvature > 0:
        raise ValueError(f"curvature must be a positive number, got {curvature!r}.")
    return float(curvature)


@keras.saving.register_keras_serializable(package="keras_hyper")
class PoincareIdentity(keras.initializers.Initializer):
    """The identity initialisation of Poincaré ResNet: `gain * eye(fan_in, units)` for a Poincaré dense kernel
    `(fan_in, units)`, and for a Poincaré convolution kernel `(kh, kw, in, units)` the same matrix over the
    unfolded features in (channel, kh, kw) order. With gain 1/2 (the factor 2 of the distance formula
    cancelled) a freshly built layer maps the origin's neighbourhood almost to itself."""

    def __init__(self, gain=0.5):
        self.gain = float(gain)

    def __call__(self, shape, dtype=None):
        if len(shape) == 2:
            return ops.convert_to_tensor(self.gain * np.eye(*shape), dtype=dtype)
        if len(shape) != 4:
            raise ValueError(f"PoincareIdentity initialises 2-D or 4-D kernels, got shape {tuple(shape)}.")
        kh, kw, channels, units = shape
        eye = self.gain * np.eye(channels * kh * kw, units).reshape(channels, kh, kw, units)
        return ops.convert_to_tensor(np.transpose(eye, (1, 2, 0, 3)), dtype=dtype)

    def get_config(self):
        return {"gain": self.gain}


class _BallLayer(keras.layers.Layer):
    """Holds the curvature weight and runs in float32 (no autocast of the weights to float16)."""

    def __init__(self, curvature=1.0, **kwargs):
        super().__init__(autocast=False, **kwargs)
        self.curvature = _check_curvature(curvature)

    def _add_curvature(self):
        self.c = self.add_weight(
            name="curvature",
            shape=(),
            initializer=keras.initializers.Constant(self.curvature),
            trainable=False,
            dtype="float32",
        )

    def get_config(self):
        return {**super().get_config(), "curvature": self.curvature}


@keras.saving.register_keras_serializable(package="keras_hyper")
class PoincareDense(_BallLayer):
    """Poincaré fully-connected layer (HNN++ eq. 9) between tangent spaces at the origin:
    `logmap0(FC(expmap0(x)))`.

    Args:
        units: output features.
        curvature: c > 0.
        use_bias: learn the hyperplane offsets r (the bias).
        conformal_factor: "exact" (λ_x = 2 / (1 - c|x|²), HNN++) or "reference" (2 (1 - c|x|²), what the
            Poincaré ResNet code computes; use it for its checkpoints).
        kernel_initializer: the hyperplane orientations z, shape (in, units); the paper's identity init by
            default.

    Shapes: (..., in) -> (..., units).
    """

    def __init__(
        self,
        units,
        curvature=1.0,
        use_bias=True,
        conformal_factor="exact",
        kernel_initializer=None,
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(curvature, **kwargs)
        check_positive(units=units)
        P.validate_conformal_factor(conformal_factor)
        self.units = units
        self.use_bias = bool(use_bias)
        self.conformal_factor = conformal_factor
        self.kernel_initializer = keras.initializers.get(kernel_initializer or PoincareIdentity())
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"{self.name}: the last input dimension must be known, got {input_shape}.")
        self.z = self.add_weight(
            name="kernel", shape=(features, self.units), initializer=self.kernel_initializer, dtype="float32"
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer, dtype="float32")
            if self.use_bias
            else None
        )
        self._add_curvature()

    def call(self, inputs):
        out = P.tangent_dense(inputs, _value(self.z), _value(self.bias), _value(self.c), self.conformal_factor)
        return ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "use_bias": self.use_bias,
            "conformal_factor": self.conformal_factor,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class PoincareConv2D(_BallLayer):
    """Poincaré convolution (Poincaré ResNet, sec. 3.1; HNN++ sec. 3.3) between tangent spaces at the origin.

    Each receptive field's tangent vectors, scaled by the β-concatenation ratio B(n K/2, 1/2) / B(n/2, 1/2)
    (n input channels, K = kh kw) and concatenated in (channel, kh, kw) order, are mapped onto the ball and
    through the Poincaré fully-connected layer; the result goes back with `logmap0` over the channels.

    The concatenated vector u is never materialised: expmap0 only rescales u (by s = tanh(sqrt(c)|u|) /
    (sqrt(c)|u|), capped by the projection), so `x @ z` is s times an ordinary convolution of the input with
    z laid out as a `(kh, kw, in, filters)` kernel, and |u|² is a k x k box sum of the per-pixel squared norms.
    Two convolutions replace the unfold, which keeps LiteRT on builtin operators.

    Args:
        filters: output channels.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw).
        padding: zero padding on each side (int or (ph, pw)), or "valid" (0) / "same" (odd kernels, stride 1).
            Zeros are the origin of the ball.
        curvature, use_bias, conformal_factor, kernel_initializer: as in `PoincareDense`; the kernel has shape
            (kh, kw, in, filters) and is the official `(in*kh*kw, filters)` matrix reordered.

    Shapes: (B, H, W, in) -> (B, (H + 2ph - kh) // sh + 1, (W + 2pw - kw) // sw + 1, filters).
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding=0,
        curvature=1.0,
        use_bias=True,
        conformal_factor="exact",
        kernel_initializer=None,
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(curvature, **kwargs)
        check_positive(filters=filters)
        P.validate_conformal_factor(conformal_factor)
        self.filters = filters
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.strides = _pair(strides, "strides", 1)
        if padding == "valid":
            padding = 0
        elif padding == "same":
            if any(k % 2 == 0 for k in self.kernel_size) or self.strides != (1, 1):
                raise ValueError(
                    f"padding='same' needs an odd kernel and stride 1, got kernel_size={self.kernel_size}, "
                    f"strides={self.strides}."
                )
            padding = tuple(k // 2 for k in self.kernel_size)
        self.padding = _pair(padding, "padding", 0)
        self.use_bias = bool(use_bias)
        self.conformal_factor = conformal_factor
        self.kernel_initializer = keras.initializers.get(kernel_initializer or PoincareIdentity())
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name}: the channel dimension must be known, got {input_shape}.")
        kh, kw = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel",
            shape=(kh, kw, channels, self.filters),
            initializer=self.kernel_initializer,
            dtype="float32",
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer, dtype="float32")
            if self.use_bias
            else None
        )
        self._add_curvature()

    def call(self, inputs):
        out = P.tangent_conv2d(
            inputs,
            _value(self.kernel),
            _value(self.bias),
            _value(self.c),
            strides=self.strides,
            padding=self.padding,
            conformal_factor=self.conformal_factor,
        )
        return ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        sizes = []
        for size, k, s, p in zip((height, width), self.kernel_size, self.strides, self.padding):
            sizes.append(None if size is None else (size + 2 * p - k) // s + 1)
        return (batch, *sizes, self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "use_bias": self.use_bias,
            "conformal_factor": self.conformal_factor,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


def _pair(value, name, minimum):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    value = tuple(value) if isinstance(value, (tuple, list)) else None
    if value is None or len(value) != 2 or any(not isinstance(v, int) or v < minimum for v in value):
        raise ValueError(f"{name} must be an integer >= {minimum} or a pair of them, got {value!r}.")
    return value


INFERENCE_STATISTICS = ("batch", "moving")


@keras.saving.register_keras_serializable(package="keras_hyper")
class PoincareBatchNormalization(_BallLayer):
    """Poincaré batch normalisation (Poincaré ResNet, sec. 3.2, after Lou et al., arXiv:2003.00335) between
    tangent spaces at the origin.

    On the ball, the batch's gyromidpoint μ_B and Fréchet variance σ²_B (over every axis but the channels) are
    computed; each point is moved from μ_B to the learnt mean (`expmap0(mean)`) by parallel transport of its
    logarithm and rescaled by sqrt(var / (σ²_B + epsilon)).

    **Statistics at inference.** The official code normalises with the batch's statistics in eval mode too (its
    running buffers are never read nor updated), so a prediction depends on the other images of the batch (and
    for a single image on its own spatial statistics). `inference_statistics="batch"` (default) reproduces
    that, and the official checkpoints' outputs. `inference_statistics="moving"` uses the moving midpoint and
    variance this layer accumulates while training (with `momentum`), which makes predictions independent of
    the batch: train with it to use it, since official checkpoints carry no statistics (their buffers hold
    their initial values).

    Args:
        curvature: c > 0.
        momentum: of the moving statistics, updated whenever `training=True`.
        epsilon: added to the batch variance.
        inference_statistics: "batch" or "moving".

    Shapes: (..., C) -> (..., C); statistics over all axes but the last.
    """

    def __init__(self, curvature=1.0, momentum=0.9, epsilon=1e-6, inference_statistics="batch", **kwargs):
        super().__init__(curvature, **kwargs)
        check_rate(momentum=momentum)
        if not epsilon >= 0.0:
            raise ValueError(f"epsilon must be non-negative, got {epsilon!r}.")
        if inference_statistics not in INFERENCE_STATISTICS:
            raise ValueError(
                f"inference_statistics must be one of {INFERENCE_STATISTICS}, got {inference_statistics!r}."
            )
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.inference_statistics = inference_statistics

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name}: the channel dimension must be known, got {input_shape}.")
        self.mean = self.add_weight(name="mean", shape=(channels,), initializer="zeros", dtype="float32")
        self.var = self.add_weight(name="var", shape=(), initializer="ones", dtype="float32")
        self.moving_mean = self.add_weight(
            name="moving_mean", shape=(channels,), initializer="zeros", trainable=False, dtype="float32"
        )
        self.moving_variance = self.add_weight(
            name="moving_variance", shape=(), initializer="ones", trainable=False, dtype="float32"
        )
        self._add_curvature()

    def call(self, inputs, training=None):
        moving = {}
        if not training and self.inference_statistics == "moving":
            moving = dict(moving_mean=_value(self.moving_mean), moving_variance=_value(self.moving_variance))
        out, mu, variance = P.tangent_batch_norm(
            inputs, _value(self.mean), _value(self.var), _value(self.c), epsilon=self.epsilon, **moving
        )
        if training:
            m = self.momentum
            self.moving_mean.assign(m * self.moving_mean + (1.0 - m) * ops.stop_gradient(mu))
            self.moving_variance.assign(m * self.moving_variance + (1.0 - m) * ops.stop_gradient(variance))
        return ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "inference_statistics": self.inference_statistics,
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class MobiusAdd(keras.layers.Layer):
    """Möbius addition of two tangent vectors at the origin, Poincaré ResNet's residual connection:
    `logmap0(expmap0(a) ⊕_c expmap0(b))` for inputs `[a, b]` (order matters: ⊕ is not commutative).

    The curvature is a fixed number (the official skip ball is not a registered parameter). `axis` is the
    ball's vector axis: -1 (channels) or another axis; the official code adds along the last axis of its NCHW
    tensors, the image width, which `axis=2` reproduces on channels_last inputs.

    Shapes: two tensors of the same shape -> that shape.
    """

    def __init__(self, curvature=1.0, axis=-1, **kwargs):
        super().__init__(autocast=False, **kwargs)
        self.curvature = _check_curvature(curvature)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"axis must be an integer, got {axis!r}.")
        self.axis = axis

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"{self.name} takes a list of two tensors, got input shapes {input_shape}.")
        if tuple(input_shape[0]) != tuple(input_shape[1]):
            raise ValueError(f"{self.name}: both inputs must have the same shape, got {input_shape}.")
        rank = len(input_shape[0])
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(f"{self.name}: axis {self.axis} is not a vector axis of inputs of rank {rank}.")

    def call(self, inputs):
        out = P.tangent_mobius_add(inputs[0], inputs[1], self.curvature, axis=self.axis)
        return ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "curvature": self.curvature, "axis": self.axis}
