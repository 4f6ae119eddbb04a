"""AttNet: the downsampling outputs against the official fixture, the official-kwargs mapping, the strict
converter, the official variant table, the drop-path schedule and argument errors. (Output and stage-feature
parity, training, export and parameter counts are in tests/harness.py.)"""

import inspect
import json

import keras
import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.convert.reference import tolerance
from keras_hyper.models import attnet


def _meta():
    return json.loads((reference_dir("attnet") / "tiny.json").read_text())


@pytest.fixture(scope="module")
def fixture():
    case = reference_dir("attnet") / "tiny.npz"
    kwargs = attnet.from_official(_meta()["kwargs"])
    model = attnet.attnet(**kwargs, input_shape=(64, 64, 3), classifier_activation=None)
    state = read_checkpoint(case, prefix="sd/")
    attnet.convert_attnet(state, model)
    return model, np.load(case), state


def test_downsampling_outputs_match_the_official_model(fixture):
    """The stem's and transitions' outputs (the stage outputs are the backbone's features, compared by the
    harness' reference parity through `reference.features`)."""
    model, data, _ = fixture
    names = {f"feat/downsample{i}": f"downsample_layers-{i}-1" for i in range(1, 4)}
    names = {"feat/downsample0": "downsample_layers-0-2-1", **names}
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names.values()])
    outputs = probe(np.transpose(data["input"], (0, 2, 3, 1)))
    for key, out in zip(names, outputs):
        ref = np.transpose(data[key], (0, 2, 3, 1))
        assert np.max(np.abs(to_numpy(out) - ref)) <= tolerance(ref), key


def test_from_official_maps_the_fixture_constructor_kwargs(fixture):
    """The fixture's recorded `AttNet(**kwargs)` maps to the tiny configuration (the official layer scale init,
    which the converted weights replace, aside), and the model built from it has the official parameter count."""
    meta = _meta()
    mapped = attnet.from_official(meta["kwargs"])
    assert mapped == {
        "num_classes": 10,
        "drop_path_rate": 0.0,
        "depths": (1, 1, 2, 1),
        "dims": (16, 32, 48, 64),
        "exp_rates": (4, 4, 2, 2),
        "kernel_sizes": (3, 5, 3, 5),
        "conv_bias": True,
        "use_layer_scale": True,
        "glu_dconv": (True, False, True, True),
        "glu_norm": (True, True, False, False),
        "activation": "gelu",
    }
    tiny = {k: v for k, v in attnet.ARCH.testing.tiny.items() if k != "layer_scale_init_value"}
    assert attnet.ARCH.network_kwargs({k: v for k, v in mapped.items() if k != "num_classes"}) == (
        attnet.ARCH.network_kwargs({k: v for k, v in tiny.items() if k != "num_classes"})
    )
    assert mapped["num_classes"] == tiny["num_classes"]
    assert attnet.ARCH.reference.kwargs(meta) == mapped
    model, _, _ = fixture
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == meta["num_params"]


def test_from_official_takes_act_layer_classes_and_refuses_what_it_cannot_map():
    gelu, relu = type("GELU", (), {}), type("ReLU", (), {})
    mapped = attnet.from_official({"act_layer": gelu, "depths": [1, 1, 1, 1]})
    assert mapped == {"activation": "gelu", "depths": (1,) * 4}
    assert attnet.from_official({"act_layer": relu, "distillation": True}) == {"activation": "relu"}
    assert attnet.from_official({"act_layer": "torch.nn.SiLU"}) == {"activation": "silu"}
    with pytest.raises(ValueError, match="Hardswish"):
        attnet.from_official({"act_layer": "torch.nn.Hardswish"})
    with pytest.raises(ValueError, match=r"\['depth', 'in_chans'\]"):
        attnet.from_official({"depth": [1, 1, 1, 1], "in_chans": 3})


