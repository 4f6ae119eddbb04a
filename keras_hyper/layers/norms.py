"""Normalisation layers that keras.layers lacks."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_hyper")
class GlobalResponseNorm(keras.layers.Layer):
    """Global Response Normalization of ConvNeXt V2 (Woo et al., "ConvNeXt V2: Co-designing and Scaling
    ConvNets with Masked Autoencoders", CVPR 2023, arXiv:2301.00808), as UniRepLKNet uses it.

    Each channel's spatial L2 norm `G = ||x||_2 over (H, W)`, divided by its mean over the channels,
    `N = G / (mean_C(G) + epsilon)`, recalibrates the channel: `y = (gamma * N + 1) * x + beta`. Channels
    compete for response, which counters feature collapse in wide MLPs. With `gamma = beta = 0` (the
    initial value) the layer is the identity.

    Args:
        epsilon: added to the channel mean of the norms.
        use_bias: learn `beta` (UniRepLKNet's deploy form folds it into the following layer's bias).

    Weights: `gamma`, `beta` `(C,)`.

    Shape: `(B, H, W, C)` -> `(B, H, W, C)`.
    """

    def __init__(self, epsilon=1e-6, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"GlobalResponseNorm expects (batch, height, width, channels) with known channels, got {input_shape}."
            )
        channels = input_shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="zeros")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros") if self.use_bias else None

    def call(self, inputs):
        # the sum of squares over a whole feature map overflows float16: take the norms in float32
        x32 = ops.cast(inputs, "float32")
        g = ops.sqrt(ops.sum(ops.square(x32), axis=(1, 2), keepdims=True))
        n = ops.cast(g / (ops.mean(g, axis=-1, keepdims=True) + self.epsilon), inputs.dtype)
        y = (ops.cast(self.gamma, inputs.dtype) * n + 1.0) * inputs
        if self.use_bias:
            y = y + ops.cast(self.beta, inputs.dtype)
        return y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package="keras_hyper")
class IntegratedBatchNorm(keras.layers.Layer):
    """Integrated BatchNorm of SEPC ("Scale-Equalizing Pyramid Convolution for Object Detection", CVPR 2020, paper
    25 in PAPERS.md; the official `iBN`): one BatchNorm over a whole feature pyramid.

    The levels are one population: in training the statistics are the mean and (biased) variance of each channel
    over every position of every level of every sample together, so a coarse level's few positions weigh as much per
    position as the finest level's (not one average per level); the moving statistics follow PyTorch's BatchNorm
    (`moving = momentum * moving + (1 - momentum) * batch`, the variance unbiased, `n / (n - 1)` with `n` the
    positions of all levels and samples). At inference every level is normalised by the same moving statistics.

    Args:
        epsilon: added to the variance (PyTorch's 1e-5).
        momentum: Keras' convention, the weight of the old moving average (PyTorch's momentum 0.1 is 0.9 here).

    Weights: `gamma`, `beta`, `moving_mean`, `moving_variance` `(C,)` (PyTorch's `weight`, `bias`,
    `running_mean`, `running_var`).

    Shape: a list of `(B, Hl, Wl, C)` -> the same list of shapes.

    Example:
        >>> bn = IntegratedBatchNorm()
        >>> p3, p4 = bn([np.ones((2, 8, 8, 16), "float32"), np.zeros((2, 4, 4, 16), "float32")], training=True)
    """

    def __init__(self, epsilon=1e-5, momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}.")
        if not epsilon > 0:
            raise ValueError(f"epsilon must be positive, got {epsilon!r}.")
        self.epsilon = float(epsilon)
        self.momentum = float(momentum)

    def build(self, input_shape):
        shapes = [tuple(s) for s in input_shape] if isinstance(input_shape, list | tuple) else []
        if not shapes or any(len(s) != 4 for s in shapes) or len({s[-1] for s in shapes}) != 1 or shapes[0][-1] is None:
            raise ValueError(
                f"IntegratedBatchNorm expects a list of (batch, height, width, channels) maps with the same known "
                f"channels, got {input_shape}."
            )
        channels = shapes[0][-1]
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")
        self.moving_mean = self.add_weight(name="moving_mean", shape=(channels,), initializer="zeros", trainable=False)
        self.moving_variance = self.add_weight(
            name="moving_variance", shape=(channels,), initializer="ones", trainable=False
        )

    def call(self, inputs, training=None):
        channels = self.gamma.shape[0]
        if training:
            # the official iBN concatenates the flattened levels and runs one BatchNorm2d over the result
            flat = ops.concatenate([ops.reshape(x, (-1, channels)) for x in inputs], axis=0)
            flat = ops.cast(flat, "float32")
            mean = ops.mean(flat, axis=0)
            variance = ops.mean(ops.square(flat - mean), axis=0)
            count = ops.cast(ops.shape(flat)[0], "float32")
            unbiased = variance * count / ops.maximum(count - 1.0, 1.0)
            self.moving_mean.assign(self.momentum * self.moving_mean + (1.0 - self.momentum) * mean)
            self.moving_variance.assign(self.momentum * self.moving_variance + (1.0 - self.momentum) * unbiased)
        else:
            mean, variance = self.moving_mean, self.moving_variance
        scale = self.gamma * ops.rsqrt(variance + self.epsilon)
        shift = self.beta - mean * scale
        return [x * ops.cast(scale, x.dtype) + ops.cast(shift, x.dtype) for x in inputs]

    def compute_output_shape(self, input_shape):
        return [tuple(s) for s in input_shape]

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "momentum": self.momentum}
