"""AttNet: per-stage features against the official fixture, the strict converter, the official variant table,
the drop-path schedule and argument errors. (Output parity, training, export and parameter counts are in
tests/harness.py.)"""

import inspect
import json

import keras
import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.convert.reference import tolerance
from keras_hyper.models import attnet


@pytest.fixture(scope="module")
def fixture():
    case = reference_dir("attnet") / "tiny.npz"
    model = attnet.attnet(**attnet.ARCH.tiny, input_shape=(64, 64, 3), classifier_activation=None)
    state = read_checkpoint(case, prefix="sd/")
    attnet.convert_attnet(state, model)
    return model, np.load(case), state


def test_stage_features_match_the_official_model(fixture):
    model, data, _ = fixture
    depths = attnet.ARCH.tiny["depths"]
    names = {}
    for i, depth in enumerate(depths):
        names[f"feat/downsample{i}"] = "downsample_layers-0-2-1" if i == 0 else f"downsample_layers-{i}-1"
        names[f"feat/stage{i}"] = f"stages-{i}-{depth - 1}-add_2"
    features = keras.Model(model.input, [model.get_layer(n).output for n in names.values()])
    outputs = features(np.transpose(data["input"], (0, 2, 3, 1)))
    for key, out in zip(names, outputs):
        ref = np.transpose(data[key], (0, 2, 3, 1))
        assert np.max(np.abs(to_numpy(out) - ref)) <= tolerance(ref), key


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


def _per_stage(value):
    return list(value) if isinstance(value, (list, tuple)) else [value] * 4


def test_variants_are_the_official_configurations():
    """Each variant's kwargs, completed with the builder's defaults, are the official entry point's (whose
    unspecified arguments take the official constructor's defaults, recorded in kwargs_note)."""
    official = json.loads((reference_dir("attnet") / "variants.json").read_text())["variants"]
    defaults = {k: p.default for k, p in inspect.signature(attnet.attnet).parameters.items()}
    assert _per_stage(defaults["glu_norm"]) == [True] * 4 and defaults["use_layer_scale"] is True
    ours = {v.name: v for v in attnet.VARIANTS}
    assert len(ours) == len(official)
    for key, spec in official.items():
        variant = ours[f"attnet_{key.lower()}"]
        assert variant.num_params == spec["num_params"]
        got = {**defaults, **variant.kwargs}
        for arg, value in spec["kwargs"].items():
            if isinstance(value, list):
                assert _per_stage(got[arg]) == value, (key, arg)
            elif arg != "num_classes":
                assert got[arg] == value, (key, arg)


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
