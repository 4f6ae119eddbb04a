"""`load()`: a registered model by name, with weights by tag, by file, or none."""

import inspect
import warnings
from pathlib import Path

from keras_hyper.applications import registry
from keras_hyper.models._base import APP_ARGS
from keras_hyper.weights import files as weights_lib


class _NotGiven:
    """`load`'s default for `weights`: random initialisation, with a warning where the model has pretrained tags
    (an explicit `weights=None` is the same without the warning)."""

    def __repr__(self):
        return "None"


NOT_GIVEN = _NotGiven()


def load(name, *, weights=NOT_GIVEN, reset_head=False, progress=True, **kwargs):
    """Builds a registered model, optionally with weights.

    Args:
        name: a registered model name (`list_models()`), optionally with a weights tag: `"model.tag"`.
        weights: None (random init), a tag of `model_info(name).weight_tags`, `"imagenet"` (the model's
            ImageNet-1k tag), or a local file (`.weights.h5`, `.keras`, `.safetensors`, `.pth/.pt/.bin`, `.npz`).
            Left out, the model is randomly initialised too, with a warning naming its pretrained tags if it has
            any: pass `weights=None` to choose random weights without it. A file's head sets `num_classes` when
            it is not given (an explicit different count is an error), as a tag's does.
        reset_head: with pretrained weights and `include_top=True`, load everything but the final classifier,
            which is freshly initialised with `num_classes` outputs: the way to fine-tune on new classes.
            Without it, `num_classes` must equal the pretrained head's.
        progress: show progress bars for downloads and conversions.
        **kwargs: the builder's arguments: the keras.applications ones (`include_top`, `input_tensor`,
            `input_shape`, `pooling`, `num_classes`, `classifier_activation`, `include_preprocessing`, `name`),
            `features_only=True` with `out_indices` for the backbone's stage features (a model whose output is
            `{"P2": ..., "P5": ...}`, see `model_info(name).features`; pretrained weights load into it, the head's
            tensors being left out), and the architecture's own (`drop_path_rate`, ...).

    Returns:
        A functional `keras.Model`.

    Example:
        backbone = load("inceptionnext_tiny", features_only=True, out_indices=(1, 2, 3))
        backbone(images)  # {"P3": (B, H/8, W/8, 192), "P4": ..., "P5": ...}
    """
    if not isinstance(name, str):
        raise TypeError(f"A model name must be a string, got {name!r}.")
    model_name, _, tag = name.partition(".")
    random_by_default = weights is NOT_GIVEN and not tag
    model = _load(name, None if weights is NOT_GIVEN else weights, reset_head, progress, kwargs)
    if random_by_default and weights_lib.tags(model_name):
        # after the build, so that a call refused for its arguments does not warn as well
        tags = ", ".join(repr(t) for t in weights_lib.tags(model_name))
        warnings.warn(
            f"load({model_name!r}) built {model_name} with random weights, although pretrained weights exist "
            f"(tags {tags}). Pass weights='<tag>' (or load('{model_name}.<tag>')) for them, or weights=None to "
            "choose random weights without this warning.",
            stacklevel=2,
        )
    return model


