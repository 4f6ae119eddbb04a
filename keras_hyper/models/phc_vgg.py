"""PHC-VGG (Grassucci, Zhang, Comminiello, "PHNNs: Lightweight Neural Networks via Parameterized Hypercomplex
Convolutions", IEEE TNNLS 2022, arXiv:2110.04176; paper 1 in PAPERS.md; official code eleGAN23/HyperNets,
`image-classification/models/phc/phcvgg.py`).

The CIFAR VGG with every 3x3 convolution a parameterised hypercomplex convolution (`PHConv2D`, pad 1, optionally
followed by BatchNorm, then ReLU; "M" is a 2x2 max pool) and a classifier of two PHM layers (`PHMDense`, each
after dropout and before ReLU) and a real Linear layer. Layer names follow the official state dict with '-' for
'.' (`features-4`, `classifier-1`): the indices count every module of the official `nn.Sequential`s.

Inputs whose channel count is not a multiple of n get zero channels prepended (RGB -> `[0, R, G, B]` for n=4, the
official pipeline's `Pad`).

Input `(B, H, W, C)` with H, W >= 32; features `(B, H/32, W/32, config[-2])`; logits `(B, num_classes)`.
"""

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers import PHConv2D, PHMDense, PrependZeroChannels, torch_defaults
from keras_hyper.layers._args import check_positive, check_rate
from keras_hyper.layers.hypercomplex import factors_from_torch
from keras_hyper.models import _base

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # the official CIFAR-10 normalisation (utils/dataloaders.py)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
POOLS = 5  # the official classifier reads a 1x1 map at 32x32

# the official configurations: widths of the 3x3 convolutions, "M" for a 2x2 max pool
CONFIGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg11_large": (24, "M", 72, "M", 216, 216, "M", 648, 648, "M", 648, 648, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
    "vgg19_large": (
        *(24, 24, "M", 72, 72, "M", 216, 216, 216, 216, "M"),
        *(648, 648, 648, 648, "M", 648, 648, 648, 648, "M"),
    ),
}


def phc_vgg(x, config=CONFIGS["vgg16"], batch_norm=True, hidden_units=512, n=4, dropout=0.5):
    """Builds a PHC-VGG (Grassucci, Zhang, Comminiello, "PHNNs: Lightweight Neural Networks via Parameterized
    Hypercomplex Convolutions", IEEE TNNLS 2022, arXiv:2110.04176). The public builder
    `keras_hyper.models.phc_vgg.phc_vgg` takes these arguments and the keras.applications ones; its default input
    is `(32, 32, 3)`, and `include_preprocessing` applies the official CIFAR-10 mean/std to RGB input.

    Args:
        config: the convolution widths in order, "M" for a 2x2 max pool (`CONFIGS` holds the official ones);
            it must start with a convolution, end with "M" and pool five times in all (the official classifier
            sees a 1x1 map at 32x32).
        batch_norm: BatchNorm after every convolution (the official `_bn` models).
        hidden_units: units of the two PHM layers of the classifier (official: 512, or 516 for `large`).
        n: the algebra dimension of every PH layer. Widths and hidden_units must be multiples of n.
        dropout: the rate of the two classifier dropouts (official 0.5).

    The official classifier flattens the last map, which only fits its first PHM layer when that map is 1x1
    (inputs of 32 to 63 pixels); keras-hyper averages it globally instead, which is the same there and extends
    the model to any size.

    Features: `P1`..`P5`, the output of each max pool (strides 2 to 32; channels: the width of the convolution
    before it). Example:

        model = phc_vgg(CONFIGS["vgg19"], n=2, num_classes=100)
        pyramid = phc_vgg(features_only=True)              # {"P1": (B, H/2, W/2, 64), ..., "P5": (B, H/32, ...)}
    """
    config = _check(config, hidden_units, n, dropout)
    channels = x.shape[-1]
    if channels % n:
        x = PrependZeroChannels(-channels % n, name="zero_channels")(x)

    features = {}
    index = 0
    for value in config:
        if value == "M":
            x = keras.layers.MaxPooling2D(2, name=f"features-{index}")(x)
            index += 1
            features[f"P{len(features) + 1}"] = x
            continue
        x = PHConv2D(value, 3, n=n, padding=1, name=f"features-{index}")(x)
        index += 1
        if batch_norm:
            x = torch_defaults.batch_norm(f"features-{index}")(x)
            index += 1
        x = keras.layers.ReLU(name=f"features-{index}")(x)
        index += 1

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="flatten")(x)
        x = keras.layers.Dropout(dropout, name="classifier-0")(x)
        x = PHMDense(hidden_units, n=n, name="classifier-1")(x)
        x = keras.layers.ReLU(name="classifier-2")(x)
        x = keras.layers.Dropout(dropout, name="classifier-3")(x)
        x = PHMDense(hidden_units, n=n, name="classifier-4")(x)
        x = keras.layers.ReLU(name="classifier-5")(x)
        return keras.layers.Dense(num_classes, name="classifier-6")(x)

    return _base.Network(features, head)


