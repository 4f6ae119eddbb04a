"""Parameter-free-layer ResNets (Han et al., "Learning Features with Parameter-Free Layers", ICLR 2022,
arXiv:2202.02777; paper 43 in PAPERS.md).

A torchvision-style ResNet-50 (7x7 stride-2 stem, 3x3 stride-2 max pooling, four stages of bottlenecks,
global average pooling and a linear classifier) whose bottleneck spatial operation is chosen by `block`:

- `"conv"`: the usual 3x3 convolution + BN + ReLU (the baseline ResNet-50, stride in the 3x3 as in v1.5);
- `"max"` (ResNet-50-max): a parameter-free 3x3 max pooling, stride 2 in the first block of stages 2-4;
- `"hybrid"` (ResNet-50-hybrid): 3x3 max pooling in stride-1 blocks, and 2x2 average pooling followed by a
  3x3 convolution + BN + ReLU in the stride-2 blocks.

Layer names follow the official state dict (`layer2-0-reduction_block-0` for `layer2.0.reduction_block.0`).
Input `(B, H, W, 3)` with H, W >= 32 (multiples of 32 for `"hybrid"`); stage features `P2`..`P5` (strides 4..32),
the last `(B, H/32, W/32, 4 * planes)`.
"""

import keras

from keras_hyper.convert import mapping
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.torch_defaults import batch_norm, torch_padding
from keras_hyper.models import _base, _fusion

BLOCKS = ("conv", "max", "hybrid")
EXPANSION = 4
STEM_WIDTH = 64


def _relu(name):
    return keras.layers.ReLU(name=name)


def _conv(x, filters, kernel_size, stride, name):
    """PyTorch's `Conv2d(k, stride, padding=k // 2, bias=False)` (odd k)."""
    conv = dict(use_bias=False, kernel_initializer="he_normal")
    if kernel_size == 1 and stride == 1:
        # a 1x1 convolution is a matmul over channels; Dense runs it as one on every backend
        return keras.layers.Dense(filters, name=name, **conv)(x)
    x, padding = torch_padding(x, kernel_size, stride, f"{name}_pad")
    return Conv2D(filters, kernel_size, strides=stride, padding=padding, name=name, **conv)(x)


def _max_pool(x, stride, name):
    """PyTorch's `MaxPool2d(3, stride, padding=1)` on a non-negative (post-ReLU) input."""
    # PyTorch pads with -inf on both sides; after a ReLU a zero border never wins a maximum that a real input
    # could not, so zero padding + 'valid' is exact at stride 2 (and 'same' would shift the windows on even sizes)
    x, padding = torch_padding(x, 3, stride, f"{name}_pad")
    return keras.layers.MaxPooling2D(3, strides=stride, padding=padding, name=name)(x)


def _spatial(x, prefix, block, stride):
    """The bottleneck's spatial operation (official `conv_block`)."""
    width = x.shape[-1]
    if block == "max" or (block == "hybrid" and stride == 1):
        return _max_pool(x, stride, prefix)
    if block == "hybrid":
        x = keras.layers.AveragePooling2D(2, strides=2, name=f"{prefix}-0")(x)
        prefix = f"{prefix}-1"
        stride = 1
    x = _conv(x, width, 3, stride, f"{prefix}-0")
    x = batch_norm(f"{prefix}-1")(x)
    return _relu(f"{prefix}-2")(x)


def _bottleneck(x, prefix, *, planes, stride, block):
    shortcut = x
    x = _conv(x, planes, 1, 1, f"{prefix}-reduction_block-0")
    x = batch_norm(f"{prefix}-reduction_block-1")(x)
    x = _relu(f"{prefix}-reduction_block-2")(x)
    x = _spatial(x, f"{prefix}-conv_block", block, stride)
    x = _conv(x, planes * EXPANSION, 1, 1, f"{prefix}-expansion_block-0")
    x = batch_norm(f"{prefix}-expansion_block-1")(x)
    if stride != 1 or shortcut.shape[-1] != planes * EXPANSION:
        shortcut = _conv(shortcut, planes * EXPANSION, 1, stride, f"{prefix}-downsample-0")
        shortcut = batch_norm(f"{prefix}-downsample-1")(shortcut)
    x = keras.layers.Add(name=f"{prefix}-add")([x, shortcut])
    return _relu(f"{prefix}-relu")(x)


def pflayer(x, block="max", depths=(3, 4, 6, 3), width_mult=1.0):
    """Builds a parameter-free-layer ResNet (Han et al., "Learning Features with Parameter-Free Layers", ICLR 2022,
    arXiv:2202.02777; the official `resnet_pf.py`, whose factories' arguments `from_official` maps to these).

    Args:
        block: the bottleneck's spatial operation, one of "conv" (ResNet-50), "max" (ResNet-50-max) or
            "hybrid" (ResNet-50-hybrid, input height and width divisible by 32); see the module docstring.
        depths: blocks per stage (official `layer_setting`).
        width_mult: multiplier of the stage widths 64, 128, 256, 512 (the stem keeps 64 channels).

    Features: one per stage, `P2`..`P5` (strides 4, 8, 16, 32; `4 * int(w * width_mult)` channels for w = 64, 128,
    256, 512). Example:

        model = pflayer("hybrid", num_classes=10)
        pyramid = pflayer(features_only=True)      # {"P2": (B, H/4, W/4, 256), ..., "P5": (B, H/32, W/32, 2048)}
    """
    planes = _planes(block, depths, width_mult)
    if block == "hybrid":
        # the average pooling floors odd sizes while the 1x1 stride-2 shortcut rounds them up
        for size in x.shape[1:3]:
            if size is not None and size % 32:
                raise ValueError(
                    f"block='hybrid' needs input height and width divisible by 32, got {tuple(x.shape[1:3])}."
                )
    x = _conv(x, STEM_WIDTH, 7, 2, "conv1-0")
    x = batch_norm("conv1-1")(x)
    x = _relu("conv1-2")(x)
    x = _max_pool(x, 2, "maxpool")
    features = {}
    for i, (depth, width) in enumerate(zip(depths, planes)):
        for j in range(depth):
            stride = 2 if i > 0 and j == 0 else 1
            x = _bottleneck(x, f"layer{i + 1}-{j}", planes=width, stride=stride, block=block)
        features[f"P{i + 2}"] = x

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
        return keras.layers.Dense(num_classes, name="fc")(x)

    return _base.Network(features, head)


