"""Balanced multi-task attention CNN (EuroSAT): the official output and the intermediates recorded in the
reference fixture that are not stage features (the harness compares `feat/stage1..4` through the backbone,
`ARCH.reference.features`), the mapping of the official constructor's arguments, the converter's strictness,
fusion, and argument validation."""

import json

import keras
import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.convert.reference import tolerance
from keras_hyper.models import eurosat_balanced as eb

# official module outputs -> the Keras layer that ends the same module
FEATURES = {"stem": "stem-2", "pool": "avgpool"}


def _fixture():
    folder = reference_dir("eurosat_balanced")
    meta = json.loads((folder / "tiny.json").read_text())
    return meta, np.load(folder / "tiny.npz"), read_checkpoint(folder / "tiny.npz", prefix="sd/")


def _converted(meta, state_dict, **kwargs):
    model = eb.eurosat_balanced(
        **eb.from_official(meta["kwargs"]), input_shape=(64, 64, 3), classifier_activation=None, **kwargs
    )
    eb.convert_eurosat_balanced(state_dict, model)
    return model


def test_fixture_outputs_and_features():
    meta, data, state_dict = _fixture()
    model = _converted(meta, state_dict)
    x = np.transpose(data["input"], (0, 2, 3, 1))
    probe = keras.Model(model.input, [model.output] + [model.get_layer(name).output for name in FEATURES.values()])
    # one compiled call: JAX's op-by-op first call compiles every op separately, several times slower
    out, *features = probe.predict_on_batch(x)
    assert np.max(np.abs(to_numpy(out) - data["output"])) <= tolerance(data["output"])
    for key, value in zip(FEATURES, features):
        ref = data[f"feat/{key}"]
        ref = np.transpose(ref, (0, 2, 3, 1)) if ref.ndim == 4 else ref
        assert np.max(np.abs(to_numpy(value) - ref)) <= tolerance(ref), key
    alpha = to_numpy(model.get_layer("stage2-0-attention").alpha)
    np.testing.assert_allclose(1 / (1 + np.exp(-alpha)), data["feat/stage2.0.alpha_sigmoid"][0], rtol=1e-6)


def test_fixture_through_a_pth_file_and_reparameterized(tmp_path):
    torch = pytest.importorskip("torch")
    meta, data, state_dict = _fixture()
    path = tmp_path / "balanced.pth"
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()}, path)
    model = _converted(meta, state_dict)
    loaded = eb.eurosat_balanced(
        **eb.from_official(meta["kwargs"]), input_shape=(64, 64, 3), classifier_activation=None, weights=path
    )
    x = np.transpose(data["input"], (0, 2, 3, 1))
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)
    fused = eb.reparameterize(model)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in fused.layers)
    assert all(not layer.coord_attention.normalize for layer in fused.layers if hasattr(layer, "coord_attention"))
    assert np.max(np.abs(fused.predict_on_batch(x) - data["output"])) <= tolerance(data["output"])


def test_from_official_maps_the_constructor_arguments():
    meta, _, _ = _fixture()
    assert eb.from_official(meta["kwargs"]) == dict(
        num_classes=10, widths=(16, 32, 48, 64), depths=(2, 1, 1, 1), drop_probs=(0.05, 0.1, 0.15, 0.2)
    )
    assert eb.ARCH.reference.kwargs(meta) == eb.from_official(meta["kwargs"])

    def network(kwargs):
        return eb.ARCH.network_kwargs({k: v for k, v in kwargs.items() if k != "num_classes"})

    # the official Balanced12LayerCNN(num_classes=10) is the registered variant (whose count the harness checks)
    (variant,) = eb.VARIANTS
    assert eb.from_official({"num_classes": 10}) == {"num_classes": 10}
    assert network(eb.from_official({"num_classes": 10})) == network(variant.kwargs)
    with pytest.raises(ValueError, match=r"takes no argument\(s\) \['reduction'\]"):
        eb.from_official({"num_classes": 10, "reduction": 8})


def test_converter_is_strict():
    meta, _, state_dict = _fixture()
    broken = dict(state_dict)
    del broken["stage3.0.attention.alpha"]
    broken["stage3.0.attention.beta"] = np.zeros(())
    with pytest.raises(ValueError, match="stage3.0.attention.alpha") as err:
        _converted(meta, broken)
    assert "stage3.0.attention.beta" in str(err.value)


def test_defaults_are_eurosat_rgb():
    model = eb.eurosat_balanced(**{k: v for k, v in eb.ARCH.testing.tiny.items() if k != "num_classes"})
    assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, 10)


def test_odd_and_non_square_sizes_follow_pytorch_strides():
    model = eb.eurosat_balanced(**eb.ARCH.testing.tiny, include_top=False, input_shape=(9, 13, 3))
    assert model.output_shape == (None, 2, 2, 64)  # 9 -> 5 -> 3 -> 2 and 13 -> 7 -> 4 -> 2, as torch pads 1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(widths=(16, 32), depths=(1, 1, 1)), "same non-zero length"),
        (dict(widths=(8, 16, 32, 64)), "must be >= 16"),
        (dict(depths=(1, 0, 1, 1)), "at least one block"),
        (dict(drop_probs=(0.1, 0.1, 1.0, 0.1)), "drop_probs must be in"),
        (dict(drop_rate=1.0), "drop_rate must be in"),
        (dict(block_size=4), "positive odd integer, got 4"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        eb.eurosat_balanced(**{**eb.ARCH.testing.tiny, **kwargs})
