"""The two operators of SpaRTAN (Pay, Baskaran, Loo, Wong, See, "SpaRTAN: Spatial Reinforcement Token-based
Aggregation Network for Visual Recognition", IJCNN 2025, arXiv:2507.10999) that Keras lacks.

- `FeatureDecompose` re-weights a feature map against its global mean before the multi-order spatial kernels
  (the kernels themselves, 3x3 convolutions with dilation 1 and 2, are plain Keras convolutions, so that
  BatchNormalization folding and checkpoint conversion stay generic);
- `WaveChannelAggregation` is the wave-based channel aggregation: a gated channel expansion reinforced by the
  token's dominant channel, then modulated by a learned complex wave per channel pair.
"""

import keras
from keras import ops

from keras_hyper.layers._args import check_positive
from keras_hyper.layers.torch_defaults import conv_fan_out_normal


@keras.saving.register_keras_serializable(package="keras_hyper")
class FeatureDecompose(keras.layers.Layer):
    """`x + gamma * (x - mean_{H,W}(x))`: amplifies what distinguishes each position from the image average,
    with a learnable per-channel `gamma` (SpaRTAN's spatial mixer; the same form as MogaNet's feature
    decomposition).

    Args:
        init_value: initial value of every channel's `gamma`.

    Shape: `(B, H, W, C)` -> `(B, H, W, C)`.
    """

    def __init__(self, init_value=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.init_value = float(init_value)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"FeatureDecompose expects (B, H, W, C) with a known C, got {tuple(input_shape)}.")
        self.gamma = self.add_weight(
            name="gamma", shape=(input_shape[-1],), initializer=keras.initializers.Constant(self.init_value)
        )

    def call(self, inputs):
        mean = ops.mean(inputs, axis=(1, 2), keepdims=True)
        return inputs + ops.cast(self.gamma, inputs.dtype) * (inputs - mean)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "init_value": self.init_value}


@keras.saving.register_keras_serializable(package="keras_hyper")
class WaveChannelAggregation(keras.layers.Layer):
    """SpaRTAN's wave-based channel aggregation: expands `C` channels to `N = expand_ratio * C` and lets each
    token's dominant channel reinforce every other.

    With `k = argmax_c x[..., c]` per token (the first maximum on ties), `theta = GELU(x W_t + b_t)` and
    `v = x W_p + b_p`, the aggregated feature is `f = v * theta + v[..., k] * theta[..., k]`; the channel pairs
    `(f[2j], f[2j+1])` are then read as complex numbers and multiplied by a learned complex weight `w_j` (a
    phase and amplitude per pair, the "wave"), in float32 as in the official code.

    The gather at `k` is written as a one-hot mask (first maximum found with max/equal/min), not argmax and a
    gather: on the TensorFlow backend `ops.argmax` adds a sign-bit test that has no builtin LiteRT kernel.

    Args:
        expand_ratio: `N / C`, a positive integer; `N` must be even.

    Shape: `(B, H, W, C)` -> `(B, H, W, N)`. Weights: `theta` and `proj` (Dense `C -> N`) and `complex`,
    `(N / 2, 2)` (real, imaginary).
    """

    def __init__(self, expand_ratio, **kwargs):
        super().__init__(**kwargs)
        check_positive(expand_ratio=expand_ratio)
        self.expand_ratio = expand_ratio

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"WaveChannelAggregation expects (B, H, W, C) with a known C, got {tuple(input_shape)}.")
        channels = input_shape[-1]
        neck = channels * self.expand_ratio
        if neck % 2:
            raise ValueError(
                f"WaveChannelAggregation pairs channels into complex numbers, so channels * expand_ratio must be "
                f"even, got {channels} * {self.expand_ratio} = {neck}."
            )
        # the official 1x1 convolutions' init, one initializer each (a shared one would draw the same kernel twice)
        self.theta = keras.layers.Dense(
            neck, kernel_initializer=conv_fan_out_normal(1, neck), dtype=self.dtype_policy, name="theta"
        )
        self.proj = keras.layers.Dense(
            neck, kernel_initializer=conv_fan_out_normal(1, neck), dtype=self.dtype_policy, name="proj"
        )
        self.theta.build(input_shape)
        self.proj.build(input_shape)
        self.complex = self.add_weight(
            name="complex", shape=(neck // 2, 2), initializer=keras.initializers.RandomNormal(stddev=1.0)
        )

    def call(self, inputs):
        channels = inputs.shape[-1]
        theta = keras.activations.gelu(self.theta(inputs), approximate=False)
        value = self.proj(inputs)
        peak = ops.max(inputs, axis=-1, keepdims=True)
        index = ops.arange(channels, dtype=inputs.dtype)
        first = ops.min(ops.where(ops.equal(inputs, peak), index, float(channels)), axis=-1, keepdims=True)
        mask = ops.cast(ops.equal(index, first), value.dtype)
        dominant = ops.sum(mask * value[..., :channels] * theta[..., :channels], axis=-1, keepdims=True)
        feat = ops.cast(value * theta + dominant, "float32")

        shape = ops.shape(feat)
        pairs = ops.reshape(feat, (-1, shape[1], shape[2], shape[3] // 2, 2))
        re, im = pairs[..., 0], pairs[..., 1]
        w = ops.cast(self.complex, "float32")
        wr, wi = w[:, 0], w[:, 1]
        out = ops.stack([re * wr - im * wi, re * wi + im * wr], axis=-1)
        return ops.cast(ops.reshape(out, shape), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] * self.expand_ratio)

    def get_config(self):
        return {**super().get_config(), "expand_ratio": self.expand_ratio}
