"""DenseNet (Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional Networks", CVPR 2017,
arXiv:1608.06993) and KimiaNet (Riasatian et al., "Fine-Tuning and Training of DenseNet for Histopathology Image
Representation Using TCGA Diagnostic Slides", Medical Image Analysis 2021, arXiv:2101.07903; paper 37 in
PAPERS.md), which retrains DenseNet-121 for histopathology: one trunk, two heads, two registered architectures
(`ARCH`, `KIMIANET_ARCH`).

A 7x7 stride-2 stem with a 3x3 stride-2 max pool, then dense blocks separated by transitions. Each dense layer
is `concat(x, conv3x3(ReLU(BN(conv1x1(ReLU(BN(x)))))))` adding `growth_rate` channels; a transition is
BN, ReLU, a 1x1 convolution that keeps `compression` of the channels and a 2x2 average pool. The trunk ends
with BN (`features-norm5`). DenseNet follows it with ReLU, global average pooling and the classifier;
KimiaNet's representation is the global average of `features-norm5`'s output *before* that ReLU (the official
Keras sample pools `DenseNet121(...).layers[-3]`, `bn`; the official PyTorch sample pools torchvision's
`features`, which ends with `norm5`), and its head is one Linear layer on it (`fc_4`, 30 TCGA classes).

Layer names follow the torchvision/timm state dict with '-' for '.' (`features-denseblock2-denselayer3-conv1`),
so that `convert_densenet` is a direct map; `convert_keras_densenet` reads the keras.applications layout
(`conv3_block3_1_conv`), from a model or a Keras h5 weights file. `convert_kimianet` reads KimiaNet's official
PyTorch checkpoint (`module.model.0.<torchvision features key>`, `module.fc_4.*`); `load_keras_weights` its
official Keras h5 file (keras.applications names, no head).

Input `(B, H, W, 3)` with H, W >= 32 (1000 in KimiaNet's official use); features `P2`..`P5` (strides 4..32), the
last `(B, H/32, W/32, C)` with C = 1024 / 1664 / 1920 for DenseNet-121 / 169 / 201; logits `(B, num_classes)`.
"""

import re

import keras

from keras_hyper.convert import mapping
from keras_hyper.layers._args import check_positive, check_rate
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.torch_defaults import BN_EPSILON, batch_norm, torch_padding
from keras_hyper.models import _base


def _pointwise(units, name):
    # A 1x1 convolution is a matmul over channels; Dense runs it as one on every backend.
    return keras.layers.Dense(units, use_bias=False, kernel_initializer="he_normal", name=name)


def _dense_layer(x, prefix, *, growth_rate, bn_size, epsilon, drop_rate):
    y = batch_norm(f"{prefix}-norm1", epsilon=epsilon)(x)
    y = keras.layers.ReLU(name=f"{prefix}-relu1")(y)
    y = _pointwise(bn_size * growth_rate, f"{prefix}-conv1")(y)
    y = batch_norm(f"{prefix}-norm2", epsilon=epsilon)(y)
    y = keras.layers.ReLU(name=f"{prefix}-relu2")(y)
    y = Conv2D(growth_rate, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name=f"{prefix}-conv2")(
        y
    )
    if drop_rate:
        y = keras.layers.Dropout(drop_rate, name=f"{prefix}-drop")(y)
    return keras.layers.Concatenate(name=f"{prefix}-concat")([x, y])


def _block_channels(blocks, growth_rate, num_init_features, compression):
    """The channels of each dense block's output (what its transition, if any, then compresses)."""
    channels, out = num_init_features, []
    for depth in blocks:
        channels += depth * growth_rate
        out.append(channels)
        channels = int(channels * compression)
    return out


