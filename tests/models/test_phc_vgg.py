"""PHC-VGG: the converted biases of the reference fixture, the classifier's PHM layers, the official
configurations, the features' declaration and argument checks. (Whole-model parity, the official `features`
output through `features_only` (`reference.features`), variant parameter counts, LiteRT export are in
tests/harness.py.)"""

import json

import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.layers import PHConv2D, PHMDense
from keras_hyper.models import phc_vgg


def test_converter_copies_the_added_biases_only():
    folder = reference_dir("phc")
    meta = json.loads((folder / "tiny_vgg.json").read_text())
    data = np.load(folder / "tiny_vgg.npz")
    model = phc_vgg.phc_vgg(**phc_vgg.fixture_kwargs(meta), input_shape=(32, 32, 4), num_classes=10)
    phc_vgg.convert_phc_vgg(read_checkpoint(folder / "tiny_vgg.npz", prefix="sd/"), model)
    # the PHMLinear biases are added by the official forward and copied; the PHConv ones are not, and are zero
    np.testing.assert_array_equal(to_numpy(model.get_layer("classifier-1").bias), data["sd/classifier.1.bias"])
    assert not np.any(to_numpy(model.get_layer("features-16").bias))


def test_configurations_and_classifier_layers():
    model = phc_vgg.phc_vgg(config=(8, "M") * 5, batch_norm=False, hidden_units=8, n=4)
    convs = [layer.name for layer in model.layers if isinstance(layer, PHConv2D)]
    # without BatchNorm a convolution and its ReLU take two official indices
    assert convs == ["features-0", "features-3", "features-6", "features-9", "features-12"]
    assert [layer.name for layer in model.layers if isinstance(layer, PHMDense)] == ["classifier-1", "classifier-4"]
    assert model.get_layer("zero_channels").count == 1
    assert phc_vgg.CONFIGS["vgg16"].count("M") == phc_vgg.CONFIGS["vgg19_large"].count("M") == 5


def test_features_are_the_pools_with_the_widths_before_them():
    # two pools in a row: the second stage has no convolution and keeps the first one's width
    config = (8, "M", "M", 16, 16, "M", 24, "M", "M")
    features = phc_vgg.ARCH.feature_info(dict(config=config, hidden_units=8))
    assert [(f.key, f.stride, f.channels) for f in features] == [
        ("P1", 2, 8),
        ("P2", 4, 8),
        ("P3", 8, 16),
        ("P4", 16, 24),
        ("P5", 32, 24),
    ]
    model = phc_vgg.phc_vgg(config=config, hidden_units=8, features_only=True)
    shapes = [tuple(t.shape[1:]) for t in model.output.values()]
    assert shapes == [(16, 16, 8), (8, 8, 8), (4, 4, 16), (2, 2, 24), (1, 1, 24)]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="pool five times"):
        phc_vgg.phc_vgg(config=(8, "M", 8, "M"))
    with pytest.raises(ValueError, match="multiples of n=4"):
        phc_vgg.phc_vgg(config=(6, "M", 8, "M", 8, "M", 8, "M", 8, "M"))
    with pytest.raises(ValueError, match="start with a convolution"):
        phc_vgg.phc_vgg(config=("M", 8, "M", 8, "M", 8, "M", 8, "M"))
    with pytest.raises(ValueError, match="hidden_units"):
        phc_vgg.phc_vgg(hidden_units=510)
    with pytest.raises(ValueError, match="dropout"):
        phc_vgg.phc_vgg(dropout=1.0)
