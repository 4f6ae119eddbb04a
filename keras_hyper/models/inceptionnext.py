"""InceptionNeXt (Yu, Zhou, Yan, Wang, "InceptionNeXt: When Inception Meets ConvNeXt", CVPR 2024,
arXiv:2303.16900; paper 14 in PAPERS.md).

A MetaNeXt network: a 4x4 stride-4 stem, four stages of blocks
`x + gamma * ConvMlp(BN(InceptionDepthwiseConv2D(x)))` with a BN + 2x2 stride-2 convolution between stages,
and an MLP classification head (pool, Linear to 3C, GELU, LayerNorm, Linear). Layer names follow the official
state dict with '-' for '.' (`stem-0`, `stages-2-blocks-1-token_mixer`, `head-fc2`; PyTorch, which runs the
torch backend's variables, forbids '.' in their names), so that the converter is a direct map.

Input `(B, H, W, 3)` with H, W >= 32; features `(B, H/32, W/32, dims[-1])`; logits `(B, num_classes)`.
"""

import keras

from keras_hyper.convert import mapping
from keras_hyper.layers import DropPath, InceptionDepthwiseConv2D, LayerScale
from keras_hyper.layers.conv import Conv2D
from keras_hyper.models import _base, _fusion

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1 counts the other way round.


def _dense_init():
    return keras.initializers.TruncatedNormal(stddev=0.02)


def _batch_norm(name):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _block(x, prefix, *, mlp_ratio, mixer_kwargs, ls_init_value, drop_path):
    dim = x.shape[-1]
    shortcut = x
    x = InceptionDepthwiseConv2D(**mixer_kwargs, name=f"{prefix}-token_mixer")(x)
    x = _batch_norm(f"{prefix}-norm")(x)
    # A 1x1 convolution is a matmul over channels; Dense runs it as one on every backend.
    x = keras.layers.Dense(int(mlp_ratio * dim), kernel_initializer=_dense_init(), name=f"{prefix}-mlp-fc1")(x)
    x = keras.layers.Activation("gelu", name=f"{prefix}-mlp-act")(x)
    x = keras.layers.Dense(dim, kernel_initializer=_dense_init(), name=f"{prefix}-mlp-fc2")(x)
    if ls_init_value:
        x = LayerScale(ls_init_value, name=f"{prefix}-gamma")(x)
    if drop_path > 0.0:
        x = DropPath(drop_path, name=f"{prefix}-drop_path")(x)
    return keras.layers.Add(name=f"{prefix}-add")([shortcut, x])


def inceptionnext(
    x,
    depths=(3, 3, 9, 3),
    dims=(96, 192, 384, 768),
    mlp_ratios=(4, 4, 4, 3),
    square_kernel_size=3,
    band_kernel_size=11,
    branch_ratio=0.125,
    ls_init_value=1e-6,
    drop_path_rate=0.0,
    drop_rate=0.0,
    head_mlp_ratio=3,
):
    """Builds an InceptionNeXt model (the public builder is `keras_hyper.models.inceptionnext.inceptionnext`,
    which takes these arguments and the keras.applications ones; this network function maps an input tensor to
    the stage features P2..P5 and the MLP head).

    Args:
        depths: blocks per stage.
        dims: channels per stage.
        mlp_ratios: hidden/input ratio of each stage's MLP (one number for all stages, or one per stage).
        square_kernel_size, band_kernel_size, branch_ratio: the token mixer's kernels and channel split.
        ls_init_value: initial layer scale (0 or None: no layer scale).
        drop_path_rate: stochastic depth rate of the last block, rising linearly from 0 over all blocks as
            in the official schedule.
        drop_rate: dropout before the classifier.
        head_mlp_ratio: hidden/input ratio of the head's MLP.

    Features: `P2`..`P5` (strides 4, 8, 16, 32; `dims` channels). Example:

        model = inceptionnext(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320), num_classes=10)
        pyramid = inceptionnext(features_only=True)          # {"P2": (B, H/4, W/4, 96), ..., "P5": ...}
    """
    depths, dims = _stages(depths, dims)
    if isinstance(mlp_ratios, (int, float)):
        mlp_ratios = (mlp_ratios,) * len(depths)
    mlp_ratios = tuple(mlp_ratios)
    if len(mlp_ratios) != len(depths):
        raise ValueError(f"mlp_ratios must have one entry per stage ({len(depths)}), got {mlp_ratios}.")
    mixer_kwargs = dict(
        square_kernel_size=square_kernel_size, band_kernel_size=band_kernel_size, branch_ratio=branch_ratio
    )

    x = Conv2D(dims[0], 4, strides=4, kernel_initializer=_dense_init(), name="stem-0")(x)
    x = _batch_norm("stem-1")(x)

    features = {}
    rates = _base.drop_path_rates(drop_path_rate, sum(depths))
    block = 0
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        if i > 0:
            x = _batch_norm(f"stages-{i}-downsample-0")(x)
            x = Conv2D(dim, 2, strides=2, kernel_initializer=_dense_init(), name=f"stages-{i}-downsample-1")(x)
        for j in range(depth):
            x = _block(
                x,
                f"stages-{i}-blocks-{j}",
                mlp_ratio=mlp_ratios[i],
                mixer_kwargs=mixer_kwargs,
                ls_init_value=ls_init_value,
                drop_path=rates[block],
            )
            block += 1
        features[f"P{i + 2}"] = x

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="head-global_pool")(x)
        x = keras.layers.Dense(int(head_mlp_ratio * dims[-1]), kernel_initializer=_dense_init(), name="head-fc1")(x)
        x = keras.layers.Activation("gelu", name="head-act")(x)
        x = keras.layers.LayerNormalization(epsilon=1e-6, name="head-norm")(x)
        if drop_rate:
            x = keras.layers.Dropout(drop_rate, name="head-drop")(x)
        return keras.layers.Dense(num_classes, kernel_initializer=_dense_init(), name="head-fc2")(x)

    return _base.Network(features, head)


