"""Input preprocessing and prediction decoding with each model's own statistics."""

import numpy as np

from keras_hyper.applications import registry
from keras_hyper.weights import files as weights_lib


def preprocess_input(x, model="inceptionnext_tiny"):
    """Maps RGB pixels in [0, 255] (channels last) to the normalised input of `model`.

    Models built with `include_preprocessing=True` do this themselves: then feed raw pixels instead.
    """
    info = registry.model_info(model)
    x = np.asarray(x, dtype="float32")
    if x.shape[-1] != len(info.mean):
        raise ValueError(f"preprocess_input expects {len(info.mean)} channels last, got an array of shape {x.shape}.")
    return (x / 255.0 - np.asarray(info.mean, "float32")) / np.asarray(info.std, "float32")


def labels(name):
    """The class names of a weights tag (`"model.tag"`), one per output."""
    model, _, tag = name.partition(".")
    if not tag:
        raise ValueError(f"labels() needs a weights tag, 'model.tag', got {name!r}.")
    registry.lookup(model)
    found = weights_lib.entry(model, tag).labels
    if isinstance(found, str):
        return weights_lib.shipped_path(f"{found}.txt").read_text().splitlines()
    return list(found)


def decode_predictions(preds, labels, top=5):
    """`[[(label, score), ...] per sample]`, best first.

    Args:
        preds: `(batch, num_classes)` scores.
        labels: the class names, one per class (`keras_hyper.applications.labels("model.tag")`).
        top: how many classes per sample.
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != len(labels):
        raise ValueError(f"decode_predictions expects scores of shape (batch, {len(labels)}), got {preds.shape}.")
    order = np.argsort(-preds, axis=1)[:, :top]
    return [[(labels[i], float(p[i])) for i in row] for p, row in zip(preds, order)]
