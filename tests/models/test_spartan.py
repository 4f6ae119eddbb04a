"""SpaRTAN: the official intermediate outputs of the reference fixture that are not backbone features, the
level-dependent wiring and the features it gives, the stochastic-depth schedule, the strict converter and the
builder's argument checks. (Whole-model and feature parity, the variant's parameter count, LiteRT export and BN
folding are in tests/harness.py.)"""

import json

import keras
import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper import applications
from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.convert.reference import tolerance
from keras_hyper.layers import Conv2D, DepthwiseConv2D, DropPath, LayerScale
from keras_hyper.models import spartan

# official module -> our layer whose output it is; the levels' outputs (layers.0, .2, .4, .6) are the backbone's
# features P2..P5, which the harness' reference parity compares (`reference.features`)
FEATURES = {
    "conv": "conv-1-act",
    "layers.0.smixer": "layers-0-smixer-proj_out",
    "layers.0.cmixer": "layers-0-cmixer-proj_out",
    "layers.1": "layers-1-act",
    "layers.3": "layers-3-act",
    "layers.5": "layers-5-act",
    "layers.6.smixer": "layers-6-smixer-proj_out",
    "layers.6.cmixer": "layers-6-cmixer-proj_out",
}


@pytest.fixture(scope="module")
def fixture():
    folder = reference_dir("spartan")
    meta = json.loads((folder / "tiny.json").read_text())
    data = np.load(folder / "tiny.npz")
    model = spartan.spartan(
        **spartan.fixture_kwargs(meta), num_classes=10, input_shape=(64, 64, 3), classifier_activation=None
    )
    spartan.convert_spartan(read_checkpoint(folder / "tiny.npz", prefix="sd/"), model)
    return model, data


def test_intermediate_features_match_the_official_modules(fixture):
    model, data = fixture
    probe = keras.Model(model.input, [model.get_layer(name).output for name in FEATURES.values()])
    outputs = probe(np.transpose(data["input"], (0, 2, 3, 1)))
    for (key, name), out in zip(FEATURES.items(), outputs):
        ref = np.transpose(data[f"feat/{key}"], (0, 2, 3, 1))
        diff = np.max(np.abs(to_numpy(out) - ref))
        assert diff <= tolerance(ref), f"{key} ({name}): max |diff| {diff}"


def test_folded_model_keeps_the_official_output(fixture):
    model, data = fixture
    x = np.transpose(data["input"], (0, 2, 3, 1))
    folded = spartan.reparameterize(model)
    assert not any(isinstance(layer, (keras.layers.BatchNormalization, LayerScale)) for layer in folded.layers)
    norms = [layer for layer in folded.layers if isinstance(layer, keras.layers.GroupNormalization)]
    # norm_1's affine map went into proj_in; norm_2's stays, since CMixer's argmax sees it
    assert sorted(layer.name for layer in norms if layer.scale) == [f"layers-{i}-norm_2" for i in (0, 2, 4, 6)]
    assert folded.count_params() < model.count_params()
    assert np.max(np.abs(to_numpy(folded(x)) - data["output"])) <= tolerance(data["output"])


def test_early_levels_use_full_convolutions_and_late_levels_grouped_ones(fixture):
    model, _ = fixture
    early = [model.get_layer(f"layers-0-smixer-{b}-conv") for b in ("h_conv", "l_conv-0", "l_conv-1")]
    assert all(type(layer) is Conv2D and layer.groups == 1 for layer in early)
    assert isinstance(model.get_layer("layers-0-cmixer-conv-conv"), DepthwiseConv2D)  # 48 groups of 1
    late = [model.get_layer(f"layers-4-smixer-{b}-conv") for b in ("h_conv", "l_conv-0", "l_conv-1")]
    assert all(isinstance(layer, DepthwiseConv2D) for layer in late)
    assert [layer.dilation_rate for layer in late] == [(1, 1), (2, 2), (2, 2)]
    grouped = model.get_layer("layers-4-cmixer-conv-conv")  # 32 groups of expand_ratio = 2 channels
    assert type(grouped) is Conv2D and grouped.groups == 32 and tuple(grouped.kernel.shape) == (3, 3, 2, 64)


