"""AttNet ("Attentive Convolution: Unifying the Expressivity of Self-Attention with Convolutional
Efficiency", arXiv:2510.20092; paper 44 in PAPERS.md).

A four-stage convolutional network: a stem of two 3x3 stride-2 convolutions (+ BN, GELU between), a 3x3
stride-2 convolution + BN before each later stage, and blocks

    x = x + ls1(ATConv(LN(x)))
    x = x + ls2(GLU(LN(x)))

whose token mixer is `keras_hyper.layers.ATConv` (per-sample generated 3x3 or 5x5 depthwise kernels) and whose
channel mixer is a gated MLP: `fc1` to `2h` channels, split into `a, v`, `fc2(RMSNorm(act(dwconv(a)) * v))`
(the depthwise 3x3 and the RMSNorm are optional per stage). The head is global average pooling, LayerNorm and
a Linear classifier. Layer names follow the official state dict with '-' for '.' (`downsample_layers-0-2-0`,
`stages-2-3-token_mixer`, `head`), so that the converter is a direct map.

Input `(B, H, W, 3)` with H, W >= 32; features `(B, ceil(H/32), ceil(W/32), dims[-1])`; logits
`(B, num_classes)`. With `include_top=False` the final LayerNorm belongs to the head and is left out.
"""

import keras

from keras_hyper.convert import mapping
from keras_hyper.layers import ATConv, DepthwiseConv2D, DropPath, LayerScale
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.torch_defaults import batch_norm, torch_padding, trunc_normal
from keras_hyper.models import _base


def _conv_bn(x, dim, prefix):
    """3x3 stride-2 convolution with PyTorch's symmetric padding 1, then BatchNormalization; weights at
    `<prefix>.0`, `<prefix>.1`."""
    x, padding = torch_padding(x, 3, 2, f"{prefix}-pad")
    x = Conv2D(
        dim, 3, strides=2, padding=padding, use_bias=False, kernel_initializer=trunc_normal(), name=f"{prefix}-0"
    )(x)
    return batch_norm(f"{prefix}-1")(x)


def _glu(x, prefix, *, hidden, dconv, norm, activation):
    dim = x.shape[-1]
    x = keras.layers.Dense(2 * hidden, kernel_initializer=trunc_normal(), name=f"{prefix}-fc1")(x)
    a, v = keras.ops.split(x, 2, axis=-1)
    if dconv:
        a = DepthwiseConv2D(3, padding="same", depthwise_initializer=trunc_normal(), name=f"{prefix}-dwconv")(a)
    a = keras.layers.Activation(activation, name=f"{prefix}-act")(a)
    x = keras.layers.Multiply(name=f"{prefix}-gate")([a, v])
    if norm:
        x = keras.layers.RMSNormalization(epsilon=1e-6, name=f"{prefix}-norm_layer")(x)
    return keras.layers.Dense(dim, kernel_initializer=trunc_normal(), name=f"{prefix}-fc2")(x)


def _residual(x, branch, prefix, index, *, layer_scale, drop_path):
    if layer_scale is not None:
        branch = LayerScale(layer_scale, name=f"{prefix}-layer_scale_{index}")(branch)
    if drop_path > 0.0:
        branch = DropPath(drop_path, name=f"{prefix}-drop_path_{index}")(branch)
    return keras.layers.Add(name=f"{prefix}-add_{index}")([x, branch])


def _block(x, prefix, *, kernel_size, hidden, conv_bias, layer_scale, dconv, norm, activation, drop_path):
    residual = dict(layer_scale=layer_scale, drop_path=drop_path)
    y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"{prefix}-norm_1")(x)
    y = ATConv(
        kernel_size,
        use_bias=conv_bias,
        activation=activation,
        kernel_initializer=trunc_normal(),
        name=f"{prefix}-token_mixer",
    )(y)
    x = _residual(x, y, prefix, 1, **residual)
    y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"{prefix}-norm_2")(x)
    y = _glu(y, f"{prefix}-channel_mixer", hidden=hidden, dconv=dconv, norm=norm, activation=activation)
    return _residual(x, y, prefix, 2, **residual)


def _per_stage(name, value, stages):
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * stages
    if len(values) != stages:
        raise ValueError(f"{name} must have one entry per stage ({stages}), got {value!r}.")
    return values