def _planes(block, depths, width_mult, **_):
    """Validates the configuration; returns the stage planes (a stage outputs `EXPANSION` times as many)."""
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {BLOCKS}, got {block!r}.")
    depths = tuple(depths)
    if len(depths) != 4 or not all(isinstance(d, int) and d >= 1 for d in depths):
        raise ValueError(f"depths must be four positive integers (blocks per stage), got {depths}.")
    planes = [int(p * width_mult) for p in (64, 128, 256, 512)]
    if planes[0] < 1:
        raise ValueError(f"width_mult={width_mult!r} leaves a stage without channels.")
    return planes


def _features(**kwargs):
    return _base.pyramid([EXPANSION * p for p in _planes(**kwargs)], (4, 8, 16, 32))


# The official factories of resnet_pf.py: each is `ResNet(<its bottleneck>, layers=layer_setting, ...)`.
FACTORIES = {"resnet50": "conv", "resnet50_max": "max", "resnet50_hybrid": "hybrid"}
_RENAMES = {"layer_setting": "depths", "width_mult": "width_mult", "num_classes": "num_classes"}


def from_official(kwargs, factory="resnet50_max"):
    """Builder kwargs of the official `resnet_pf.<factory>(**kwargs)` (`resnet50`, `resnet50_max`, the default,
    or `resnet50_hybrid`): the factory gives `block`, `layer_setting` becomes `depths`, `width_mult` and
    `num_classes` keep their names. `pretrained` and `zero_init_residual` are dropped: the official code takes
    them and never reads them.

    Grouped or dilated stages (`groups`, `width_per_group`, `replace_stride_with_dilation` other than the
    defaults, which every official model uses) have no equivalent here and are refused, as is any other argument.
    """
    if factory not in FACTORIES:
        raise ValueError(f"factory must be one of {sorted(FACTORIES)} (resnet_pf.py), got {factory!r}.")
    kwargs = {k: v for k, v in kwargs.items() if k not in ("pretrained", "zero_init_residual")}
    if any(kwargs.pop("replace_stride_with_dilation", None) or ()):
        raise ValueError(f"{factory}: dilated stages (replace_stride_with_dilation) have no equivalent here.")
    for key, official in (("groups", 1), ("width_per_group", 64)):
        value = kwargs.pop(key, official)
        if value != official:
            raise ValueError(f"{factory}({key}={value!r}) has no equivalent here (only {key}={official!r}).")
    unknown = sorted(set(kwargs) - set(_RENAMES))
    if unknown:
        raise ValueError(f"{factory} takes no argument(s) {unknown}; it takes {sorted(_RENAMES)} here.")
    out = {"block": FACTORIES[factory], **{_RENAMES[k]: v for k, v in kwargs.items()}}
    if "depths" in out:
        out["depths"] = tuple(out["depths"])
    return out


def _fixture_kwargs(meta):
    # the entry reads "resnet50_max (-> ResNet(MaxBottleneck, ...))"
    return from_official(meta["kwargs"], meta["entry"].split()[0])


def convert_pflayer(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official PfLayer ResNet state dict
    (`resnet_pf.py`: `conv1.0`, `layer1.0.reduction_block.0`, ..., `fc`).

    Strict: every tensor is consumed (BatchNorm's `num_batches_tracked` is a training counter and is ignored)
    and every model variable is assigned; shapes are checked against both names.
    """
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        m.standard(layer, key)
    m.finish()


def reparameterize(model):
    """The inference model: every BatchNormalization folded into the convolution or Dense before it. Returns a
    new model with the same outputs (up to float rounding) and layer names; keep the original for training."""
    return _fusion.fold_batch_norms(model)


_PAPER = _base.Paper("Learning Features with Parameter-Free Layers", "2202.02777", 43)

VARIANTS = (
    _base.Variant(
        "pflayer_resnet50", dict(block="conv"), num_params=25_557_032, paper_top1=76.2, builder_name="PfResNet50"
    ),
    _base.Variant(
        "pflayer_resnet50_max", dict(block="max"), num_params=14_232_232, paper_top1=74.3, builder_name="PfResNet50Max"
    ),
    _base.Variant(
        "pflayer_resnet50_hybrid",
        dict(block="hybrid"),
        num_params=17_330_600,
        paper_top1=77.1,
        builder_name="PfResNet50Hybrid",
    ),
)

ARCH = _base.Architecture(
    name="pflayer",
    network=pflayer,
    features=_features,
    convert=convert_pflayer,
    paper=_PAPER,
    variants=VARIANTS,
    license="Apache-2.0",
    source="https://github.com/naver-ai/PfLayer",
    classifier="fc",
    classifier_key="fc.weight",
    testing=_base.Testing(tiny=dict(block="max", depths=(1, 2, 1, 1), width_mult=0.25, num_classes=10)),
    reference=_base.Reference(
        "pflayer",
        kwargs=_fixture_kwargs,
        features={f"feat/layer{i + 1}": f"P{i + 2}" for i in range(4)},
    ),
    interpolation="bilinear",
    reparameterize=reparameterize,
)

pflayer = ARCH.builder
