"""Input preprocessing and prediction decoding with each model's own statistics: `eval_transform` (images as the
model was evaluated: resize by `crop_pct`, centre crop, normalise), `preprocess_input` (normalise only),
`decode_predictions` and `labels`."""

import math
import os

import numpy as np

from keras_hyper.applications import registry
from keras_hyper.weights import files as weights_lib


def _image_info(model, what):
    """The `ModelInfo` of an image model named for `what`; other kinds have no pixel statistics."""
    if not isinstance(model, str):
        raise TypeError(f"{what} needs a model name (or 'model.tag'), got {model!r}.")
    info = registry.model_info(model)
    if info.kind != "image":
        raise ValueError(
            f"{what} prepares images, but {info.name} is {_a(info.kind)} model: build its inputs as its builder "
            f"documents (help(keras_hyper.applications.load) and the model card)."
        )
    return info


def _a(kind):
    """`kind` with its indefinite article ("an audio", "a hypergraph")."""
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def preprocess_input(x, model):
    """Maps RGB pixels in [0, 255] (channels last) to the normalised input of `model` (its mean and std; no resize).

    Args:
        x: pixels, `(..., 3)`.
        model: the model name (or `"model.tag"`) whose statistics apply; required, since models differ (CIFAR
            models use CIFAR's mean and std, Poincaré ResNet 0.5 and 0.5).

    Models built with `include_preprocessing=True` do this themselves: then feed raw pixels instead.
    `eval_transform(model)` also resizes and crops images as the model was evaluated.
    """
    info = _image_info(model, "preprocess_input")
    x = np.asarray(x, dtype="float32")
    if x.shape[-1] != len(info.mean):
        raise ValueError(f"preprocess_input expects {len(info.mean)} channels last, got an array of shape {x.shape}.")
    return (x / 255.0 - np.asarray(info.mean, "float32")) / np.asarray(info.std, "float32")


class EvalTransform:
    """Images prepared as `model` was evaluated (its card's protocol, timm's eval transform): the shorter side
    resized to `floor(size / crop_pct)` with the model's interpolation, a centred `size` x `size` crop, then
    `preprocess_input` (unless `normalize=False`, for models built with `include_preprocessing=True`).

    Call it on image files, PIL images or `(H, W, 3)` uint8 arrays; it returns a `(N, size, size, 3)` float32 batch.
    Attributes `size`, `crop_pct`, `interpolation`, `mean`, `std` say what it does.

    Example:
        transform = eval_transform("inceptionnext_tiny.sail_in1k")
        probs = model.predict(transform(["cat.jpg", "dog.png"]))
    """

    def __init__(self, model, size=None, normalize=True):
        info = _image_info(model, "eval_transform")
        self.model = model
        self.size = size or info.input_size
        self.crop_pct, self.interpolation = info.crop_pct, info.interpolation
        self.mean, self.std, self.normalize = info.mean, info.std, normalize
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"eval_transform size must be a positive integer, got {size!r}.")

    def __repr__(self):
        return (
            f"EvalTransform({self.model!r}: resize shorter side to {math.floor(self.size / self.crop_pct)} "
            f"({self.interpolation}), centre crop {self.size}, "
            + (f"mean {self.mean}, std {self.std})" if self.normalize else "pixels 0-255)")
        )

    def __call__(self, images):
        try:
            from PIL import Image, UnidentifiedImageError
        except ImportError as err:
            raise ImportError("eval_transform reads images with Pillow: pip install pillow.") from err
        resample = getattr(Image.Resampling, self.interpolation.upper(), None)
        if resample is None:
            raise ValueError(f"{self.model} uses interpolation {self.interpolation!r}, which Pillow does not have.")
        if isinstance(images, (str, os.PathLike, Image.Image)) or (isinstance(images, np.ndarray) and images.ndim == 3):
            images = [images]
        scale = math.floor(self.size / self.crop_pct)
        batch = []
        for item in images:
            if isinstance(item, Image.Image):
                image = item.convert("RGB")
            elif isinstance(item, np.ndarray):
                image = Image.fromarray(np.asarray(item, "uint8")).convert("RGB")
            else:
                try:
                    with Image.open(item) as opened:
                        image = opened.convert("RGB")
                except (UnidentifiedImageError, OSError) as err:
                    raise ValueError(f"Cannot read image '{item}': {err}") from err
            width, height = image.size
            short = min(width, height)
            resized = image.resize((int(scale * width / short), int(scale * height / short)), resample)
            left = int(round((resized.width - self.size) / 2))
            top = int(round((resized.height - self.size) / 2))
            batch.append(np.asarray(resized.crop((left, top, left + self.size, top + self.size)), dtype="float32"))
        batch = np.stack(batch)
        return preprocess_input(batch, self.model) if self.normalize else batch


def eval_transform(model, size=None, *, normalize=True):
    """The `EvalTransform` of `model` (a name or `"model.tag"`, whose input size and crop apply): images in, the
    normalised batch the model was evaluated on out. `size` overrides the input size."""
    return EvalTransform(model, size, normalize)


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


def _labels_of(model, num_classes):
    """The labels of a `"model.tag"`, or of a model name's one labelled tag with `num_classes` classes."""
    name, _, tag = model.partition(".")
    if tag:
        return labels(model)
    registry.lookup(name)
    fitting = [t for t in weights_lib.tags(name) if weights_lib.entry(name, t).labels]
    fitting = [t for t in fitting if weights_lib.entry(name, t).num_classes == num_classes]
    if len(fitting) != 1:
        which = f"several ({', '.join(fitting)})" if fitting else "none"
        raise ValueError(
            f"decode_predictions({model!r}) takes the labels of the model's weights tag with {num_classes} labelled "
            f"classes, and {name} has {which}: pass 'model.tag' or the labels."
        )
    return labels(f"{name}.{fitting[0]}")


def decode_predictions(preds, labels=None, top=5):
    """`[[(label, score), ...] per sample]`, best first.

    Args:
        preds: `(batch, num_classes)` scores.
        labels: whose class names: a weights tag `"model.tag"` (its labels), a model name (the labels of its weights
            tag with `num_classes` classes), or the names themselves; None gives `"class <i>"`.
        top: how many classes per sample.

    Example:
        decode_predictions(model.predict(x), "inceptionnext_atto.digits", top=3)
    """
    preds = np.asarray(preds)
    if preds.ndim != 2:
        raise ValueError(f"decode_predictions expects scores of shape (batch, num_classes), got {preds.shape}.")
    if labels is None:
        labels = [f"class {i}" for i in range(preds.shape[1])]
    elif isinstance(labels, str):
        labels = _labels_of(labels, preds.shape[1])
    if preds.shape[1] != len(labels):
        raise ValueError(f"decode_predictions expects scores of shape (batch, {len(labels)}), got {preds.shape}.")
    order = np.argsort(-preds, axis=1)[:, :top]
    return [[(labels[i], float(p[i])) for i in row] for p, row in zip(preds, order)]
