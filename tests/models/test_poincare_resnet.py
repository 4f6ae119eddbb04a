"""Poincaré ResNet: the official stem and pooled outputs of the reference fixture, the official head at input sizes
the fixture does not record, the strict converter (shared balls, missing tensors), the variant table against the
official naming rule and the builder's argument checks. (Whole-model parity, the group outputs through
`features_only` (`reference.features`), parameter counts, LiteRT export and the rest are in tests/harness.py.)"""

import json

import keras
import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.convert.reference import tolerance
from keras_hyper.models import poincare_resnet

# official module -> our layer whose output it is (the groups' are the backbone's features, the harness' business)
FEATURES = {"stem_conv": "conv", "stem": "act", "pool": "avg_pool"}


@pytest.fixture(scope="module")
def fixture():
    folder = reference_dir("poincare_resnet")
    meta = json.loads((folder / "tiny.json").read_text())
    data = np.load(folder / "tiny.npz")
    state = read_checkpoint(folder / "tiny.npz", prefix="sd/")
    model = poincare_resnet.poincare_resnet(
        **poincare_resnet.fixture_kwargs(meta), num_classes=10, input_shape=(32, 32, 3), classifier_activation=None
    )
    poincare_resnet.convert_poincare_resnet(state, model)
    return model, data, state


def test_intermediate_features_match_the_official_modules(fixture):
    model, data, _ = fixture
    probe = keras.Model(model.input, [model.get_layer(name).output for name in FEATURES.values()])
    # one batch, as the official batch norms normalise with the statistics of the batch they see
    outputs = probe(np.transpose(data["input"], (0, 2, 3, 1)))
    for (key, name), out in zip(FEATURES.items(), outputs):
        ref = data[f"feat/{key}"]
        ref = np.transpose(ref, (0, 2, 3, 1)) if ref.ndim == 4 else ref
        diff = np.max(np.abs(to_numpy(out) - ref))
        assert diff <= tolerance(ref), f"{key} ({name}): max |diff| {diff}"


def _official_pool(features):
    """`nn.AvgPool2d(8)` (kernel = stride = 8, floor) and squeeze on NHWC maps: feature vectors only where the
    pooled map is 1x1."""
    _, h, w, _ = features.shape
    assert h // 8 == w // 8 == 1, "the official model does not run at this size"
    return features[:, :8, :8].mean(axis=(1, 2))


def _official_fc(x, state):
    """The official `PoincareLinear` on tangent vectors, in float64: expmap0, the Poincaré fully-connected map with
    its conformal factor `2 (1 - c|x|^2)`, projection, logmap0."""
    x = x.astype("float64")
    z, r, c = (state[f"fc.{key}"].astype("float64") for key in ("z", "bias", "ball.isp_c"))
    sqrt_c = np.sqrt(c)

    def norm(v):
        return np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-15)

    def project(v):  # float32's boundary margin, 4e-3
        limit = (1 - 4e-3) / sqrt_c
        return np.where(norm(v) > limit, v / norm(v) * limit, v)

    x = project(np.tanh(sqrt_c * norm(x)) * x / (sqrt_c * norm(x)))
    lam = 2 * (1 - c * np.sum(x**2, axis=-1, keepdims=True))
    z_norm = np.maximum(np.linalg.norm(z, axis=0), 1e-15)
    v = (
        2
        * z_norm
        / sqrt_c
        * np.arcsinh(sqrt_c * lam / z_norm * (x @ z) * np.cosh(2 * sqrt_c * r) - (lam - 1) * np.sinh(2 * sqrt_c * r))
    )
    w = np.sinh(sqrt_c * v) / sqrt_c
    y = project(w / (1 + np.sqrt(1 + c * np.sum(w**2, axis=-1, keepdims=True))))
    return np.arctanh(sqrt_c * norm(y)) * y / (sqrt_c * norm(y))


@pytest.mark.parametrize("size", [(40, 40), (48, 48), (40, 32)])
def test_head_is_the_officials_at_other_sizes(fixture, size):
    """At 32x32 the last map is 8x8 and any average pooling is the official one; at these sizes it is 10x10,
    12x12 and 10x8, where the official `AvgPool2d(8)` averages the top-left 8x8 window only."""
    model, data, state = fixture
    # the transcription of the official layer reproduces the official output from the official pooled features
    official = _official_fc(data["feat/pool"], state)
    assert np.max(np.abs(official - data["output"])) <= tolerance(data["output"])
    rng = np.random.default_rng(1)
    # per-sample offsets, so that the pooled features differ between samples (as the fixture's input)
    x = np.sqrt(0.5) * (rng.normal(size=(2, *size, 3)) + rng.normal(size=(2, 1, 1, 3)))
    logits = {}
    for pooling in poincare_resnet.HEAD_POOLINGS:
        other = poincare_resnet.poincare_resnet(
            **poincare_resnet.fixture_kwargs(json.loads((reference_dir("poincare_resnet") / "tiny.json").read_text())),
            head_pooling=pooling,
            num_classes=10,
            input_shape=(*size, 3),
            classifier_activation=None,
        )
        other.set_weights(model.get_weights())
        probe = keras.Model(other.input, [other.get_layer("avg_pool").input, other.output])
        features, logits[pooling] = (to_numpy(t) for t in probe(x.astype("float32")))
    official = _official_fc(_official_pool(features), state)
    assert np.max(np.abs(logits["official"] - official)) <= tolerance(official)
    # the global average, the port's head before, is another function at these sizes
    expected = _official_fc(features.mean(axis=(1, 2)), state)
    assert np.max(np.abs(logits["global"] - expected)) <= tolerance(expected)
    assert np.max(np.abs(expected - official)) > 10 * tolerance(official)


def test_converter_keeps_each_balls_curvature(fixture):
    model, _, state = fixture
    assert float(to_numpy(model.get_layer("group2-0-downsample").c)) == float(state["group2.0.downsample.ball.isp_c"])
    # bn1 and bn2 of a block share one ball in the official code
    bn1, bn2 = (float(to_numpy(model.get_layer(f"group1-0-bn{i}").c)) for i in (1, 2))
    assert bn1 == bn2 == float(state["group1.0.bn1.ball.isp_c"])
    assert float(to_numpy(model.get_layer("group1-0-conv1").c)) != bn1


def test_converter_is_strict(fixture):
    model, _, state = fixture
    broken = dict(state)
    del broken["group3.0.conv2.weights"]
    with pytest.raises(ValueError, match="group3.0.conv2.weights"):
        poincare_resnet.convert_poincare_resnet(broken, model)
    broken = dict(state)
    broken["bn.norm.ball.isp_c"] = np.float32(0.5)
    with pytest.raises(ValueError, match="shared curvature"):
        poincare_resnet.convert_poincare_resnet(broken, model)


def test_variants_follow_the_official_naming_rule():
    for variant in poincare_resnet.VARIANTS:
        depth = int(variant.name.split("_")[1].removeprefix("resnet"))
        assert variant.kwargs["depths"] == ((depth - 2) // 6,) * 3
        assert variant.kwargs["channel_dims"] == (8, 16, 32)
        assert f"cifar{variant.kwargs['num_classes']}" in variant.name


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(channel_dims=(8, 16)), "channel_dims"),
        (dict(depths=(3, 0, 3)), "depths"),
        (dict(curvature=-0.1), "curvature"),
        (dict(skip_order="rr"), "skip_order"),
        (dict(skip_axis="height"), "skip_axis"),
        (dict(inference_statistics="running"), "inference_statistics"),
        (dict(head_pooling="max"), "head_pooling"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        poincare_resnet.poincare_resnet(**kwargs)
