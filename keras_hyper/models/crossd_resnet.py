"""Cross-D ResNet (Yavuz, Yang, "Cross-D Conv: Cross-Dimensional Transferable Knowledge Base via Fourier Shifting
Operation", arXiv:2411.02441; paper 23 in PAPERS.md): torchvision's ResNet-18 with every `nn.Conv2d` replaced by a
Cross-D convolution, the model of the official `create_model.py`.

The topology is torchvision's (He et al., arXiv:1512.03385): a 7x7 stride-2 stem, BN, ReLU, a 3x3 stride-2 max
pool, four stages of BasicBlocks (two 3x3 convolutions with BN, a 1x1 stride-2 projection + BN where the shape
changes), global average pooling and a Linear head. Every convolution, the stem and the 1x1 projections included,
is a `CrossDConv2D` (its own rotation head and 3-D kernel), as the official replacement loop does.
`cross_d=False` builds the plain ResNet with the same layer names: the 2-D model whose weights
`transfer_2d_weights` lifts into a Cross-D one.

Layer names follow the torchvision state dict with '-' for '.' (`layer2-0-downsample-0`), so the converter is a
direct map. Input `(B, H, W, 3)` with H, W >= 32; stage features `P2`..`P5` (strides 4..32, `widths` channels),
the last `(B, H/32, W/32, 512)`; logits `(B, num_classes)`.
"""

import math

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.crossd import CrossDConv2D, kernel_2d_to_3d
from keras_hyper.layers.torch_defaults import batch_norm, conv_fan_out_normal, torch_padding
from keras_hyper.models import _base


def _conv(x, name, filters, kernel, stride, padding, cross_d):
    if cross_d:
        return CrossDConv2D(filters, kernel, strides=stride, padding=padding, name=name)(x)
    if padding:
        x = keras.layers.ZeroPadding2D(padding, name=f"{name}-pad")(x)
    init = conv_fan_out_normal(kernel, filters)  # torchvision's kaiming_normal_(mode="fan_out", nonlinearity="relu")
    return Conv2D(filters, kernel, strides=stride, use_bias=False, kernel_initializer=init, name=name)(x)


def _basic_block(x, prefix, filters, stride, cross_d):
    shortcut = x
    y = _conv(x, f"{prefix}-conv1", filters, 3, stride, 1, cross_d)
    y = keras.layers.ReLU(name=f"{prefix}-relu1")(batch_norm(f"{prefix}-bn1")(y))
    y = batch_norm(f"{prefix}-bn2")(_conv(y, f"{prefix}-conv2", filters, 3, 1, 1, cross_d))
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(x, f"{prefix}-downsample-0", filters, 1, stride, 0, cross_d)
        shortcut = batch_norm(f"{prefix}-downsample-1")(shortcut)
    y = keras.layers.Add(name=f"{prefix}-add")([y, shortcut])
    return keras.layers.ReLU(name=f"{prefix}-relu2")(y)


def crossd_resnet(x, depths=(2, 2, 2, 2), widths=(64, 128, 256, 512), stem_width=64, cross_d=True):
    """Builds a Cross-D ResNet (Yavuz, Yang, "Cross-D Conv: Cross-Dimensional Transferable Knowledge Base via
    Fourier Shifting Operation", arXiv:2411.02441; the official `create_model.py`), ResNet-18 by default.

    Args:
        depths: BasicBlocks per stage (ResNet-18: (2, 2, 2, 2)).
        widths: channels of each stage; stage i > 0 starts with stride 2.
        stem_width: channels of the 7x7 stem.
        cross_d: True: every convolution is a `CrossDConv2D` (the official model); False: plain Conv2D, the
            torchvision ResNet with the same layer names.

    Features: one per stage, `P2`..`P5` for four stages (strides 4, 8, 16, 32; `widths` channels). Example:

        model = crossd_resnet(num_classes=165)              # the official RadImageNet head
        pyramid = crossd_resnet(features_only=True)         # {"P2": (B, H/4, W/4, 64), ..., "P5": (..., 512)}
    """
    depths, widths = _validate(depths, widths, stem_width, cross_d)
    x = _conv(x, "conv1", stem_width, 7, 2, 3, cross_d)
    x = keras.layers.ReLU(name="relu")(batch_norm("bn1")(x))
    x, padding = torch_padding(x, 3, 2, "maxpool-pad")  # zeros are safe: the input is post-ReLU
    x = keras.layers.MaxPooling2D(3, strides=2, padding=padding, name="maxpool")(x)
    features = {}
    for stage, (depth, width) in enumerate(zip(depths, widths)):
        for index in range(depth):
            stride = 2 if stage and not index else 1
            x = _basic_block(x, f"layer{stage + 1}-{index}", width, stride, cross_d)
        features[f"P{stage + 2}"] = x

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
        bound = 1.0 / math.sqrt(widths[-1])  # nn.Linear's default init
        uniform = keras.initializers.RandomUniform(-bound, bound)
        return keras.layers.Dense(num_classes, kernel_initializer=uniform, bias_initializer=uniform, name="fc")(x)

    return _base.Network(features, head)


