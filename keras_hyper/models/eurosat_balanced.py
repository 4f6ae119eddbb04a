"""Balanced multi-task attention CNN for EuroSAT (Vir, "Balanced Multi-Task Attention for Satellite Image
Classification: A Systematic Approach to Achieving 97.23% Accuracy on EuroSAT Without Pre-Training", 2025,
arXiv:2510.15527; paper 49 in PAPERS.md; official code virAditya/satellite-image-classification-eurosat,
`models/balanced_12layer.py`).

A ResNet-style network for 64x64 satellite images: a 3x3 convolution stem (stride 1), four stages of residual
blocks `relu(shortcut(x) + BalancedAttention(BN(conv3x3(DropBlock(relu(BN(conv3x3(x)))))))` (the first block of
every stage after the first has stride 2 and a 1x1 convolution + BN shortcut), global average pooling,
dropout and a linear classifier. `BalancedAttention` mixes coordinate attention and squeeze-excitation with a
learnt weight `sigmoid(alpha)` per block. Layer names follow the official state dict with '-' for '.'
(`stage2-0-attention`, `stage2-0-shortcut-0`), so that the converter is a direct map.

Input `(B, H, W, 3)` with H, W >= 8; stage features `P0`..`P3` (strides 1..8, `widths` channels), the last
`(B, H/8, W/8, widths[-1])`; logits `(B, num_classes)`.
"""

import keras

from keras_hyper.convert import mapping
from keras_hyper.layers import BalancedAttention, DropBlock2D
from keras_hyper.layers._args import check_rate
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.torch_defaults import BN_EPSILON, BN_MOMENTUM, batch_norm, kaiming_fan_out, torch_padding
from keras_hyper.models import _base, _fusion


def _conv3x3(x, filters, strides, name):
    x, padding = torch_padding(x, 3, strides, f"{name}-pad")
    return Conv2D(
        filters, 3, strides=strides, padding=padding, use_bias=False, kernel_initializer=kaiming_fan_out(), name=name
    )(x)


def _block(x, prefix, *, filters, strides, drop_prob, block_size, coord_reduction, se_reduction):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = Conv2D(
            filters,
            1,
            strides=strides,
            use_bias=False,
            kernel_initializer=kaiming_fan_out(),
            name=f"{prefix}-shortcut-0",
        )(x)
        shortcut = batch_norm(f"{prefix}-shortcut-1")(shortcut)
    x = _conv3x3(x, filters, strides, f"{prefix}-conv1")
    x = batch_norm(f"{prefix}-bn1")(x)
    x = keras.layers.ReLU(name=f"{prefix}-relu1")(x)
    if drop_prob > 0.0:
        x = DropBlock2D(drop_prob, block_size=block_size, name=f"{prefix}-dropblock")(x)
    x = _conv3x3(x, filters, 1, f"{prefix}-conv2")
    x = batch_norm(f"{prefix}-bn2")(x)
    x = BalancedAttention(
        coord_reduction=coord_reduction,
        se_reduction=se_reduction,
        epsilon=BN_EPSILON,
        momentum=BN_MOMENTUM,
        name=f"{prefix}-attention",
    )(x)
    x = keras.layers.Add(name=f"{prefix}-add")([x, shortcut])
    return keras.layers.ReLU(name=f"{prefix}-relu2")(x)


def eurosat_balanced(
    x,
    widths=(64, 128, 256, 512),
    depths=(3, 3, 3, 2),
    drop_probs=(0.05, 0.1, 0.15, 0.2),
    block_size=7,
    coord_reduction=8,
    se_reduction=16,
    drop_rate=0.5,
):
    """Builds a balanced multi-task attention CNN (Vir, "Balanced Multi-Task Attention for Satellite Image
    Classification", arXiv:2510.15527; the official `Balanced12LayerCNN`), by default for EuroSAT RGB: 64x64x3
    input, 10 classes. `from_official` maps the official constructor's arguments to these.

    Args:
        widths: channels per stage (the stem has `widths[0]`); each must be >= `se_reduction` and
            `coord_reduction`.
        depths: residual blocks per stage.
        drop_probs: DropBlock rate of each stage's blocks (0: no DropBlock).
        block_size: DropBlock square size (odd).
        coord_reduction, se_reduction: channel reductions of the coordinate attention and the SE branch.
        drop_rate: dropout before the classifier (the official 0.5).

    Features: one per stage, `P0`..`P3` for four stages (strides 1, 2, 4, 8: the stem and the first stage keep
    the input's resolution; `widths` channels). Example:

        model = eurosat_balanced(num_classes=10)            # default input 64x64x3
        pyramid = eurosat_balanced(features_only=True)      # {"P0": (B, 64, 64, 64), ..., "P3": (B, 8, 8, 512)}
    """
    widths, depths, drop_probs = _validate(widths, depths, drop_probs, coord_reduction, se_reduction, drop_rate)
    x = Conv2D(widths[0], 3, padding="same", use_bias=False, kernel_initializer=kaiming_fan_out(), name="stem-0")(x)
    x = batch_norm("stem-1")(x)
    x = keras.layers.ReLU(name="stem-2")(x)
    features = {}
    for i, (width, depth, drop_prob) in enumerate(zip(widths, depths, drop_probs)):
        for j in range(depth):
            x = _block(
                x,
                f"stage{i + 1}-{j}",
                filters=width,
                strides=2 if i > 0 and j == 0 else 1,
                drop_prob=float(drop_prob),
                block_size=block_size,
                coord_reduction=coord_reduction,
                se_reduction=se_reduction,
            )
        features[f"P{i}"] = x

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
        if drop_rate:
            x = keras.layers.Dropout(drop_rate, name="dropout")(x)
        init = keras.initializers.RandomNormal(stddev=0.01)
        return keras.layers.Dense(num_classes, kernel_initializer=init, name="fc")(x)

    return _base.Network(features, head)


