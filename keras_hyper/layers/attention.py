"""Channel and coordinate attention gates."""

import keras
import numpy as np
from keras import ops

from keras_hyper.layers.torch_defaults import BN_EPSILON, BN_MOMENTUM, batch_norm


def _check_image(layer, input_shape):
    if len(input_shape) != 4 or input_shape[-1] is None:
        raise ValueError(
            f"{layer} expects (batch, height, width, channels) with known channels, got {tuple(input_shape)}."
        )
    return int(input_shape[-1])


@keras.saving.register_keras_serializable(package="keras_hyper")
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-Excitation channel gate (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018,
    arXiv:1709.01507).

    `gate = sigmoid(expand(act(reduce(mean_{H,W}(x)))))`, `y = x * gate`: a global descriptor of each
    channel, passed through a two-layer bottleneck, rescales the channels.

    Args:
        hidden_units: width of the bottleneck.
        activation: activation between the two Dense layers.
        use_bias: whether `reduce` and `expand` have biases.

    Sublayers: `reduce` (Dense, kernel `(C, hidden_units)`), `expand` (Dense, kernel `(hidden_units, C)`).

    Shape: `(B, H, W, C)` -> `(B, H, W, C)`.
    """

    def __init__(self, hidden_units, activation="relu", use_bias=True, **kwargs):
        super().__init__(**kwargs)
        if int(hidden_units) < 1:
            raise ValueError(f"SqueezeExcite hidden_units must be >= 1, got {hidden_units}.")
        self.hidden_units = int(hidden_units)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.reduce = None
        self.expand = None

    def build(self, input_shape):
        channels = _check_image("SqueezeExcite", input_shape)
        self.reduce = keras.layers.Dense(
            self.hidden_units, use_bias=self.use_bias, dtype=self.dtype_policy, name="reduce"
        )
        self.expand = keras.layers.Dense(channels, use_bias=self.use_bias, dtype=self.dtype_policy, name="expand")
        self.reduce.build((None, channels))
        self.expand.build((None, self.hidden_units))

    def call(self, inputs):
        s = ops.mean(inputs, axis=(1, 2))
        gate = ops.sigmoid(self.expand(self.activation(self.reduce(s))))
        return inputs * gate[:, None, None, :]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_units": self.hidden_units,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class CoordinateAttention(keras.layers.Layer):
    """Coordinate attention (Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network Design",
    CVPR 2021, arXiv:2103.02907), in the form of the balanced EuroSAT network (paper 49).

    The map is pooled along each axis separately, so that the gates keep the position along the other one:
    `x_h = mean_W(x)` `(B, H, C)` and `x_w = mean_H(x)` `(B, W, C)` are stacked along the position axis,
    share `conv1` (a 1x1 convolution to `C // reduction` channels), `bn1` and the activation, are split
    again, and `conv_h`, `conv_w` (back to `C`) with a sigmoid give `a_h` and `a_w`;
    `y[b, i, j, c] = x[b, i, j, c] * a_h[b, i, c] * a_w[b, j, c]`. BatchNormalization sees the `H + W`
    pooled positions of every sample at once, as in the official code.

    Args:
        reduction: `conv1` has `C // reduction` output channels.
        activation: activation after `bn1`.
        normalize: with `bn1` (the training form); without it `conv1` has a bias instead, the form that
            `fuse()` returns.
        epsilon, momentum: of `bn1` (Keras momentum: 0.9 is PyTorch's 0.1).

    Sublayers: `conv1` (Dense, kernel `(C, C // reduction)`), `bn1` (BatchNormalization), `conv_h`, `conv_w`
    (Dense, kernels `(C // reduction, C)`); no biases except `conv1`'s when `normalize=False`.

    Shape: `(B, H, W, C)` -> `(B, H, W, C)`.
    """

    def __init__(
        self, reduction=8, activation="relu", normalize=True, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, **kwargs
    ):
        super().__init__(**kwargs)
        if int(reduction) < 1:
            raise ValueError(f"CoordinateAttention reduction must be >= 1, got {reduction}.")
        self.reduction = int(reduction)
        self.activation = keras.activations.get(activation)
        self.normalize = bool(normalize)
        self.epsilon = float(epsilon)
        self.momentum = float(momentum)
        self.conv1 = self.bn1 = self.conv_h = self.conv_w = None

    def build(self, input_shape):
        channels = _check_image("CoordinateAttention", input_shape)
        hidden = channels // self.reduction
        if hidden < 1:
            raise ValueError(
                f"CoordinateAttention needs at least reduction={self.reduction} channels, got channels={channels}."
            )
        policy = self.dtype_policy
        self.conv1 = keras.layers.Dense(hidden, use_bias=not self.normalize, dtype=policy, name="conv1")
        self.conv_h = keras.layers.Dense(channels, use_bias=False, dtype=policy, name="conv_h")
        self.conv_w = keras.layers.Dense(channels, use_bias=False, dtype=policy, name="conv_w")
        self.conv1.build((None, None, channels))
        self.conv_h.build((None, None, hidden))
        self.conv_w.build((None, None, hidden))
        if self.normalize:
            self.bn1 = batch_norm("bn1", epsilon=self.epsilon, momentum=self.momentum, dtype=policy)
            self.bn1.build((None, None, hidden))

    def call(self, inputs, training=None):
        height = ops.shape(inputs)[1]
        y = ops.concatenate([ops.mean(inputs, axis=2), ops.mean(inputs, axis=1)], axis=1)
        y = self.conv1(y)
        if self.normalize:
            y = self.bn1(y, training=training)
        y = self.activation(y)
        a_h = ops.sigmoid(self.conv_h(y[:, :height]))
        a_w = ops.sigmoid(self.conv_w(y[:, height:]))
        return inputs * a_h[:, :, None, :] * a_w[:, None, :, :]

    def fuse(self):
        """The inference form: `bn1` folded into `conv1` (which gains a bias); same name, built, weights set."""
        if not self.normalize:
            raise ValueError(f"CoordinateAttention {self.name!r} is already fused (normalize=False).")
        gamma, beta, mean, var = (np.asarray(w, "float64") for w in self.bn1.get_weights())
        s = gamma / np.sqrt(var + self.epsilon)
        t = beta - mean * s
        fused = CoordinateAttention.from_config({**self.get_config(), "normalize": False})
        fused.build((None, None, None, self.conv_h.units))
        kernel = np.asarray(ops.convert_to_numpy(self.conv1.kernel), "float64")
        dtype = fused.conv1.kernel.dtype
        fused.conv1.set_weights([(kernel * s).astype(dtype), t.astype(dtype)])
        fused.conv_h.set_weights(self.conv_h.get_weights())
        fused.conv_w.set_weights(self.conv_w.get_weights())
        return fused

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "reduction": self.reduction,
            "activation": keras.activations.serialize(self.activation),
            "normalize": self.normalize,
            "epsilon": self.epsilon,
            "momentum": self.momentum,
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class BalancedAttention(keras.layers.Layer):
    """Balanced multi-task attention of the EuroSAT network (paper 49 in PAPERS.md): a learnt convex mix of
    coordinate attention and squeeze-excitation, `y = sigmoid(alpha) * CA(x) + (1 - sigmoid(alpha)) * SE(x)`,
    with one scalar `alpha` per block.

    Args:
        coord_reduction: channel reduction of `coord_attention` (`C // coord_reduction` hidden channels).
        se_reduction: channel reduction of `se_attention` (`C // se_reduction` hidden units, no biases).
        alpha_init: initial `alpha` (0.5 in the official code, so the mix starts at sigmoid(0.5) = 0.62).
        normalize: whether `coord_attention` keeps its BatchNormalization (see `CoordinateAttention`).
        epsilon, momentum: of that BatchNormalization.

    Weights: `alpha` `()`; sublayers `coord_attention` (CoordinateAttention), `se_attention` (SqueezeExcite).

    Shape: `(B, H, W, C)` -> `(B, H, W, C)`.
    """

    def __init__(
        self,
        coord_reduction=8,
        se_reduction=16,
        alpha_init=0.5,
        normalize=True,
        epsilon=BN_EPSILON,
        momentum=BN_MOMENTUM,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(se_reduction) < 1:
            raise ValueError(f"BalancedAttention se_reduction must be >= 1, got {se_reduction}.")
        self.coord_reduction = int(coord_reduction)
        self.se_reduction = int(se_reduction)
        self.alpha_init = float(alpha_init)
        self.normalize = bool(normalize)
        self.epsilon = float(epsilon)
        self.momentum = float(momentum)
        self.coord_attention = CoordinateAttention(
            self.coord_reduction,
            normalize=self.normalize,
            epsilon=self.epsilon,
            momentum=self.momentum,
            dtype=self.dtype_policy,
            name="coord_attention",
        )
        self.se_attention = None

    def build(self, input_shape):
        channels = _check_image("BalancedAttention", input_shape)
        if channels < self.se_reduction:
            raise ValueError(
                f"BalancedAttention needs at least se_reduction={self.se_reduction} channels, got channels={channels}."
            )
        self.alpha = self.add_weight(name="alpha", shape=(), initializer=keras.initializers.Constant(self.alpha_init))
        self.coord_attention.build(input_shape)
        self.se_attention = SqueezeExcite(
            channels // self.se_reduction, use_bias=False, dtype=self.dtype_policy, name="se_attention"
        )
        self.se_attention.build(input_shape)

    def call(self, inputs, training=None):
        mix = ops.sigmoid(ops.cast(self.alpha, inputs.dtype))
        coord = self.coord_attention(inputs, training=training)
        return mix * coord + (1.0 - mix) * self.se_attention(inputs)

    def fuse(self):
        """The inference form: the BatchNormalization of `coord_attention` folded away; same name and weights."""
        fused = BalancedAttention.from_config({**self.get_config(), "normalize": False})
        fused.build((None, None, None, self.se_attention.expand.units))
        fused.alpha.assign(self.alpha)
        fused.coord_attention.set_weights(self.coord_attention.fuse().get_weights())
        fused.se_attention.set_weights(self.se_attention.get_weights())
        return fused

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "coord_reduction": self.coord_reduction,
            "se_reduction": self.se_reduction,
            "alpha_init": self.alpha_init,
            "normalize": self.normalize,
            "epsilon": self.epsilon,
            "momentum": self.momentum,
        }
