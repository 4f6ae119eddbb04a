"""OverLoCK beyond the harness: the fixture's intermediate outputs that are no backbone features (Base-Net stage
3, Overview-Net, Focus-Net), the training-only auxiliary head (converted strictly, checked against the recorded
overview context), the inference form without it, the features without the top, and argument errors."""

import json

import keras
import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.convert.reference import tolerance
from keras_hyper.models import overlock


@pytest.fixture(scope="module")
def fixture():
    folder = reference_dir("overlock")
    meta = json.loads((folder / "tiny.json").read_text())
    data = np.load(folder / "tiny.npz")
    kwargs = {**overlock.ARCH.reference.kwargs(meta), "use_ds": True}
    model = overlock.overlock(**kwargs, num_classes=10, input_shape=(96, 96, 3), classifier_activation=None)
    overlock.convert_overlock(read_checkpoint(folder / "tiny.npz", prefix="sd/"), model)
    return model, data, np.transpose(data["input"], (0, 2, 3, 1))


def test_intermediate_features_match_the_official_paths(fixture):
    """The taps that are no backbone features (`feat/pre_stage2`, stage 2, is P3: the harness' reference parity
    compares it through `reference.features`)."""
    model, data, x = fixture
    taps = {
        "feat/base_stage3": "blocks3-0-add",
        "feat/base_stage4_ctx": "blocks4-0-add",
        "feat/focus_out": "sub_blocks4-1-add2",
    }
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in taps.values()])
    for key, out in zip(taps, probe(x)):
        ref = np.transpose(data[key], (0, 2, 3, 1))
        assert np.max(np.abs(to_numpy(out) - ref)) <= tolerance(ref), key


def test_aux_head_is_a_second_output_and_leaves_the_main_one_alone(fixture):
    model, data, x = fixture
    main, aux = (to_numpy(y) for y in model(x))
    assert np.max(np.abs(main - data["output"])) <= tolerance(data["output"])
    # the official aux head on the recorded overview context: BN, average pooling, 1x1 convolution
    sd = read_checkpoint(reference_dir("overlock") / "tiny.npz", prefix="sd/")
    ctx = data["feat/base_stage4_ctx"].astype("float64")
    bn = {k: np.asarray(sd[f"aux_head.0.{k}"], "float64") for k in ("weight", "bias", "running_mean", "running_var")}
    ctx = (ctx - bn["running_mean"][:, None, None]) / np.sqrt(bn["running_var"][:, None, None] + 1e-5)
    ctx = ctx * bn["weight"][:, None, None] + bn["bias"][:, None, None]
    expected = ctx.mean(axis=(2, 3)) @ sd["aux_head.2.weight"][:, :, 0, 0].T + sd["aux_head.2.bias"]
    np.testing.assert_allclose(aux, expected, atol=tolerance(expected))


def test_aux_head_output_takes_the_final_activation_too():
    """Deep supervision trains both outputs with the same loss, so both end in the classifier activation."""
    model = overlock.overlock(**{**overlock.ARCH.testing.tiny, "use_ds": True}, input_shape=(32, 32, 3))
    assert [t._keras_history.operation.name for t in model.outputs] == ["predictions", "aux_predictions"]
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    for out in model(x):
        out = to_numpy(out)
        assert out.shape == (2, overlock.ARCH.testing.tiny["num_classes"]) and out.dtype == np.float32
        np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)


def test_reparameterize_drops_the_aux_head_and_matches_the_official_deploy_output(fixture):
    model, data, x = fixture
    fused = overlock.reparameterize(model)
    assert len(fused.outputs) == 1
    assert not any(layer.name.startswith("aux_head") for layer in fused.layers)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in fused.layers)
    out = to_numpy(fused(x))
    assert np.max(np.abs(out - data["output_deploy"])) <= tolerance(data["output_deploy"])


def test_without_top_the_features_are_the_head_projection():
    kwargs = {**overlock.ARCH.testing.tiny, "use_ds": True}
    model = overlock.overlock(**kwargs, include_top=False, input_shape=(64, 64, 3))
    assert len(model.outputs) == 1 and model.output_shape == (None, 2, 2, kwargs["projection"])
    assert not any(layer.name.startswith("aux_head") for layer in model.layers)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(kernel_size=(9, 7, 5, 21)), "kernel_size entries must be in"),
        (dict(depth=(1, 1, 1)), "depth must have 4 entries"),
        (dict(sub_num_heads=(5, 2)), "divisible by 4 \\* sub_num_heads"),
        (dict(embed_dim=(16, 32, 48, 66)), "embed_dim\\[3\\] must be divisible by 4"),
        (dict(smk_size=4), "smk_size must be a positive odd integer"),
        (dict(drop_path_rate=1.0), "drop_path_rate"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        overlock.overlock(**{**overlock.ARCH.testing.tiny, **kwargs}, input_shape=(64, 64, 3))


def test_official_counts_add_the_aux_head():
    """The registered counts are the single-output model's; the official ones (variants.json, use_ds=True) add
    the aux head's BatchNorm (2 C) and Linear (C * 1000 + 1000) on the C = embed_dim[3] overview channels."""
    official = json.loads((reference_dir("overlock") / "variants.json").read_text())["variants"]
    for variant in overlock.VARIANTS:
        channels = variant.kwargs["embed_dim"][3]
        entry = official[variant.name.split("_")[1].upper()]
        assert variant.num_params + 2 * channels + channels * 1000 + 1000 == entry["num_params"]
