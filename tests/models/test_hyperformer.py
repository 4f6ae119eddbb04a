"""HyperFormer: every output of the official `Knowformer` and its wrapper's loss and ranks reproduced from the
reference fixtures (fastmoe 0.2.0 raw gates and the fastmoe >= 1.0 softmax gates), exact official parameter
counts, and a small hyper-relational completion task where the qualifiers decide the answer: the model
learns it, a model that never sees the qualifiers cannot. (The harness trains, saves and round-trips it.)"""

import json

import keras
import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.convert.reference import tolerance
from keras_hyper.models import hyperformer as hf

CASES = ("tiny", "tiny_strong")


def _fixture_kwargs(meta):
    """Builder kwargs of a fixture case (official `Knowformer` config + input shapes)."""
    config, shapes = meta["kwargs"]["config"], meta["input_shape"]
    return dict(
        num_entities=config["num_entities"],
        num_relations=config["num_relations"] // 2,  # the official count includes the reverse relations
        hidden_size=config["hidden_size"],
        num_layers=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"],
        intermediate_size=config["intermediate_size"],
        num_experts=config["moe_num_expert"],
        top_k=config["moe_top_k"],
        ent_neighbor_num=shapes["input/ent_context_ids"][0],
        rel_neighbor_num=shapes["input/rel_context_ids"][0],
        ent_qual_neighbor_num=(shapes["input/ent_context_ids"][2] - 3) // 2,
        conv_channels=config["conv_number_channel"],
        conv_kernel_size=config["conv_kernel_size"],
        conv_kernel_width=config["conv_kernel_width"],
        conv_kernel_height=config["conv_kernel_height"],
        conv_permutations=config["conv_permution_size"],
        conv_padding=config["conv_padding"],
        qualifier_mode=config["ablation_mode"],
    )


def _load(case, **overrides):
    folder = reference_dir("hyperformer")
    meta = json.loads((folder / f"{case}.json").read_text())
    data = np.load(folder / f"{case}.npz")
    model = hf.hyperformer(**{**_fixture_kwargs(meta), **overrides})
    state = read_checkpoint(folder / f"{case}.npz", prefix="sd/")
    state["chequer_perm"] = data["const/chequer_perm"]
    hf.convert_hyperformer(state, model)
    inputs = [
        data["input/src_ids"].astype("int32"),
        np.transpose(data["input/ent_context_ids"], (1, 0, 2)).astype("int32"),  # official: neighbour-major
        np.transpose(data["input/rel_context_ids"], (1, 0, 2)).astype("int32"),
    ]
    return meta, data, model, inputs


@pytest.fixture(scope="module", params=CASES)
def case(request):
    meta, data, model, inputs = _load(request.param)
    return meta, data, model, inputs, {k: to_numpy(v) for k, v in model(inputs).items()}


def _close(got, expected):
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= tolerance(expected)


def test_outputs_match_the_official_model(case):
    _, data, _, _, out = case
    _close(out["logits"], data["output"])
    _close(out["triple_logits"], data["output_triple"])
    _close(np.transpose(out["neighbor_logits"], (1, 0, 2)), data["output_ent_neighbors"])


def test_loss_and_ranks_match_the_official_wrapper(case):
    meta, data, model, _, out = case
    scores = to_numpy(hf.entity_scores(out, meta["kwargs"]["config"]["num_entities"]))
    _close(scores, data["feat/final_logits"])
    labels, neighbor_labels = data["input/labels"], data["input/neighbors_labels"]
    spec = hf.hyperformer_loss(label_smoothing=0.9)
    neighbors = np.repeat(neighbor_labels[:, None], out["neighbor_logits"].shape[1], axis=1)
    targets = {"logits": labels, "triple_logits": labels, "neighbor_logits": neighbors}
    loss = sum(w * float(to_numpy(spec["loss"][k](targets[k], out[k]))) for k, w in spec["loss_weights"].items())
    np.testing.assert_allclose(loss, float(data["feat/loss"]), rtol=1e-5)
    np.testing.assert_array_equal(hf.filtered_ranks(scores, labels, data["input/filters"]), data["feat/rank"])


