"""Polyhistor on a Swin backbone: frozen backbone, trainable adapters and heads only, zero-initialised adapters
giving exactly the plain multi-task Swin, task-specific features, and Polyhistor-Lite end to end. (The harness
trains, saves and round-trips the tiny Polyhistor model; no reference implementation is published.)"""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.models import polyhistor

TINY = dict(polyhistor.ARCH.testing.tiny)
X = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


@pytest.fixture(scope="module")
def pair():
    """The tiny Polyhistor (adapters not zero-initialised), and the plain multi-task Swin with its weights."""
    model = polyhistor.polyhistor(**TINY)
    plain = polyhistor.polyhistor(**{**TINY, "adapter": None})
    for layer in plain.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return model, plain


def test_only_adapters_and_heads_are_trainable(pair):
    model, plain = pair
    trainable = {w.path.split("/")[0] for w in model.trainable_weights}
    heads = {layer.name for layer in model.layers if layer.name.startswith("heads-") and layer.weights}
    assert trainable == {"adapters"} | heads
    adapters = model.get_layer("adapters").count_params()
    assert _count(model.trainable_weights) == _count(plain.trainable_weights) + adapters
    backbone = [layer for layer in model.layers if layer.weights and not layer.name.startswith(("adapters", "heads-"))]
    assert len(backbone) > 10 and not any(layer.trainable for layer in backbone)


def test_each_task_runs_the_backbone_with_its_own_adapters(pair):
    model, _ = pair
    names = ["layers-1-blocks-0-add2-semseg", "layers-1-blocks-0-add2-saliency"]
    semseg, saliency = keras.Model(model.input, [model.get_layer(n).output for n in names])(X)
    assert np.abs(to_numpy(semseg) - to_numpy(saliency)).max() > 1e-4


def test_zero_initialised_adapters_give_the_plain_multitask_swin(pair):
    model, plain = pair
    adapters = model.get_layer("adapters")
    before = adapters.get_weights()
    try:  # what zero_init_adapters=True starts from: the last factor of every up projection at zero
        for w in adapters.weights:
            if "_up_q_" in w.name:
                w.assign(np.zeros(w.shape, "float32"))
        got, expected = model(X), plain(X)
    finally:
        adapters.set_weights(before)
    assert set(got) == {"semseg", "saliency"}
    for task in got:
        assert tuple(got[task].shape) == (2, 32, 32, TINY["tasks"][task])
        np.testing.assert_allclose(to_numpy(got[task]), to_numpy(expected[task]), atol=1e-5)
    initial = polyhistor.polyhistor(**{**TINY, "zero_init_adapters": True}).get_layer("adapters")
    assert all(not np.any(to_numpy(w)) for w in initial.weights if "_up_q_" in w.name)


def test_polyhistor_lite_end_to_end():
    lite = polyhistor.polyhistor(**{**TINY, "adapter": "lite"})
    out = lite(X)
    assert all(np.all(np.isfinite(to_numpy(v))) for v in out.values())
    clone = keras.Model.from_config(lite.get_config())
    clone.set_weights(lite.get_weights())
    np.testing.assert_allclose(to_numpy(clone(X)["semseg"]), to_numpy(out["semseg"]), atol=1e-6)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="adapter must be one of"):
        polyhistor.polyhistor(**{**TINY, "adapter": "lora"})
    with pytest.raises(ValueError, match="must be a positive number of channels"):
        polyhistor.polyhistor(**{**TINY, "tasks": {"semseg": 0}})
    with pytest.raises(ValueError, match="identifiers"):
        polyhistor.polyhistor(**{**TINY, "tasks": {"sem seg": 3}})
    with pytest.raises(ValueError, match="whole number of"):
        polyhistor.polyhistor(**{**TINY, "window_size": 3})
    with pytest.raises(ValueError, match="img_size equal to the input size"):
        polyhistor.polyhistor(**{**TINY, "input_shape": (64, 64, 3)})
    assert polyhistor.ARCH.convert is polyhistor.load_swin_backbone  # a Swin checkpoint is the starting point


def test_backbone_matches_timm_swin_features():
    """The backbone is a plain Swin: timm's Swin with the same (perturbed) weights gives the same stage maps,
    loaded through `load_swin_backbone` from timm's layout (patch merging at the start of a stage)."""
    torch = pytest.importorskip("torch")
    timm_swin = pytest.importorskip("timm.models.swin_transformer")
    torch.manual_seed(0)
    reference = timm_swin.SwinTransformer(
        img_size=32,
        patch_size=4,
        num_classes=0,
        embed_dim=16,
        depths=(2, 1),
        num_heads=(1, 2),
        window_size=4,
        mlp_ratio=2.0,
    ).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.1 * torch.randn_like(p))
        expected = reference.forward_intermediates(torch.from_numpy(X).permute(0, 3, 1, 2), intermediates_only=True)
    state_dict = {k: v.numpy() for k, v in reference.state_dict().items()}
    model = polyhistor.polyhistor(**{**TINY, "adapter": None})
    polyhistor.load_swin_backbone(state_dict, model)
    names = ["layers-0-blocks-1-add2-shared", "layers-1-blocks-0-add2-shared"]
    features = keras.Model(model.input, [model.get_layer(n).output for n in names])(X)
    for got, want in zip(features, expected):
        np.testing.assert_allclose(to_numpy(got), want.permute(0, 2, 3, 1).numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="missing keys"):
        polyhistor.load_swin_backbone({k: v for k, v in state_dict.items() if "fc1" not in k}, model)
