"""The model registry and loading: `list_models`, `model_info`, `load`, preprocessing (`eval_transform`,
`preprocess_input`, `decode_predictions`), and one public builder per registered variant
(`InceptionNeXtTiny(weights=...)`, like `keras.applications.ConvNeXtTiny`), generated from the architectures'
variant tables."""

from keras_hyper.applications import registry as _registry
from keras_hyper.applications.loading import load
from keras_hyper.applications.preprocessing import (
    EvalTransform,
    decode_predictions,
    eval_transform,
    labels,
    preprocess_input,
)
from keras_hyper.applications.registry import ModelInfo, list_models, model_info

_BUILDERS = _registry.variant_builders()
globals().update(_BUILDERS)

__all__ = [
    "EvalTransform",
    "ModelInfo",
    "decode_predictions",
    "eval_transform",
    "labels",
    "list_models",
    "load",
    "model_info",
    "preprocess_input",
    *sorted(_BUILDERS),
]
