"""Progressive re-parameterised BatchNorm (PRepBN) of SLAB (Guo, Chen, Tang, Wang, "SLAB: Efficient
Transformers with Simplified Linear Attention and Progressive Re-parameterized Batch Normalization", ICML 2024,
arXiv:2405.11582; paper 59 in PAPERS.md).

RepBN is a BatchNorm over the channels of a token map plus a learned multiple of its input,
`RepBN(x) = BN(x) + alpha * x`. PRepBN trains with `lam * LayerNorm(x) + (1 - lam) * RepBN(x)`, `lam` going
linearly from `r0` to 0 over `total_steps` training steps (after `warmup` steps of LayerNorm alone), so that a
transformer starts as a LayerNorm network and ends as a BatchNorm one. At inference it is RepBN alone, an
affine map per channel: `fuse()` turns it into one plain BatchNormalization, which the usual BN folding then
merges into the neighbouring linear layer.
"""

import keras
import numpy as np

from keras_hyper.layers._args import check_non_negative, check_positive
from keras_hyper.layers.torch_defaults import BN_EPSILON, BN_MOMENTUM, batch_norm


@keras.saving.register_keras_serializable(package="keras_hyper")
class PRepBN(keras.layers.Layer):
    """PRepBN (the official `LinearNorm(norm1=LayerNorm, norm2=RepBN)`) on channels-last tokens.

    The schedule's position is the non-trainable integer variable `step`, the number of training calls seen
    so far: each call with `training=True` (one per `fit` step) advances it by one, inference calls never do.
    It is saved and loaded with the model's weights, so training resumes where it stopped. With `t = step -
    warmup`, the LayerNorm weight is `lam = 1` while `t < 0` and `lam = r0 * max(total_steps - t, 0) /
    total_steps` afterwards (the official `r0 * iter / total_step` with `iter = total_steps - t`).

    Unlike the official module, the BatchNorm also runs (and updates its moving statistics) during warm-up;
    its output is weighted by 0 there. The official configurations use no warm-up.

    Args:
        warmup: training steps of LayerNorm alone before the schedule starts (official `warm`).
        total_steps: steps over which `lam` decays to 0 (official `step`; 60000 for SLAB-DeiT and SLAB-Swin).
        r0: `lam` at the start of the decay, in [0, 1].
        ln_epsilon, bn_epsilon, bn_momentum: of the LayerNorm (official 1e-6) and of the BatchNorm (PyTorch's
            eps 1e-5, momentum 0.1 = Keras' 0.9).

    Shape: `(B, ..., C)` -> same; statistics of the BatchNorm are over every axis but the last.
    """

    def __init__(
        self,
        warmup=0,
        total_steps=60000,
        r0=1.0,
        ln_epsilon=1e-6,
        bn_epsilon=BN_EPSILON,
        bn_momentum=BN_MOMENTUM,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_non_negative(warmup=warmup)
        check_positive(total_steps=total_steps)
        if not 0.0 <= r0 <= 1.0:
            raise ValueError(f"r0 must be in [0, 1], got {r0!r}.")
        self.warmup = warmup
        self.total_steps = total_steps
        self.r0 = float(r0)
        self.ln_epsilon = ln_epsilon
        self.bn_epsilon = bn_epsilon
        self.bn_momentum = bn_momentum
        self.norm1 = keras.layers.LayerNormalization(epsilon=ln_epsilon, dtype=self.dtype_policy, name="norm1")
        self.bn = batch_norm("bn", epsilon=bn_epsilon, momentum=bn_momentum, dtype=self.dtype_policy)

    def build(self, input_shape):
        self._rank = len(input_shape)
        self.norm1.build(input_shape)
        self.bn.build(input_shape)
        self.alpha = self.add_weight(shape=(1,), initializer="ones", name="alpha")
        self.step = self.add_weight(shape=(), initializer="zeros", dtype="int32", trainable=False, name="step")

    def layer_norm_weight(self, step=None):
        """`lam` at `step` (default: the current step), as a float32 scalar tensor."""
        step = keras.ops.cast(self.step if step is None else step, "float32")
        t = step - float(self.warmup)
        decayed = self.r0 * keras.ops.maximum(float(self.total_steps) - t, 0.0) / float(self.total_steps)
        return keras.ops.where(t < 0.0, 1.0, decayed)

    def _repbn(self, x, training):
        return self.bn(x, training=training) + keras.ops.cast(self.alpha, x.dtype) * x

    def call(self, inputs, training=None):
        if not training:
            return self._repbn(inputs, False)
        lam = keras.ops.cast(self.layer_norm_weight(), inputs.dtype)
        outputs = lam * self.norm1(inputs) + (1.0 - lam) * self._repbn(inputs, True)
        self.step.assign(self.step + 1)
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def fuse(self):
        """The inference form: a built BatchNormalization (same name) computing `BN(x) + alpha * x`, i.e. gamma
        `gamma + alpha * sqrt(var + eps)` and beta `beta + alpha * mean` with the same statistics."""
        gamma, beta, mean, var = (np.asarray(keras.ops.convert_to_numpy(w), "float64") for w in self.bn.weights)
        alpha = float(keras.ops.convert_to_numpy(self.alpha)[0])
        fused = batch_norm(self.name, epsilon=self.bn_epsilon, momentum=self.bn_momentum, dtype=self.dtype_policy)
        fused.build((None,) * (self._rank - 1) + (gamma.shape[0],))
        values = (gamma + alpha * np.sqrt(var + self.bn_epsilon), beta + alpha * mean, mean, var)
        fused.set_weights([v.astype(w.dtype) for v, w in zip(values, fused.weights)])
        return fused

    def get_config(self):
        config = super().get_config()
        config.update(
            warmup=self.warmup,
            total_steps=self.total_steps,
            r0=self.r0,
            ln_epsilon=self.ln_epsilon,
            bn_epsilon=self.bn_epsilon,
            bn_momentum=self.bn_momentum,
        )
        return config
