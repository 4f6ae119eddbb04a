"""What every architecture module shares: the spec of an architecture and its variants, the backbone
protocol (an image architecture is a network function that returns its stage features and its head), and the
ONE classifier builder that wraps every backbone with the keras.applications arguments (input, preprocessing,
pooling, head, final activation, weights) and their validation."""

import dataclasses
import inspect
from typing import Callable, Mapping, NamedTuple, Optional, Union

import keras
import numpy as np

from keras_hyper.layers._args import check_positive, check_rate
from keras_hyper.weights import files as weights_lib

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
    builder_name: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Feature:
    """One stage feature of a backbone: its key (`"P<log2 stride>"`, KerasHub's naming: P2..P5 for strides 4..32),
    its stride relative to the input and its channels."""

    key: str
    stride: int
    channels: int


def feature_key(stride):
    """A stage's key: `"P<log2 stride>"` (KerasHub's naming), or `"S<stride>"` for a stride that is no power of two
    (a ViT with 6x6 patches), which has no P level."""
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"A feature stride must be a positive integer, got {stride!r}.")
    return f"P{stride.bit_length() - 1}" if stride & (stride - 1) == 0 else f"S{stride}"


def stage_args(depths, dims):
    """`depths` (blocks per stage, positive integers) and `dims` (channels per stage) as tuples, checked to have one
    entry per stage, at least one stage."""
    depths, dims = tuple(depths), tuple(dims)
    if len(depths) != len(dims) or not depths:
        raise ValueError(f"depths and dims must have the same non-zero length, got depths={depths}, dims={dims}.")
    if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in depths):
        raise ValueError(f"depths must be positive integers, got {depths}.")
    return depths, dims


def convnext_features(depths, dims, **_):
    """The features of a ConvNeXt-style network (a stride-4 stem, then stages doubling the stride):
    P2, P3, ... with `dims` channels."""
    _, dims = stage_args(depths, dims)
    return pyramid(dims, [2 ** (i + 2) for i in range(len(dims))])


def pyramid(channels, strides=(4, 8, 16, 32)):
    """The `Feature`s of stages with these channels and strides (a ViT's single stride-16 token grid is
    `pyramid([dim], [16])`)."""
    channels, strides = tuple(channels), tuple(strides)
    if len(channels) != len(strides):
        raise ValueError(f"pyramid() needs one stride per stage, got channels={channels}, strides={strides}.")
    features = []
    for width, stride in zip(channels, strides):
        features.append(Feature(feature_key(stride), stride, int(width)))
    if len({f.key for f in features}) != len(features):
        raise ValueError(f"Two stages share a stride in {strides}; a pyramid has one feature per stride.")
    return tuple(features)


class Network(NamedTuple):
    """What an image architecture's network function returns.

    `features`: `{key: tensor}` for every stage, shallow to deep; the last one is what `include_top=False`
    returns and what the head reads. `head(x, num_classes) -> logits`: the classification head (before the final
    activation) applied to the last feature; a list `[logits, aux_logits, ...]` for training-only auxiliary
    classifiers (deep supervision), which become further outputs with the same final activation.
    `pool(x, pooling)`, where given, replaces the shared `include_top=False` pooling (complex feature maps pool by
    modulus, not per real part).
    """

    features: dict
    head: Callable
    pool: Optional[Callable] = None


# The keras.applications arguments of every image builder, with their defaults (`name` defaults to the
# architecture's name), plus timm's features_only / out_indices.
APP_ARGS = dict(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    num_classes=1000,
    classifier_activation="softmax",
    include_preprocessing=False,
    features_only=False,
    out_indices=None,
    name=None,
)

_APP_DOC = """
    The keras.applications arguments, shared by every image architecture:
        include_top: whether to end with the classification head (`num_classes` outputs).
        weights: None or a local weight file of this exact structure (for registered tags, official
            checkpoints and head changes use `keras_hyper.applications.load`).
        input_tensor, input_shape: the input, channels_last; `None` height/width accept any size at or above
            the architecture's minimum.
        pooling: without the head, None (the last feature map), "avg" or "max".
        num_classes, classifier_activation: the head's outputs and final activation (computed in float32).
        include_preprocessing: start with a Normalization layer mapping [0, 255] pixels to the training range.
        features_only: return the backbone: a model whose output is `{key: stage feature}` (keys "P2".."P5" for
            strides 4..32, `keras_hyper.applications.model_info(name).features`).
        out_indices: with features_only, the stages to return (indices into the features, negatives count from
            the deepest); None returns them all.
        name: the model's name.
"""


