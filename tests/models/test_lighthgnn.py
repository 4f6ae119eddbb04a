"""LightHGNN: the official teachers, student and distillation loss reproduced from the reference fixtures, and
the paper's claim in small: a distilled MLP gets near its teacher's accuracy without seeing the hypergraph,
where an MLP trained on the labels alone does not. (The harness trains, saves and round-trips both models.)"""

import keras
import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.convert.reference import tolerance
from keras_hyper.models import lighthgnn
from keras_hyper.ops.hypergraph import incidence_matrix
from keras_hyper.training import distillation


def _case(name):
    path = reference_dir("lighthgnn") / f"{name}.npz"
    return path, np.load(path)


def _teacher(path, prefix="sd/", **kwargs):
    model = lighthgnn.hgnn(10, 4, hid_channels=8, **kwargs)
    lighthgnn.convert_hgnn(read_checkpoint(path, prefix=prefix), model)
    return model


@pytest.mark.parametrize("case,kwargs", [("tiny_hgnn", {}), ("tiny_hgnnp", {"conv": "hgnnp", "use_bn": True})])
def test_teacher_matches_the_official_output_and_embedding(case, kwargs):
    path, data = _case(case)
    model = _teacher(path, **kwargs)
    inputs = [data["input/X"][None], data["input/H"][None]]
    out = to_numpy(model(inputs))[0]
    assert np.abs(out - data["output"]).max() <= tolerance(data["output"])
    hidden = "layers-0-bn" if kwargs.get("use_bn") else "layers-0-act"
    embed = keras.Model(model.inputs, model.get_layer(hidden).output)
    np.testing.assert_allclose(to_numpy(embed(inputs))[0], data["feat/emb"], atol=1e-5)


def _official_bn_state(rng):
    """The `tiny_hgnn` weights as `MyHGNN(use_bn=True)` holds them: both of its DHG `HGNNConv`s build a BatchNorm1d
    `bn` (`layers0.bn.*`, `layers1.bn.*`, running statistics and the batch counter included), drawn at random."""
    path, _ = _case("tiny_hgnn")
    state = read_checkpoint(path, prefix="sd/")
    for layer, width in (("layers0", 8), ("layers1", 4)):
        state[f"{layer}.bn.weight"] = rng.uniform(0.5, 1.5, width).astype("float32")
        state[f"{layer}.bn.bias"] = rng.normal(size=width).astype("float32")
        state[f"{layer}.bn.running_mean"] = rng.normal(size=width).astype("float32")
        state[f"{layer}.bn.running_var"] = rng.uniform(0.5, 2.0, width).astype("float32")
        state[f"{layer}.bn.num_batches_tracked"] = np.array(7, dtype="int64")
    return state


@pytest.mark.parametrize("layout", ["MyHGNN", "dhg.models.HGNN"])
def test_teacher_converts_the_official_layouts_with_batchnorm(layout):
    """`use_bn=True` in both key layouts the official code produces (`MyHGNN`: `layers0` / `layers1`; DHG's
    `HGNN`: `layers.0` / `layers.1`): the state dict loads strictly into the official modules (so the key names are
    the official ones), and the converted teacher gives their output. The last layer's BatchNorm is built but never
    applied (`is_last`), so the converter ignores it; its random values change nothing."""
    torch = pytest.importorskip("torch")
    dhg = pytest.importorskip("dhg")
    _, data = _case("tiny_hgnn")
    state = _official_bn_state(np.random.default_rng(0))
    if layout == "MyHGNN":
        official = torch.nn.Module()  # MyHGNN's structure: two DHG convolutions, the second the last
        official.layers0 = dhg.nn.HGNNConv(10, 8, use_bn=True, drop_rate=0.5)
        official.layers1 = dhg.nn.HGNNConv(8, 4, use_bn=True, is_last=True)
    else:
        official = dhg.models.HGNN(10, 8, 4, use_bn=True)
        state = {k.replace("layers0", "layers.0").replace("layers1", "layers.1"): v for k, v in state.items()}
    official.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=True)
    assert any(k.startswith(("layers1.bn.", "layers.1.bn.")) for k in state)
    official.eval()
    incidence = data["input/H"]
    graph = dhg.Hypergraph(incidence.shape[0], [np.flatnonzero(column).tolist() for column in incidence.T])
    features = torch.as_tensor(data["input/X"])
    with torch.no_grad():
        if layout == "MyHGNN":
            expected = official.layers1(official.layers0(features, graph), graph).numpy()
        else:
            expected = official(features, graph).numpy()

    model = lighthgnn.hgnn(10, 4, hid_channels=8, use_bn=True)
    lighthgnn.convert_hgnn(state, model)
    out = to_numpy(model([data["input/X"][None], incidence[None]]))[0]
    assert np.abs(out - expected).max() <= tolerance(expected)
    # the first layer's BatchNorm is applied: without it the output is another one
    assert np.abs(out - data["output"]).max() > 100 * tolerance(expected)


