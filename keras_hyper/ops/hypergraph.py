"""Message passing on hypergraphs: vertex <-> hyperedge aggregation and the HGNN / HGNN+ smoothing operators.

A hypergraph of N vertices and E hyperedges is given either as

- a dense incidence matrix `H` of shape (..., N, E) (H[v, e] = 1 when vertex v belongs to hyperedge e), with
  vertex features `x` of shape (..., N, C) and the same leading (batch) axes; or
- sparse incidence pairs of shape (M, 2), integer rows `[vertex, hyperedge]` (what `dhg.Hypergraph` stores),
  with `x` of shape (N, C) and the number of hyperedges given as `num_edges`. This form never builds the
  N x E matrix: aggregation is a gather plus a segment sum over the M incidences, O(M C) instead of O(N E C).
  A batch of B graphs is pairs (B, M, 2) with `x` (B, N, C) (and weights (B, E)): the same N, E and M in every
  graph, which runs as one graph of B N vertices and B E hyperedges (its disjoint union).

Hyperedge weights `edge_weight` (..., E) default to 1. Degrees follow HGNN (Feng et al., "Hypergraph Neural
Networks", arXiv:1809.09401) and HGNN+ (Gao et al., "HGNN+: General Hypergraph Neural Networks", IEEE
TPAMI 2023, as implemented in DHG): the vertex degree is the weighted sum of its hyperedges,
`d_v = sum_e w_e H[v, e]`, the hyperedge degree its size, `d_e = sum_v H[v, e]`; a zero degree contributes 0
(an isolated vertex or an empty hyperedge receives nothing instead of a division by zero).
"""

import keras
import numpy as np
from keras import ops


def incidence_matrix(hyperedges, num_vertices, *, fix_isolated=False, dtype="float32"):
    """The dense (N, E) incidence matrix of a list of hyperedges (each an iterable of vertex indices).

    With `fix_isolated=True`, every vertex in no hyperedge gets a singleton hyperedge appended, as LightHGNN's
    preprocessing does (so that HGNN's symmetric normalisation gives it its own features back).
    """
    edges = [sorted(set(int(v) for v in edge)) for edge in hyperedges]
    for number, edge in enumerate(edges):
        if not edge:
            raise ValueError(f"Hyperedge {number} is empty; every hyperedge needs at least one vertex.")
        bad = [v for v in edge if not 0 <= v < num_vertices]
        if bad:
            raise ValueError(f"Hyperedge {number} has vertices {bad} outside [0, {num_vertices}).")
    if fix_isolated:
        covered = {v for edge in edges for v in edge}
        edges += [[v] for v in range(num_vertices) if v not in covered]
    matrix = np.zeros((num_vertices, len(edges)), dtype=dtype)
    for number, edge in enumerate(edges):
        matrix[edge, number] = 1
    return matrix


def incidence_pairs(hyperedges, num_vertices, *, fix_isolated=False):
    """The sparse form of `incidence_matrix`: int32 rows `[vertex, hyperedge]`, hyperedge by hyperedge."""
    vertices, edges = np.nonzero(incidence_matrix(hyperedges, num_vertices, fix_isolated=fix_isolated).T)
    return np.stack([edges, vertices], axis=1).astype("int32")


def _is_sparse(incidence):
    return "int" in keras.backend.standardize_dtype(incidence.dtype)


def _safe_inverse(degree, power=1.0):
    positive = degree > 0
    safe = ops.where(positive, degree, ops.ones_like(degree))
    return ops.where(positive, ops.power(safe, -power), ops.zeros_like(degree))


class _Structure:
    """Degrees and the two aggregations of one hypergraph, in whichever form it was given."""

    def __init__(self, incidence, edge_weight, num_edges, dtype):
        incidence = ops.convert_to_tensor(incidence)
        self.sparse = _is_sparse(incidence)
        if self.sparse:
            if num_edges is None:
                raise ValueError("Sparse incidence pairs need num_edges (the number of hyperedges).")
            if len(incidence.shape) != 2 or incidence.shape[-1] != 2:
                raise ValueError(f"Sparse incidence must have shape (M, 2) or (B, M, 2), got {tuple(incidence.shape)}.")
            self.vertex, self.edge = incidence[:, 0], incidence[:, 1]
            self.num_edges = num_edges
            ones = ops.ones(ops.shape(self.edge), dtype=dtype)
            self.edge_degree = ops.segment_sum(ones, self.edge, num_segments=num_edges)
        else:
            self.incidence = ops.cast(incidence, dtype)
            self.edge_degree = ops.sum(self.incidence, axis=-2)
        if edge_weight is None:
            edge_weight = ops.ones_like(self.edge_degree)
        self.edge_weight = ops.cast(edge_weight, dtype)

    def vertex_degree(self, num_vertices):
        """`d_v = sum_e w_e H[v, e]`: (..., N)."""
        if self.sparse:
            weights = ops.take(self.edge_weight, self.edge, axis=0)
            return ops.segment_sum(weights, self.vertex, num_segments=num_vertices)
        return ops.squeeze(ops.matmul(self.incidence, ops.expand_dims(self.edge_weight, -1)), -1)

    def to_edges(self, x):
        """`H^T x`: (..., N, C) -> (..., E, C)."""
        if self.sparse:
            return ops.segment_sum(ops.take(x, self.vertex, axis=0), self.edge, num_segments=self.num_edges)
        return ops.matmul(ops.swapaxes(self.incidence, -1, -2), x)

    def to_vertices(self, e, num_vertices):
        """`H e`: (..., E, C) -> (..., N, C)."""
        if self.sparse:
            return ops.segment_sum(ops.take(e, self.edge, axis=0), self.vertex, num_segments=num_vertices)
        return ops.matmul(self.incidence, e)