@pytest.mark.parametrize("name", CASES)
def test_softmax_gates_match_fastmoe_1(name):
    _, data, model, inputs = _load(name, moe_gate="softmax")
    out = model(inputs)
    _close(to_numpy(out["logits"]), data["alt_fmoe_v1/output"])
    _close(to_numpy(out["triple_logits"]), data["alt_fmoe_v1/output_triple"])


def test_official_parameter_count(case):
    meta, _, model, _, _ = case
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == meta["num_params"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(conv_kernel_width=3), "conv_kernel_width"),
        (dict(top_k=3), "top_k"),
        (dict(moe_gate="sparse"), "gate"),
        (dict(qualifier_mode="rotate"), "mode"),
        (dict(num_entities=0), "num_entities"),
        (dict(num_heads=3), "divisible"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    base = dict(hf.ARCH.testing.tiny)
    with pytest.raises(ValueError, match=match):
        hf.hyperformer(**{**base, **kwargs})


# --- a small hyper-relational completion task --------------------------------------------------------------
HEADS, VALUES, TAILS_PER_VALUE = 8, 6, 2
NUM_ENTITIES = HEADS + VALUES + VALUES * TAILS_PER_VALUE
PAD, MASK, QR_NONE, QE_NONE = 0, 1, 5, 6


def _entity(index):
    return hf.NUM_SPECIALS + index


def _relation(index, reverse=False):
    return hf.NUM_SPECIALS + NUM_ENTITIES + 2 * index + int(reverse)


def _statements():
    """(head, qualifier value, tail): the tail depends on the qualifier value only (two answers per value), so
    that without the qualifier every head has all twelve tails as answers."""
    rows = []
    for h in range(HEADS):
        for v in range(VALUES):
            for j in range(TAILS_PER_VALUE):
                rows.append((h, HEADS + v, HEADS + VALUES + TAILS_PER_VALUE * v + j))
    return np.array(rows)


def _encode(rows, train, use_qualifiers):
    """Model inputs and targets: src `[h, r, MASK, qr, qv]`; entity neighbours: two training statements of h
    with other qualifier values, as `[t, r_reverse, MASK, qr, qv]` whose answer is h; qualifier prompts
    `[qr, qv, MASK]`. Without qualifiers, the qualifier tokens are padding / the None tokens."""
    qr, qv = np.full(len(rows), _relation(1)), _entity(rows[:, 1])
    if not use_qualifiers:
        qr, qv = np.full(len(rows), QR_NONE), np.full(len(rows), QE_NONE)
    src = np.stack([_entity(rows[:, 0]), np.full(len(rows), _relation(0)), np.full(len(rows), MASK), qr, qv], 1)
    if not use_qualifiers:
        src[:, 3:] = PAD
    rng = np.random.default_rng(1)
    ent_context = []
    for h, v in rows[:, :2]:
        others = train[(train[:, 0] == h) & (train[:, 1] != v)]  # never the query's own answers
        mine = others[rng.choice(len(others), 2, replace=False)]
        quals = [[_relation(1), _entity(v)] if use_qualifiers else [PAD, PAD] for v in mine[:, 1]]
        ent_context.append([[_entity(t), _relation(0, True), MASK, *q] for t, q in zip(mine[:, 2], quals)])
    rel_context = np.stack([qr, qv, np.full(len(rows), MASK)], 1)[:, None]
    x = [src.astype("int32"), np.array(ent_context, "int32"), rel_context.astype("int32")]
    y = {"logits": rows[:, 2], "triple_logits": rows[:, 2], "neighbor_logits": np.repeat(rows[:, :1], 2, axis=1)}
    return x, y


@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="one training run is enough; after its one compilation JAX trains fastest (TF steps are 5x, torch's "
    "eager steps 25x slower)",
)
def test_qualifiers_decide_the_answer_on_a_synthetic_graph():
    rows = _statements()
    test = np.zeros(len(rows), bool)
    rng = np.random.default_rng(0)
    for h in range(HEADS):  # hold out the statements of two (head, value) pairs per head
        for v in rng.choice(VALUES, 2, replace=False):
            test[(rows[:, 0] == h) & (rows[:, 1] == HEADS + v)] = True
    held = rows[test]
    # filtered: the other true tail of the same (head, relation, qualifier) is removed before ranking
    twins = [held[(held[:, 0] == h) & (held[:, 1] == v), 2] for h, v, _ in held]
    filters = np.array([(i, t) for i, (ts, tail) in enumerate(zip(twins, held[:, 2])) for t in ts if t != tail])

    keras.utils.set_random_seed(0)
    model = hf.hyperformer(
        NUM_ENTITIES,
        2,
        hidden_size=16,
        num_layers=1,
        intermediate_size=32,
        num_experts=4,
        ent_neighbor_num=2,
        rel_neighbor_num=1,
        ent_qual_neighbor_num=1,
        conv_channels=4,
        conv_kernel_size=3,
        conv_kernel_width=4,
        conv_kernel_height=4,
        input_dropout=0.1,
        entity_dropout=0.0,
        conv_hidden_dropout=0.1,
        conv_feature_dropout=0.1,
        official_unused_weights=False,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), **hf.hyperformer_loss(label_smoothing=0.1))
    model.optimizer.build(model.trainable_variables)
    # one model, trained twice from the same start: the compiled step is reused for the qualifier-blind run
    start = [to_numpy(v).copy() for v in model.variables + model.optimizer.variables]
    results = {}
    for use_qualifiers in (True, False):
        for variable, value in zip(model.variables + model.optimizer.variables, start):
            variable.assign(value)
        x_train, y_train = _encode(rows[~test], rows[~test], use_qualifiers)
        x_test, _ = _encode(held, rows[~test], use_qualifiers)
        model.fit(x_train, y_train, batch_size=24, epochs=80, verbose=0)
        scores = to_numpy(hf.entity_scores(model.predict(x_test, batch_size=len(held), verbose=0), NUM_ENTITIES))
        ranks = hf.filtered_ranks(scores, held[:, 2], filters)
        results[use_qualifiers] = float(np.mean(1.0 / ranks)), float(np.mean(ranks == 1))
    (mrr, hits1), (blind_mrr, blind_hits1) = results[True], results[False]
    print(f"with qualifiers MRR {mrr:.3f} Hits@1 {hits1:.3f}; without MRR {blind_mrr:.3f} Hits@1 {blind_hits1:.3f}")
    # blind, a held-out tail (never seen with its head) ranks behind the head's eight training tails
    assert blind_mrr < 0.3
    assert mrr > 0.5 and hits1 > 0.4 and mrr > blind_mrr + 0.3


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="LiteRT conversion runs in the TensorFlow run")
def test_litert_export_of_the_three_int_inputs_with_builtin_ops(tmp_path):
    # export_litert takes one float input (hence litert=False in the registry); Keras' exporter takes these
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    model = hf.hyperformer(**hf.ARCH.testing.tiny)
    x = [a[:1] for a in hf._tiny_inputs(2)]
    specs = [tf.TensorSpec((1, *i.shape[1:]), tf.int32) for i in model.inputs]
    path = str(tmp_path / "hyperformer.tflite")
    builtins = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    model.export(path, format="litert", verbose=False, input_signature=[specs], target_spec=builtins)
    interpreter = Interpreter(model_path=path)
    ops = {d["op_name"] for d in interpreter._get_ops_details()}
    assert "TOPK_V2" in ops and not any(op.startswith(("Flex", "CUSTOM")) for op in ops), ops
    runner = interpreter.get_signature_runner()
    feed = {k: next(a for a in x if a.shape == tuple(v["shape"])) for k, v in runner.get_input_details().items()}
    got = runner(**feed)
    for key, expected in model(x).items():
        np.testing.assert_allclose(got[key], to_numpy(expected), atol=1e-5)