def test_teacher_converter_still_rejects_a_batchnorm_it_would_drop():
    """Only the never-applied last-layer BN is ignored: a `use_bn=True` checkpoint into a teacher built without BN
    leaves the first layer's BN unused, and that is an error."""
    state = _official_bn_state(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"unexpected keys.*layers0\.bn\.weight"):
        lighthgnn.convert_hgnn(state, lighthgnn.hgnn(10, 4, hid_channels=8))


def test_sparse_incidence_teacher_matches_the_official_output(tmp_path):
    """The same official HGNN+ teacher fed incidence pairs (B, M, 2): the fixture's output, after a `.keras` round
    trip and a training step too (the segment sums carry gradients)."""
    path, data = _case("tiny_hgnnp")
    dense = data["input/H"]
    model = _teacher(path, conv="hgnnp", use_bn=True, incidence="sparse", num_edges=dense.shape[1])
    inputs = [data["input/X"][None], np.stack(np.nonzero(dense), axis=1).astype("int32")[None]]
    out = to_numpy(model(inputs))[0]
    assert np.abs(out - data["output"]).max() <= tolerance(data["output"])
    model.save(tmp_path / "sparse.keras")
    loaded = keras.saving.load_model(tmp_path / "sparse.keras")
    np.testing.assert_allclose(to_numpy(loaded(inputs))[0], out, atol=1e-6)
    loaded.compile(optimizer="sgd", loss="mse")
    assert np.isfinite(loaded.train_on_batch(inputs, np.zeros((1, *out.shape), "float32")))


def test_student_matches_the_official_output():
    path, data = _case("tiny_mlp")
    model = lighthgnn.lighthgnn_mlp(10, 4, hid_channels=16)
    lighthgnn.convert_lighthgnn_mlp(read_checkpoint(path, prefix="sd/"), model)
    out = to_numpy(model(data["input"][None]))[0]
    assert np.abs(out - data["output"]).max() <= tolerance(data["output"])


def test_distillation_losses_match_the_official_ones():
    path, data = _case("tiny_distill")
    student, teacher = data["input/student_logits"], data["input/teacher_logits"]
    incidence, train = data["input/H"], data["input/train_mask"]
    probs = to_numpy(keras.ops.softmax(teacher))
    loss_x = to_numpy(keras.losses.sparse_categorical_crossentropy(data["input/labels"], student, from_logits=True))
    loss_x = loss_x[train].mean()
    loss_k = to_numpy(distillation.soft_label_loss(student, probs))
    loss_h = to_numpy(distillation.high_order_loss(student, probs, incidence, data["input/e_mask"], tau=2.0))
    lamb = 0.3
    expected = [loss_x, loss_k, loss_h, loss_k + loss_h, lamb * loss_x + (1 - lamb) * (loss_k + loss_h), loss_k]
    expected.append(lamb * loss_x + (1 - lamb) * loss_k)
    np.testing.assert_allclose(expected, data["output"], rtol=1e-5)

    teacher_model = _teacher(path, prefix="sd_teacher/")
    inputs = [data["input/X"][None], incidence[None]]
    reliability = distillation.edge_reliability(teacher_model, inputs, data["input/noise_randn"][None])
    np.testing.assert_allclose(to_numpy(reliability)[0], data["feat/delta_e"], atol=1e-5)

    embed = keras.Model(teacher_model.inputs, teacher_model.get_layer("layers-0-act").output)
    score = distillation.topology_score(to_numpy(embed(inputs))[0], incidence)
    np.testing.assert_allclose(to_numpy(score), data["feat/topology_score_teacher"], rtol=1e-5)


def test_true_kl_is_zero_when_the_student_agrees():
    logits = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    probs = to_numpy(keras.ops.softmax(logits))
    assert abs(float(to_numpy(distillation.soft_label_loss(logits, probs, official_kl=False)))) < 1e-6
    # the official form is not a divergence: it stays positive at agreement
    assert float(to_numpy(distillation.soft_label_loss(logits, probs))) > 0.1


