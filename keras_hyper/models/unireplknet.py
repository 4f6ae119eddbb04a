"""UniRepLKNet (Ding, Zhang, Ge, Zhao, Song, Yue, Shan, "UniRepLKNet: A Universal Perception Large-Kernel
ConvNet for Audio, Video, Point Cloud, Time-Series and Image Recognition", CVPR 2024, arXiv:2311.15599; paper 6
in PAPERS.md).

A four-stage ConvNet: a stem of two 3x3 stride-2 convolutions (each followed by a channel LayerNorm, GELU
between them), 3x3 stride-2 convolution + LayerNorm between stages, and blocks

    x + gamma * BN(Dense(GRN(GELU(Dense(SE(BN(dwconv(x))))))))

whose depthwise convolution is, by the block's kernel size, absent (0: no dwconv and no BN), plain (3 or 5) or
a `DilatedReparamConv2D` (7 to 17: a large kernel plus dilated small kernels, merged into one for inference).
Head: global mean, LayerNorm, Dense. Layer names follow the official state dict with '-' for '.'
(`downsample_layers-0-3`, `stages-2-5-dwconv`, `stages-2-5-pwconv2-0`), so that the converter is a direct map.

`deploy=True` builds the official inference structure (merged kernels with a bias, no BN, GRN without beta,
layer scale folded into the second Dense), which `reparameterize(model)` produces from a trained model.

Input `(B, H, W, 3)` with H, W >= 64 (`MIN_SIZE`); features `(B, H/32, W/32, dims[-1])`; logits `(B, num_classes)`.
"""

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers import (
    DepthwiseConv2D,
    DilatedReparamConv2D,
    DropPath,
    GlobalResponseNorm,
    LayerScale,
    SqueezeExcite,
)
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.reparam import UNIREPLKNET_BRANCHES
from keras_hyper.layers.torch_defaults import BN_EPSILON, BN_MOMENTUM, batch_norm, torch_padding, trunc_normal
from keras_hyper.models import _base, _fusion

LN_EPSILON = 1e-6
FFN_FACTOR = 4
# At 32x32 the last stage is 1x1: there every dilated branch sees only its centre tap, and the BN after the
# summed, batch-normalised branches cancels their scales, so training cannot move them. Two pixels at stride 32.
MIN_SIZE = 64

# The official default kernel sizes, chosen by the depths (unireplknet.py's default_depths_to_kernel_sizes).
_A_F_P = ((3, 3), (13, 13), (13,) * 6, (13, 13))
_N = ((3, 3), (13, 13), (13,) * 8, (13, 13))
_T = ((3,) * 3, (13,) * 3, (13, 3) * 9, (13,) * 3)
_S_B_L_XL = ((3,) * 3, (13,) * 3, (13, 3, 3) * 9, (13,) * 3)
DEFAULT_KERNEL_SIZES = {(2, 2, 6, 2): _A_F_P, (2, 2, 8, 2): _N, (3, 3, 18, 3): _T, (3, 3, 27, 3): _S_B_L_XL}
SMALL_KERNELS = (0, 1, 3, 5)


def _conv_norm(x, filters, name, norm_name):
    """3x3 stride-2 convolution with PyTorch's symmetric padding 1, then the official channels-first LayerNorm,
    i.e. a LayerNormalization over C here."""
    x, padding = torch_padding(x, 3, 2, f"{name}_pad")
    x = Conv2D(filters, 3, strides=2, padding=padding, kernel_initializer=trunc_normal(), name=name)(x)
    return keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=norm_name)(x)


def _token_mixer(x, prefix, kernel_size, deploy):
    if kernel_size == 0:
        return x
    name = f"{prefix}-dwconv"
    if kernel_size == 1:  # the official 1x1 variant is a dense (groups=1) convolution
        x = keras.layers.Dense(x.shape[-1], use_bias=deploy, kernel_initializer=trunc_normal(), name=name)(x)
    elif kernel_size in (3, 5) or deploy:
        x = DepthwiseConv2D(
            kernel_size, padding="same", use_bias=deploy, depthwise_initializer=trunc_normal(), name=name
        )(x)
    else:
        x = DilatedReparamConv2D(
            kernel_size, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, kernel_initializer=trunc_normal(), name=name
        )(x)
    return x if deploy else batch_norm(f"{prefix}-norm")(x)


