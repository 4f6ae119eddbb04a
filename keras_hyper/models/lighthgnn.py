"""LightHGNN's teachers and students (Feng et al., "LightHGNN: Distilling Hypergraph Neural Networks into MLPs
for 100x Faster Inference", ICLR 2024, arXiv:2402.04296; paper 16 in PAPERS.md).

- `hgnn`: the two-layer teacher, HGNN (`conv="hgnn"`, the official `MyHGNN`) or HGNN+ (`conv="hgnnp"`, DHG's
  `HGNNP`): convolution, ReLU, optional BatchNorm, dropout, convolution. Inputs: vertex features
  (B, N, C) and the dense incidence matrix (B, N, E) of B graphs, or with `incidence="sparse"` their incidence
  pairs (B, M, 2) (O(M) memory and time instead of O(N E): what large hypergraphs need); output
  (B, N, num_classes) logits.
- `lighthgnn_mlp`: the student (`MyMLPs`): Linear, ReLU, BatchNorm, dropout, Linear on vertex features alone,
  (B, N, C) -> (B, N, num_classes): it needs no hypergraph at inference, which is the paper's point.

Distil a teacher into a student with `keras_hyper.training.distillation.LightHGNNDistiller`. The variants are
the official widths (teacher 32 hidden channels without BN, student 128) on each dataset the official configs
name; no checkpoints are published. Layer names follow the official state dicts (`layers-0` for
`layers.0`/`layers0`, `layer0-linear` for `layer0.layers.0`).
"""

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers._args import check_positive, check_rate
from keras_hyper.layers.hypergraph import HGNNConv, HGNNPlusConv
from keras_hyper.layers.torch_defaults import batch_norm
from keras_hyper.models import _base
from keras_hyper.ops.hypergraph import incidence_matrix

CONVS = {"hgnn": HGNNConv, "hgnnp": HGNNPlusConv}


def _head(x, classifier_activation):
    if classifier_activation is None:
        return x
    return keras.layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)


def hgnn(
    in_channels,
    num_classes,
    *,
    hid_channels=32,
    conv="hgnn",
    use_bn=False,
    drop_rate=0.5,
    incidence="dense",
    num_vertices=None,
    num_edges=None,
    classifier_activation=None,
    weights=None,
    name="hgnn",
):
    """Builds a two-layer HGNN / HGNN+ teacher.

    Args:
        in_channels, num_classes, hid_channels: vertex feature width, classes, hidden width (official: 32).
        conv: "hgnn" (spectral smoothing) or "hgnnp" (HGNN+ two-stage mean message passing).
        use_bn: BatchNorm after the hidden ReLU (official teachers: False). The official last layer builds a
            BatchNorm too but never applies it: the model has none there and the converter ignores its tensors.
        drop_rate: dropout after the hidden layer.
        incidence: "dense" (an (N, E) matrix per graph) or "sparse" (int32 `[vertex, hyperedge]` pairs (M, 2) per
            graph, the same M in every graph of a batch; needs `num_edges`).
        num_vertices, num_edges: fix the graph size in the input shapes (None: any graph).
        classifier_activation: None (logits, what distillation needs) or an activation for the output.
        weights: None or an official state-dict file (`MyHGNN` / `dhg.models.HGNN` / `dhg.models.HGNNP` layout).
    Returns:
        A `keras.Model` taking `[features (B, N, in_channels), incidence (B, N, E) | (B, M, 2)]`.
    """
    check_positive(in_channels=in_channels, num_classes=num_classes, hid_channels=hid_channels)
    check_rate(drop_rate=drop_rate)
    if conv not in CONVS:
        raise ValueError(f"conv must be one of {sorted(CONVS)}, got {conv!r}.")
    features = keras.Input((num_vertices, in_channels), name="features")
    if incidence == "dense":
        graph = keras.Input((num_vertices, num_edges), name="incidence")
    elif incidence == "sparse":
        check_positive(num_edges=num_edges)
        graph = keras.Input((None, 2), dtype="int32", name="incidence")
    else:
        raise ValueError(f"incidence must be 'dense' or 'sparse', got {incidence!r}.")
    edges = num_edges if incidence == "sparse" else None
    x = CONVS[conv](hid_channels, num_edges=edges, name="layers-0")([features, graph])
    x = keras.layers.ReLU(name="layers-0-act")(x)
    if use_bn:
        x = batch_norm("layers-0-bn")(x)
    x = keras.layers.Dropout(drop_rate, name="layers-0-drop")(x)
    x = CONVS[conv](num_classes, num_edges=edges, name="layers-1")([x, graph])
    return _base.finish([features, graph], _head(x, classifier_activation), name=name, weights=weights, arch=ARCH)


