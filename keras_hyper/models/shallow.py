"""Residual CNN in deep (sequential) and shallow (parallel) form, after Bermeitinger, Hrycej, Handschuh, "Make Deep
Networks Shallow Again" (DeLTA 2023, arXiv:2309.08414; paper 12 in PAPERS.md).

The paper compares, on MNIST and CIFAR-10, convolutional networks whose core is a stack of same-width residual
convolution layers, trained either as the usual deep stack or as its first-order truncation, all layers in
parallel on the same input (`ResidualStack`); it varies the number of layers, filters and kernel sizes over a
grid of 6,912 configurations. No code was published; this builder is our reading of that setup: a stem
convolution from the image to `filters` channels (+ activation), the residual stack, global average pooling and
a Linear classifier. The two forms have exactly the same weights and parameter count; `to_shallow(model)` (and
`to_deep`) converts a built model between them.

Input `(B, H, W, C)` with H, W >= 28 (MNIST `(28, 28, 1)`, CIFAR-10 `(32, 32, 3)`); one stage feature `P0`,
`(B, H, W, filters)`; logits `(B, num_classes)`.
"""

import keras

from keras_hyper.convert import mapping
from keras_hyper.layers._args import check_positive
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.shallow import FORMS, ResidualStack
from keras_hyper.models import _base

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def residual_cnn(x, depth=8, filters=64, kernel_size=3, activation="relu", form="deep"):
    """Builds the residual CNN of "Make Deep Networks Shallow Again" (Bermeitinger, Hrycej, Handschuh, DeLTA 2023,
    arXiv:2309.08414) in its deep or shallow form. Defaults: CIFAR-10's `(32, 32, 3)` input and 10 classes (pass
    `input_shape=(28, 28, 1)` for MNIST; `include_preprocessing` uses the CIFAR-10 statistics).

    Args:
        depth: residual convolution layers in the stack.
        filters: channels of the stem and of every residual layer.
        kernel_size: of the stem and of every residual layer.
        activation: of the stem and of each residual branch.
        form: "deep" (`x + f_1(x)`, then `+ f_2(...)`, ...) or "shallow" (`x + sum_i f_i(x)`).

    Features: one, `P0` (stride 1, `filters` channels): the residual stack's output, at the input's resolution.
    Example:

        model = residual_cnn(depth=8, filters=64, form="shallow", num_classes=10)
        stack = residual_cnn(features_only=True)            # {"P0": (B, 32, 32, 64)}
    """
    _validate(filters, activation, form)
    stack = ResidualStack(depth, kernel_size, activation, form, name="stack")
    x = Conv2D(filters, kernel_size, padding="same", activation=activation, name="stem")(x)

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        return keras.layers.Dense(num_classes, name="head")(x)

    return _base.Network({"P0": stack(x)}, head)


def _validate(filters, activation, form, **_):
    check_positive(filters=filters)
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}.")
    try:
        keras.activations.get(activation)
    except (ValueError, TypeError) as err:
        raise ValueError(f"Unknown activation {activation!r}.") from err


def _features(**kwargs):
    _validate(**kwargs)
    return _base.pyramid([kwargs["filters"]], [1])


def _with_form(model, form):
    def clone(layer):
        if isinstance(layer, ResidualStack):
            return layer.with_form(form)
        return layer.__class__.from_config(layer.get_config())

    converted = keras.models.clone_model(model, clone_function=clone)
    for layer in converted.layers:
        if layer.weights and not isinstance(layer, ResidualStack):
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return converted


def to_shallow(model):
    """A copy of `model` with every `ResidualStack` in its shallow (parallel) form, the same weights: the
    first-order truncation of the deep model."""
    return _with_form(model, "shallow")


def to_deep(model):
    """A copy of `model` with every `ResidualStack` in its deep (sequential) form, the same weights."""
    return _with_form(model, "deep")


def convert_residual_cnn(state_dict, model):
    """Fills `model` from a PyTorch-layout state dict with our names (`stem.weight`, `stack.conv_3.bias`,
    `head.weight`, ...): there is no official code or checkpoint, so this is the layout of a PyTorch port.
    Strict, like every converter."""
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if m.standard(layer, key):
            continue
        if isinstance(layer, ResidualStack):
            for conv in layer.convs:
                m.conv2d(conv, f"{key}.{conv.name}")
    m.finish()


_PAPER = _base.Paper("Make Deep Networks Shallow Again", "2309.08414", 12)

# The paper's grid has no named members; these are one mid-grid CIFAR-10 configuration in both forms (counts ours).
VARIANTS = (
    _base.Variant(
        "shallow_cifar10_deep",
        dict(depth=8, filters=64, form="deep"),
        num_params=297_866,
        input_size=32,
        crop_pct=1.0,
        builder_name="ShallowCifar10Deep",
    ),
    _base.Variant(
        "shallow_cifar10_shallow",
        dict(depth=8, filters=64, form="shallow"),
        num_params=297_866,
        input_size=32,
        crop_pct=1.0,
        builder_name="ShallowCifar10Shallow",
    ),
)

ARCH = _base.Architecture(
    name="shallow",
    network=residual_cnn,
    features=_features,
    input_size=32,
    min_size=28,
    num_classes=10,
    convert=convert_residual_cnn,
    paper=_PAPER,
    variants=VARIANTS,
    license="none (no official code)",
    source="https://arxiv.org/abs/2309.08414",
    classifier="head",
    classifier_key="head.weight",
    testing=_base.Testing(tiny=dict(depth=3, filters=8, form="deep", num_classes=10), min_input_size=28),
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
    interpolation="bilinear",
)

residual_cnn = ARCH.builder
