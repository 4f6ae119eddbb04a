"""`eval_transform`, `preprocess_input` and `decode_predictions`: each model's own protocol and labels, never
another model's by default. Backend-independent (numpy and Pillow): run once, in the torch run."""

import math

import keras
import numpy as np
import pytest
from PIL import Image

from keras_hyper import applications

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="backend-independent: checked once, in the torch run"
)


def test_eval_transform_resizes_by_crop_pct_crops_and_normalises(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (60, 100, 3), dtype=np.uint8)
    path = tmp_path / "wide.png"
    Image.fromarray(pixels).save(path)
    transform = applications.eval_transform("halonet26t", size=40)  # bicubic, crop_pct 0.95
    assert (transform.size, transform.crop_pct, transform.interpolation) == (40, 0.95, "bicubic")
    # by hand: shorter side to floor(40 / 0.95) = 42, centred 40 x 40 crop, the model's mean and std
    side = math.floor(40 / 0.95)
    resized = Image.fromarray(pixels).resize((int(side * 100 / 60), side), Image.Resampling.BICUBIC)
    left, top = round((resized.width - 40) / 2), round((resized.height - 40) / 2)
    crop = np.asarray(resized.crop((left, top, left + 40, top + 40)), "float32")
    info = applications.model_info("halonet26t")
    expected = (crop / 255 - np.asarray(info.mean, "float32")) / np.asarray(info.std, "float32")
    for source in (path, str(path), Image.fromarray(pixels), pixels):
        np.testing.assert_allclose(transform([source])[0], expected, atol=1e-6)
    assert transform(path).shape == (1, 40, 40, 3)
    raw = applications.eval_transform("halonet26t", size=40, normalize=False)(path)
    np.testing.assert_array_equal(raw[0], crop)
    assert "crop 40" in repr(transform)


def test_eval_transform_follows_the_tag_and_the_models_statistics():
    tagged = applications.eval_transform("inceptionnext_base.sail_in1k_384")
    assert (tagged.size, tagged.crop_pct) == (384, 1.0)
    cifar = applications.eval_transform("shallow_cifar10_deep")
    assert cifar.size == 32 and cifar.mean == (0.4914, 0.4822, 0.4465)
    with pytest.raises(ValueError, match="eval_transform prepares images, but hgnn_cora is a hypergraph model"):
        applications.eval_transform("hgnn_cora")


def test_preprocess_input_needs_the_model():
    """It defaulted silently to InceptionNeXt's ImageNet statistics, whatever the model."""
    with pytest.raises(TypeError):
        applications.preprocess_input(np.zeros((1, 4, 4, 3)))
    x = np.full((1, 1, 1, 3), 127.5, "float32")
    np.testing.assert_allclose(applications.preprocess_input(x, "poincare_resnet20_cifar10"), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="d3net_aec_paper is an audio model"):
        applications.preprocess_input(x, "d3net_aec_paper")


def test_decode_predictions_takes_the_models_own_labels():
    scores = np.zeros((2, 10))
    scores[0, 3], scores[1, 7] = 0.9, 0.8
    digits = [[("3", 0.9)], [("7", 0.8)]]
    assert applications.decode_predictions(scores, "inceptionnext_atto.digits", top=1) == digits
    assert applications.decode_predictions(scores, "inceptionnext_atto", top=1) == digits  # its 10-class tag
    assert applications.decode_predictions(scores, top=1)[0] == [("class 3", 0.9)]
    with pytest.raises(ValueError, match="inceptionnext_atto has none: pass 'model.tag'"):
        applications.decode_predictions(np.zeros((1, 7)), "inceptionnext_atto")