def _check(config, hidden_units, n, dropout):
    config = tuple(config)
    check_positive(**{"n (the algebra dimension)": n})
    widths = [v for v in config if v != "M"]
    if (
        not widths
        or any(not isinstance(v, int) or v < 1 or v % n for v in widths)
        or any(v != "M" and not isinstance(v, int) for v in config)
    ):
        raise ValueError(f"config must hold positive multiples of n={n} and 'M', got {config}.")
    if config[-1] != "M" or config.count("M") != POOLS:
        raise ValueError(f"config must pool five times ('M') and end with a pool, got {config}.")
    if config[0] == "M":
        # the first feature's channels would be the input's
        raise ValueError(f"config must start with a convolution, got {config}.")
    if not isinstance(hidden_units, int) or hidden_units < 1 or hidden_units % n:
        raise ValueError(f"hidden_units must be a positive multiple of n={n}, got {hidden_units!r}.")
    check_rate(dropout=dropout)
    return config


def _features(config, hidden_units, n, dropout, **_):
    config = _check(config, hidden_units, n, dropout)
    # each pool's channels are those of the last convolution before it
    channels = [next(v for v in reversed(config[:i]) if v != "M") for i, v in enumerate(config) if v == "M"]
    return _base.pyramid(channels, [2 ** (i + 1) for i in range(POOLS)])


def convert_phc_vgg(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official PHCVGG state dict.

    Strict: every tensor is consumed (BatchNorm's `num_batches_tracked` is a training counter and is ignored)
    and every model variable is assigned. The official PHConv `bias` is never added by its forward, so our
    convolution biases receive zeros; the PHMLinear biases are added and copied.
    """
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if m.standard(layer, key):
            continue
        if isinstance(layer, PHConv2D):
            m.assign(layer.rules, f"{key}.A")
            m.assign(layer.factors, f"{key}.F", factors_from_torch)
            m.assign(layer.bias, f"{key}.bias", np.zeros_like)
        elif isinstance(layer, PHMDense):
            m.assign(layer.rules, f"{key}.A")
            m.assign(layer.factors, f"{key}.S", factors_from_torch)
            m.assign(layer.bias, f"{key}.bias")
    m.finish()


def fixture_kwargs(meta):
    """Builder kwargs of a fixture case from the official constructor's kwargs."""
    kwargs = meta["kwargs"]
    return dict(
        config=tuple(kwargs["cfg"]),
        batch_norm=kwargs["batch_norm"],
        hidden_units=516 if kwargs.get("large") else 512,
        n=kwargs["n"],
    )


_PAPER = _base.Paper("PHNNs: Lightweight Neural Networks via Parameterized Hypercomplex Convolutions", "2110.04176", 1)


def _variant(name, config, num_params, hidden_units=512, builder_name=None):
    return _base.Variant(
        name,
        dict(config=CONFIGS[config], batch_norm=True, hidden_units=hidden_units, n=4, num_classes=10),
        num_params=num_params,
        input_size=32,
        crop_pct=1.0,
        builder_name=builder_name,
    )


# Official counts at n=4 with the official 4-channel input (RGB + a zero channel) and 10 classes, including the
# never-added PHConv biases (torch's `sum(p.numel())`). The official phcvgg11/13/16/19 factories without `_bn`,
# and phcvgg19_bn, fail at the reference commit (PHCVGG is called without its required `n`): no count exists.
VARIANTS = (
    _variant("phc_vgg16", "vgg16", 3_828_618, builder_name="PHCVGG16"),
    _variant("phc_vgg19_large", "vgg19_large", 7_471_630, hidden_units=516, builder_name="PHCVGG19Large"),
)

ARCH = _base.Architecture(
    name="phc_vgg",
    network=phc_vgg,
    features=_features,
    num_classes=10,
    input_size=32,
    min_size=2**POOLS,
    convert=convert_phc_vgg,
    paper=_PAPER,
    variants=VARIANTS,
    license="MIT",
    source="https://github.com/eleGAN23/HyperNets",
    classifier="classifier-6",
    classifier_key="classifier.6.weight",
    testing=_base.Testing(
        tiny=dict(config=(8, "M", 16, "M", 16, "M", 32, "M", 32, "M"), hidden_units=32, n=4, num_classes=10),
        min_input_size=32,
    ),
    reference=_base.Reference(
        "phc",
        kwargs=fixture_kwargs,
        cases=("tiny_vgg",),
        features={"feat/features": "P5"},
    ),
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    interpolation="bilinear",
)

phc_vgg = ARCH.builder