def _block(x, prefix, *, kernel_size, layer_scale_init_value, drop_path, deploy):
    dim = x.shape[-1]
    shortcut = x
    x = _token_mixer(x, prefix, kernel_size, deploy)
    x = SqueezeExcite(dim // 4, activation="relu", use_bias=True, name=f"{prefix}-se")(x)
    x = keras.layers.Dense(FFN_FACTOR * dim, kernel_initializer=trunc_normal(), name=f"{prefix}-pwconv1-1")(x)
    x = keras.layers.Activation("gelu", name=f"{prefix}-act-0")(x)
    x = GlobalResponseNorm(epsilon=1e-6, use_bias=not deploy, name=f"{prefix}-act-1")(x)
    x = keras.layers.Dense(dim, use_bias=deploy, kernel_initializer=trunc_normal(), name=f"{prefix}-pwconv2-0")(x)
    if not deploy:
        x = batch_norm(f"{prefix}-pwconv2-2")(x)
        if layer_scale_init_value:
            x = LayerScale(layer_scale_init_value, name=f"{prefix}-gamma")(x)
    if drop_path > 0.0:
        x = DropPath(drop_path, name=f"{prefix}-drop_path")(x)
    return keras.layers.Add(name=f"{prefix}-add")([shortcut, x])


def _kernel_sizes(kernel_sizes, depths):
    if kernel_sizes is None:
        if depths not in DEFAULT_KERNEL_SIZES:
            raise ValueError(
                f"kernel_sizes=None takes the official defaults, defined for depths in {sorted(DEFAULT_KERNEL_SIZES)}; "
                f"got depths={depths}. Pass kernel_sizes (one tuple of sizes per stage)."
            )
        return DEFAULT_KERNEL_SIZES[depths]
    kernel_sizes = tuple(tuple(stage) for stage in kernel_sizes)
    if tuple(len(stage) for stage in kernel_sizes) != depths:
        raise ValueError(
            f"kernel_sizes must give one size per block of each stage (lengths {depths}), got {kernel_sizes}."
        )
    allowed = SMALL_KERNELS + tuple(UNIREPLKNET_BRANCHES)
    for size in (k for stage in kernel_sizes for k in stage):
        if size not in allowed:
            raise ValueError(f"Each kernel size must be one of {allowed}, got {size!r}.")
    return kernel_sizes


def unireplknet(
    x,
    depths=(3, 3, 27, 3),
    dims=(96, 192, 384, 768),
    kernel_sizes=None,
    layer_scale_init_value=1e-6,
    drop_path_rate=0.0,
    head_init_scale=1.0,
    deploy=False,
):
    """Builds a UniRepLKNet model (Ding et al., "UniRepLKNet: A Universal Perception Large-Kernel ConvNet for
    Audio, Video, Point Cloud, Time-Series and Image Recognition", CVPR 2024, arXiv:2311.15599).

    Args:
        depths: blocks per stage (four stages).
        dims: channels per stage.
        kernel_sizes: per stage, one depthwise kernel size per block: 0 (no depthwise convolution), 1, 3, 5
            or 7-17 (odd; a `DilatedReparamConv2D`). None = the official default for `depths`.
        layer_scale_init_value: initial layer scale (0 or None: no layer scale).
        drop_path_rate: stochastic depth rate of the last block, rising linearly from 0 over all blocks as
            in the official schedule.
        head_init_scale: scale of the classifier's initial weights.
        deploy: build the official inference structure (see `reparameterize`); it loads deploy-form
            checkpoints and is not meant for training.

    Features: `P2`..`P5` (strides 4, 8, 16, 32; `dims` channels), each stage's last block (the official
    `forward_features` before its final pooling and LayerNorm, which belong to the head). Example:

        model = unireplknet(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320), num_classes=10)
        pyramid = unireplknet(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320), features_only=True)
    """
    depths, dims = _stages(depths, dims)
    kernel_sizes = _kernel_sizes(kernel_sizes, depths)

    x = _conv_norm(x, dims[0] // 2, "downsample_layers-0-0", "downsample_layers-0-1")
    x = keras.layers.Activation("gelu", name="downsample_layers-0-2")(x)
    x = _conv_norm(x, dims[0], "downsample_layers-0-3", "downsample_layers-0-4")

    features = {}
    rates = _base.drop_path_rates(drop_path_rate, sum(depths))
    block = 0
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        if i > 0:
            x = _conv_norm(x, dim, f"downsample_layers-{i}-0", f"downsample_layers-{i}-1")
        for j in range(depth):
            x = _block(
                x,
                f"stages-{i}-{j}",
                kernel_size=kernel_sizes[i][j],
                layer_scale_init_value=layer_scale_init_value,
                drop_path=rates[block],
                deploy=deploy,
            )
            block += 1
        features[f"P{i + 2}"] = x

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="norm")(x)
        return keras.layers.Dense(num_classes, kernel_initializer=trunc_normal(0.02 * head_init_scale), name="head")(x)

    return _base.Network(features, head)


def _stages(depths, dims):
    depths, dims = tuple(depths), tuple(dims)
    if len(depths) != 4 or len(dims) != 4:
        raise ValueError(f"UniRepLKNet has four stages: depths and dims need 4 entries, got {depths} and {dims}.")
    return depths, dims


def _features(depths, dims, **_):
    _, dims = _stages(depths, dims)
    return _base.pyramid(dims)


def convert_unireplknet(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official UniRepLKNet state dict: the training
    form for a `deploy=False` model, the form `reparameterize_unireplknet()` saves for a `deploy=True` one.

    Strict: every tensor is consumed (BatchNorm's `num_batches_tracked` is a training counter and is ignored)
    and every model variable is assigned; shapes are checked against both names.
    """
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if isinstance(layer, DilatedReparamConv2D):
            names = ["lk_origin"] + [f"dil_conv_k{k}_{r}" for k, r in layer.branches]
            bns = ["origin_bn"] + [f"dil_bn_k{k}_{r}" for k, r in layer.branches]
            for kernel, norm, conv_name, bn_name in zip(layer.kernels, layer.norms, names, bns):
                m.assign(kernel, f"{key}.{conv_name}.weight", mapping.depthwise_kernel)
                m.batch_norm(norm, f"{key}.{bn_name}")
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            # a deploy-form large kernel keeps the official DilatedReparamBlock's attribute name
            m.conv2d(layer, f"{key}.lk_origin" if layer.kernel_size[0] >= 7 else key)
        elif isinstance(layer, LayerScale):
            m.assign(layer.gamma, key)
        elif isinstance(layer, SqueezeExcite):
            m.dense(layer.reduce, f"{key}.down")
            m.dense(layer.expand, f"{key}.up")
        elif isinstance(layer, GlobalResponseNorm):
            m.assign(layer.gamma, f"{key}.gamma", np.ravel)  # stored (1, 1, 1, C)
            if layer.use_bias:
                m.assign(layer.beta, f"{key}.beta", np.ravel)
        else:
            m.standard(layer, key)
    m.finish()


def reparameterize(model):
    """The official inference form (`reparameterize_unireplknet()`): every `DilatedReparamConv2D` merged into
    one depthwise convolution, every BatchNormalization folded into the convolution or Dense before it, and,
    in each block, GRN's beta and the layer scale folded into the second Dense (`GRN(x) + beta` feeds a linear
    map, and the layer scale scales its output). Returns a new model with the same outputs (up to float
    rounding) and layer names, the structure of `unireplknet(..., deploy=True)`; keep the original for
    training."""
    fused = _fusion.reparameterize(model)
    layers = {layer.name: layer for layer in fused.layers}
    # block layers by name: `{block}-act-1` (GRN) feeds `{block}-pwconv2-0`, scaled by `{block}-gamma` if any
    dense_of = {
        f"{grn.name.removesuffix('-act-1')}-pwconv2-0": (grn, layers.get(f"{grn.name.removesuffix('-act-1')}-gamma"))
        for grn in layers.values()
        if isinstance(grn, GlobalResponseNorm) and grn.use_bias
    }
    scales = {scale.name for _, scale in dense_of.values() if scale is not None}

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, GlobalResponseNorm):
            config["use_bias"] = False
        return layer.__class__.from_config(config)

    def call(layer, *args, **kwargs):
        return args[0] if layer.name in scales else layer(*args, **kwargs)

    out = keras.models.clone_model(fused, clone_function=clone, call_function=call)
    for layer in out.layers:
        source = fused.get_layer(layer.name)
        if layer.name in dense_of:
            grn, scale = dense_of[layer.name]
            kernel, bias = (np.asarray(keras.ops.convert_to_numpy(w), "float64") for w in (source.kernel, source.bias))
            bias = bias + np.asarray(keras.ops.convert_to_numpy(grn.beta), "float64") @ kernel
            if scale is not None:
                gamma = np.asarray(keras.ops.convert_to_numpy(scale.gamma), "float64")
                kernel, bias = kernel * gamma, bias * gamma
            layer.set_weights([kernel.astype(layer.kernel.dtype), bias.astype(layer.bias.dtype)])
        elif isinstance(layer, GlobalResponseNorm):
            layer.gamma.assign(source.gamma)
        elif layer.weights:
            layer.set_weights(source.get_weights())
    return out


_PAPER = _base.Paper(
    "UniRepLKNet: A Universal Perception Large-Kernel ConvNet for Audio, Video, Point Cloud, Time-Series and Image "
    "Recognition",
    "2311.15599",
    6,
)


def _variant(name, depths, dims, num_params, paper_top1, input_size=224, builder_name=None):
    return _base.Variant(
        name,
        dict(depths=depths, dims=dims),
        num_params=num_params,
        input_size=input_size,
        # the official 384 evaluation resizes without cropping, as ConvNeXt's does
        crop_pct=0.875 if input_size == 224 else 1.0,
        paper_top1=paper_top1,
        builder_name=builder_name,
    )


# num_params: the training form (deploy=False), as built here; the README's #params are the deploy form's.
# B, L and XL have only ImageNet-22k-pretrained 1k checkpoints, evaluated at 384.
VARIANTS = (
    _variant("unireplknet_a", (2, 2, 6, 2), (40, 80, 160, 320), 4_649_060, 77.0, builder_name="UniRepLKNetA"),
    _variant("unireplknet_f", (2, 2, 6, 2), (48, 96, 192, 384), 6_489_328, 78.6, builder_name="UniRepLKNetF"),
    _variant("unireplknet_p", (2, 2, 6, 2), (64, 128, 256, 512), 11_080_520, 80.2, builder_name="UniRepLKNetP"),
    _variant("unireplknet_n", (2, 2, 8, 2), (80, 160, 320, 640), 18_818_880, 81.6, builder_name="UniRepLKNetN"),
    _variant("unireplknet_t", (3, 3, 18, 3), (80, 160, 320, 640), 31_693_420, 83.2, builder_name="UniRepLKNetT"),
    _variant("unireplknet_s", (3, 3, 27, 3), (96, 192, 384, 768), 56_456_704, 83.9, builder_name="UniRepLKNetS"),
    _variant(
        "unireplknet_b",
        (3, 3, 27, 3),
        (128, 256, 512, 1024),
        99_089_416,
        87.4,
        input_size=384,
        builder_name="UniRepLKNetB",
    ),
    _variant(
        "unireplknet_l",
        (3, 3, 27, 3),
        (192, 384, 768, 1536),
        220_076_056,
        87.9,
        input_size=384,
        builder_name="UniRepLKNetL",
    ),
    _variant(
        "unireplknet_xl",
        (3, 3, 27, 3),
        (256, 512, 1024, 2048),
        388_690_984,
        88.0,
        input_size=384,
        builder_name="UniRepLKNetXL",
    ),
)

_TINY = dict(depths=(1, 2, 2, 1), dims=(16, 32, 48, 64), kernel_sizes=((3,), (13, 5), (7, 0), (9,)))


def _fixture_kwargs(meta):
    kwargs = meta["kwargs"]
    return dict(
        depths=tuple(kwargs["depths"]),
        dims=tuple(kwargs["dims"]),
        kernel_sizes=tuple(tuple(stage) for stage in kwargs["kernel_sizes"]),
        layer_scale_init_value=kwargs["layer_scale_init_value"],
        head_init_scale=kwargs["head_init_scale"],
        deploy=kwargs["deploy"],
        num_classes=kwargs["num_classes"],
    )


ARCH = _base.Architecture(
    name="unireplknet",
    network=unireplknet,
    features=_features,
    min_size=MIN_SIZE,
    convert=convert_unireplknet,
    paper=_PAPER,
    variants=VARIANTS,
    license="Apache-2.0",
    source="https://github.com/AILab-CVC/UniRepLKNet",
    classifier="head",
    classifier_key="head.weight",
    testing=_base.Testing(tiny=dict(**_TINY, num_classes=10), min_input_size=MIN_SIZE),
    reference=_base.Reference(
        "unireplknet",
        kwargs=_fixture_kwargs,
        cases=("tiny",),
        features={f"feat/stage{i}": f"P{i + 2}" for i in range(4)},
    ),
    reparameterize=reparameterize,
)

unireplknet = ARCH.builder