def _synthetic_hypergraph(seed=0, vertices=300, classes=4, features=16):
    """Classes with weak, noisy features and hyperedges that mostly join vertices of one class: the structure
    carries most of the signal, as in citation hypergraphs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, vertices)
    centres = rng.normal(size=(classes, features))
    x = (0.35 * centres[labels] + rng.normal(size=(vertices, features))).astype("float32")
    edges = []
    for _ in range(vertices):
        if rng.random() < 0.9:
            members = rng.choice(np.flatnonzero(labels == rng.integers(classes)), size=5, replace=False)
        else:
            members = rng.choice(vertices, size=5, replace=False)
        edges.append(members)
    train = np.zeros(vertices, bool)
    for c in range(classes):
        train[rng.choice(np.flatnonzero(labels == c), size=5, replace=False)] = True
    return x, incidence_matrix(edges, vertices, fix_isolated=True), labels, train


def _graph_batches(array, steps):
    """`steps` copies of one whole-graph array: one epoch of `steps` full-graph steps without per-epoch overhead."""
    return np.repeat(np.asarray(array)[None], steps, axis=0)


def _fit(model, inputs, labels, train, steps):
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=keras.losses.SparseCategoricalCrossentropy(True))
    inputs = keras.tree.map_structure(lambda a: _graph_batches(a, steps), inputs)
    weight = _graph_batches(train.astype("float32"), steps)
    model.fit(inputs, _graph_batches(labels, steps), sample_weight=weight, batch_size=1, verbose=0)


@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="a training experiment (~400 full-graph steps): run once, in the torch run; the losses it trains with "
    "are checked against the official ones on every backend above",
)
def test_distilled_student_gets_near_the_teacher_without_the_hypergraph():
    keras.utils.set_random_seed(0)
    x, incidence, labels, train = _synthetic_hypergraph()
    test = ~train
    teacher = lighthgnn.hgnn(16, 4, hid_channels=32)
    _fit(teacher, [x, incidence], labels, train, steps=100)
    teacher_probs = to_numpy(keras.ops.softmax(teacher([x[None], incidence[None]])))
    teacher_acc = (teacher_probs[0].argmax(-1) == labels)[test].mean()

    plain = lighthgnn.lighthgnn_mlp(16, 4, hid_channels=128, drop_rate=0.1)
    _fit(plain, x, labels, train, steps=100)
    plain_acc = (to_numpy(plain(x[None]))[0].argmax(-1) == labels)[test].mean()

    noise = np.random.default_rng(1).normal(size=x.shape).astype("float32")
    reliability = distillation.edge_reliability(teacher, [x[None], incidence[None]], noise[None])
    student = lighthgnn.lighthgnn_mlp(16, 4, hid_channels=128, drop_rate=0.1)
    distiller = distillation.LightHGNNDistiller(student, teacher_probs, incidence[None], reliability, seed=0)
    distiller.compile(optimizer=keras.optimizers.Adam(0.01))
    steps = 200
    distiller.fit(
        _graph_batches(x, steps),
        _graph_batches(labels, steps),
        sample_weight=_graph_batches(train.astype("float32"), steps),
        batch_size=1,
        verbose=0,
    )
    student_acc = (to_numpy(student(x[None]))[0].argmax(-1) == labels)[test].mean()

    # measured: teacher 0.99, label-only MLP 0.51, distilled student 0.99
    assert teacher_acc > plain_acc + 0.2, (teacher_acc, plain_acc)
    assert student_acc > teacher_acc - 0.05, (student_acc, teacher_acc)


def test_builder_arguments_are_checked():
    with pytest.raises(ValueError, match="conv must be one of"):
        lighthgnn.hgnn(10, 4, conv="gcn")
    with pytest.raises(ValueError, match="hid_channels must be a positive integer"):
        lighthgnn.lighthgnn_mlp(10, 4, hid_channels=0)
    with pytest.raises(ValueError, match="drop_rate"):
        lighthgnn.hgnn(10, 4, drop_rate=1.0)
    with pytest.raises(ValueError, match="incidence must be 'dense' or 'sparse', got 'coo'"):
        lighthgnn.hgnn(10, 4, incidence="coo")
    with pytest.raises(ValueError, match="num_edges must be a positive integer, got None"):
        lighthgnn.hgnn(10, 4, incidence="sparse")
    with pytest.raises(ValueError, match="lamb"):
        distillation.LightHGNNDistiller(
            lighthgnn.lighthgnn_mlp(10, 4), np.zeros((1, 3, 4)), np.ones((1, 3, 1)), [1.0], lamb=2
        )
