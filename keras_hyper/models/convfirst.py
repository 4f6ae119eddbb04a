"""ConvFirst (Lavin, "On the Efficiency of Convolutional Neural Networks", arXiv:2404.03617, 2024; paper 8 in
PAPERS.md): a ConvNeXt-style network whose residual block starts with a *grouped* convolution instead of a
depthwise one, so that the spatial convolution has more arithmetic per byte moved, and keeps BatchNormalization,
so that the whole block folds into convolutions and matmuls at inference (the paper fuses each residual block
into a single GPU kernel).

No official code or configuration exists; see zoo/convfirst.md for which parts come from the paper and which
are this implementation's choices (kernel size, group width, stage depths and widths, activation, head).

Block (`convfirst_block`): `x + Dense(act(Dense(BN(GroupedConv(x)))))`, the grouped k x k convolution with
`dim / group_width` groups, the MLP expanding by `mlp_ratio`. Network: a 4x4 stride-4 stem (conv + BN), four
stages separated by BN + 2x2 stride-2 convolutions, global average pooling, BN and a Linear classifier. Layer
names follow the same torch-style paths as the other architectures (`stages-2-blocks-1-conv`).

Input `(B, H, W, 3)` with H, W >= 32; stage features `P2`..`P5` (strides 4..32, `dims` channels), the last
`(B, H/32, W/32, dims[-1])`; logits `(B, num_classes)`.
"""

import keras

from keras_hyper.convert import mapping
from keras_hyper.layers import DropPath
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.torch_defaults import batch_norm, trunc_normal
from keras_hyper.models import _base, _fusion


def convfirst_block(x, prefix, *, kernel_size=3, group_width=8, mlp_ratio=4, activation="gelu", drop_path=0.0):
    """The ConvFirst residual block on a channels-last tensor `(B, H, W, C)`; returns the same shape.

    `GroupedConv(k x k, C -> C, C / group_width groups)` -> BatchNormalization -> Dense(mlp_ratio * C) ->
    activation -> Dense(C) -> (stochastic depth) -> + x. The grouped convolution is a `keras.layers.Conv2D` with
    `groups`, which every backend runs natively and LiteRT exports as one builtin CONV_2D.
    """
    dim = x.shape[-1]
    if dim % group_width:
        raise ValueError(f"Block '{prefix}': its {dim} channels are not a multiple of group_width={group_width}.")
    shortcut = x
    # no bias: the BatchNormalization after it has one
    x = Conv2D(
        dim,
        kernel_size,
        padding="same",
        groups=dim // group_width,
        use_bias=False,
        kernel_initializer=trunc_normal(),
        name=f"{prefix}-conv",
    )(x)
    x = batch_norm(f"{prefix}-norm")(x)
    # A 1x1 convolution is a matmul over channels; Dense runs it as one on every backend.
    x = keras.layers.Dense(int(mlp_ratio * dim), kernel_initializer=trunc_normal(), name=f"{prefix}-mlp-fc1")(x)
    x = keras.layers.Activation(activation, name=f"{prefix}-mlp-act")(x)
    x = keras.layers.Dense(dim, kernel_initializer=trunc_normal(), name=f"{prefix}-mlp-fc2")(x)
    if drop_path > 0.0:
        x = DropPath(drop_path, name=f"{prefix}-drop_path")(x)
    return keras.layers.Add(name=f"{prefix}-add")([shortcut, x])


