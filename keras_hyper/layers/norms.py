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