def _trunk(x, blocks, growth_rate, num_init_features, bn_size, compression, bn_epsilon, drop_rate):
    """The DenseNet trunk, shared by DenseNet and KimiaNet: `{"P<i + 2>": output of dense block i}`, the last
    block's through `features-norm5` (BatchNormalization, before DenseNet's final ReLU, which KimiaNet leaves out).
    Validates the configuration."""
    blocks = _validate(blocks, growth_rate, num_init_features, bn_size, compression, drop_rate)
    # the reference pads 3 (and 1) on every side
    x, padding = torch_padding(x, 7, 2, "features-pad0")
    x = Conv2D(
        num_init_features,
        7,
        strides=2,
        padding=padding,
        use_bias=False,
        kernel_initializer="he_normal",
        name="features-conv0",
    )(x)
    x = batch_norm("features-norm0", epsilon=bn_epsilon)(x)
    x = keras.layers.ReLU(name="features-relu0")(x)
    # zeros pad like -inf here: the input is a ReLU output, >= 0
    x, padding = torch_padding(x, 3, 2, "features-pad1")
    x = keras.layers.MaxPooling2D(3, strides=2, padding=padding, name="features-pool0")(x)
    widths = _block_channels(blocks, growth_rate, num_init_features, compression)
    features = {}
    for i, (depth, width) in enumerate(zip(blocks, widths)):
        for j in range(depth):
            x = _dense_layer(
                x,
                f"features-denseblock{i + 1}-denselayer{j + 1}",
                growth_rate=growth_rate,
                bn_size=bn_size,
                epsilon=bn_epsilon,
                drop_rate=drop_rate,
            )
        if i == len(blocks) - 1:
            features[f"P{i + 2}"] = batch_norm("features-norm5", epsilon=bn_epsilon)(x)
            break
        # timm's stage features: the dense block's output, before its transition
        features[f"P{i + 2}"] = x
        prefix = f"features-transition{i + 1}"
        x = batch_norm(f"{prefix}-norm", epsilon=bn_epsilon)(x)
        x = keras.layers.ReLU(name=f"{prefix}-relu")(x)
        x = _pointwise(int(width * compression), f"{prefix}-conv")(x)
        x = keras.layers.AveragePooling2D(2, strides=2, name=f"{prefix}-pool")(x)
    return features


def _validate(blocks, growth_rate, num_init_features, bn_size, compression, drop_rate, **_):
    """Checks the DenseNet configuration arguments; returns `blocks` as a tuple."""
    blocks = tuple(blocks)
    if not blocks or any(not isinstance(b, int) or b < 1 for b in blocks):
        raise ValueError(f"blocks must be a non-empty sequence of positive integers, got {blocks!r}.")
    check_positive(growth_rate=growth_rate, num_init_features=num_init_features, bn_size=bn_size)
    if not 0.0 < compression <= 1.0:
        raise ValueError(f"compression must be in (0, 1], got {compression!r}.")
    check_rate(drop_rate=drop_rate)
    return blocks


def _features(**kwargs):
    blocks = _validate(**kwargs)
    channels = _block_channels(blocks, kwargs["growth_rate"], kwargs["num_init_features"], kwargs["compression"])
    return _base.pyramid(channels, [2 ** (i + 2) for i in range(len(blocks))])


def _min_size(**kwargs):
    return 2 ** (len(_validate(**kwargs)) + 1)


def _head(classifier):
    """The head shared by DenseNet and KimiaNet: global average pooling, then one Linear layer `classifier`."""

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
        return keras.layers.Dense(num_classes, name=classifier)(x)

    return head