@dataclasses.dataclass(frozen=True)
class Testing:
    """What only the tests need to know of an architecture (`Architecture.testing`).

    `tiny`: a small configuration (builder kwargs) that the harness builds, trains and exports on every backend,
    and the configuration of every reference case that has no `Reference.kwargs`; `min_input_size`: the side of
    the square input the harness feeds an image architecture (its smallest valid one); `zero_grad_at_init`: the
    variables (paths in `builder(**tiny)`) whose gradient the official design makes zero, up to rounding, at
    initialisation (each with its reason in a comment), which the harness' fit check does not require one step
    to move.
    """

    tiny: Mapping
    min_input_size: int = 32
    zero_grad_at_init: tuple = ()


@dataclasses.dataclass(frozen=True)
class Reference:
    """The official implementation's recorded outputs for an architecture (`Architecture.reference`), which the
    harness and `keras-hyper check` (`keras_hyper.convert.reference.check`) compare with the converted model.

    `folder`: the folder under `shared/reference/` that holds the cases (`<case>.npz` + `<case>.json`).
    `kwargs(meta)`, where given, maps a case's JSON (its `kwargs` are the official constructor's) to builder
    kwargs; without it every case is built with `Architecture.testing.tiny`. `cases` names the cases (file stems)
    that are whole-model cases, None meaning all; layer-level cases are the architecture's own tests' business.
    `features` maps a case's recorded intermediates to the backbone's features (`{"feat/stage0": "P2", ...}`):
    they are compared through `features_only=True`, which is how a user gets them.
    """

    folder: str
    kwargs: Optional[Callable] = None
    cases: Optional[tuple] = None
    features: Optional[Mapping] = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Architecture:
    """Everything the registry, the converters and the test harness need to know of one architecture.

    `builder(**kwargs)` builds a model; `convert(state_dict, model)` fills a full (with top) model from the
    official checkpoint layout; `classifier` is the layer name of the final classification layer, the one
    `num_classes` changes; `classifier_key` the official state-dict key of its weight (shape
    `(num_classes, features)`); `reparameterize(model) -> model`, where there is one, is the inference-time
    fusion (equal outputs, fewer layers).

    `testing` (a `Testing`) holds what only the tests use: the tiny configuration, the harness' input size and
    the variables one training step may leave unchanged. `reference` (a `Reference`), where the official
    implementation's outputs are recorded, says where they are and how each case maps to this architecture.

    `num_classes` is the image builder's default head size (a CIFAR architecture's 10 or 100).

    `kind` says what the model takes and gives: "image" (a backbone + classifier, declared through `network`) or
    the kind of a non-image model ("audio", "hypergraph", "knowledge graph", "dense prediction", ...).
    Non-image architectures (audio, graphs, sequences) set `example_inputs(batch) -> array | tuple of arrays`,
    valid inputs of `builder(**testing.tiny)`; they have no `classifier` to swap, and the harness runs only its
    input-agnostic checks on them. `litert=False` declares a model whose operators have no builtin LiteRT
    lowering (its card says which); the harness then skips the export check instead of failing it.
    `litert_batch`, where set, is the batch size LiteRT export must fix because the converter cannot keep it
    dynamic for one of the model's ops (the harness and `keras-hyper export` pass it; None: any batch).

    `sample_inputs(builder_kwargs, batch, size, rng) -> (inputs, size, kwargs)`, where a non-image architecture
    gives it, makes realistic inputs for a model built with `builder_kwargs` at the architecture's problem size
    (for hypergraphs: vertices; `size=None` is the architecture's default), for `keras-hyper benchmark`; it
    returns the inputs, the size they have and the builder kwargs they need (e.g. a sparse hypergraph's
    `num_edges`; usually none).
    """

    name: str
    convert: Callable
    paper: Paper
    variants: tuple
    license: str
    source: str
    testing: Testing
    reference: Optional[Reference] = None
    builder: Optional[Callable] = None
    network: Optional[Callable] = None
    features: Optional[Callable] = None
    input_size: Union[int, Callable] = 224
    min_size: Union[int, Callable] = 32
    classifier: Optional[str] = None
    classifier_key: Optional[str] = None
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    interpolation: str = "bicubic"
    reparameterize: Optional[Callable] = None
    example_inputs: Optional[Callable] = None
    sample_inputs: Optional[Callable] = None
    litert: bool = True
    litert_batch: Optional[int] = None
    kind: str = "image"
    num_classes: int = 1000

    def __post_init__(self):
        if not isinstance(self.testing, Testing) or not isinstance(self.reference, (Reference, type(None))):
            raise TypeError(
                f"Architecture {self.name!r}: `testing` is a Testing(tiny, ...) and `reference` a Reference(folder, "
                f"...) or None, got {self.testing!r} and {self.reference!r}."
            )
        if self.example_inputs is None and (self.classifier is None or self.classifier_key is None):
            raise ValueError(
                f"Architecture {self.name!r}: an image classifier needs `classifier` and `classifier_key`; "
                "a non-image architecture declares `example_inputs` instead."
            )
        if self.network is not None and getattr(self.builder, "network", None) is self.network:
            # `dataclasses.replace` hands the generated builder back: build it anew, bound to this architecture
            object.__setattr__(self, "builder", None)
        if (self.builder is None) == (self.network is None):
            raise ValueError(f"Architecture {self.name!r} needs exactly one of `network` (image) and `builder`.")
        if (self.kind == "image") != (self.network is not None):
            raise ValueError(
                f"Architecture {self.name!r}: kind={self.kind!r}, but an image backbone declares `network` and "
                "any other kind (audio, hypergraph, ...) a `builder` of its own."
            )
        if self.network is not None:
            if self.features is None:
                raise ValueError(f"Architecture {self.name!r}: an image network declares its `features`.")
            object.__setattr__(self, "builder", _image_builder(self))

    @property
    def is_image(self) -> bool:
        """Whether this is an image backbone + classifier (the others declare their own inputs)."""
        return self.network is not None

    def network_kwargs(self, kwargs: Mapping) -> dict:
        """`kwargs` (the network's own arguments) completed with the network function's defaults."""
        params = list(inspect.signature(self.network).parameters.values())[1:]
        unknown = sorted(set(kwargs) - {p.name for p in params})
        if unknown:
            raise TypeError(f"{self.name} takes no argument(s) {unknown}; it takes {[p.name for p in params]}.")
        return {p.name: kwargs.get(p.name, p.default) for p in params}

    def feature_info(self, kwargs: Mapping) -> tuple:
        """The `Feature`s of the backbone built with the network arguments `kwargs` (defaults filled in)."""
        return tuple(self.features(**self.network_kwargs(kwargs)))

    def sizes(self, kwargs: Mapping) -> tuple:
        """`(default input size, minimum input size)` of the network built with `kwargs`; the default is one side
        or, for a non-square layout, `(height, width)`."""
        full = self.network_kwargs(kwargs)
        default, minimum = (v(**full) if callable(v) else v for v in (self.input_size, self.min_size))
        default = tuple(int(s) for s in default) if isinstance(default, (tuple, list)) else int(default)
        return default, int(minimum)


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
        check_positive(num_classes=num_classes)
        if classifier_activation is not None:
            try:
                keras.activations.get(classifier_activation)
            except (ValueError, TypeError) as err:
                raise ValueError(f"Unknown classifier_activation {classifier_activation!r}.") from err