def attnet(
    x,
    depths=(2, 2, 6, 2),
    dims=(64, 128, 256, 512),
    exp_rates=(4, 4, 4, 4),
    kernel_sizes=(5, 5, 5, 5),
    conv_bias=True,
    use_layer_scale=True,
    layer_scale_init_value=1e-6,
    glu_dconv=(True, True, True, True),
    glu_norm=(True, True, True, True),
    activation="gelu",
    drop_path_rate=0.0,
):
    """Builds an AttNet model ("Attentive Convolution: Unifying the Expressivity of Self-Attention with
    Convolutional Efficiency", arXiv:2510.20092). The defaults are the official `AttNet` constructor's;
    `from_official` maps that constructor's kwargs to these.

    Args:
        depths: blocks per stage.
        dims: channels per stage (the stem's first convolution has `dims[0] // 2`).
        exp_rates: per stage, the GLU's hidden width is `int(2 * int(dim * exp_rate) / 3)` (a number: every
            stage).
        kernel_sizes: odd ATConv kernel size per stage (a number: every stage).
        conv_bias: biases of the ATConv projections.
        use_layer_scale: per-channel scales on both residual branches.
        layer_scale_init_value: their initial value (the official LayerScale's `init_value`, fixed at 1e-6
            there). With the official init the branches then start some 1e-10 small, too small for one
            optimiser step to move the normalisations before them in float32; the harness' tiny model starts
            at 1.
        glu_dconv: per stage, a 3x3 depthwise convolution on the GLU's gated half (a bool: every stage).
        glu_norm: per stage, an RMSNorm (eps 1e-6) before the GLU's `fc2` (a bool: every stage).
        activation: the official `act_layer` (stem, ATConv kernel generation, GLU gate); GELU (exact erf).
        drop_path_rate: stochastic depth rate of the last block, rising linearly from 0 over all blocks as
            in the official schedule.

    Features: one per stage, its last block's output: `P2`, `P3`, ... (strides 4, 8, ...; `dims` channels; P2..P5
    for the four official stages). The head's LayerNorm follows its pooling, so the last feature is not
    normalised. Example:

        model = attnet(depths=(2, 2, 4, 2), dims=(32, 64, 128, 240), num_classes=10)
        pyramid = attnet(features_only=True)                 # {"P2": (B, H/4, W/4, 64), ..., "P5": ...}
    """
    depths, dims = _base.stage_args(depths, dims)
    stages = len(depths)
    exp_rates = _per_stage("exp_rates", exp_rates, stages)
    kernel_sizes = _per_stage("kernel_sizes", kernel_sizes, stages)
    glu_dconv = _per_stage("glu_dconv", glu_dconv, stages)
    glu_norm = _per_stage("glu_norm", glu_norm, stages)
    hidden = [int(2 * int(dim * rate) / 3) for dim, rate in zip(dims, exp_rates)]
    if min(hidden) < 1:
        raise ValueError(f"exp_rates {exp_rates} leave a GLU without hidden channels for dims {dims}.")

    x = _conv_bn(x, dims[0] // 2, "downsample_layers-0-0")
    x = keras.layers.Activation(activation, name="downsample_layers-0-1")(x)
    x = _conv_bn(x, dims[0], "downsample_layers-0-2")

    features = {}
    rates = _base.drop_path_rates(drop_path_rate, sum(depths))
    block = 0
    for i, depth in enumerate(depths):
        if i > 0:
            x = _conv_bn(x, dims[i], f"downsample_layers-{i}")
        for j in range(depth):
            x = _block(
                x,
                f"stages-{i}-{j}",
                kernel_size=kernel_sizes[i],
                hidden=hidden[i],
                conv_bias=conv_bias,
                layer_scale=layer_scale_init_value if use_layer_scale else None,
                dconv=glu_dconv[i],
                norm=glu_norm[i],
                activation=activation,
                drop_path=rates[block],
            )
            block += 1
        features[f"P{i + 2}"] = x

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
        x = keras.layers.LayerNormalization(epsilon=1e-5, name="norm")(x)
        return keras.layers.Dense(num_classes, kernel_initializer=trunc_normal(), name="head")(x)

    return _base.Network(features, head)


# The official `act_layer` classes with a Keras activation of the same function (GELU: exact erf in both).
_ACTIVATIONS = {"GELU": "gelu", "ReLU": "relu", "SiLU": "silu"}
_PER_STAGE = ("depths", "dims", "exp_rates", "kernel_sizes", "glu_dconv", "glu_norm")
_SCALARS = ("num_classes", "drop_path_rate", "conv_bias", "use_layer_scale")


def from_official(kwargs):
    """The builder kwargs of the official `AttNet(**kwargs)` (models/AttNet.py; its constructor arguments, e.g.
    an `AttNet_T2` config or a reference fixture's `kwargs`). Arguments it leaves out take the builder's
    defaults, which are the official constructor's.

    `act_layer` is a class (`nn.GELU`) or its name ("torch.nn.GELU", also with a note after it as the fixtures
    record it); `distillation` is accepted and dropped, as the official model builds nothing for it. Other
    arguments are refused: the official constructor would silently swallow them, so they are more likely a typo
    than intended.
    """
    kwargs = dict(kwargs)
    kwargs.pop("distillation", None)
    unknown = sorted(set(kwargs) - {*_PER_STAGE, *_SCALARS, "act_layer"})
    if unknown:
        raise ValueError(f"AttNet takes no argument(s) {unknown} (the official constructor ignores them silently).")
    out = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in kwargs.items() if k != "act_layer"}
    if "act_layer" in kwargs:
        act = kwargs["act_layer"]
        name = getattr(act, "__name__", str(act).split()[0]).rsplit(".", 1)[-1]
        if name not in _ACTIVATIONS:
            raise ValueError(f"act_layer {act!r} has no Keras counterpart here; supported: {sorted(_ACTIVATIONS)}.")
        out["activation"] = _ACTIVATIONS[name]
    return out


