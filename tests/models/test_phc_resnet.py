"""PHC-ResNet: the official stem output of the reference fixture, the official head at input sizes the fixture
does not record, the official RGB handling (a zero channel in front), other algebra dimensions and argument checks
(the 1/n parameter count is tests/layers/test_hypercomplex.py's).
(Whole-model parity, the stage outputs through `features_only` (`reference.features`), variant parameter counts and
LiteRT export are in tests/harness.py.)"""

import json

import keras
import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.convert.reference import tolerance
from keras_hyper.layers import PHConv2D, PrependZeroChannels
from keras_hyper.models import phc_resnet


def _build(**overrides):
    """The fixture's configuration (4-channel input, 10 classes, logits)."""
    meta = json.loads((reference_dir("phc") / "tiny.json").read_text())
    kwargs = dict(input_shape=(32, 32, 4), num_classes=10, classifier_activation=None)
    return phc_resnet.phc_resnet(**phc_resnet.fixture_kwargs(meta), **{**kwargs, **overrides})


@pytest.fixture(scope="module")
def fixture():
    folder = reference_dir("phc")
    data = np.load(folder / "tiny.npz")
    model = _build()
    phc_resnet.convert_phc_resnet(read_checkpoint(folder / "tiny.npz", prefix="sd/"), model)
    return model, data


def test_stem_matches_the_official_module(fixture):
    # the stage outputs are the backbone's features, compared by the harness (reference.features)
    model, data = fixture
    probe = keras.Model(model.input, model.get_layer("relu").output)
    out = to_numpy(probe(np.transpose(data["input"], (0, 2, 3, 1))))
    ref = np.transpose(data["feat/stem"], (0, 2, 3, 1))
    assert np.max(np.abs(out - ref)) <= tolerance(ref)


def _official_head(features, weight, bias):
    """The official head on NHWC features: `F.avg_pool2d(out, 4)` (kernel = stride = 4, floor), the flatten of
    the NCHW result and the Linear layer, which only fits when the pooled map is 1x1."""
    b, h, w, c = features.shape
    pooled = features[:, : h // 4 * 4, : w // 4 * 4].reshape(b, h // 4, 4, w // 4, 4, c).mean(axis=(2, 4))
    flat = np.transpose(pooled, (0, 3, 1, 2)).reshape(b, -1)
    assert flat.shape[1] == weight.shape[1], "the official model does not run at this size"
    return flat @ weight.T + bias


@pytest.mark.parametrize("size", [(40, 40), (48, 48), (36, 34), (40, 32)])
def test_head_is_the_officials_at_other_sizes(fixture, size):
    """At 32x32 the last map is 4x4 and any average pooling is the official one; at these sizes it is 5x5 to 6x6
    (5x4), where the official head averages the top-left 4x4 window only."""
    model, data = fixture
    state = dict(read_checkpoint(reference_dir("phc") / "tiny.npz", prefix="sd/"))
    x = np.random.default_rng(1).normal(size=(2, *size, 4)).astype("float32")
    logits = {}
    for pooling in phc_resnet.HEAD_POOLINGS:
        other = _build(head_pooling=pooling, input_shape=(*size, 4))
        other.set_weights(model.get_weights())
        probe = keras.Model(other.input, [other.get_layer("pool").input, other.output])
        features, logits[pooling] = (to_numpy(t) for t in probe(x))
    official = _official_head(features, state["linear.weight"], state["linear.bias"])
    assert np.max(np.abs(logits["official"] - official)) <= tolerance(official)
    # the global average, the head before issue 12, is another function at these sizes
    expected = features.mean(axis=(1, 2)) @ state["linear.weight"].T + state["linear.bias"]
    assert np.max(np.abs(logits["global"] - expected)) <= tolerance(expected)
    assert np.max(np.abs(expected - official)) > 10 * tolerance(official)


def test_converter_zeroes_the_never_added_bias_and_is_strict(fixture):
    model, data = fixture
    convs = [layer for layer in model.layers if isinstance(layer, PHConv2D)]
    assert convs and all(not np.any(to_numpy(layer.bias)) for layer in convs)
    state = dict(read_checkpoint(reference_dir("phc") / "tiny.npz", prefix="sd/"))
    del state["layer3.1.conv2.A"]
    with pytest.raises(ValueError, match="layer3.1.conv2.A"):
        phc_resnet.convert_phc_resnet(state, model)


def test_rgb_input_is_fed_as_a_pure_quaternion(fixture):
    model, data = fixture
    rgb = _build(input_shape=(32, 32, 3))
    assert isinstance(rgb.get_layer("zero_channels"), PrependZeroChannels)
    rgb.set_weights(model.get_weights())
    x = np.transpose(data["input"], (0, 2, 3, 1))[..., 1:]
    padded = np.concatenate([np.zeros_like(x[..., :1]), x], axis=-1)
    np.testing.assert_allclose(to_numpy(rgb(x)), to_numpy(model(padded)), atol=1e-5)


@pytest.mark.parametrize("n,zeros", [(3, 0), (2, 1)])
def test_other_algebra_dimensions(n, zeros):
    width = 2 * n  # equal widths: few distinct weight shapes, which JAX compiles an initialiser for each
    model = phc_resnet.phc_resnet(depths=(1, 1, 1, 1), widths=(width,) * 4, n=n, input_shape=(8, 8, 3), num_classes=10)
    assert any(layer.name == "zero_channels" for layer in model.layers) == bool(zeros)
    assert {layer.n for layer in model.layers if isinstance(layer, PHConv2D)} == {n}
    assert model.get_layer("conv1").factors.shape == (n, 3, 3, (3 + zeros) // n, 2)
    assert model(np.ones((1, 8, 8, 3), "float32")).shape == (1, 10)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="block"):
        phc_resnet.phc_resnet(block="wide")
    with pytest.raises(ValueError, match="multiples of n=4"):
        phc_resnet.phc_resnet(widths=(6, 12, 24, 48))
    with pytest.raises(ValueError, match="depths"):
        phc_resnet.phc_resnet(depths=(2, 2, 2))
    with pytest.raises(ValueError, match="head_pooling"):
        phc_resnet.phc_resnet(head_pooling="max")
    # the CIFAR-10 mean/std are RGB's
    with pytest.raises(ValueError, match="include_preprocessing"):
        phc_resnet.phc_resnet(input_shape=(32, 32, 4), include_preprocessing=True)
