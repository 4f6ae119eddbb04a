"""Mixture-of-experts feed-forward layers."""

import keras
from keras import ops

from keras_hyper.layers._args import check_positive, check_rate

GATES = ("raw", "softmax")


@keras.saving.register_keras_serializable(package="keras_hyper")
class MixtureOfExperts(keras.layers.Layer):
    """Top-k gated mixture of two-layer ReLU experts (fastmoe's `FMoETransformerMLP` with `NaiveGate`).

    The feed-forward block of HyperFormer's encoder (Hu et al., "HyperFormer: Enhancing Entity and Relation
    Interaction for Hyper-Relational Knowledge Graph Completion", CIKM 2023, arXiv:2308.06512). A linear gate
    scores the `num_experts` experts per token; the `top_k` best are combined:
    `y = sum_k w_k * (relu(x W1[e_k] + b1[e_k]) W2[e_k] + b2[e_k])`.

    `gate="raw"` weighs the experts by their raw top-k gate logits, which is what fastmoe 0.2.0 (the version
    HyperFormer pins) computes; `gate="softmax"` by the softmax of the top-k logits (fastmoe >= 1.0).

    Dispatch is dense: every expert runs on every token and the unselected ones get weight zero. At the
    sizes this is used this costs less than a gather of per-token expert weights, it is two plain matmuls,
    and it exports with builtin LiteRT ops.

    Args:
        num_experts: number of experts E.
        hidden_units: hidden width H of each expert.
        top_k: experts combined per token (1 <= top_k <= num_experts).
        gate: "raw" or "softmax" (see above).
        dropout: dropout on the experts' hidden activations (fastmoe's `activation=ReLU+Dropout`).

    Shapes: `(..., D) -> (..., D)`.
    """

    def __init__(self, num_experts, hidden_units, top_k=2, gate="raw", dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        check_positive(num_experts=num_experts, hidden_units=hidden_units, top_k=top_k)
        if top_k > num_experts:
            raise ValueError(f"top_k must be at most num_experts={num_experts}, got {top_k}.")
        if gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, got {gate!r}.")
        check_rate(dropout=dropout)
        self.num_experts = num_experts
        self.hidden_units = hidden_units
        self.top_k = top_k
        self.gate = gate
        self.dropout = dropout
        self.gate_dense = keras.layers.Dense(num_experts, dtype=self.dtype_policy, name="gate")
        self.drop = keras.layers.Dropout(dropout, dtype=self.dtype_policy, name="drop")

    def build(self, input_shape):
        dim = input_shape[-1]
        self.gate_dense.build(input_shape)
        e, h = self.num_experts, self.hidden_units
        # fastmoe's FMoELinear init (kaiming_uniform with a=sqrt(5)): U(+-1/sqrt(fan_in)) per expert
        self.kernel_in = self.add_weight(
            name="kernel_in", shape=(e, dim, h), initializer=keras.initializers.RandomUniform(-(dim**-0.5), dim**-0.5)
        )
        self.bias_in = self.add_weight(name="bias_in", shape=(e, h), initializer="zeros")
        self.kernel_out = self.add_weight(
            name="kernel_out", shape=(e, h, dim), initializer=keras.initializers.RandomUniform(-(h**-0.5), h**-0.5)
        )
        self.bias_out = self.add_weight(name="bias_out", shape=(e, dim), initializer="zeros")

    def expert_weights(self, inputs):
        """The per-token weight of every expert, `(..., D) -> (..., E)`, zero outside the top k."""
        logits = self.gate_dense(inputs)
        values, indices = ops.top_k(logits, self.top_k)
        if self.gate == "softmax":
            values = ops.softmax(values, axis=-1)
        picked = ops.one_hot(indices, self.num_experts, dtype=values.dtype)
        return ops.sum(picked * values[..., None], axis=-2)

    def call(self, inputs, training=None):
        e, h = self.num_experts, self.hidden_units
        dim = inputs.shape[-1]
        tokens = ops.reshape(inputs, (-1, dim))
        weights = self.expert_weights(tokens)
        # Experts side by side along one axis: (D, E*H) and (E*H, D), so that the dense dispatch is two matmuls
        # and the weighting happens on the hidden activations.
        kernel_in = ops.reshape(ops.transpose(ops.cast(self.kernel_in, self.compute_dtype), (1, 0, 2)), (dim, e * h))
        kernel_out = ops.reshape(ops.cast(self.kernel_out, self.compute_dtype), (e * h, dim))
        hidden = ops.matmul(tokens, kernel_in) + ops.reshape(ops.cast(self.bias_in, self.compute_dtype), (e * h,))
        hidden = self.drop(ops.relu(hidden), training=training)
        hidden = ops.reshape(ops.reshape(hidden, (-1, e, h)) * weights[:, :, None], (-1, e * h))
        out = ops.matmul(hidden, kernel_out) + ops.matmul(weights, ops.cast(self.bias_out, self.compute_dtype))
        return ops.reshape(out, ops.shape(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_experts": self.num_experts,
            "hidden_units": self.hidden_units,
            "top_k": self.top_k,
            "gate": self.gate,
            "dropout": self.dropout,
        }