def convert_attnet(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official AttNet state dict.

    Strict: every tensor is consumed (BatchNorm's `num_batches_tracked` is a training counter and is ignored)
    and every model variable is assigned; shapes are checked against both names.
    """
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if m.standard(layer, key):
            continue
        if isinstance(layer, keras.layers.RMSNormalization):
            m.assign(layer.scale, f"{key}.weight")
        elif isinstance(layer, LayerScale):
            m.assign(layer.gamma, f"{key}.gamma")
        elif isinstance(layer, ATConv):
            for proj in ("kernel_proj", "kernel_gen", "x_proj", "proj"):
                # 1x1 convolutions (out, in, 1, 1) and the Linear kernel_gen (out, in) are all (in, out) here
                m.assign(getattr(layer, f"{proj}_kernel"), f"{key}.{proj}.weight", mapping.dense_kernel)
                if layer.use_bias:
                    m.assign(getattr(layer, f"{proj}_bias"), f"{key}.{proj}.bias")
            m.assign(layer.difference_control, f"{key}.difference_control")
    m.finish()


_PAPER = _base.Paper(
    "Attentive Convolution: Unifying the Expressivity of Self-Attention with Convolutional Efficiency", "2510.20092", 44
)

# The official entry points (AttNet_XXS ... AttNet_T4) with their training drop-path rates; T1-T4 keep the
# constructor's glu_norm and use_layer_scale defaults.
_SMALL = dict(exp_rates=(8, 8, 4, 4), kernel_sizes=3, glu_dconv=True)
VARIANTS = (
    _base.Variant(
        "attnet_xxs",
        dict(
            depths=(2, 2, 4, 2),
            dims=(32, 64, 128, 240),
            **_SMALL,
            glu_norm=False,
            use_layer_scale=False,
            drop_path_rate=0.02,
        ),
        num_params=2_853_556,
        builder_name="AttNetXXS",
    ),
    _base.Variant(
        "attnet_xs",
        dict(depths=(2, 2, 7, 2), dims=(40, 80, 160, 320), **_SMALL, glu_norm=False, drop_path_rate=0.02),
        num_params=5_554_902,
        builder_name="AttNetXS",
    ),
    _base.Variant(
        "attnet_s",
        dict(
            depths=(2, 3, 10, 3),
            dims=(40, 80, 160, 320),
            **_SMALL,
            glu_norm=False,
            use_layer_scale=False,
            drop_path_rate=0.1,
        ),
        num_params=7_681_316,
        builder_name="AttNetS",
    ),
    _base.Variant(
        "attnet_t1",
        dict(depths=(2, 3, 12, 3), dims=(48, 96, 224, 384), **_SMALL, drop_path_rate=0.1),
        num_params=13_714_900,
        builder_name="AttNetT1",
    ),
    _base.Variant(
        "attnet_t2",
        dict(depths=(3, 3, 16, 3), dims=(64, 128, 288, 512), **_SMALL, drop_path_rate=0.2),
        num_params=27_010_782,
        paper_top1=84.4,
        builder_name="AttNetT2",
    ),
    _base.Variant(
        "attnet_t3",
        dict(depths=(4, 4, 26, 4), dims=(72, 144, 320, 576), **_SMALL, drop_path_rate=0.4),
        num_params=49_175_682,
        builder_name="AttNetT3",
    ),
    _base.Variant(
        "attnet_t4",
        dict(depths=(5, 5, 28, 5), dims=(96, 192, 384, 768), **_SMALL, drop_path_rate=0.5),
        num_params=87_320_214,
        builder_name="AttNetT4",
    ),
)

ARCH = _base.Architecture(
    name="attnet",
    network=attnet,
    features=_base.convnext_features,
    min_size=lambda depths, **_: 2 ** (len(depths) + 1),
    convert=convert_attnet,
    paper=_PAPER,
    variants=VARIANTS,
    license="MIT",
    source="https://github.com/price112/Attentive-Convolution",
    classifier="head",
    classifier_key="head.weight",
    testing=_base.Testing(
        tiny=dict(
            depths=(1, 1, 2, 1),
            dims=(16, 32, 48, 64),
            exp_rates=(4, 4, 2, 2),
            kernel_sizes=(3, 5, 3, 5),
            glu_dconv=(True, False, True, True),
            glu_norm=(True, True, False, False),
            layer_scale_init_value=1.0,
            num_classes=10,
        ),
    ),
    reference=_base.Reference(
        "attnet",
        # the fixture's kwargs are the official constructor's
        kwargs=lambda meta: from_official(meta["kwargs"]),
        features={f"feat/stage{i}": f"P{i + 2}" for i in range(4)},
    ),
)

attnet = ARCH.builder
