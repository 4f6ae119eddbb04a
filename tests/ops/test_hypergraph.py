"""Hypergraph message passing against DHG (the library LightHGNN and HGNN+ are built on), dense and sparse."""

import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.layers.hypergraph import HGNNConv, HGNNPlusConv
from keras_hyper.ops import hypergraph

EDGES = [[0, 1, 2], [2, 3], [4, 5, 6, 7], [1, 7, 8], [9, 3]]
N = 12  # vertices 10 and 11 are isolated


def _graph():
    rng = np.random.default_rng(0)
    dense = hypergraph.incidence_matrix(EDGES, N, fix_isolated=True)
    pairs = hypergraph.incidence_pairs(EDGES, N, fix_isolated=True)
    weight = rng.uniform(0.5, 2.0, dense.shape[1]).astype("float32")
    x = rng.normal(size=(N, 5)).astype("float32")
    return dense, pairs, weight, x


def test_incidence_forms_and_isolated_vertices():
    dense, pairs, _, _ = _graph()
    assert dense.shape == (N, 7) and dense[10, 5] == 1 and dense[11, 6] == 1
    rebuilt = np.zeros_like(dense)
    rebuilt[pairs[:, 0], pairs[:, 1]] = 1
    np.testing.assert_array_equal(rebuilt, dense)
    with pytest.raises(ValueError, match="outside"):
        hypergraph.incidence_matrix([[0, 12]], N)
    with pytest.raises(ValueError, match="empty"):
        hypergraph.incidence_matrix([[]], N)


def test_smoothing_matches_dhg_dense_and_sparse():
    torch = pytest.importorskip("torch")
    dhg = pytest.importorskip("dhg")
    dense, pairs, weight, x = _graph()
    members = [list(np.flatnonzero(dense[:, e])) for e in range(dense.shape[1])]
    graph = dhg.Hypergraph(N, members, e_weight=[float(w) for w in weight])
    features = torch.tensor(x)
    expected_hgnn = (graph.L_HGNN @ features).numpy()
    expected_hgnnp = graph.v2v(features, aggr="mean").numpy()
    edges = dense.shape[1]
    for incidence, kwargs in ((dense, {}), (pairs, {"num_edges": edges})):
        np.testing.assert_allclose(
            to_numpy(hypergraph.hgnn_smooth(x, incidence, weight, **kwargs)), expected_hgnn, atol=1e-5
        )
        np.testing.assert_allclose(
            to_numpy(hypergraph.hgnnp_smooth(x, incidence, weight, **kwargs)), expected_hgnnp, atol=1e-5
        )
        np.testing.assert_allclose(
            to_numpy(hypergraph.vertex_to_edge_mean(x, incidence, **kwargs)),
            dhg.Hypergraph(N, members).v2e(features, aggr="mean").numpy(),
            atol=1e-5,
        )


def test_layers_project_then_smooth_in_both_forms():
    dense, pairs, weight, x = _graph()
    for layer_type, smooth in ((HGNNConv, hypergraph.hgnn_smooth), (HGNNPlusConv, hypergraph.hgnnp_smooth)):
        layer = layer_type(3)
        out = to_numpy(layer([x[None], dense[None], weight[None]]))[0]
        kernel, bias = (to_numpy(w) for w in layer.theta.weights)
        np.testing.assert_allclose(out, to_numpy(smooth(x @ kernel + bias, dense, weight)), atol=1e-5)
        sparse = layer_type(3, num_edges=dense.shape[1])
        sparse([x, pairs, weight])
        sparse.set_weights(layer.get_weights())
        np.testing.assert_allclose(to_numpy(sparse([x, pairs, weight])), out, atol=1e-5)


def test_batched_pairs_match_the_dense_batch():
    """Two different graphs with the same N, E and M, as pairs (2, M, 2): each graph as its dense matrix."""
    dense, pairs, weight, x = _graph()
    order = np.random.default_rng(1).permutation(N)  # the second graph: the first with its vertices renumbered
    dense2 = dense[np.argsort(order)]
    pairs2 = np.stack([order[pairs[:, 0]], pairs[:, 1]], axis=1).astype("int32")
    xs, weights = np.stack([x, x[::-1] * 2.0]), np.stack([weight, weight[::-1]])
    denses, batched = np.stack([dense, dense2]), np.stack([pairs, pairs2])
    edges = dense.shape[1]
    for op in (hypergraph.hgnn_smooth, hypergraph.hgnnp_smooth):
        expected = to_numpy(op(xs, denses, weights))
        np.testing.assert_allclose(to_numpy(op(xs, batched, weights, num_edges=edges)), expected, atol=1e-5)
    np.testing.assert_allclose(
        to_numpy(hypergraph.vertex_to_edge_mean(xs, batched, num_edges=edges)),
        to_numpy(hypergraph.vertex_to_edge_mean(xs, denses)),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match=r"need features \(B, N, C\), got shape \(12, 5\)"):
        hypergraph.hgnn_smooth(x, batched, num_edges=edges)


def test_sparse_pairs_need_the_edge_count():
    _, pairs, _, x = _graph()
    with pytest.raises(ValueError, match="num_edges"):
        hypergraph.hgnn_smooth(x, pairs)
    with pytest.raises(ValueError, match="units"):
        HGNNConv(0)
