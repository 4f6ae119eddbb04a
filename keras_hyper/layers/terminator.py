"""The Terminator's blocks besides the HyperZ.Z.W operator itself (Harvie Zhang, "HyperZ.Z.W Operator Connects
Slow-Fast Networks for Full Context Interaction", arXiv:2401.17948): the Recursive Gated Unit, the hyper-channel
and hyper interactions, the parameter-free standardisations (instance, batch, and their grouped mix G-IBS), the
learned scalar biases and the slow neural loss.
"""

import keras
import numpy as np
from keras import ops

from keras_hyper.layers._args import check_positive, check_rate
from keras_hyper.layers.hyperzzw import SlowNet, resample_map

EPSILON = 1e-5


def instance_standardize(x, epsilon=EPSILON):
    """Each sample's channels standardised over H and W (InstanceNorm without affine map), in float32."""
    x32 = ops.cast(x, "float32")
    mean, variance = ops.moments(x32, axes=(1, 2), keepdims=True)
    return ops.cast((x32 - mean) * ops.rsqrt(variance + epsilon), x.dtype)


@keras.saving.register_keras_serializable(package="keras_hyper")
class InstanceStandardization(keras.layers.Layer):
    """Instance standardisation (arXiv:2401.17948): every channel of every sample to zero mean and unit variance
    over H and W, with no affine parameters and no running statistics.

    Shape: `(B, H, W, C)` -> `(B, H, W, C)`.
    """

    def __init__(self, epsilon=EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        return instance_standardize(inputs, self.epsilon)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="keras_hyper")
