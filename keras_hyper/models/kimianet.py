"""KimiaNet (Riasatian et al., "Fine-Tuning and Training of DenseNet for Histopathology Image Representation
Using TCGA Diagnostic Slides", Medical Image Analysis 2021, arXiv:2101.07903; paper 37 in PAPERS.md).

The DenseNet-121 topology (`keras_hyper.models.densenet.features`), retrained on 1000x1000 TCGA patches at 20x
against 30 primary diagnoses. Its representation is the global average of the trunk's last BatchNormalization
output, *before* DenseNet's final ReLU: the official Keras sample pools `DenseNet121(...).layers[-3]` (`bn`),
and the official PyTorch sample pools torchvision's `features`, which ends with `norm5` (torchvision applies
that ReLU outside `features`). The classification head is one Linear layer on that 1024-d vector (`fc_4`,
30 classes, in the official PyTorch checkpoint).

Layer names: the trunk's follow torchvision (`features-denseblock1-denselayer1-conv1`), the head `fc_4`.
`convert_kimianet` reads the official PyTorch checkpoint (`module.model.0.<torchvision features key>`,
`module.fc_4.*`); `load_keras_weights` reads the official Keras h5 file (keras.applications names, no head).

Input `(B, H, W, 3)` with H, W >= 32 (1000 in the official use); `include_top=False, pooling="avg"` gives the
KimiaNet features `(B, 1024)`; logits `(B, num_classes)`.
"""

import keras

from keras_hyper.models import _base, densenet

# The DenseNet-121 topology; shared with `densenet` (the trunk code lives there).
DENSENET121 = dict(blocks=(6, 12, 24, 16), growth_rate=32, num_init_features=64, bn_size=4, compression=0.5)


def kimianet(
    blocks=DENSENET121["blocks"],
    growth_rate=32,
    num_init_features=64,
    bn_size=4,
    compression=0.5,
    bn_epsilon=1e-5,
    drop_rate=0.0,
    *,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    num_classes=30,
    classifier_activation="softmax",
    include_preprocessing=False,
    name="kimianet",
):
    """Builds KimiaNet: the DenseNet trunk and the KimiaNet head (average pool of the pre-ReLU `features-norm5`,
    Linear `fc_4`).

    Args:
        blocks, growth_rate, num_init_features, bn_size, compression, drop_rate: the DenseNet configuration
            (DenseNet-121 by default, as in KimiaNet; others only for tests and experiments).
        bn_epsilon: BatchNormalization epsilon: 1e-5 for the official PyTorch weights (torchvision), 1.001e-5 for
            the official Keras weights (keras.applications).
        include_top, weights, input_tensor, input_shape, pooling, num_classes, classifier_activation,
        include_preprocessing, name: as in `keras.applications`; `num_classes` defaults to KimiaNet's 30 TCGA
            primary diagnoses, the default input is the official 1000x1000 patch. `include_top=False,
            pooling="avg"` is KimiaNet's feature extractor.

    Returns:
        A functional `keras.Model`.
    """
    blocks = densenet.validate(blocks, growth_rate, num_init_features, bn_size, compression, drop_rate)
    _base.validate_head(include_top, pooling, num_classes, classifier_activation)
    inputs = x = _base.image_input(input_tensor, input_shape, default_size=1000, min_size=2 ** (len(blocks) + 1))
    if include_preprocessing:
        x = _base.preprocessing(x, ARCH.mean, ARCH.std)
    x = densenet.features(
        x,
        blocks,
        growth_rate=growth_rate,
        num_init_features=num_init_features,
        bn_size=bn_size,
        compression=compression,
        bn_epsilon=bn_epsilon,
        drop_rate=drop_rate,
    )
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
        x = keras.layers.Dense(num_classes, name="fc_4")(x)
        x = _base.predictions(x, classifier_activation)
    else:
        x = _base.pool(x, pooling)
    return _base.finish(inputs, x, name=name, weights=weights, arch=ARCH)


def _official_key(key):
    """`module.model.0.denseblock1...` (the official checkpoint: nn.DataParallel around a module whose `model`
    is `Sequential(torchvision features, AdaptiveAvgPool2d)`) -> `features.denseblock1...`."""
    if key.startswith("module."):
        key = key[len("module.") :]
    if key.startswith("model.0."):
        return "features." + key[len("model.0.") :]
    return key


def convert_kimianet(state_dict, model):
    """Fills `model` (built with `include_top=True`) from the official PyTorch checkpoint
    (`KimiaNetPyTorchWeights.pth`) or a torchvision-layout state dict with an `fc_4` head.

    Strict as `densenet.convert_densenet`: every tensor used (but BatchNorm's `num_batches_tracked` counters),
    every variable assigned, shapes checked.
    """
    densenet.convert_densenet({_official_key(k): v for k, v in state_dict.items()}, model)


def load_keras_weights(model, path):
    """Loads the official Keras weights file (`KimiaNetKerasWeights.h5`, keras.applications DenseNet121 names,
    no classification head) into a model built with `include_top=False` (and `bn_epsilon=1.001e-5`, the
    keras.applications value it was trained with)."""
    densenet.convert_keras_densenet(path, model, classifier="fc_4")


_PAPER = _base.Paper(
    "Fine-Tuning and Training of DenseNet for Histopathology Image Representation Using TCGA Diagnostic Slides",
    "2101.07903",
    37,
)

VARIANTS = (
    # torchvision densenet121().features plus Linear(1024, 30): the official PyTorch model's trainable count
    _base.Variant("kimianet", dict(DENSENET121), num_params=6_984_606, input_size=1000, crop_pct=1.0),
)

ARCH = _base.Architecture(
    name="kimianet",
    builder=kimianet,
    convert=convert_kimianet,
    paper=_PAPER,
    variants=VARIANTS,
    license="KIMIA Lab End User Agreement (non-commercial research use only; no redistribution)",
    source="https://github.com/KimiaLabMayo/KimiaNet",
    classifier="fc_4",
    classifier_key="fc_4.weight",  # checkpoint reading strips DataParallel's "module."
    tiny=dict(blocks=(1, 1, 1, 1), growth_rate=8, num_init_features=16, num_classes=10),
    interpolation="bilinear",
)

KimiaNet = _base.variant_builder("KimiaNet", "kimianet")
