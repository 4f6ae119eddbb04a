"""`load()`: a registered model by name, with weights by tag, by file, or none."""

import inspect
from pathlib import Path

import keras

from keras_hyper.applications import registry
from keras_hyper.models._base import APP_ARGS
from keras_hyper.weights import files as weights_lib


def load(name, *, weights=None, reset_head=False, progress=True, **kwargs):
    """Builds a registered model, optionally with weights.

    Args:
        name: a registered model name (`list_models()`), optionally with a weights tag: `"model.tag"`.
        weights: None (random init), a tag of `model_info(name).weight_tags`, `"imagenet"` (the model's
            ImageNet-1k tag), or a local file (`.weights.h5`, `.keras`, `.safetensors`, `.pth/.pt/.bin`, `.npz`).
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
        channels = _channels(builder_kwargs)
        if channels not in (None, 3):
            raise ValueError(
                f"Pretrained weights {weights!r} expect 3-channel (RGB) input, but the input has {channels} "
                "channels. Build without weights, or convert the images to RGB."
            )

    if weights is None:
        return arch.builder(**builder_kwargs)
    if path is not None and path.name.endswith(".weights.h5"):
        if reset_head or not include_top:
            raise ValueError(
                f"A .weights.h5 file ('{path}') loads only into a model of its own structure; to drop or reset the "
                "head, load the model it came from and save it as .keras, then pass that file."
            )
        model = arch.builder(**builder_kwargs)
        weights_lib.load_file(model, path)
        return model

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
    elif path.name.endswith(".keras"):
        full = keras.saving.load_model(str(path), compile=False)
    else:
        full = weights_lib.converted(path, arch, build_full, arch_kwargs, progress)

    if include_top and not reset_head and entry is None:
        pretrained = full.get_layer(arch.classifier).units
        # A file's head sets the default, as a tag's does.
        num_classes = builder_kwargs.setdefault("num_classes", pretrained)
        if num_classes != pretrained:
            raise ValueError(
                f"num_classes={num_classes} does not match the {pretrained}-class head of '{path}'. Pass "
                f"num_classes={pretrained}, include_top=False to drop the head, or reset_head=True to re-initialise it."
            )
    model = arch.builder(**builder_kwargs)
    weights_lib.transfer(full, model, skip=(arch.classifier,) if reset_head else ())
    return model


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


def _channels(builder_kwargs):
    if builder_kwargs.get("input_tensor") is not None:
        return builder_kwargs["input_tensor"].shape[-1]
    shape = builder_kwargs.get("input_shape")
    return None if shape is None else tuple(shape)[-1]