def test_stochastic_depth_follows_the_official_schedule():
    model = spartan.spartan(**{**spartan.ARCH.testing.tiny, "layer_depths": (1, 1, 1), "drop_path_rate": 0.3})
    rates = {layer.name: layer.rate for layer in model.layers if isinstance(layer, DropPath)}
    # block i of n drops with rate * i / n: block 0 keeps its branches, no DropPath layer at all
    assert rates == pytest.approx(
        {"layers-2-dropout_1": 0.1, "layers-2-dropout_2": 0.1, "layers-4-dropout_1": 0.2, "layers-4-dropout_2": 0.2}
    )


def test_empty_level_skips_its_downsampling():
    model = spartan.spartan(
        layer_depths=(1, 0, 1), dims=(24, 40), expand_ratios=(2, 2, 2), init_dim=16, input_shape=(32, 32, 3)
    )
    # level 1 is empty: no downsampling after it, so the last level keeps dims[0] channels at stride 8
    assert model.get_layer("layers-2-add_2").output.shape == (None, 4, 4, 24)
    assert "layers-3-conv" not in [layer.name for layer in model.layers]


@pytest.mark.parametrize("dims", [None, ()])
def test_without_dims_each_downsampling_doubles_the_channels(dims):
    # level 0 is empty, so the only downsampling doubles the stem's 16 channels
    model = spartan.spartan(layer_depths=(0, 1, 1), dims=dims, expand_ratios=(2, 2, 2), init_dim=16)
    assert model.get_layer("layers-0-add_2").output.shape[-1] == 16
    assert model.get_layer("layers-2-add_2").output.shape[-1] == 32


@pytest.mark.parametrize(
    "layer_depths,producers",
    [
        ((1, 0, 1), {"P2": "layers-0-add_2", "P3": "layers-2-add_2"}),
        ((0, 1, 1), {"P2": "layers-0-add_2", "P3": "layers-2-add_2"}),
        # no blocks after the last downsampling: its own output is the deepest feature
        ((1, 1, 0), {"P2": "layers-0-add_2", "P3": "layers-2-add_2", "P4": "layers-3-act"}),
        ((0, 0, 0), {"P2": "conv-1-act"}),
    ],
)
def test_features_are_the_last_map_at_each_stride(layer_depths, producers):
    kwargs = dict(layer_depths=layer_depths, dims=(24, 40), expand_ratios=(2, 2, 2), init_dim=16)
    model = spartan.spartan(**kwargs, features_only=True, input_shape=(32, 32, 3))
    assert {key: t._keras_history.operation.name for key, t in model.output.items()} == producers
    declared = spartan.ARCH.feature_info(kwargs)
    assert [(f.key, f.channels) for f in declared] == [(key, t.shape[-1]) for key, t in model.output.items()]
    assert [32 // f.stride for f in declared] == [t.shape[1] for t in model.output.values()]


def test_converter_is_strict(fixture):
    model, _ = fixture
    state = dict(read_checkpoint(reference_dir("spartan") / "tiny.npz", prefix="sd/"))
    state.pop("layers.6.cmixer.complex")
    state["layers.6.cmixer.extra"] = np.zeros(3, "float32")
    with pytest.raises(ValueError, match=r"missing keys.*layers\.6\.cmixer\.complex") as err:
        spartan.convert_spartan(state, model)
    assert "layers.6.cmixer.extra" in str(err.value)


def test_builder_rejects_bad_configurations():
    with pytest.raises(ValueError, match="dims must have one entry per level but the first"):
        spartan.spartan(layer_depths=(1, 1), dims=(16, 32))
    with pytest.raises(ValueError, match="expand_ratios must have one entry per level"):
        spartan.spartan(layer_depths=(1, 1), dims=(16,), expand_ratios=(2,))
    with pytest.raises(ValueError, match="multiples of 8, got init_dim=12"):
        spartan.spartan(layer_depths=(1, 1), dims=(16,), expand_ratios=(2, 2), init_dim=12)
    with pytest.raises(ValueError, match="drop_path_rate must be in"):
        spartan.spartan(drop_path_rate=1.0)
    with pytest.raises(ValueError, match="non-negative integers"):
        spartan.spartan(layer_depths=())


def test_minimum_input_follows_the_total_stride():
    tiny = dict(layer_depths=(1,) * 5, dims=(16, 16, 16, 16), expand_ratios=(2,) * 5, init_dim=16)
    with pytest.raises(ValueError, match="at least 64"):
        spartan.spartan(**tiny, input_shape=(32, 32, 3))


def test_variant_is_registered_at_its_training_resolution():
    info = applications.model_info("spartan_t")
    assert info.num_params == 3_820_296
    assert (info.input_size, info.crop_pct) == (256, 1.0)
    assert info.weight_tags == ()
