"""The model registry and loading: `list_models`, `model_info`, `load`, preprocessing."""

from keras_hyper.applications.loading import load
from keras_hyper.applications.preprocessing import decode_predictions, labels, preprocess_input
from keras_hyper.applications.registry import ModelInfo, list_models, model_info

__all__ = ["ModelInfo", "decode_predictions", "labels", "list_models", "load", "model_info", "preprocess_input"]