def lighthgnn_mlp(
    in_channels,
    num_classes,
    *,
    hid_channels=128,
    drop_rate=0.5,
    num_vertices=None,
    classifier_activation=None,
    weights=None,
    name="lighthgnn_mlp",
):
    """Builds the LightHGNN student MLP: (B, N, in_channels) vertex features -> (B, N, num_classes).

    Args as `hgnn`; `hid_channels` official: 128. BatchNorm follows the ReLU, as in the official student.
    """
    check_positive(in_channels=in_channels, num_classes=num_classes, hid_channels=hid_channels)
    check_rate(drop_rate=drop_rate)
    features = keras.Input((num_vertices, in_channels), name="features")
    x = keras.layers.Dense(hid_channels, name="layer0-linear")(features)
    x = keras.layers.ReLU(name="layer0-act")(x)
    x = batch_norm("layer0-bn")(x)
    x = keras.layers.Dropout(drop_rate, name="layer0-drop")(x)
    x = keras.layers.Dense(num_classes, name="layer1")(x)
    return _base.finish(features, _head(x, classifier_activation), name=name, weights=weights, arch=STUDENT_ARCH)


# Keys of checkpoint tensors the teacher never computes with. With `use_bn=True` both official layouts hold a
# BatchNorm in the *last* convolution: `MyHGNN` builds `layers1` as a DHG `HGNNConv(..., use_bn=True, is_last=True)`
# (`layers1.bn.*`) and DHG's `HGNN` / `HGNNP` do the same in `layers.1` (`layers.1.bn.*`); the layer creates the
# BatchNorm from `use_bn` but applies it only when `is_last` is False, so the last layer's BN is dead weight
# (its output is the logits, straight after smoothing). `num_batches_tracked` is a training counter.
IGNORED_TEACHER_KEYS = (r"layers\.?1\.bn\.(weight|bias|running_mean|running_var)",)


def convert_hgnn(state_dict, model):
    """Fills a teacher from the official `MyHGNN` (`layers0.*`, `layers1.*`) or DHG `HGNN` / `HGNNP`
    (`layers.0.*`, `layers.1.*`) state dict, with or without BatchNorm.

    With `use_bn=True` the last layer's BatchNorm is built but never applied, in both layouts: its tensors are
    ignored (`IGNORED_TEACHER_KEYS`); the first layer's BatchNorm fills `layers-0-bn`.
    """
    ignore = IGNORED_TEACHER_KEYS
    m = mapping.StateDictMapper(state_dict, model, ignore=ignore)
    for index in (0, 1):
        key = f"layers{index}" if f"layers{index}.theta.weight" in state_dict else f"layers.{index}"
        m.dense(model.get_layer(f"layers-{index}").theta, f"{key}.theta")
    if any(layer.name == "layers-0-bn" for layer in model.layers):
        m.batch_norm(
            model.get_layer("layers-0-bn"), "layers0.bn" if "layers0.bn.weight" in state_dict else "layers.0.bn"
        )
    m.finish()


def convert_lighthgnn_mlp(state_dict, model):
    """Fills a student from the official `MyMLPs` state dict (`layer0.layers.{0,2}`, `layer1`)."""
    m = mapping.StateDictMapper(state_dict, model)
    m.dense(model.get_layer("layer0-linear"), "layer0.layers.0")
    m.batch_norm(model.get_layer("layer0-bn"), "layer0.layers.2")
    m.dense(model.get_layer("layer1"), "layer1")
    m.finish()


# The harness graph: 14 vertices, seven hyperedges and one isolated vertex (the fixture's hypergraph).
_EDGES = ((4, 6), (1, 3, 8), (0, 1, 2, 4, 11), (0, 2, 5, 9), (4, 6, 12), (2, 4, 7, 9, 11), (5, 10))
_INCIDENCE = incidence_matrix(_EDGES, 14, fix_isolated=True)


def _graph_inputs(batch):
    features = np.random.default_rng(0).normal(size=(batch, 14, 10)).astype("float32")
    return features, np.repeat(_INCIDENCE[None], batch, axis=0)


def _vertex_inputs(batch):
    return np.random.default_rng(0).normal(size=(batch, 14, 10)).astype("float32")


# The benchmark's default hypergraph has the size of DHG's co-citation Cora: 2,708 vertices, 1,579 hyperedges.
CORA_VERTICES, CORA_EDGES = 2708, 1579