def densenet(
    x,
    blocks=(6, 12, 24, 16),
    growth_rate=32,
    num_init_features=64,
    bn_size=4,
    compression=0.5,
    bn_epsilon=BN_EPSILON,
    drop_rate=0.0,
):
    """Builds a DenseNet (Huang et al., "Densely Connected Convolutional Networks", CVPR 2017, arXiv:1608.06993).

    Args:
        blocks: dense layers per dense block ((6, 12, 24, 16) is DenseNet-121).
        growth_rate: channels each dense layer adds.
        num_init_features: channels of the stem convolution.
        bn_size: the bottleneck 1x1 convolution has `bn_size * growth_rate` channels.
        compression: fraction of the channels a transition keeps.
        bn_epsilon: BatchNormalization epsilon (1e-5 in torchvision/timm, 1.001e-5 in keras.applications).
        drop_rate: dropout after each dense layer's 3x3 convolution (torchvision's `drop_rate`).

    Features: one per dense block, `P2`..`P5` for four blocks (strides 4, 8, ..., `2 ** (len(blocks) + 1)`), as
    timm's: a block's output before its transition (256, 512, 1024 channels in DenseNet-121), the last through
    `features-norm5` and the final ReLU (1024). Example:

        model = densenet(blocks=(6, 12, 24, 16), num_classes=10)
        pyramid = densenet(features_only=True)            # {"P2": (B, H/4, W/4, 256), ..., "P5": (..., 1024)}
    """
    features = _trunk(x, blocks, growth_rate, num_init_features, bn_size, compression, bn_epsilon, drop_rate)
    last = list(features)[-1]
    features[last] = keras.layers.ReLU(name="features-relu5")(features[last])
    return _base.Network(features, _head("classifier"))


# The DenseNet-121 topology that KimiaNet retrains.
DENSENET121 = dict(blocks=(6, 12, 24, 16), growth_rate=32, num_init_features=64, bn_size=4, compression=0.5)


def kimianet(
    x,
    blocks=DENSENET121["blocks"],
    growth_rate=32,
    num_init_features=64,
    bn_size=4,
    compression=0.5,
    bn_epsilon=BN_EPSILON,
    drop_rate=0.0,
):
    """Builds KimiaNet (Riasatian et al., "Fine-Tuning and Training of DenseNet for Histopathology Image
    Representation Using TCGA Diagnostic Slides", Medical Image Analysis 2021, arXiv:2101.07903): the DenseNet
    trunk and KimiaNet's head (average pool of the pre-ReLU `features-norm5`, Linear `fc_4`). The official model
    has 30 classes (TCGA primary diagnoses) and takes 1000x1000 patches, the defaults here;
    `include_top=False, pooling="avg"` is KimiaNet's feature extractor.

    Args:
        blocks, growth_rate, num_init_features, bn_size, compression, drop_rate: the DenseNet configuration
            (DenseNet-121 by default, as in KimiaNet; others only for tests and experiments).
        bn_epsilon: BatchNormalization epsilon: 1e-5 for the official PyTorch weights (torchvision), 1.001e-5 for
            the official Keras weights (keras.applications).

    Features: as `densenet`'s (`P2`..`P5`, strides 4..32), except that the last one is `features-norm5`'s
    output without the final ReLU: the tensor KimiaNet pools. Example:

        model = kimianet()                                        # 30 classes, 1000x1000 input
        extractor = kimianet(include_top=False, pooling="avg")   # (B, 1024) KimiaNet features
    """
    features = _trunk(x, blocks, growth_rate, num_init_features, bn_size, compression, bn_epsilon, drop_rate)
    return _base.Network(features, _head("fc_4"))


def convert_densenet(state_dict, model):
    """Fills `model` from a torchvision / timm DenseNet state dict (`features.denseblock1.denselayer1.norm1...`,
    `classifier`), or any model of these layer names with that layout.

    Strict: every tensor is consumed (BatchNorm's `num_batches_tracked` is a training counter and is ignored)
    and every model variable is assigned; shapes are checked against both names.
    """
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        m.standard(layer, key)
    m.finish()


_LAYER = re.compile(r"features-denseblock(\d+)-denselayer(\d+)-(norm1|conv1|norm2|conv2)")
_TRANSITION = re.compile(r"features-transition(\d+)-(norm|conv)")
_KERAS_SUFFIX = {"norm1": "0_bn", "conv1": "1_conv", "norm2": "1_bn", "conv2": "2_conv", "norm": "bn", "conv": "conv"}
_KERAS_FIXED = {"features-conv0": "conv1_conv", "features-norm0": "conv1_bn", "features-norm5": "bn"}


