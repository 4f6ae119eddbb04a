"""KerasHub interop: any zoo image architecture as a `keras_hub.models.FeaturePyramidBackbone`.

KerasHub's vision tasks read a backbone's `pyramid_outputs` (`{"P2": ..., "P5": ...}`, strides 4..32): a zoo
backbone plugs into them as it is. Works: `ImageClassifier` (pools the deepest map), `DeepLabV3Backbone` /
`DeepLabV3ImageSegmenter` (needs the two keys it is given, e.g. P2 and P4), `RetinaNetBackbone` (P3..P5). See
docs/guide.md for which tasks do not take a pyramid backbone and why.

Example:

    import keras_hub
    from keras_hyper import hub

    backbone = hub.backbone("inceptionnext_atto", weights="digits", image_shape=(32, 32, 3))
    classifier = keras_hub.models.ImageClassifier(backbone=backbone, num_classes=10)
"""

import keras
import keras_hub

from keras_hyper import applications


@keras.saving.register_keras_serializable(package="keras_hyper")
class ZooBackbone(keras_hub.models.FeaturePyramidBackbone):
    """A registered zoo model's stage features as a KerasHub backbone.

    Its output is the deepest feature map; `pyramid_outputs` holds every stage (`model_info(name).features`).

    Args:
        model_name: a registered image model (`keras_hyper.applications.list_models()`).
        load_kwargs: arguments of `keras_hyper.applications.load` (architecture arguments, `weights`,
            `out_indices`, `include_preprocessing`, ...). `weights` load once, at construction: a saved and
            reloaded backbone takes its weights from the file, so the config does not keep them.
        image_shape: the input shape, `(height, width, channels)`; None entries accept any size.
    """

    def __init__(self, model_name, load_kwargs=None, image_shape=(None, None, 3), dtype=None, **kwargs):
        load_kwargs = dict(load_kwargs or {})
        refused = sorted({"features_only", "input_shape", "input_tensor", "include_top", "pooling"} & set(load_kwargs))
        if refused:
            raise ValueError(
                f"load_kwargs {refused} are set by the backbone itself (features only; the input comes from "
                "image_shape)."
            )
        features = applications.load(model_name, features_only=True, input_shape=tuple(image_shape), **load_kwargs)
        pyramid = dict(features.output)
        kwargs.setdefault("name", model_name)
        super().__init__(inputs=features.input, outputs=list(pyramid.values())[-1], dtype=dtype, **kwargs)
        self.pyramid_outputs = pyramid
        self.model_name = model_name
        self.load_kwargs = {k: v for k, v in load_kwargs.items() if k != "weights"}
        self.image_shape = tuple(image_shape)

    def get_config(self):
        config = super().get_config()
        # weights=None: a reloaded backbone is built without weights (the saved file brings them), silently
        load_kwargs = {**self.load_kwargs, "weights": None}
        config.update(model_name=self.model_name, load_kwargs=load_kwargs, image_shape=self.image_shape)
        return config


def backbone(name, *, image_shape=(None, None, 3), **load_kwargs):
    """The registered image model `name` (optionally `name.tag`) as a KerasHub `FeaturePyramidBackbone`.

    Args:
        name: a registered image model, or `model.tag` for pretrained weights.
        image_shape: the input shape (channels_last); None entries accept any size.
        **load_kwargs: arguments of `keras_hyper.applications.load` (e.g. `weights`, `out_indices`, the
            architecture's own).
    """
    model_name, _, tag = name.partition(".")
    if tag:
        load_kwargs.setdefault("weights", tag)
    return ZooBackbone(model_name, load_kwargs, image_shape=image_shape)
