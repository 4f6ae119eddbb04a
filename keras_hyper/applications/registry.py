"""The model registry: every named variant of every architecture, with what a user needs to know of it."""

import dataclasses
import difflib
import fnmatch
from typing import Optional

from keras_hyper import models
from keras_hyper.models import _base
from keras_hyper.models._base import Architecture, Paper
from keras_hyper.weights import files as weights_lib


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What keras-hyper knows of a registered model (one named variant of an architecture).

    `kind` is "image" for image classifiers and backbones, else what the model takes ("hypergraph", "audio", ...);
    the image fields (`input_size`, `mean`, `std`, `crop_pct`, `interpolation`) are None for the other kinds, whose
    inputs their builder documents. `num_classes` is the head's class count (None where the model has no classes),
    the one `num_params` counts.
    """

    name: str
    arch: str
    builder_kwargs: dict
    paper: Paper
    num_params: int
    input_size: int
    mean: tuple
    std: tuple
    crop_pct: float
    interpolation: str
    license: str
    source: str
    weight_tags: tuple
    paper_top1: Optional[float] = None
    timm_name: Optional[str] = None
    features: tuple = ()
    kind: str = "image"
    num_classes: Optional[int] = None


_MODELS: dict = {}


def register(arch: Architecture) -> None:
    """Registers every variant of `arch`; a name may be registered once."""
    for variant in arch.variants:
        if variant.name in _MODELS:
            raise ValueError(f"Model name {variant.name!r} is registered twice.")
        _MODELS[variant.name] = (arch, variant)


def lookup(name: str) -> tuple:
    """`(Architecture, Variant)` of a registered model name; unknown names raise with suggestions."""
    if not isinstance(name, str):
        raise TypeError(f"A model name must be a string, got {name!r}.")
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} See keras_hyper.applications.list_models().")
    return _MODELS[name]


def list_models(pattern: str = "*", pretrained: bool = False) -> list:
    """Sorted registered model names matching the fnmatch `pattern`; with `pretrained=True` only the ones
    that have weights, listed as `name.tag`."""
    names = sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))
    if not pretrained:
        return names
    return [f"{n}.{tag}" for n in names for tag in weights_lib.tags(n)]


def model_info(name: str) -> ModelInfo:
    """The `ModelInfo` of a registered model (a `name.tag` gives the tag's input size and crop)."""
    model_name, _, tag = name.partition(".") if isinstance(name, str) else (name, "", "")
    arch, variant = lookup(model_name)
    input_size, crop_pct = variant.input_size, variant.crop_pct
    features = ()
    if arch.is_image:
        network_kwargs = {k: v for k, v in variant.kwargs.items() if k not in _base.APP_ARGS}
        features = arch.feature_info(network_kwargs)
    if tag:
        entry = weights_lib.entry(model_name, tag)
        input_size, crop_pct = entry.input_size, entry.crop_pct
    image = arch.is_image
    num_classes = variant.kwargs.get("num_classes", arch.num_classes if image else None)
    if image and variant.kwargs.get("include_top") is False:
        num_classes = None
    return ModelInfo(
        name=model_name,
        arch=arch.name,
        builder_kwargs=dict(variant.kwargs),
        paper=arch.paper,
        num_params=variant.num_params,
        input_size=input_size if image else None,
        mean=arch.mean if image else None,
        std=arch.std if image else None,
        crop_pct=crop_pct if image else None,
        interpolation=arch.interpolation if image else None,
        license=arch.license,
        source=arch.source,
        weight_tags=weights_lib.tags(model_name),
        paper_top1=variant.paper_top1,
        timm_name=variant.timm_name,
        features=features,
        kind=arch.kind,
        num_classes=num_classes,
    )


def architectures() -> tuple:
    """Every registered `Architecture`, once each."""
    seen = {}
    for arch, _ in _MODELS.values():
        seen.setdefault(arch.name, arch)
    return tuple(seen.values())


def variant_builders() -> dict:
    """`{public name: builder}` of every variant that declares a `builder_name` (e.g. `InceptionNeXtTiny`), each
    `keras_hyper.applications.load(variant, **kwargs)` with a docstring generated from the registry."""
    from keras_hyper.applications.loading import load

    builders = {}
    for name, (arch, variant) in _MODELS.items():
        if variant.builder_name is None:
            continue
        if variant.builder_name in builders:
            raise ValueError(f"Builder name {variant.builder_name!r} is declared twice.")

        def builder(_variant=name, **kwargs):
            return load(_variant, **kwargs)

        info = model_info(name)
        tags = ", ".join(map(repr, info.weight_tags)) or "none (random initialisation)"
        what = f"input {info.input_size}x{info.input_size}" if arch.is_image else "a non-image model"
        builder.__name__ = builder.__qualname__ = variant.builder_name
        builder.__doc__ = (
            f"{arch.paper.title} (arXiv:{arch.paper.arxiv}): the registered variant `{name}`, "
            f"{info.num_params:,} parameters, {what}; weights tags: {tags}.\n\n"
            f"`keras_hyper.applications.load({name!r}, **kwargs)`: takes the architecture's arguments "
            f"(`help(keras_hyper.models.{arch.builder.__module__.rsplit('.', 1)[-1]}.{arch.builder.__name__})`) "
            "and `weights` (a tag, 'imagenet' or a local file)."
        )
        builders[variant.builder_name] = builder
    return builders


for _arch in models.ARCHITECTURES:
    register(_arch)