def drop_path_rates(drop_path_rate, blocks):
    """The stochastic-depth rate of each of `blocks` blocks: linear from 0 to `drop_path_rate`, the schedule of
    timm and of the official implementations that use it."""
    check_rate(drop_path_rate=drop_path_rate)
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
        height, width = default_size if isinstance(default_size, tuple) else (default_size, default_size)
        input_shape = (height, width, 3)
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
    if x.shape[-1] != len(mean):
        raise ValueError(
            f"include_preprocessing normalises {len(mean)}-channel input with the training mean {tuple(mean)} and "
            f"std {tuple(std)}; got {x.shape[-1]} channels."
        )
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


def predictions(x, classifier_activation, name="predictions"):
    """The final activation, in float32 so that softmax stays stable under mixed precision."""
    if classifier_activation is None:
        return x
    return keras.layers.Activation(classifier_activation, dtype="float32", name=name)(x)


def finish(inputs, outputs, *, name, weights=None, arch=None):
    """Builds the functional model and, for `weights` given as a file path, loads it (official checkpoints
    through `arch.convert`)."""
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        weights_lib.load_file(model, weights, arch=arch)
    return model


def _select(keys, out_indices):
    """The feature keys picked by timm-style `out_indices` (stage indices, negatives from the deepest)."""
    keys = list(keys)
    if out_indices is None:
        return keys
    if isinstance(out_indices, (int, str)) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in out_indices
    ):
        raise ValueError(f"out_indices must be a sequence of stage indices, got {out_indices!r}.")
    picked = []
    for index in out_indices:
        if not -len(keys) <= index < len(keys):
            raise ValueError(
                f"out_indices={tuple(out_indices)!r}: index {index} is out of range for the {len(keys)} stages {keys}."
            )
        picked.append(keys[index])
    if not picked or len(set(picked)) != len(picked):
        raise ValueError(f"out_indices must name each stage at most once and at least one, got {out_indices!r}.")
    return picked