def _stages(depths, dims):
    depths, dims = tuple(depths), tuple(dims)
    if len(depths) != len(dims) or not depths:
        raise ValueError(f"depths and dims must have the same non-zero length, got depths={depths}, dims={dims}.")
    return depths, dims


def _features(depths, dims, **_):
    depths, dims = _stages(depths, dims)
    return _base.pyramid(dims, [2 ** (i + 2) for i in range(len(dims))])


def convert_inceptionnext(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official / timm InceptionNeXt state dict.

    Strict: every tensor is consumed (BatchNorm's `num_batches_tracked` is a training counter and is ignored)
    and every model variable is assigned; shapes are checked against both names.
    """
    m = mapping.StateDictMapper(state_dict, model, ignore=(r".*\.num_batches_tracked$",))
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if m.standard(layer, key):
            continue
        if isinstance(layer, LayerScale):
            m.assign(layer.gamma, key)
        elif isinstance(layer, InceptionDepthwiseConv2D):
            for branch, kernel, bias in zip(("dwconv_hw", "dwconv_w", "dwconv_h"), layer.kernels, layer.biases):
                m.assign(kernel, f"{key}.{branch}.weight", mapping.depthwise_kernel)
                m.assign(bias, f"{key}.{branch}.bias")
    m.finish()


def reparameterize(model):
    """The inference model: every BatchNormalization (stem, downsampling, blocks) folded into the convolution
    or Dense beside it. Returns a new model with the same outputs (up to float rounding) and layer names; keep
    the original for training."""
    return _fusion.fold_batch_norms(model)


_PAPER = _base.Paper("InceptionNeXt: When Inception Meets ConvNeXt", "2303.16900", 14)

VARIANTS = (
    _base.Variant(
        "inceptionnext_atto",
        dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320), band_kernel_size=9, branch_ratio=0.25),
        num_params=4_156_520,
        paper_top1=75.348,
        timm_name="inception_next_atto",
        builder_name="InceptionNeXtAtto",
    ),
    _base.Variant(
        "inceptionnext_tiny",
        dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
        num_params=28_055_680,
        paper_top1=82.508,
        timm_name="inception_next_tiny",
        builder_name="InceptionNeXtTiny",
    ),
    _base.Variant(
        "inceptionnext_small",
        dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),
        num_params=49_374_016,
        paper_top1=83.584,
        timm_name="inception_next_small",
        builder_name="InceptionNeXtSmall",
    ),
    _base.Variant(
        "inceptionnext_base",
        dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024)),
        num_params=86_672_136,
        crop_pct=0.95,
        paper_top1=84.098,
        timm_name="inception_next_base",
        builder_name="InceptionNeXtBase",
    ),
)

ARCH = _base.Architecture(
    name="inceptionnext",
    network=inceptionnext,
    features=_features,
    min_size=lambda depths, **_: 2 ** (len(depths) + 1),
    convert=convert_inceptionnext,
    paper=_PAPER,
    variants=VARIANTS,
    license="Apache-2.0",
    source="https://github.com/sail-sg/inceptionnext",
    classifier="head-fc2",
    classifier_key="head.fc2.weight",
    tiny=dict(depths=(1, 1, 2, 1), dims=(16, 32, 48, 64), band_kernel_size=7, branch_ratio=0.25, num_classes=10),
    fixture="inceptionnext",
    fixture_features={f"feat/stage{i}": f"P{i + 2}" for i in range(4)},
    reparameterize=reparameterize,
)

inceptionnext = ARCH.builder