def test_converter_lists_missing_and_unexpected_keys(fixture):
    model, _, state = fixture
    state = dict(state)
    state.pop("stages.2.1.token_mixer.difference_control")
    state["stages.2.1.token_mixer.extra"] = np.zeros(3, "float32")
    with pytest.raises(ValueError) as err:
        attnet.convert_attnet(state, model)
    message = str(err.value)
    assert "missing keys" in message and "stages.2.1.token_mixer.difference_control" in message
    assert "unexpected keys" in message and "stages.2.1.token_mixer.extra" in message


def test_converter_checks_shapes(fixture):
    model, _, state = fixture
    state = {**state, "stages.0.0.token_mixer.kernel_gen.weight": np.zeros((25, 25), "float32")}
    with pytest.raises(ValueError, match="kernel_gen.weight"):
        attnet.convert_attnet(state, model)


PER_STAGE = ("depths", "dims", "exp_rates", "kernel_sizes", "glu_dconv", "glu_norm")


def _per_stage(value):
    return list(value) if isinstance(value, (list, tuple)) else [value] * 4


def test_variants_are_the_official_configurations():
    """Each variant's kwargs, completed with the builder's defaults, are the official entry point's mapped by
    `from_official` (whose unspecified arguments take the official constructor's defaults, recorded in
    kwargs_note: the builder's defaults must be those)."""
    official = json.loads((reference_dir("attnet") / "variants.json").read_text())["variants"]
    defaults = {k: p.default for k, p in inspect.signature(attnet.attnet).parameters.items()}
    assert _per_stage(defaults["glu_norm"]) == [True] * 4 and defaults["use_layer_scale"] is True
    assert defaults["conv_bias"] is True and defaults["activation"] == "gelu"
    ours = {v.name: v for v in attnet.VARIANTS}
    assert len(ours) == len(official)
    for key, spec in official.items():
        variant = ours[f"attnet_{key.lower()}"]
        assert variant.num_params == spec["num_params"]
        got = {k: _per_stage(v) if k in PER_STAGE else v for k, v in {**defaults, **variant.kwargs}.items()}
        mapped = {**defaults, **attnet.from_official(spec["kwargs"])}
        assert got == {k: _per_stage(v) if k in PER_STAGE else v for k, v in mapped.items()}, key


def test_drop_path_rises_linearly_over_all_blocks():
    model = attnet.attnet(depths=(1, 2, 1, 1), dims=(8, 8, 8, 8), drop_path_rate=0.4, input_shape=(32, 32, 3))
    rates = [layer.rate for layer in model.layers if layer.name.endswith("drop_path_1")]
    np.testing.assert_allclose(rates, [0.1, 0.2, 0.3, 0.4])  # block 0 has rate 0: no layer


def test_generic_reparameterize_folds_the_downsampling_batch_norms(fixture):
    from keras_hyper.models import reparameterize

    model, data, _ = fixture
    fused = reparameterize(model)
    x = np.transpose(data["input"], (0, 2, 3, 1))
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in fused.layers)
    assert np.max(np.abs(to_numpy(fused(x)) - data["output"])) <= tolerance(data["output"])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kernel_sizes=(3, 4, 3, 3)), "kernel_size must be a positive odd integer"),
        (dict(exp_rates=(4, 4)), "exp_rates must have one entry per stage"),
        (dict(glu_norm=(True,) * 3), "glu_norm must have one entry per stage"),
        (dict(depths=(1, 1), dims=(8, 8, 8)), "same non-zero length"),
        (dict(exp_rates=0.01), "without hidden channels"),
        (dict(drop_path_rate=1.0), "drop_path_rate"),
    ],
)
def test_rejects_bad_configurations(kwargs, match):
    with pytest.raises(ValueError, match=match):
        attnet.attnet(**{**dict(depths=(1, 1, 1, 1), dims=(8, 8, 8, 8)), **kwargs}, input_shape=(32, 32, 3))