def convfirst(
    x,
    depths=(3, 3, 9, 3),
    dims=(96, 192, 384, 768),
    kernel_size=3,
    group_width=8,
    mlp_ratio=4,
    activation="gelu",
    drop_path_rate=0.0,
    drop_rate=0.0,
):
    """Builds a ConvFirst network (Lavin, "On the Efficiency of Convolutional Neural Networks", arXiv:2404.03617;
    no official code: see zoo/convfirst.md for what comes from the paper).

    Args:
        depths: blocks per stage.
        dims: channels per stage; each a multiple of `group_width`.
        kernel_size: spatial size of the blocks' grouped convolution.
        group_width: channels per group of that convolution (1 would make it ConvNeXt's depthwise kind).
        mlp_ratio: hidden/input ratio of each block's MLP.
        activation: the MLP's activation.
        drop_path_rate: stochastic depth rate of the last block, rising linearly from 0 over all blocks.
        drop_rate: dropout before the classifier.

    Features: one per stage, `P2`..`P5` for four stages (strides 4, 8, 16, 32; `dims` channels). Example:

        model = convfirst(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512), num_classes=10)
        pyramid = convfirst(features_only=True)            # {"P2": (B, H/4, W/4, 96), ..., "P5": ...}
    """
    depths, dims = _validate(depths, dims, kernel_size, group_width)
    x = Conv2D(dims[0], 4, strides=4, kernel_initializer=trunc_normal(), name="stem-0")(x)
    x = batch_norm("stem-1")(x)
    features = {}
    rates = _base.drop_path_rates(drop_path_rate, sum(depths))
    block = 0
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        if i > 0:
            x = batch_norm(f"stages-{i}-downsample-0")(x)
            x = Conv2D(dim, 2, strides=2, kernel_initializer=trunc_normal(), name=f"stages-{i}-downsample-1")(x)
        for j in range(depth):
            x = convfirst_block(
                x,
                f"stages-{i}-blocks-{j}",
                kernel_size=kernel_size,
                group_width=group_width,
                mlp_ratio=mlp_ratio,
                activation=activation,
                drop_path=rates[block],
            )
            block += 1
        features[f"P{i + 2}"] = x

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="head-global_pool")(x)
        x = batch_norm("head-norm")(x)
        if drop_rate:
            x = keras.layers.Dropout(drop_rate, name="head-drop")(x)
        return keras.layers.Dense(num_classes, kernel_initializer=trunc_normal(), name="head-fc")(x)

    return _base.Network(features, head)


def _validate(depths, dims, kernel_size, group_width, **_):
    depths, dims = tuple(depths), tuple(dims)
    if len(depths) != len(dims) or not depths:
        raise ValueError(f"depths and dims must have the same non-zero length, got depths={depths}, dims={dims}.")
    if not isinstance(group_width, int) or group_width < 1 or any(d % group_width for d in dims):
        raise ValueError(
            f"group_width must be a positive integer dividing every entry of dims={dims}, got {group_width!r}."
        )
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}.")
    return depths, dims


def _features(**kwargs):
    _, dims = _validate(**kwargs)
    return _base.pyramid(dims, [2 ** (i + 2) for i in range(len(dims))])


def convert_convfirst(state_dict, model):
    """Fills `model` from a PyTorch-layout state dict of the same layer paths (`stages.2.blocks.1.conv.weight`,
    grouped kernels `(C, group_width, k, k)`). No official checkpoint exists; this is the converter for
    ConvFirst models trained in PyTorch with these names. Strict, as every converter here (BatchNorm's
    `num_batches_tracked` counters ignored)."""
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        m.standard(layer, key)  # a grouped kernel (out, in/groups, kh, kw) maps like a dense one
    m.finish()


def reparameterize(model):
    """The inference model: every BatchNormalization folded into the convolution or Dense beside it (the block's
    into its grouped convolution, the downsampling ones and the head's into the layer after them), leaving
    convolutions, matmuls, activations and adds, the form the paper fuses into one kernel per block."""
    return _fusion.fold_batch_norms(model)


_PAPER = _base.Paper("On the Efficiency of Convolutional Neural Networks", "2404.03617", 8)

# Not official configurations (the paper publishes none as code): counts computed from this builder.
VARIANTS = (
    _base.Variant(
        "convfirst_tiny",
        dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
        num_params=28_728_232,
        builder_name="ConvFirstTiny",
    ),
    _base.Variant(
        "convfirst_small",
        dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),
        num_params=50_507_944,
        builder_name="ConvFirstSmall",
    ),
)

ARCH = _base.Architecture(
    name="convfirst",
    network=convfirst,
    features=_features,
    min_size=lambda **kwargs: 2 ** (len(_validate(**kwargs)[0]) + 1),
    convert=convert_convfirst,
    paper=_PAPER,
    variants=VARIANTS,
    license="Apache-2.0",
    source="https://arxiv.org/abs/2404.03617 (no official code; keras-hyper's reading of the paper)",
    classifier="head-fc",
    classifier_key="head.fc.weight",
    testing=_base.Testing(tiny=dict(depths=(1, 1, 2, 1), dims=(16, 32, 48, 64), num_classes=10)),
    reparameterize=reparameterize,
)

convfirst = ARCH.builder