def keras_layer_name(name, classifier="classifier"):
    """The keras.applications DenseNet name of one of our layers (`features-denseblock2-denselayer3-conv1` ->
    `conv3_block3_1_conv`), None for a layer that has no counterpart there. keras.applications numbers the
    stages from the stem (conv1), so dense block b is `conv{b+1}` and transition b is `pool{b+1}`."""
    if name in _KERAS_FIXED:
        return _KERAS_FIXED[name]
    if name == classifier:
        return "predictions"
    found = _LAYER.fullmatch(name)
    if found:
        block, layer, part = found.groups()
        return f"conv{int(block) + 1}_block{layer}_{_KERAS_SUFFIX[part]}"
    found = _TRANSITION.fullmatch(name)
    if found:
        block, part = found.groups()
        return f"pool{int(block) + 1}_{_KERAS_SUFFIX[part]}"
    return None


def convert_keras_densenet(source, model, *, classifier="classifier"):
    """Fills `model` from weights in the keras.applications DenseNet layout.

    `source` is a keras.applications DenseNet model (e.g. `keras.applications.DenseNet121(weights=None)`), a
    mapping `{keras layer name: [arrays in Keras order]}`, or the path of a Keras h5 weights file of such a
    model (the legacy `save_weights('x.h5')` layout, e.g. KimiaNet's `KimiaNetKerasWeights.h5`).
    `classifier` names our classification layer (keras.applications calls it `predictions`).

    Strict: every weighted layer of `model` must find its counterpart with the same shapes, and every
    weighted layer of the source must be used; one error lists all the problems.
    """
    if isinstance(source, keras.Model):
        source = {layer.name: layer.get_weights() for layer in source.layers if layer.weights}
    elif not hasattr(source, "keys"):
        source = read_keras_h5(source)
    used, problems = set(), []
    for layer in model.layers:
        if not layer.weights or layer.name.startswith("preprocessing"):
            continue
        theirs = keras_layer_name(layer.name, classifier)
        if theirs is None or theirs not in source:
            problems.append(f"'{layer.name}' (keras.applications '{theirs}') is absent from the source")
            continue
        used.add(theirs)
        values = list(source[theirs])
        ours = [tuple(w.shape) for w in layer.weights]
        if isinstance(layer, keras.layers.Dense) and values[0].ndim == 4:
            values[0] = values[0].reshape(values[0].shape[-2:])  # a 1x1 convolution kernel
        if [tuple(v.shape) for v in values] != ours:
            problems.append(f"'{layer.name}' has shapes {ours}, '{theirs}' has {[tuple(v.shape) for v in values]}")
            continue
        layer.set_weights(values)
    unused = sorted(set(source) - used)
    if unused:
        problems.append(f"source layers unused by the model: {', '.join(unused[:20])}")
    if problems:
        raise ValueError(
            f"The keras.applications DenseNet weights do not match model '{model.name}':\n  " + "\n  ".join(problems)
        )


def read_keras_h5(path):
    """`{layer name: [arrays]}` from a Keras h5 weights file (`save_weights('x.h5')` of Keras 2, or a whole-model
    `.h5` whose weights sit under `model_weights`); arrays in each layer's `weight_names` order."""
    import h5py  # a dependency of keras itself; only this reader needs it

    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs:
            raise ValueError(f"'{path}' is not a Keras h5 weights file (its root has no 'layer_names' attribute).")
        weights = {}
        for raw in group.attrs["layer_names"]:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            layer = group[name]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in layer.attrs.get("weight_names", [])]
            if names:
                weights[name] = [layer[n][()] for n in names]
    return weights


def _official_key(key):
    """`module.model.0.denseblock1...` (KimiaNet's official checkpoint: nn.DataParallel around a module whose
    `model` is `Sequential(torchvision features, AdaptiveAvgPool2d)`) -> `features.denseblock1...`."""
    if key.startswith("module."):
        key = key[len("module.") :]
    if key.startswith("model.0."):
        return "features." + key[len("model.0.") :]
    return key


