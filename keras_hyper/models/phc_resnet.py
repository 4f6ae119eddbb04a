"""PHC-ResNet (Grassucci, Zhang, Comminiello, "PHNNs: Lightweight Neural Networks via Parameterized
Hypercomplex Convolutions", IEEE TNNLS 2022, arXiv:2110.04176; paper 1 in PAPERS.md; official code
eleGAN23/HyperNets, `image-classification/models/phc/phcresnet.py`).

The CIFAR ResNet (a stride-1 3x3 stem, four stages of basic or bottleneck blocks, the first block of stages 2-4
with stride 2 and a 1x1 projection shortcut) with every convolution a parameterised hypercomplex convolution
(`PHConv2D`) over an n-dimensional algebra, so that the trunk holds about 1/n of the parameters of the real
ResNet. The classifier stays a real Linear layer. Layer names follow the official state dict with '-' for '.'
(`layer2-0-shortcut-0`), so that the converter is a direct map.

Inputs whose channel count is not a multiple of n get zero channels prepended, as the official data pipeline
does for n=4 (RGB -> `[0, R, G, B]`, a pure quaternion); the official models then take `channels=4`.

The head averages the top-left 4x4 window of the last map, as the official `F.avg_pool2d(out, 4)` does wherever
the official model runs (`head_pooling="global"` averages the whole map instead).

Input `(B, H, W, C)` with H, W >= 8; features `(B, H/8, W/8, widths[-1] * expansion)`; logits `(B, num_classes)`.
"""

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers import PHConv2D, PrependZeroChannels
from keras_hyper.layers._args import check_positive
from keras_hyper.layers.hypercomplex import factors_from_torch
from keras_hyper.layers.pooling import TopLeftAveragePooling2D
from keras_hyper.layers.torch_defaults import batch_norm
from keras_hyper.models import _base

BLOCKS = {"basic": 1, "bottleneck": 4}  # block kind -> channel expansion of its output
HEAD_POOLINGS = ("official", "global")
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # the official CIFAR-10 normalisation (utils/dataloaders.py)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


