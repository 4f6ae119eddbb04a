"""Hypergraph convolutions: HGNN and HGNN+ (the `theta` projection followed by the structure's smoothing).

Both take `[x, incidence]` or `[x, incidence, edge_weight]` (see `keras_hyper.ops.hypergraph` for the dense
(..., N, E) and sparse (M, 2) or batched (B, M, 2) incidence forms) and return (..., N, units). Activation,
normalisation and dropout between layers belong to the model, as in DHG's `HGNNConv(is_last=True)`.
"""

import keras

from keras_hyper.layers._args import check_positive
from keras_hyper.ops import hypergraph


class _HypergraphConv(keras.layers.Layer):
    smooth = None

    def __init__(self, units, use_bias=True, num_edges=None, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        check_positive(units=units)
        self.units = units
        self.use_bias = use_bias
        self.num_edges = num_edges
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.theta = keras.layers.Dense(
            units, use_bias=use_bias, kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy, name="theta"
        )

    def _split(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) not in (2, 3):
            raise ValueError(
                f"{type(self).__name__} takes [x, incidence] or [x, incidence, edge_weight], got {inputs!r}."
            )
        return inputs[0], inputs[1], inputs[2] if len(inputs) == 3 else None

    def build(self, input_shape):
        self.theta.build(input_shape[0])

    def call(self, inputs):
        x, incidence, edge_weight = self._split(inputs)
        return self.smooth(self.theta(x), incidence, edge_weight, num_edges=self.num_edges)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "use_bias": self.use_bias,
            "num_edges": self.num_edges,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class HGNNConv(_HypergraphConv):
    """HGNN convolution (Feng et al., "Hypergraph Neural Networks", arXiv:1809.09401):
    `D_v^-1/2 H W D_e^-1 H^T D_v^-1/2 (x Θ + b)`.

    Args:
        units: output channels.
        use_bias: add a bias to the projection (before the smoothing, as DHG does).
        num_edges: the number of hyperedges, needed only for sparse incidence pairs.
    Inputs: `[x (..., N, C), incidence (..., N, E) | (M, 2) int | (B, M, 2) int]` and optionally hyperedge
    weights (..., E).
    Output: (..., N, units).
    """

    smooth = staticmethod(hypergraph.hgnn_smooth)


@keras.saving.register_keras_serializable(package="keras_hyper")
class HGNNPlusConv(_HypergraphConv):
    """HGNN+ convolution (Gao et al., "HGNN+: General Hypergraph Neural Networks", TPAMI 2023; DHG's
    `HGNNPConv`): vertex -> hyperedge mean, then weighted hyperedge -> vertex mean of `x Θ + b`.

    Args, inputs and output as `HGNNConv`.
    """

    smooth = staticmethod(hypergraph.hgnnp_smooth)