def _validate(depths, widths, stem_width, cross_d, **_):
    depths, widths = tuple(depths), tuple(widths)
    if not depths or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in depths):
        raise ValueError(f"depths must be a non-empty sequence of positive integers, got {depths}.")
    if len(widths) != len(depths) or any(not isinstance(w, int) or w < 1 for w in (*widths, stem_width)):
        raise ValueError(
            f"widths must give one positive integer per stage ({len(depths)}) and stem_width a positive integer, "
            f"got widths={widths}, stem_width={stem_width!r}."
        )
    if not isinstance(cross_d, bool):
        raise ValueError(f"cross_d must be True or False, got {cross_d!r}.")
    return depths, widths


def _features(**kwargs):
    _, widths = _validate(**kwargs)
    return _base.pyramid(widths, [2 ** (i + 2) for i in range(len(widths))])


def convert_crossd_resnet(state_dict, model):
    """Fills `model` (with top) from an official Cross-D ResNet state dict (or, for `cross_d=False`, a
    torchvision ResNet one).

    A `CrossDConv` contributes `weights_3d` `(out, in/groups, K, K, K)` and its rotation head
    `rotation_params.{0,1,3}` (1x1 conv, BatchNorm, 1x1 conv). BatchNorm's `num_batches_tracked` is a training
    counter and is ignored.
    """
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if m.standard(layer, key):
            continue
        if isinstance(layer, CrossDConv2D):
            m.assign(layer.kernel, f"{key}.weights_3d", lambda w: np.transpose(w, (2, 3, 4, 1, 0)))
            m.dense(layer.rotation_conv1, f"{key}.rotation_params.0")
            m.batch_norm(layer.rotation_norm, f"{key}.rotation_params.1")
            m.dense(layer.rotation_conv2, f"{key}.rotation_params.3")
    m.finish()


def transfer_2d_weights(source, target):
    """Lifts a 2-D model's weights into a Cross-D model with the same layer names, in place.

    Every `CrossDConv2D` of `target` gets the 3-D kernel `kernel_2d_to_3d(source_conv.kernel)` of the
    same-named `Conv2D` of `source` (so that at zero rotation it convolves exactly as the 2-D layer did) and keeps
    its rotation head as initialised; every other layer with weights copies them. Typical use: `source =
    crossd_resnet(cross_d=False, ...)` loaded with torchvision ResNet-18 weights through
    `convert_crossd_resnet`, then `transfer_2d_weights(source, crossd_resnet(...))`.
    """
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            other = source.get_layer(layer.name)
        except ValueError as err:
            raise ValueError(
                f"The 2-D model {source.name!r} has no layer {layer.name!r} to take weights from."
            ) from err
        if isinstance(layer, CrossDConv2D):
            if type(other) not in (keras.layers.Conv2D, Conv2D) or other.groups != layer.groups:
                raise ValueError(
                    f"Layer {layer.name!r}: a CrossDConv2D takes its kernel from a Conv2D with groups={layer.groups}, "
                    f"got {type(other).__name__}."
                )
            kernel = kernel_2d_to_3d(keras.ops.convert_to_numpy(other.kernel))
            if kernel.shape != tuple(layer.kernel.shape):
                raise ValueError(
                    f"Layer {layer.name!r}: the 2-D kernel {tuple(other.kernel.shape)} does not lift to the 3-D "
                    f"kernel shape {tuple(layer.kernel.shape)}."
                )
            layer.kernel.assign(kernel)
        else:
            layer.set_weights(other.get_weights())
    return target


_PAPER = _base.Paper(
    "Cross-D Conv: Cross-Dimensional Transferable Knowledge Base via Fourier Shifting Operation", "2411.02441", 23
)

VARIANTS = (
    _base.Variant("crossd_resnet18", dict(), num_params=33_780_712, builder_name="CrossDResNet18"),
    # the official training default: RadImageNet's 165 classes (create_model.py --num-classes)
    _base.Variant(
        "crossd_resnet18_radimagenet",
        dict(num_classes=165),
        num_params=33_352_357,
        builder_name="CrossDResNet18Radimagenet",
    ),
)

ARCH = _base.Architecture(
    name="crossd_resnet",
    network=crossd_resnet,
    features=_features,
    convert=convert_crossd_resnet,
    paper=_PAPER,
    variants=VARIANTS,
    license="MIT",
    source="https://github.com/convergedmachine/Cross-D-Conv",
    classifier="fc",
    classifier_key="fc.weight",
    testing=_base.Testing(
        # Two stages, so that the backbone has a pyramid and the stride-2 stage its 1x1 Cross-D projection.
        tiny=dict(depths=(1, 1), widths=(8, 16), stem_width=8, num_classes=10),
        # A 1x1 Cross-D conv has one DFT frequency (0), so its phase shift is 1 whatever the rotation: its rotation
        # head never gets a gradient (dead parameters, as in the official model, which counts them).
        zero_grad_at_init=tuple(
            f"layer2-0-downsample-0/{name}"
            for name in (
                "rotation_conv1/kernel",
                "rotation_conv1/bias",
                "rotation_norm/gamma",
                "rotation_norm/beta",
                "rotation_conv2/kernel",
                "rotation_conv2/bias",
            )
        ),
        min_input_size=32,
    ),
    interpolation="bilinear",
)

crossd_resnet = ARCH.builder