class GroupedStandardization(keras.layers.Layer):
    """G-IBS (arXiv:2401.17948): the channels split into `groups` equal groups, the even-numbered ones
    (0, 2, ...) batch-standardised, the odd-numbered ones instance-standardised; no affine parameters.
    `groups=1` is plain batch standardisation.

    The official code computes batch statistics at inference too (its BatchNorm keeps no running statistics),
    which makes a sample's output depend on the rest of its batch. By default this layer keeps moving averages
    of the batch statistics while training (momentum `momentum`, Keras' convention) and uses them at inference;
    `inference_batch_statistics=True` restores the official behaviour.

    Shape: `(B, H, W, C)` -> `(B, H, W, C)`, C a multiple of `groups`.
    """

    def __init__(self, groups=12, inference_batch_statistics=False, momentum=0.9, epsilon=EPSILON, **kwargs):
        super().__init__(**kwargs)
        check_positive(groups=groups)
        check_rate(momentum=momentum)
        self.groups = groups
        self.inference_batch_statistics = bool(inference_batch_statistics)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels % self.groups:
            raise ValueError(
                f"GroupedStandardization(groups={self.groups}) needs channels divisible by it, got {channels}."
            )
        size = channels // self.groups
        batch_channels = [c for c in range(channels) if (c // size) % 2 == 0]
        # (batch channels, C) 0/1 matrix: moving statistics are kept for the batch-standardised channels only
        select = np.zeros((len(batch_channels), channels), "float32")
        select[np.arange(len(batch_channels)), batch_channels] = 1.0
        self._select = select
        self._mask = select.sum(axis=0)
        count = len(batch_channels)
        self.moving_mean = self.add_weight(name="moving_mean", shape=(count,), initializer="zeros", trainable=False)
        self.moving_variance = self.add_weight(
            name="moving_variance", shape=(count,), initializer="ones", trainable=False
        )
        super().build(input_shape)

    def call(self, inputs, training=None):
        x = ops.cast(inputs, "float32")
        select = ops.convert_to_tensor(self._select)
        mask = ops.convert_to_tensor(self._mask)
        instance_mean, instance_variance = ops.moments(x, axes=(1, 2), keepdims=True)
        if training or self.inference_batch_statistics:
            batch_mean, batch_variance = ops.moments(x, axes=(0, 1, 2))
            if training:
                for moving, value in ((self.moving_mean, batch_mean), (self.moving_variance, batch_variance)):
                    update = ops.matmul(select, value)
                    moving.assign(self.momentum * moving + (1.0 - self.momentum) * ops.cast(update, moving.dtype))
        else:
            batch_mean = ops.matmul(ops.cast(self.moving_mean, "float32"), select)
            batch_variance = ops.matmul(ops.cast(self.moving_variance, "float32"), select)
        mean = mask * batch_mean + (1.0 - mask) * instance_mean
        variance = mask * batch_variance + (1.0 - mask) * instance_variance
        return ops.cast((x - mean) * ops.rsqrt(variance + self.epsilon), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            groups=self.groups,
            inference_batch_statistics=self.inference_batch_statistics,
            momentum=self.momentum,
            epsilon=self.epsilon,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_hyper")
class ScalarBias(keras.layers.Layer):
    """One learned scalar added to the whole input (the Terminator's branch and block biases, initialised to 0).

    Shape: any -> the same.
    """

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(1,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        return inputs + ops.cast(self.bias, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package="keras_hyper")
class RecursiveGatedUnit(keras.layers.Layer):
    """The Recursive Gated Unit (RGU, arXiv:2401.17948), a gated linear unit with recursion:
    `q = GELU(IS(K(x) * Q(V(x)))) + P`, `y = Y(q)`, with K, V, Q, Y per-pixel Linear maps C -> C, IS instance
    standardisation and P a learned `grid_size x grid_size` bias map (read bilinearly at other sizes).
    `output_bias=False` drops Y's bias (useless where a standardisation follows, as in the Terminator).

    Shape: `(B, H, W, C)` -> `(B, H, W, C)`.
    """

    def __init__(self, grid_size=32, output_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.output_bias = bool(output_bias)
        check_positive(grid_size=grid_size)
        self.grid_size = grid_size

    def build(self, input_shape):
        channels = input_shape[-1]
        init = keras.initializers.VarianceScaling(1.0, "fan_in", "uniform")  # kaiming_uniform, linear gain
        for part in ("k", "v", "q", "y"):
            setattr(
                self,
                f"{part}_kernel",
                self.add_weight(name=f"{part}_kernel", shape=(channels, channels), initializer=init),
            )
            if part != "y" or self.output_bias:
                bias = self.add_weight(name=f"{part}_bias", shape=(channels,), initializer="zeros")
                setattr(self, f"{part}_bias", bias)
        self.bias_map = self.add_weight(name="bias_map", shape=(self.grid_size, self.grid_size), initializer="zeros")
        super().build(input_shape)

    def _linear(self, x, part):
        out = ops.matmul(x, ops.cast(getattr(self, f"{part}_kernel"), x.dtype))
        bias = getattr(self, f"{part}_bias", None)
        return out if bias is None else out + ops.cast(bias, x.dtype)

    def call(self, inputs):
        keys = self._linear(inputs, "k")
        values = self._linear(inputs, "v")
        gated = ops.gelu(instance_standardize(keys * self._linear(values, "q")), approximate=False)
        height, width = inputs.shape[1], inputs.shape[2]
        bias = resample_map(ops.cast(self.bias_map, "float32"), height, width)
        return self._linear(gated + ops.cast(bias[None, :, :, None], inputs.dtype), "y")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "grid_size": self.grid_size, "output_bias": self.output_bias}


def _slow_kwargs(omega_0, alpha):
    return dict(omega_0=omega_0, alpha=alpha)


@keras.saving.register_keras_serializable(package="keras_hyper")
class HyperChannelInteraction(keras.layers.Layer):
    """Hyper-channel interaction (arXiv:2401.17948): channel attention whose weights come from a slow network
    over the channel axis. With y the global average of x and w the slow network's per-channel kernel, the
    HyperZ.Z.W with two element-wise products gives the score `sigmoid(w * y * y)`, and the output is
    `x * score`.

    Args:
        hidden, num_layers, omega_0, alpha: the channel slow network's (`SlowNet(over='channels')`).

    Shape: `(B, H, W, C)` -> `(B, H, W, C)`.
    """

    def __init__(self, hidden=32, num_layers=2, omega_0=2000.0, alpha=6.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.num_layers, self.omega_0, self.alpha = hidden, num_layers, float(omega_0), float(alpha)
        self.slow_net = SlowNet(
            "channels", hidden=hidden, num_layers=num_layers, name="slow_net", **_slow_kwargs(omega_0, alpha)
        )

    def build(self, input_shape):
        self.slow_net.build(input_shape)
        super().build(input_shape)

    def call(self, inputs):
        pooled = ops.mean(inputs, axis=(1, 2), keepdims=True)
        score = ops.sigmoid(self.slow_net(inputs) * pooled * pooled)
        return inputs * score

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(hidden=self.hidden, num_layers=self.num_layers, omega_0=self.omega_0, alpha=self.alpha)
        return config


@keras.saving.register_keras_serializable(package="keras_hyper")
class HyperInteraction(keras.layers.Layer):
    """Hyper interaction (arXiv:2401.17948): a channel score and a spatial score of a high-level map y, each
    from a slow network and the two-product HyperZ.Z.W, gate another map x:
    `score_c = w_c * GAP(y)^2` (w_c over the channels), `score_s = w_s * mean_c(y)^2` (w_s a one-channel global
    hyper-kernel), `out = x * sigmoid(score_s * score_c)`.

    Args:
        channel_hidden, spatial_hidden: widths of the channel and spatial slow networks.
        num_layers: their multiplicative layers.
        grid_size: the spatial slow network's training grid.
        omega_0, alpha: their sine filters' initialisation.

    Shape: `[(B, H, W, C) y, (B, H, W, C) x]` -> `(B, H, W, C)`.
    """

    def __init__(
        self, channel_hidden=16, spatial_hidden=64, num_layers=2, grid_size=32, omega_0=2000.0, alpha=6.0, **kwargs
    ):
        super().__init__(**kwargs)
        self.channel_hidden, self.spatial_hidden, self.num_layers = channel_hidden, spatial_hidden, num_layers
        self.grid_size, self.omega_0, self.alpha = grid_size, float(omega_0), float(alpha)
        slow = _slow_kwargs(omega_0, alpha)
        self.channel_slow_net = SlowNet(
            "channels", hidden=channel_hidden, num_layers=num_layers, name="channel_slow_net", **slow
        )
        self.spatial_slow_net = SlowNet(
            "space", grid_size, spatial_hidden, num_layers, channels=1, name="spatial_slow_net", **slow
        )

    def build(self, input_shape):
        y_shape = input_shape[0]
        self.channel_slow_net.build(y_shape)
        self.spatial_slow_net.build((*y_shape[:3], 1))
        super().build(input_shape)

    def call(self, inputs):
        y, x = inputs
        pooled = ops.mean(y, axis=(1, 2), keepdims=True)
        score_c = self.channel_slow_net(y) * pooled * pooled
        spatial = ops.mean(y, axis=-1, keepdims=True)
        score_s = self.spatial_slow_net(spatial) * spatial * spatial
        return x * ops.sigmoid(score_s * score_c)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update(
            channel_hidden=self.channel_hidden,
            spatial_hidden=self.spatial_hidden,
            num_layers=self.num_layers,
            grid_size=self.grid_size,
            omega_0=self.omega_0,
            alpha=self.alpha,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_hyper")
class SlowNeuralLoss(keras.layers.Layer):
    """The slow neural loss (arXiv:2401.17948): local feedback for the slow networks, pulling the global
    hyper-kernels of all blocks together. With S_i the i-th block's kernel summed over its channels, it adds
    `weight * sum_{j < i} mean((S_j - S_i)^2)` to the model's losses while training and passes its first input
    through unchanged.

    Shape: `[x, (1, H, W, C_0), ..., (1, H, W, C_n)]` -> x.
    """

    def __init__(self, weight=1.0, **kwargs):
        super().__init__(**kwargs)
        if weight < 0:
            raise ValueError(f"weight must be non-negative, got {weight!r}.")
        self.weight = float(weight)

    def call(self, inputs, training=None):
        x, *kernels = inputs
        if training and self.weight > 0:
            sums = [ops.sum(ops.cast(k, "float32"), axis=-1) for k in kernels]
            loss = 0.0
            for i in range(1, len(sums)):
                for j in range(i):
                    loss = loss + ops.mean(ops.square(sums[j] - sums[i]))
            self.add_loss(self.weight * loss)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}