def _load(name, weights, reset_head, progress, kwargs):
    model_name, _, tag = name.partition(".")
    arch, variant = registry.lookup(model_name)
    if tag:
        if weights is not None and weights != tag:
            raise ValueError(
                f"load({name!r}, weights={weights!r}) names two different weights; give the tag either in the name "
                "or as weights=, not both."
            )
        weights = tag
    known = set(inspect.signature(arch.builder).parameters) - {"weights"}
    unknown = sorted(set(kwargs) - known)
    if unknown and not arch.is_image and {"features_only", "out_indices"} & set(unknown):
        raise TypeError(f"{model_name} is not an image backbone: it has no stage features (features_only).")
    if unknown:
        raise TypeError(f"{model_name} takes no argument(s) {unknown}; it takes {sorted(known)}.")

    entry, path = _weights_source(model_name, weights)
    builder_kwargs = {**variant.kwargs, "name": model_name, **kwargs}
    if arch.example_inputs is not None:
        return _load_headless(arch, builder_kwargs, entry, path, reset_head, progress)
    # A features model has no head: pretrained weights load into it as into include_top=False.
    include_top = kwargs.get("include_top", True) and not kwargs.get("features_only", False)
    if reset_head and (weights is None or not include_top):
        raise ValueError(
            "reset_head=True re-initialises the classifier of pretrained weights, so it needs weights= and "
            "include_top=True."
        )
    if entry is not None:
        _check_against_entry(entry, builder_kwargs, include_top, reset_head)
    if weights is not None:
        _check_rgb(weights, builder_kwargs)

    if weights is None:
        return arch.builder(**builder_kwargs)

    arch_kwargs = {k: v for k, v in builder_kwargs.items() if k not in APP_ARGS}

    def build_full(num_classes):
        return arch.builder(
            **arch_kwargs,
            num_classes=num_classes,
            classifier_activation=None,
            input_shape=(None, None, 3),
        )

    # `full` is the pretrained model with its own head; the requested model takes its weights by layer name.
    if entry is not None and entry.kind == "native":
        full = build_full(entry.num_classes)
        weights_lib.load_file(full, weights_lib.resolve(entry, progress))
    elif entry is not None:
        full = weights_lib.converted(weights_lib.resolve(entry, progress), arch, build_full, arch_kwargs, progress)
    elif path.name.endswith(".weights.h5"):
        model, full = _from_weights_h5(arch, path, build_full, builder_kwargs, include_top, reset_head)
        if model is not None:
            return model
    elif path.name.endswith(".keras"):
        full = weights_lib.read_keras(path)
    else:
        full = weights_lib.converted(path, arch, build_full, arch_kwargs, progress)

    if include_top and not reset_head and entry is None:
        if arch.classifier not in {layer.name for layer in full.layers}:
            raise _headless(path)
        pretrained = full.get_layer(arch.classifier).units
        # A file's head sets the default, as a tag's does.
        num_classes = builder_kwargs.setdefault("num_classes", pretrained)
        if num_classes != pretrained:
            raise _head_mismatch(num_classes, pretrained, path)
    model = arch.builder(**builder_kwargs)
    weights_lib.transfer(full, model, skip=(arch.classifier,) if reset_head else ())
    return model


def _from_weights_h5(arch, path, build_full, builder_kwargs, include_top, reset_head):
    """A `.weights.h5` file's weights in a model: `(model, None)` when the requested model has the file's
    structure (its head sized as the file's unless `num_classes` says otherwise, which is an error), else
    `(None, full)`, the file's full model for `transfer` to take the weights from.

    The file holds no configuration: its class count is the last axis of the classifier's kernel, found where
    Keras stores that layer for a model of this structure with any head size.
    """
    if include_top and not reset_head:
        model = arch.builder(**builder_kwargs)
        classes = weights_lib.saved_classes(path, model, arch.classifier)
        if classes is None:
            _raise_without_head(arch, path, builder_kwargs)
        if classes != model.get_layer(arch.classifier).units:
            if "num_classes" in builder_kwargs:
                raise _head_mismatch(builder_kwargs["num_classes"], classes, path)
            model = arch.builder(**builder_kwargs, num_classes=classes)
        weights_lib.load_file(model, path)
        return model, None
    probe = build_full(builder_kwargs.get("num_classes") or arch.num_classes)
    classes = weights_lib.saved_classes(path, probe, arch.classifier)
    if classes is None:
        if include_top:
            _raise_without_head(arch, path, builder_kwargs)
        # a file saved without its head loads into a headless model of its own structure
        model = arch.builder(**builder_kwargs)
        weights_lib.load_file(model, path)
        return model, None
    full = probe if classes == probe.get_layer(arch.classifier).units else build_full(classes)
    weights_lib.load_file(full, path)
    return None, full


