"""What every architecture module shares: the spec of an architecture and its variants, and the
keras.applications argument conventions (input, head, pooling, preprocessing) with their validation."""

import dataclasses
from typing import Callable, Mapping, Optional

import keras
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POOLINGS = (None, "avg", "max")


@dataclasses.dataclass(frozen=True)
class Paper:
    """A paper: title, arXiv id and its number in the project's PAPERS.md."""

    title: str
    arxiv: str
    number: int


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named full-size configuration of an architecture.

    `num_params` is the official parameter count with the default 1000-class head; `timm_name` names the same
    model in timm, where it has one (for side-by-side benchmarks and parity tests); `paper_top1` is the
    reported ImageNet-1k top-1 of the official checkpoint.
    """

    name: str
    kwargs: Mapping
    num_params: int
    input_size: int = 224
    crop_pct: float = 0.875
    paper_top1: Optional[float] = None
    timm_name: Optional[str] = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Architecture:
    """Everything the registry, the converters and the test harness need to know of one architecture.

    `builder(**kwargs)` builds a model; `convert(state_dict, model)` fills a full (with top) model from the
    official checkpoint layout; `classifier` is the layer name of the final classification layer, the one
    `num_classes` changes; `classifier_key` the official state-dict key of its weight (shape
    `(num_classes, features)`); `tiny` a small configuration (builder kwargs) that the harness trains and
    exports, and the configuration of every case in `fixture`, the folder under `shared/reference/` holding
    the official implementation's outputs; `reparameterize(model) -> model`, where there is one, is the
    inference-time fusion (equal outputs, fewer layers).

    `fixture_kwargs(meta)`, where given, maps a fixture case's JSON (its `kwargs` are the official
    constructor's) to builder kwargs; without it every case uses `tiny`. `fixture_cases` names the cases
    (file stems) that are whole-model cases, checked by `keras_hyper.convert.reference.check`; None means all.
    Layer-level cases are the architecture's own tests' business.

    Non-image architectures (audio, graphs, sequences) set `example_inputs(batch) -> array | tuple of arrays`,
    valid inputs of `builder(**tiny)`; they have no `classifier` to swap, and the harness runs only its
    input-agnostic checks on them. `litert=False` declares a model whose operators have no builtin LiteRT
    lowering (its card says which); the harness then skips the export check instead of failing it.

    `sample_inputs(builder_kwargs, batch, size, rng) -> (inputs, size, kwargs)`, where a non-image architecture
    gives it, makes realistic inputs for a model built with `builder_kwargs` at the architecture's problem size
    (for hypergraphs: vertices; `size=None` is the architecture's default), for `keras-hyper benchmark`; it
    returns the inputs, the size they have and the builder kwargs they need (e.g. a sparse hypergraph's
    `num_edges`; usually none).

    `zero_grad_at_init` names the variables (paths in `builder(**tiny)`) whose gradient the official design makes
    zero, up to rounding, at initialisation (each with its reason in a comment): the harness' fit check does not
    require one step to move them.
    """

    name: str
    builder: Callable
    convert: Callable
    paper: Paper
    variants: tuple
    license: str
    source: str
    tiny: Mapping
    classifier: Optional[str] = None
    classifier_key: Optional[str] = None
    fixture: Optional[str] = None
    min_input_size: int = 32
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    interpolation: str = "bicubic"
    reparameterize: Optional[Callable] = None
    fixture_kwargs: Optional[Callable] = None
    fixture_cases: Optional[tuple] = None
    example_inputs: Optional[Callable] = None
    sample_inputs: Optional[Callable] = None
    litert: bool = True
    zero_grad_at_init: tuple = ()

    def __post_init__(self):
        if self.example_inputs is None and (self.classifier is None or self.classifier_key is None):
            raise ValueError(
                f"Architecture {self.name!r}: an image classifier needs `classifier` and `classifier_key`; "
                "a non-image architecture declares `example_inputs` instead."
            )


def validate_head(include_top, pooling, num_classes, classifier_activation):
    """Rejects the argument combinations that keras.applications rejects, and the ones it silently ignores."""
    if not isinstance(include_top, bool):
        raise ValueError(f"include_top must be True or False, got {include_top!r}.")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    if include_top and pooling is not None:
        raise ValueError(
            f"pooling={pooling!r} only applies without the classification head (include_top=False); the head "
            "already pools its input."
        )
    if include_top:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
        if classifier_activation is not None:
            try:
                keras.activations.get(classifier_activation)
            except (ValueError, TypeError) as err:
                raise ValueError(f"Unknown classifier_activation {classifier_activation!r}.") from err


def drop_path_rates(drop_path_rate, blocks):
    """The stochastic-depth rate of each of `blocks` blocks: linear from 0 to `drop_path_rate`, the schedule of
    timm and of the official implementations that use it."""
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}.")
    return [float(rate) for rate in np.linspace(0.0, drop_path_rate, blocks)]


def image_input(input_tensor, input_shape, *, default_size, min_size, name="input"):
    """Returns the model's input tensor (channels_last), validating the spatial size against `min_size`.

    `input_shape=None` means `(default_size, default_size, 3)`; `None` entries for height and width make a
    model that accepts any size at or above `min_size`.
    """
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            "keras-hyper models are channels_last; set keras.config.set_image_data_format('channels_last')."
        )
    if input_tensor is not None:
        tensor_shape = tuple(input_tensor.shape[1:])
        if input_shape is not None and tuple(input_shape) != tensor_shape:
            raise ValueError(
                f"input_shape={tuple(input_shape)} contradicts input_tensor of shape {tensor_shape}; pass only one."
            )
        input_shape = tensor_shape
    if input_shape is None:
        input_shape = (default_size, default_size, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}.")
    height, width, channels = input_shape
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"The channel dimension of input_shape must be a positive integer, got {input_shape!r}.")
    for size in (height, width):
        if size is not None and size < min_size:
            raise ValueError(f"Input height and width must be at least {min_size}, got input_shape={input_shape!r}.")
    if input_tensor is not None:
        if keras.utils.is_keras_tensor(input_tensor):
            return input_tensor
        return keras.Input(tensor=input_tensor, name=name)
    return keras.Input(shape=input_shape, name=name)


def preprocessing(x, mean, std, name="preprocessing"):
    """Maps raw pixels in [0, 255] to the normalised range the model was trained on."""
    return keras.layers.Normalization(
        mean=[255.0 * m for m in mean], variance=[(255.0 * s) ** 2 for s in std], name=name
    )(x)


def pool(x, pooling):
    """The `include_top=False` pooling of keras.applications."""
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def predictions(x, classifier_activation):
    """The final activation, in float32 so that softmax stays stable under mixed precision."""
    if classifier_activation is None:
        return x
    return keras.layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)


def finish(inputs, outputs, *, name, weights=None, arch=None):
    """Builds the functional model and, for `weights` given as a file path, loads it (official checkpoints
    through `arch.convert`)."""
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        # Weight files, caches and converters live in keras_hyper.applications, above the models; importing it
        # lazily keeps the dependency direction of the package (models never import it at module level).
        from keras_hyper.applications import weights as weights_lib

        weights_lib.load_file(model, weights, arch=arch)
    return model


def variant_builder(function_name, variant):
    """Makes the public builder of a registered variant, e.g. `InceptionNeXtTiny(weights="sail_in1k")`.

    It is `keras_hyper.applications.load(variant, **kwargs)`: one code path for tags, conversion and
    validation. The import is lazy because applications sits above models.
    """

    def builder(**kwargs):
        from keras_hyper import applications

        return applications.load(variant, **kwargs)

    builder.__name__ = builder.__qualname__ = function_name
    builder.__doc__ = (
        f"Builds the registered variant `{variant}`: `keras_hyper.applications.load({variant!r}, **kwargs)`.\n\n"
        "Takes the keras.applications arguments (include_top, weights, input_tensor, input_shape, pooling, "
        "num_classes, classifier_activation, include_preprocessing, name) and the architecture's own keyword "
        "arguments; `weights` is a tag of `keras_hyper.applications.model_info(...).weight_tags`, 'imagenet', or "
        "a local file."
    )
    return builder