def _validate(widths, depths, drop_probs, coord_reduction, se_reduction, drop_rate, **_):
    widths, depths, drop_probs = tuple(widths), tuple(depths), tuple(drop_probs)
    if not widths or len(depths) != len(widths) or len(drop_probs) != len(widths):
        raise ValueError(
            "widths, depths and drop_probs must have the same non-zero length, got "
            f"widths={widths}, depths={depths}, drop_probs={drop_probs}."
        )
    if any(d < 1 for d in depths):
        raise ValueError(f"Every stage needs at least one block, got depths={depths}.")
    smallest = max(coord_reduction, se_reduction)
    if min(widths) < smallest:
        raise ValueError(
            f"Every width must be >= {smallest} (the attention's channel reductions), got widths={widths}."
        )
    if any(not 0.0 <= p < 1.0 for p in drop_probs):
        raise ValueError(f"drop_probs must be in [0, 1), got {drop_probs}.")
    check_rate(drop_rate=drop_rate)
    return widths, depths, drop_probs


def _features(**kwargs):
    widths, _, _ = _validate(**kwargs)
    return _base.pyramid(widths, [2**i for i in range(len(widths))])


# The official constructor's arguments (the fixture's re-stated `__init__` adds widths/depths/drops) -> ours.
_OFFICIAL = {"num_classes": "num_classes", "widths": "widths", "depths": "depths", "drops": "drop_probs"}


def from_official(kwargs):
    """Builder kwargs of the official `Balanced12LayerCNN(num_classes=10)`, or of the reference fixture's
    re-statement of it with `widths`, `depths` and `drops` (per-stage DropBlock rates) arguments.

    Everything else (attention reductions 8 and 16, DropBlock size 7, dropout 0.5) is fixed in the official
    code and is this builder's default. An argument the official constructor does not take is refused.
    """
    unknown = sorted(set(kwargs) - set(_OFFICIAL))
    if unknown:
        raise ValueError(
            f"Balanced12LayerCNN takes no argument(s) {unknown} (known: {sorted(_OFFICIAL)}), got {dict(kwargs)!r}."
        )
    return {_OFFICIAL[key]: tuple(v) if isinstance(v, list) else v for key, v in kwargs.items()}


def convert_eurosat_balanced(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official Balanced12LayerCNN state dict.

    Strict: every tensor is consumed (BatchNorm's `num_batches_tracked` is a training counter and is ignored)
    and every model variable is assigned; shapes are checked against both names.
    """
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if m.standard(layer, key):
            continue
        if isinstance(layer, BalancedAttention):
            m.assign(layer.alpha, f"{key}.alpha")
            coord = layer.coord_attention
            for sub in (coord.conv1, coord.conv_h, coord.conv_w):
                m.dense(sub, f"{key}.coord_attention.{sub.name}")
            if coord.normalize:
                m.batch_norm(coord.bn1, f"{key}.coord_attention.bn1")
            m.dense(layer.se_attention.reduce, f"{key}.se_attention.excitation.0")
            m.dense(layer.se_attention.expand, f"{key}.se_attention.excitation.2")
    m.finish()


def reparameterize(model):
    """The inference model: the coordinate attention's BatchNormalization folded into its first 1x1
    convolution, and every other BatchNormalization into the convolution before it. Returns a new model with
    the same outputs (up to float rounding) and layer names; keep the original for training."""
    return _fusion.reparameterize(model)


_PAPER = _base.Paper(
    "Balanced Multi-Task Attention for Satellite Image Classification: A Systematic Approach to Achieving 97.23% "
    "Accuracy on EuroSAT Without Pre-Training",
    "2510.15527",
    49,
)

VARIANTS = (
    _base.Variant(
        "eurosat_balanced_12",
        dict(widths=(64, 128, 256, 512), depths=(3, 3, 3, 2), drop_probs=(0.05, 0.1, 0.15, 0.2), num_classes=10),
        num_params=13_115_813,
        input_size=64,
        crop_pct=1.0,
        paper_top1=97.23,
        builder_name="EuroSATBalanced12",
    ),
)

ARCH = _base.Architecture(
    name="eurosat_balanced",
    network=eurosat_balanced,
    features=_features,
    input_size=64,
    min_size=lambda widths, **_: 2 ** (len(tuple(widths)) - 1),
    num_classes=10,
    convert=convert_eurosat_balanced,
    paper=_PAPER,
    variants=VARIANTS,
    license="MIT",
    source="https://github.com/virAditya/satellite-image-classification-eurosat",
    classifier="fc",
    classifier_key="fc.weight",
    testing=_base.Testing(tiny=dict(widths=(16, 32, 48, 64), depths=(2, 1, 1, 1), num_classes=10), min_input_size=8),
    reference=_base.Reference(
        "eurosat_balanced",
        kwargs=lambda meta: from_official(meta["kwargs"]),
        features={f"feat/stage{i + 1}": f"P{i}" for i in range(4)},
    ),
    reparameterize=reparameterize,
)

eurosat_balanced = ARCH.builder