def _head_mismatch(num_classes, pretrained, path):
    return ValueError(
        f"num_classes={num_classes} does not match the {pretrained}-class head of '{path}'. Pass "
        f"num_classes={pretrained}, include_top=False to drop the head, or reset_head=True to re-initialise it."
    )


def _raise_without_head(arch, path, builder_kwargs):
    """A file with no classifier where this model has one: either it was saved without its head or it is another
    model's; loading it into this model's trunk tells which, for the error to say."""
    trunk = arch.builder(**{**builder_kwargs, "include_top": False, "pooling": None})
    weights_lib.load_file(trunk, path)  # raises "does not fit" for another architecture or configuration
    raise _headless(path)


def _headless(path):
    return ValueError(
        f"Weights file '{path}' holds no classification head (it was saved from a model built with "
        "include_top=False or features_only=True): load it with include_top=False, or with the features_only "
        "arguments it was saved with."
    )


def _load_headless(arch, builder_kwargs, entry, path, reset_head, progress):
    """A non-image architecture: no classifier to drop or re-initialise, so weights load into the model as built."""
    if reset_head:
        raise ValueError(f"reset_head=True applies to image classifiers; {arch.name} has no classification head.")
    model = arch.builder(**builder_kwargs)
    if entry is not None:
        path = weights_lib.resolve(entry, progress)
    if path is not None:
        weights_lib.load_file(model, path, arch=arch)
    return model


def _weights_source(model_name, weights):
    """`(entry, path)`: the manifest entry of a tag, or the path of a file; both None without weights."""
    if weights is None:
        return None, None
    if weights_lib.is_path(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"Weights file '{path}' does not exist.")
        return None, path
    if not isinstance(weights, str):
        raise TypeError(f"weights must be None, a tag or a file path, got {weights!r}.")
    if weights == "imagenet":
        imagenet = [t for t in weights_lib.tags(model_name) if weights_lib.entry(model_name, t).num_classes == 1000]
        if not imagenet:
            raise ValueError(f"No ImageNet-1k weights are registered for {model_name!r}.")
        weights = imagenet[0]
    return weights_lib.entry(model_name, weights), None


def _check_against_entry(entry, builder_kwargs, include_top, reset_head):
    """Fits the defaults to a tag (input size, class count) and rejects arguments that contradict it."""
    if include_top and not reset_head:
        num_classes = builder_kwargs.setdefault("num_classes", entry.num_classes)
        if num_classes != entry.num_classes:
            raise ValueError(
                f"num_classes={num_classes} does not match the {entry.num_classes}-class head of weights "
                f"'{entry.name}'. Pass include_top=False to drop the head, or reset_head=True to re-initialise it "
                f"with {num_classes} classes."
            )
    if builder_kwargs.get("input_shape") is None and builder_kwargs.get("input_tensor") is None:
        builder_kwargs["input_shape"] = (entry.input_size, entry.input_size, 3)


def _check_rgb(weights, builder_kwargs):
    """Pretrained image weights take channels-last RGB input: `(height, width, 3)`."""
    if builder_kwargs.get("input_tensor") is not None:
        shape = tuple(builder_kwargs["input_tensor"].shape[1:])
    elif builder_kwargs.get("input_shape") is not None:
        shape = tuple(builder_kwargs["input_shape"])
    else:
        return
    if len(shape) == 3 and shape[-1] != 3 and shape[0] in (1, 3):
        raise ValueError(
            f"Input shape {shape} looks channels-first, but keras-hyper models are channels_last: (height, width, "
            f"channels), whatever keras.config.image_data_format() is. Pass {shape[1:] + shape[:1]} and feed "
            "images as (batch, height, width, channels), e.g. np.moveaxis(images, 1, -1)."
        )
    if shape[-1] not in (None, 3):
        raise ValueError(
            f"Pretrained weights {weights!r} expect 3-channel (RGB) input, but the input has {shape[-1]} "
            "channels. Build without weights, or convert the images to RGB."
        )