def image_classifier(arch, network_kwargs, **app):
    """The shared classifier protocol: input and shape validation, preprocessing, the backbone, then the head
    (or pooling, or the stage features) and weights. `app` holds the keras.applications arguments."""
    app = {**APP_ARGS, **app}
    features_only = app["features_only"]
    if not isinstance(features_only, bool):
        raise ValueError(f"features_only must be True or False, got {features_only!r}.")
    if features_only:
        if app["pooling"] is not None:
            raise ValueError(f"pooling={app['pooling']!r} does not apply to features_only=True (unpooled maps).")
    else:
        if app["out_indices"] is not None:
            raise ValueError(f"out_indices={app['out_indices']!r} applies only with features_only=True.")
        validate_head(app["include_top"], app["pooling"], app["num_classes"], app["classifier_activation"])
    network_kwargs = arch.network_kwargs(network_kwargs)
    declared = arch.feature_info(network_kwargs)
    picked = _select([f.key for f in declared], app["out_indices"]) if features_only else None
    weights = app["weights"]
    if weights is not None and features_only and not str(weights).endswith((".weights.h5", ".keras")):
        raise ValueError(
            f"weights={str(weights)!r}: converting a checkpoint into a features model goes through "
            f"keras_hyper.applications.load(..., weights=..., features_only=True), which drops the head."
        )
    default_size, min_size = arch.sizes(network_kwargs)
    inputs = x = image_input(app["input_tensor"], app["input_shape"], default_size=default_size, min_size=min_size)
    if app["include_preprocessing"]:
        x = preprocessing(x, arch.mean, arch.std)
    net = arch.network(x, **network_kwargs)
    built = [(key, tensor.shape[-1]) for key, tensor in net.features.items()]
    if built != [(f.key, f.channels) for f in declared]:
        raise AssertionError(f"{arch.name}: the network's features {built} contradict its declaration {declared}.")
    last = list(net.features.values())[-1]
    if features_only:
        outputs = {key: net.features[key] for key in picked}
    elif app["include_top"]:
        logits = net.head(last, app["num_classes"])
        if isinstance(logits, (list, tuple)):  # the main logits, then auxiliary ones (deep supervision)
            names = ["predictions"] + [f"aux_predictions{f'_{i}' if i else ''}" for i in range(len(logits) - 1)]
            outputs = [predictions(t, app["classifier_activation"], n) for t, n in zip(logits, names)]
        else:
            outputs = predictions(logits, app["classifier_activation"])
    else:
        outputs = (net.pool or pool)(last, app["pooling"])
    return finish(inputs, outputs, name=app["name"] or arch.name, weights=weights, arch=arch)


def _image_builder(arch):
    """The public builder of an image architecture: its network's own arguments, then the keras.applications
    ones (keyword-only). Its docstring is the network's, with the shared arguments appended."""
    network_params = list(inspect.signature(arch.network).parameters.values())[1:]
    # the head's default class count is the architecture's (CIFAR models: 10 or 100)
    defaults = {**APP_ARGS, "num_classes": arch.num_classes}
    app_params = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d) for n, d in defaults.items()]
    signature = inspect.Signature(network_params + app_params)
    network_names = [p.name for p in network_params]

    def builder(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = bound.arguments
        return image_classifier(arch, {k: values[k] for k in network_names}, **{k: values[k] for k in APP_ARGS})

    builder.__name__ = builder.__qualname__ = arch.network.__name__
    builder.__module__ = arch.network.__module__
    builder.__signature__ = signature
    builder.network = arch.network
    builder.__doc__ = (inspect.getdoc(arch.network) or "") + "\n" + _APP_DOC
    return builder