def sample_hypergraph(num_vertices, num_edges, rng, *, max_degree=5):
    """A random (num_vertices, E) incidence matrix: `num_edges` hyperedges of 2 to `max_degree` distinct vertices,
    then a singleton hyperedge for each vertex left in none (LightHGNN's preprocessing), so E >= num_edges."""
    edges = [rng.choice(num_vertices, size=rng.integers(2, max_degree + 1), replace=False) for _ in range(num_edges)]
    return incidence_matrix(edges, num_vertices, fix_isolated=True)


def _sample_graph(builder_kwargs, batch, size, rng):
    """Benchmark inputs of a teacher: `batch` random hypergraphs of `size` vertices (default Cora's) with Cora's
    hyperedge-to-vertex ratio, in the incidence form the teacher takes; what it costs depends on the sizes, not on
    the pattern."""
    vertices = size or CORA_VERTICES
    dense = sample_hypergraph(vertices, max(1, round(vertices * CORA_EDGES / CORA_VERTICES)), rng)
    features = rng.standard_normal((batch, vertices, builder_kwargs["in_channels"])).astype("float32")
    if builder_kwargs.get("incidence", "dense") == "dense":
        return (features, np.repeat(dense[None], batch, axis=0)), vertices, {}
    pairs = np.stack(np.nonzero(dense), axis=1).astype("int32")
    return (features, np.repeat(pairs[None], batch, axis=0)), vertices, {"num_edges": dense.shape[1]}


def _sample_vertices(builder_kwargs, batch, size, rng):
    """Benchmark inputs of a student: the vertex features alone, as `_sample_graph`'s."""
    vertices = size or CORA_VERTICES
    return rng.standard_normal((batch, vertices, builder_kwargs["in_channels"])).astype("float32"), vertices, {}


_PAPER = _base.Paper(
    "LightHGNN: Distilling Hypergraph Neural Networks into MLPs for 100x Faster Inference", "2402.04296", 16
)
_SOURCE = "https://github.com/iMoonLab/LightHGNN"

# dataset: (feature width, classes, teacher params (HGNN and HGNN+ alike), student params), from the official
# configs and DHG's dataset metadata.
DATASETS = {
    "cora": (1433, 7, 46119, 184711),
    "pubmed": (500, 3, 16131, 64771),
    "citeseer": (3703, 6, 118726, 475142),
    "ca_cora": (1433, 7, 46119, 184711),
    "coauthorship_dblp": (1425, 6, 45830, 183558),
    "cc_cora": (1433, 7, 46119, 184711),
    "cc_citeseer": (3703, 6, 118726, 475142),
    "news20": (100, 4, 3364, 13700),
    "dblp4k_paper": (334, 4, 10852, 43652),
    "dblp4k_term": (334, 4, 10852, 43652),
    "dblp4k_conf": (334, 4, 10852, 43652),
    "imdb_aw": (3066, 3, 98243, 393219),
    "recipe_100k": (2254, 8, 72424, 289928),
    "recipe_200k": (3200, 8, 102696, 411016),
}

TEACHER_VARIANTS = tuple(
    _base.Variant(f"{conv}_{dataset}", dict(in_channels=c, num_classes=k, conv=conv), num_params=teacher)
    for dataset, (c, k, teacher, _) in DATASETS.items()
    for conv in ("hgnn", "hgnnp")
)
STUDENT_VARIANTS = tuple(
    _base.Variant(f"lighthgnn_mlp_{dataset}", dict(in_channels=c, num_classes=k), num_params=student)
    for dataset, (c, k, _, student) in DATASETS.items()
)

ARCH = _base.Architecture(
    name="hgnn",
    builder=hgnn,
    convert=convert_hgnn,
    paper=_PAPER,
    variants=TEACHER_VARIANTS,
    license="Apache-2.0",
    source=_SOURCE,
    testing=_base.Testing(
        # BN on, so that the harness trains and round-trips every layer kind the builder has
        tiny=dict(in_channels=10, num_classes=4, hid_channels=8, use_bn=True),
    ),
    example_inputs=_graph_inputs,
    kind="hypergraph",
    sample_inputs=_sample_graph,
)

STUDENT_ARCH = _base.Architecture(
    name="lighthgnn_mlp",
    builder=lighthgnn_mlp,
    convert=convert_lighthgnn_mlp,
    paper=_PAPER,
    variants=STUDENT_VARIANTS,
    license="Apache-2.0",
    source=_SOURCE,
    testing=_base.Testing(
        # a fixed vertex count: LiteRT export needs static shapes apart from the batch
        tiny=dict(in_channels=10, num_classes=4, hid_channels=16, num_vertices=14),
    ),
    example_inputs=_vertex_inputs,
    kind="vertex features (graph-free MLP)",
    sample_inputs=_sample_vertices,
)

ARCHITECTURES = (ARCH, STUDENT_ARCH)