def _num_vertices(x):
    return x.shape[-2] if x.shape[-2] is not None else ops.shape(x)[-2]


def _batched_pairs(incidence):
    incidence = ops.convert_to_tensor(incidence)
    return incidence, _is_sparse(incidence) and len(incidence.shape) == 3


def _per_graph(op, x, pairs, num_edges, rows, edge_weight=None):
    """Runs a sparse-form `op` on a batch: pairs (B, M, 2) and x (B, N, C) as one disjoint-union graph (each
    graph's vertex and hyperedge indices offset by its position), the result reshaped to (B, rows, C) where
    `rows` is "vertices" or "edges".
    """
    if num_edges is None:
        raise ValueError("Sparse incidence pairs need num_edges (the number of hyperedges).")
    if len(x.shape) != 3:
        raise ValueError(f"Batched incidence pairs (B, M, 2) need features (B, N, C), got shape {tuple(x.shape)}.")
    batch, n = ops.shape(x)[0], _num_vertices(x)
    graph = ops.arange(batch, dtype=pairs.dtype)
    offsets = ops.stack([graph * ops.cast(n, pairs.dtype), graph * num_edges], axis=-1)
    flat = ops.reshape(pairs + offsets[:, None, :], (-1, 2))
    weights = {} if edge_weight is None else {"edge_weight": ops.reshape(edge_weight, (-1,))}
    out = op(ops.reshape(x, (-1, x.shape[-1])), flat, num_edges=batch * num_edges, **weights)
    return ops.reshape(out, (batch, n if rows == "vertices" else num_edges, out.shape[-1]))


def vertex_to_edge_mean(x, incidence, *, num_edges=None):
    """The mean feature of each hyperedge's vertices, `D_e^-1 H^T x`: (..., N, C) -> (..., E, C)."""
    x = ops.convert_to_tensor(x)
    incidence, batched = _batched_pairs(incidence)
    if batched:
        return _per_graph(vertex_to_edge_mean, x, incidence, num_edges, "edges")
    graph = _Structure(incidence, None, num_edges, x.dtype)
    return graph.to_edges(x) * ops.expand_dims(_safe_inverse(graph.edge_degree), -1)


def hgnn_smooth(x, incidence, edge_weight=None, *, num_edges=None):
    """HGNN's spectral smoothing `D_v^-1/2 H W D_e^-1 H^T D_v^-1/2 x`: (..., N, C) -> (..., N, C)."""
    x = ops.convert_to_tensor(x)
    incidence, batched = _batched_pairs(incidence)
    if batched:
        return _per_graph(hgnn_smooth, x, incidence, num_edges, "vertices", edge_weight)
    graph = _Structure(incidence, edge_weight, num_edges, x.dtype)
    n = _num_vertices(x)
    scale = ops.expand_dims(_safe_inverse(graph.vertex_degree(n), 0.5), -1)
    e = graph.to_edges(x * scale)
    e = e * ops.expand_dims(graph.edge_weight * _safe_inverse(graph.edge_degree), -1)
    return graph.to_vertices(e, n) * scale


def hgnnp_smooth(x, incidence, edge_weight=None, *, num_edges=None):
    """HGNN+'s two-stage mean message passing `D_v^-1 H W D_e^-1 H^T x` (vertex -> hyperedge mean, then
    weighted hyperedge -> vertex mean): (..., N, C) -> (..., N, C)."""
    x = ops.convert_to_tensor(x)
    incidence, batched = _batched_pairs(incidence)
    if batched:
        return _per_graph(hgnnp_smooth, x, incidence, num_edges, "vertices", edge_weight)
    graph = _Structure(incidence, edge_weight, num_edges, x.dtype)
    n = _num_vertices(x)
    e = graph.to_edges(x) * ops.expand_dims(graph.edge_weight * _safe_inverse(graph.edge_degree), -1)
    return graph.to_vertices(e, n) * ops.expand_dims(_safe_inverse(graph.vertex_degree(n)), -1)