def convert_kimianet(state_dict, model):
    """Fills `model` (built with `include_top=True`) from KimiaNet's official PyTorch checkpoint
    (`KimiaNetPyTorchWeights.pth`) or a torchvision-layout state dict with an `fc_4` head.

    Strict as `convert_densenet`: every tensor used (but BatchNorm's `num_batches_tracked` counters), every
    variable assigned, shapes checked.
    """
    convert_densenet({_official_key(k): v for k, v in state_dict.items()}, model)


def load_keras_weights(model, path):
    """Loads KimiaNet's official Keras weights file (`KimiaNetKerasWeights.h5`, keras.applications DenseNet121
    names, no classification head) into a model built with `include_top=False` (and `bn_epsilon=1.001e-5`, the
    keras.applications value it was trained with)."""
    convert_keras_densenet(path, model, classifier="fc_4")


# DenseNet itself is not in PAPERS.md; it is registered for paper 37 (KimiaNet), which retrains this topology.
_PAPER = _base.Paper("Densely Connected Convolutional Networks", "1608.06993", 37)

VARIANTS = (
    _base.Variant(
        "densenet121",
        dict(blocks=(6, 12, 24, 16)),
        num_params=7_978_856,
        paper_top1=74.434,
        timm_name="densenet121",
        builder_name="DenseNet121",
    ),
    _base.Variant(
        "densenet169",
        dict(blocks=(6, 12, 32, 32)),
        num_params=14_149_480,
        paper_top1=75.600,
        timm_name="densenet169",
        builder_name="DenseNet169",
    ),
    _base.Variant(
        "densenet201",
        dict(blocks=(6, 12, 48, 32)),
        num_params=20_013_928,
        paper_top1=76.896,
        timm_name="densenet201",
        builder_name="DenseNet201",
    ),
)

ARCH = _base.Architecture(
    name="densenet",
    network=densenet,
    features=_features,
    min_size=_min_size,
    convert=convert_densenet,
    paper=_PAPER,
    variants=VARIANTS,
    license="BSD-3-Clause",
    source="https://github.com/pytorch/vision",
    classifier="classifier",
    classifier_key="classifier.weight",
    testing=_base.Testing(tiny=dict(blocks=(1, 1, 1, 1), growth_rate=8, num_init_features=16, num_classes=10)),
    interpolation="bilinear",
)

_KIMIANET_PAPER = _base.Paper(
    "Fine-Tuning and Training of DenseNet for Histopathology Image Representation Using TCGA Diagnostic Slides",
    "2101.07903",
    37,
)

KIMIANET_ARCH = _base.Architecture(
    name="kimianet",
    network=kimianet,
    features=_features,
    input_size=1000,
    min_size=_min_size,
    num_classes=30,
    convert=convert_kimianet,
    paper=_KIMIANET_PAPER,
    variants=(
        # torchvision densenet121().features plus Linear(1024, 30): the official PyTorch model's trainable count
        _base.Variant(
            "kimianet",
            dict(DENSENET121),
            num_params=6_984_606,
            input_size=1000,
            crop_pct=1.0,
            builder_name="KimiaNet",
        ),
    ),
    license="KIMIA Lab End User Agreement (non-commercial research use only; no redistribution)",
    source="https://github.com/KimiaLabMayo/KimiaNet",
    classifier="fc_4",
    classifier_key="fc_4.weight",  # checkpoint reading strips DataParallel's "module."
    testing=_base.Testing(tiny=dict(blocks=(1, 1, 1, 1), growth_rate=8, num_init_features=16, num_classes=10)),
    interpolation="bilinear",
)

ARCHITECTURES = (ARCH, KIMIANET_ARCH)

densenet = ARCH.builder
kimianet = KIMIANET_ARCH.builder
