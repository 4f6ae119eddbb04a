"""Zoo backbones inside KerasHub tasks: an ImageClassifier and a DeepLabV3 segmenter train with `fit`, save and
reload; a RetinaNet backbone (FPN over P3..P5) builds on the pyramid. Run on every backend (the point of KerasHub)."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper import applications

keras_hub = pytest.importorskip("keras_hub")
from keras_hyper import hub  # noqa: E402

# A tiny InceptionNeXt: the protocol is shared, so one architecture shows the interop for all (the harness checks
# every architecture's features).
TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), band_kernel_size=5, branch_ratio=0.25)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, size=(8, 32, 32, 3)).astype("float32"), rng.integers(0, 3, size=8)


def test_backbone_is_a_feature_pyramid_backbone():
    backbone = hub.backbone("inceptionnext_atto", image_shape=(32, 32, 3), **TINY)
    assert isinstance(backbone, keras_hub.models.FeaturePyramidBackbone)
    assert list(backbone.pyramid_outputs) == ["P2", "P3", "P4", "P5"]
    assert [f.channels for f in applications.model_info("inceptionnext_atto").features] == [40, 80, 160, 320]
    assert backbone.output_shape == (None, 1, 1, 32)
    picked = hub.backbone("inceptionnext_atto", image_shape=(32, 32, 3), out_indices=(1, 2, 3), **TINY)
    assert list(picked.pyramid_outputs) == ["P3", "P4", "P5"]
    with pytest.raises(ValueError, match="features_only"):
        hub.ZooBackbone("inceptionnext_atto", {"features_only": True})


def test_pretrained_tag_loads_into_the_backbone():
    backbone = hub.backbone("inceptionnext_atto.digits", image_shape=(32, 32, 3))
    reference = applications.load("inceptionnext_atto.digits", include_top=False, input_shape=(32, 32, 3))
    x = np.random.default_rng(1).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(to_numpy(backbone(x)), to_numpy(reference(x)), atol=1e-5)


def test_image_classifier_fits_saves_and_reloads(images, tmp_path):
    x, y = images
    backbone = hub.backbone("inceptionnext_atto", image_shape=(32, 32, 3), **TINY)
    model = keras_hub.models.ImageClassifier(backbone=backbone, num_classes=3)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    path = tmp_path / "classifier.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(loaded.predict(x, verbose=0)), to_numpy(model.predict(x, verbose=0)), atol=1e-5)


def test_deeplab_segmenter_fits_saves_and_reloads(images, tmp_path):
    x, _ = images
    masks = (x[..., :1] > 0.5).astype("int32")  # a learnable per-pixel target
    encoder = hub.backbone("inceptionnext_atto", image_shape=(32, 32, 3), **TINY)
    deeplab = keras_hub.models.DeepLabV3Backbone(
        image_encoder=encoder,
        spatial_pyramid_pooling_key="P4",
        upsampling_size=4,
        dilation_rates=[1, 2],
        low_level_feature_key="P2",
        image_shape=(32, 32, 3),
    )
    model = keras_hub.models.DeepLabV3ImageSegmenter(backbone=deeplab, num_classes=2)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, masks, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.predict(x[:1], verbose=0).shape == (1, 32, 32, 2)
    path = tmp_path / "segmenter.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(loaded.predict(x, verbose=0)), to_numpy(model.predict(x, verbose=0)), atol=1e-5)


def test_retinanet_backbone_builds_an_fpn_on_the_pyramid():
    encoder = hub.backbone("inceptionnext_atto", image_shape=(64, 64, 3), **TINY)
    fpn = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=5, use_p5=False, image_shape=(64, 64, 3)
    )
    out = fpn(np.zeros((1, 64, 64, 3), "float32"))
    assert {k: tuple(v.shape[1:3]) for k, v in out.items()} == {"P3": (8, 8), "P4": (4, 4), "P5": (2, 2)}