def _conv(x, filters, kernel, strides, n, name):
    # PyTorch's symmetric padding (3x3: one pixel on each side), also for strided convolutions. The bias is zero
    # and stays useless before BatchNorm: it is there because the official PHConv owns (and never adds) one, so
    # that the parameter count is the official one.
    return PHConv2D(filters, kernel, n=n, strides=strides, padding=(kernel - 1) // 2, name=name)(x)


def _block(x, prefix, *, kind, width, strides, n):
    expansion = BLOCKS[kind]
    shortcut = x
    if strides != 1 or x.shape[-1] != width * expansion:
        shortcut = _conv(x, width * expansion, 1, strides, n, f"{prefix}-shortcut-0")
        shortcut = batch_norm(f"{prefix}-shortcut-1")(shortcut)
    if kind == "basic":
        convs = ((width, 3, strides), (width, 3, 1))
    else:
        convs = ((width, 1, 1), (width, 3, strides), (width * expansion, 1, 1))
    for index, (filters, kernel, stride) in enumerate(convs, start=1):
        x = _conv(x, filters, kernel, stride, n, f"{prefix}-conv{index}")
        x = batch_norm(f"{prefix}-bn{index}")(x)
        if index < len(convs):
            x = keras.layers.ReLU(name=f"{prefix}-relu{index}")(x)
    x = keras.layers.Add(name=f"{prefix}-add")([x, shortcut])
    return keras.layers.ReLU(name=f"{prefix}-out")(x)


def phc_resnet(x, block="basic", depths=(2, 2, 2, 2), widths=(64, 128, 256, 512), n=4, head_pooling="official"):
    """Builds a PHC-ResNet (Grassucci, Zhang, Comminiello, "PHNNs: Lightweight Neural Networks via Parameterized
    Hypercomplex Convolutions", IEEE TNNLS 2022, arXiv:2110.04176). The public builder
    `keras_hyper.models.phc_resnet.phc_resnet` takes these arguments and the keras.applications ones; its default
    input is `(32, 32, 3)`, the smallest 8 pixels, and `include_preprocessing` applies the official CIFAR-10
    mean/std to RGB input.

    Args:
        block: "basic" (PHC-ResNet-18/34) or "bottleneck" (PHC-ResNet-50/101/152, expansion 4).
        depths: blocks per stage (four stages; stages 2-4 start with a stride-2 block).
        widths: channels of each stage (the stem has `widths[0]`); the official 64/128/256/512, or
            60/120/240/516 for its `Large` models. Every width (and the input channels, after zero padding) must
            be a multiple of n.
        n: the algebra dimension of every PHC layer (the official models use n=4; 1 gives a real ResNet with
            a learned scalar per convolution).
        head_pooling: "official" (default): the head averages the top-left 4x4 window of the last map, which is
            the official `F.avg_pool2d(out, 4)` + flatten wherever that runs (a last map of side 4 to 7: inputs
            of 25 to 56 pixels; at 32x32 the window is the whole 4x4 map) and extends it to any size. "global":
            global average pooling, which differs from the official head unless the last map is 4x4.

    Features: `P0`..`P3`, the outputs of the four stages (strides 1, 2, 4, 8; `widths` channels, times 4 for
    bottleneck blocks); the stem, also at stride 1, is not one. Example:

        model = phc_resnet("bottleneck", depths=(3, 4, 6, 3), n=4, num_classes=10)
        pyramid = phc_resnet(features_only=True)          # {"P0": (B, H, W, 64), ..., "P3": (B, H/8, W/8, 512)}
    """
    depths, widths = _check(block, depths, widths, n, head_pooling)
    channels = x.shape[-1]
    if channels % n:
        x = PrependZeroChannels(-channels % n, name="zero_channels")(x)
    x = _conv(x, widths[0], 3, 1, n, "conv1")
    x = batch_norm("bn1")(x)
    x = keras.layers.ReLU(name="relu")(x)
    features = {}
    for stage, (depth, width) in enumerate(zip(depths, widths)):
        for index in range(depth):
            strides = 2 if stage > 0 and index == 0 else 1
            x = _block(x, f"layer{stage + 1}-{index}", kind=block, width=width, strides=strides, n=n)
        features[f"P{stage}"] = x

    def head(x, num_classes):
        if head_pooling == "official":
            x = TopLeftAveragePooling2D(4, name="pool")(x)
        else:
            x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        return keras.layers.Dense(num_classes, name="linear")(x)

    return _base.Network(features, head)


def _check(block, depths, widths, n, head_pooling):
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {block!r}.")
    depths, widths = tuple(depths), tuple(widths)
    if len(depths) != 4 or any(not isinstance(d, int) or d < 1 for d in depths):
        raise ValueError(f"depths must be four positive integers, got {depths}.")
    check_positive(**{"n (the algebra dimension)": n})
    if len(widths) != 4 or any(not isinstance(w, int) or w < 1 or w % n for w in widths):
        raise ValueError(f"widths must be four positive multiples of n={n}, got {widths}.")
    if head_pooling not in HEAD_POOLINGS:
        raise ValueError(f"head_pooling must be one of {HEAD_POOLINGS}, got {head_pooling!r}.")
    return depths, widths


def _features(block, depths, widths, n, head_pooling, **_):
    depths, widths = _check(block, depths, widths, n, head_pooling)
    return _base.pyramid([w * BLOCKS[block] for w in widths], (1, 2, 4, 8))


def convert_phc_resnet(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official PHCResNet state dict.

    Strict: every tensor is consumed (BatchNorm's `num_batches_tracked` is a training counter and is ignored)
    and every model variable is assigned. The official PHConv `bias` is never added by its forward: our bias
    receives zeros, which keeps the official output.
    """
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if not m.standard(layer, key) and isinstance(layer, PHConv2D):
            m.assign(layer.rules, f"{key}.A")
            m.assign(layer.factors, f"{key}.F", factors_from_torch)
            m.assign(layer.bias, f"{key}.bias", np.zeros_like)
    m.finish()


def fixture_kwargs(meta):
    """Builder kwargs of a fixture case from the official constructor's kwargs."""
    kwargs = meta["kwargs"]
    return dict(
        block={"BasicBlock": "basic", "Bottleneck": "bottleneck"}[kwargs["block"]],
        depths=tuple(kwargs["num_blocks"]),
        widths=tuple(kwargs.get("widths", (64, 128, 256, 512))),
        n=kwargs["n"],
    )


_PAPER = _base.Paper("PHNNs: Lightweight Neural Networks via Parameterized Hypercomplex Convolutions", "2110.04176", 1)

_LARGE = (60, 120, 240, 516)


def _variant(name, block, depths, num_params, widths=(64, 128, 256, 512), builder_name=None):
    return _base.Variant(
        name,
        dict(block=block, depths=depths, widths=widths, n=4, num_classes=10),
        num_params=num_params,
        input_size=32,
        crop_pct=1.0,
        builder_name=builder_name,
    )


# Official counts at n=4 with the official 4-channel input (RGB + a zero channel) and 10 classes, including the
# never-added PHConv biases (torch's `sum(p.numel())`, as the paper's tables count).
VARIANTS = (
    _variant("phc_resnet18", "basic", (2, 2, 2, 2), 2_810_762, builder_name="PHCResNet18"),
    _variant("phc_resnet34", "basic", (3, 4, 6, 3), 5_348_106, builder_name="PHCResNet34"),
    _variant("phc_resnet50", "bottleneck", (3, 4, 6, 3), 5_965_514, builder_name="PHCResNet50"),
    _variant("phc_resnet101", "bottleneck", (3, 4, 23, 3), 10_782_090, builder_name="PHCResNet101"),
    _variant("phc_resnet152", "bottleneck", (3, 8, 36, 3), 14_753_866, builder_name="PHCResNet152"),
    _variant("phc_resnet18_large", "basic", (2, 2, 2, 2), 2_736_258, _LARGE, builder_name="PHCResNet18Large"),
    _variant("phc_resnet50_large", "bottleneck", (3, 4, 6, 3), 5_717_766, _LARGE, builder_name="PHCResNet50Large"),
    _variant("phc_resnet152_large", "bottleneck", (3, 8, 36, 3), 13_451_334, _LARGE, builder_name="PHCResNet152Large"),
)

ARCH = _base.Architecture(
    name="phc_resnet",
    network=phc_resnet,
    features=_features,
    num_classes=10,
    input_size=32,
    min_size=8,
    convert=convert_phc_resnet,
    paper=_PAPER,
    variants=VARIANTS,
    license="MIT",
    source="https://github.com/eleGAN23/HyperNets",
    classifier="linear",
    classifier_key="linear.weight",
    testing=_base.Testing(
        tiny=dict(block="basic", depths=(1, 1, 1, 1), widths=(8, 16, 16, 32), n=4, num_classes=10),
        min_input_size=8,
    ),
    reference=_base.Reference(
        "phc",
        kwargs=fixture_kwargs,
        cases=("tiny", "tiny_bottleneck"),
        features={f"feat/layer{i + 1}": f"P{i}" for i in range(4)},
    ),
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    interpolation="bilinear",
)

phc_resnet = ARCH.builder
