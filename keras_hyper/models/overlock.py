"""OverLoCK (Lou and Yu, "OverLoCK: An Overview-first-Look-Closely-next ConvNet with Context-Mixing Dynamic
Kernels", CVPR 2025, arXiv:2502.20087; paper 24 in PAPERS.md).

A two-path network. The Base-Net (a 4-conv stem, then stages 1-3 of RepConvBlocks: dilated re-parameterised
large-kernel depthwise convolution, squeeze-excitation, a GRN MLP) produces mid-level features; the Overview-Net
(stage 4 of RepConvBlocks) produces a coarse semantic context from them, projected to a quarter of its width.
The Focus-Net then re-processes the stage-3 features with DynamicConvBlocks: each concatenates the features with
the context (upsampled bilinearly to their size in stage 3), fuses them, and mixes tokens with ContMix, a
per-pixel dynamic kernel computed from the affinity of each pixel to a 7x7 summary of the context, plus a static
large-kernel branch; the context channels are updated block by block and downsampled with the features into
stage 4. The head classifies the concatenated features and context: 1x1 convolution + BN + SiLU, average
pooling, linear classifier. An auxiliary classifier on the overview context (deep supervision, `use_ds`) is used
for training only.

Layer names follow the official state dict with '-' for '.' (`sub_blocks3-1-lepe-0`, `head-4`).

Input `(B, H, W, 3)`, H, W >= 32; features `(B, H/32, W/32, projection)`; logits `(B, num_classes)`.
"""

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers import (
    ContMix,
    DepthwiseConv2D,
    DilatedReparamConv2D,
    DropPath,
    GlobalResponseNorm,
    SqueezeExcite,
)
from keras_hyper.layers.contmix import ResizeLike
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.torch_defaults import batch_norm, torch_padding, trunc_normal
from keras_hyper.models import _base, _fusion

LN_EPSILON = 1e-6

# OverLoCK's dilated branches per large kernel size, (kernel size, dilation): UniRepLKNet's plus extra
# undilated ones (official DilatedReparamBlock table).
BRANCHES = {
    5: ((3, 1), (3, 2)),
    7: ((5, 1), (3, 1), (3, 2), (3, 3)),
    9: ((5, 1), (7, 1), (5, 2), (3, 3), (3, 4)),
    11: ((5, 1), (7, 1), (5, 2), (3, 3), (3, 4), (3, 5)),
    13: ((5, 1), (7, 1), (7, 2), (3, 3), (3, 4), (3, 5)),
    15: ((5, 1), (7, 1), (7, 2), (3, 3), (3, 5), (3, 7)),
    17: ((5, 1), (7, 1), (9, 2), (3, 4), (3, 5), (3, 7)),
    19: ((5, 1), (7, 1), (9, 1), (9, 2), (3, 4), (3, 5), (3, 7)),
}


def _dense(units, name, use_bias=True):
    # a 1x1 convolution is a matmul over channels; Dense runs it as one on every backend
    return keras.layers.Dense(units, use_bias=use_bias, kernel_initializer=trunc_normal(), name=name)


def _conv_bn(x, filters, prefix, first, strides):
    """3x3 convolution without bias (PyTorch padding 1, symmetric also at stride 2) and its BN."""
    x, padding = torch_padding(x, 3, strides, f"{prefix}-{first}_pad")
    x = Conv2D(
        filters,
        3,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=trunc_normal(),
        name=f"{prefix}-{first}",
    )(x)
    return batch_norm(f"{prefix}-{first + 1}")(x)


def _res_dwconv(x, name):
    """`x + dwconv3x3(x)` (official ResDWConv)."""
    y = DepthwiseConv2D(3, padding="same", depthwise_initializer=trunc_normal(), name=name)(x)
    return keras.layers.Add(name=f"{name}_add")([x, y])


def _layer_scale(x, init_value, name):
    """The official LayerScale: a depthwise 1x1 convolution, i.e. a per-channel scale AND bias."""
    return DepthwiseConv2D(
        1, depthwise_initializer=keras.initializers.Constant(init_value), bias_initializer="zeros", name=name
    )(x)


def _drop_path(x, rate, name):
    return DropPath(rate, name=name)(x) if rate > 0.0 else x


def _squeeze_excite(x, name):
    return SqueezeExcite(max(16, x.shape[-1] // 8), activation="gelu", name=name)(x)


def _rep_conv_block(x, prefix, *, kernel_size, mlp_ratio, ls_init_value, res_scale, drop_path):
    dim = x.shape[-1]
    x = _res_dwconv(x, f"{prefix}-dwconv")
    y = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=f"{prefix}-proj-0")(x)
    y = DilatedReparamConv2D(
        kernel_size, BRANCHES[kernel_size], kernel_initializer=trunc_normal(), name=f"{prefix}-proj-1"
    )(y)
    y = batch_norm(f"{prefix}-proj-2")(y)
    y = _squeeze_excite(y, f"{prefix}-proj-3")
    y = _dense(int(dim * mlp_ratio), f"{prefix}-proj-4")(y)
    y = keras.layers.Activation("gelu", name=f"{prefix}-proj-5")(y)
    y = _res_dwconv(y, f"{prefix}-proj-6")
    y = GlobalResponseNorm(name=f"{prefix}-proj-7")(y)
    y = _dense(dim, f"{prefix}-proj-8")(y)
    if res_scale:
        shortcut = x if ls_init_value is None else _layer_scale(x, ls_init_value, f"{prefix}-ls")
        y = _drop_path(y, drop_path, f"{prefix}-proj-9")
    else:
        shortcut = x
        if ls_init_value is not None:
            y = _layer_scale(y, ls_init_value, f"{prefix}-ls")
        y = _drop_path(y, drop_path, f"{prefix}-proj-9")
    return keras.layers.Add(name=f"{prefix}-add")([shortcut, y])


def _residual(x, branch, prefix, tag, ls_init_value, res_scale, drop_path):
    """`ls(x) + branch` (res_scale) or `x + ls(branch)`, stochastic depth on the branch."""
    if ls_init_value is not None:
        if res_scale:
            x = _layer_scale(x, ls_init_value, f"{prefix}-ls{tag}")
        else:
            branch = _layer_scale(branch, ls_init_value, f"{prefix}-ls{tag}")
    branch = _drop_path(branch, drop_path, f"{prefix}-drop_path{tag}")
    return keras.layers.Add(name=f"{prefix}-add{tag}")([x, branch])


def _dynamic_conv_block(
    x,
    ctx,
    ctx_ref,
    prefix,
    *,
    kernel_size,
    smk_size,
    num_heads,
    mlp_ratio,
    ls_init_value,
    res_scale,
    drop_path,
    is_first,
):
    """Official DynamicConvBlock: returns its output, the features and the context concatenated."""
    dim, ctx_dim = x.shape[-1], ctx.shape[-1]
    out_dim = dim + ctx_dim
    if not is_first:
        ctx = keras.layers.Add(name=f"{prefix}-ctx_add")(
            [_layer_scale(ctx, 1.0, f"{prefix}-x_scale"), _layer_scale(ctx_ref, 1.0, f"{prefix}-h_scale")]
        )
    f = keras.layers.Concatenate(name=f"{prefix}-cat")([x, ctx])
    f = _res_dwconv(f, f"{prefix}-dwconv1")
    identity = f
    f = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=f"{prefix}-norm1")(f)
    y = DepthwiseConv2D(3, padding="same", depthwise_initializer=trunc_normal(), name=f"{prefix}-fusion-0")(f)
    y = batch_norm(f"{prefix}-fusion-1")(y)
    y = keras.layers.Activation("gelu", name=f"{prefix}-fusion-2")(y)
    y = _dense(dim, f"{prefix}-fusion-3")(y)
    y = GlobalResponseNorm(name=f"{prefix}-fusion-4")(y)

    gate = _dense(dim, f"{prefix}-gate-0", use_bias=False)(y)
    gate = batch_norm(f"{prefix}-gate-1")(gate)
    gate = keras.layers.Activation("silu", name=f"{prefix}-gate-2")(gate)
    lepe = DilatedReparamConv2D(
        kernel_size, BRANCHES[kernel_size], kernel_initializer=trunc_normal(), name=f"{prefix}-lepe-0"
    )(y)
    lepe = batch_norm(f"{prefix}-lepe-1")(lepe)

    y = ContMix(kernel_size, smk_size, 2 * num_heads, name=f"{prefix}-contmix")([y, f])
    y = _dense(dim, f"{prefix}-dyconv_proj-0", use_bias=False)(y)
    y = batch_norm(f"{prefix}-dyconv_proj-1")(y)
    y = keras.layers.Add(name=f"{prefix}-lepe_add")([y, lepe])
    y = _squeeze_excite(y, f"{prefix}-se_layer")
    y = keras.layers.Multiply(name=f"{prefix}-gate_mul")([gate, y])
    y = batch_norm(f"{prefix}-proj-0")(y)
    y = _dense(out_dim, f"{prefix}-proj-1")(y)
    x = _residual(identity, y, prefix, 1, ls_init_value, res_scale, drop_path)

    x = _res_dwconv(x, f"{prefix}-dwconv2")
    y = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=f"{prefix}-norm2")(x)
    y = _dense(int(dim * mlp_ratio), f"{prefix}-mlp-0")(y)
    y = keras.layers.Activation("gelu", name=f"{prefix}-mlp-1")(y)
    y = _res_dwconv(y, f"{prefix}-mlp-2")
    y = GlobalResponseNorm(name=f"{prefix}-mlp-3")(y)
    y = _dense(out_dim, f"{prefix}-mlp-4")(y)
    return _residual(x, y, prefix, 2, ls_init_value, res_scale, drop_path)


def _tuple(value, length, name, integers=True):
    value = tuple(value) if isinstance(value, (list, tuple)) else (value,) * length
    if len(value) != length:
        raise ValueError(f"{name} must have {length} entries, got {value!r}.")
    for v in value:
        if integers and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} entries must be positive integers, got {value!r}.")
    return value


def overlock(
    x,
    depth=(2, 2, 2, 2),
    sub_depth=(4, 2),
    embed_dim=(96, 192, 384, 768),
    kernel_size=(7, 7, 7, 7),
    mlp_ratio=(4, 4, 4, 4),
    sub_mlp_ratio=(4, 4),
    sub_num_heads=(4, 8),
    ls_init_value=(None, None, 1, 1),
    res_scale=True,
    smk_size=5,
    projection=1024,
    use_ds=False,
    drop_path_rate=0.0,
):
    """Builds an OverLoCK model (Lou and Yu, "OverLoCK: An Overview-first-Look-Closely-next ConvNet with
    Context-Mixing Dynamic Kernels", CVPR 2025, arXiv:2502.20087; official `OverLoCK` constructor arguments,
    defaults as there).

    Args:
        depth: RepConvBlocks of stages 1-4 (stage 4 is the Overview-Net).
        sub_depth: DynamicConvBlocks of the Focus-Net in stages 3 and 4.
        embed_dim: channels of stages 1-4; the context has `embed_dim[3] // 4` channels.
        kernel_size: large kernel of each stage (5, 7, ..., 19); stages 3 and 4 also size ContMix's large window.
        mlp_ratio, sub_mlp_ratio: MLP expansion of the RepConvBlocks and of the DynamicConvBlocks.
        sub_num_heads: ContMix heads of the Focus-Net stages (each window size gets `2 * sub_num_heads`).
        ls_init_value: per stage, the initial layer scale (None: none); the official LayerScale also has a bias.
        res_scale: scale the shortcut (`ls(x) + f(x)`) rather than the branch (`x + ls(f(x))`).
        smk_size: ContMix's small window.
        projection: width of the head's 1x1 convolution (the feature width without the top).
        use_ds: deep supervision: an auxiliary classifier (BN, average pooling, linear) on the overview context.
            With `include_top=True` the model then has two outputs, `[predictions, aux_predictions]`, to train
            with `loss_weights=[1, 0.4]` as the official recipe; the first is the official eval output.
            Ignored without the top. `reparameterize` drops it. Off by default (the official default is on):
            inference, `predict` and fine-tuning want one output, and the converter skips `aux_head.*`.
        drop_path_rate: stochastic depth of the last block, linear from 0 over all blocks (Focus-Net last).

    Features (the official dense-prediction backbone's four outputs, without its extra norms): `P2` and `P3`
    (strides 4, 8; `embed_dim[0]`, `embed_dim[1]` channels), the Base-Net's stages 1 and 2; `P4` (stride 16;
    `embed_dim[2] + embed_dim[3] // 4`), the Focus-Net's stage-3 features and context concatenated; `P5`
    (stride 32; `projection`), the head's projection `SiLU(BN(conv1x1(cat[features, context])))` before pooling,
    which is what `include_top=False` returns. Example:

        model = overlock(depth=(2, 2, 3, 2), embed_dim=(56, 112, 256, 336), sub_num_heads=(4, 6), num_classes=10)
        pyramid = overlock(features_only=True)               # {"P2": (B, H/4, W/4, 96), ..., "P5": ...}
    """
    depth = _tuple(depth, 4, "depth")
    sub_depth = _tuple(sub_depth, 2, "sub_depth")
    embed_dim = _tuple(embed_dim, 4, "embed_dim")
    kernel_size = _tuple(kernel_size, 4, "kernel_size")
    mlp_ratio = _tuple(mlp_ratio, 4, "mlp_ratio", False)
    sub_mlp_ratio = _tuple(sub_mlp_ratio, 2, "sub_mlp_ratio", False)
    sub_num_heads = _tuple(sub_num_heads, 2, "sub_num_heads")
    ls_init_value = _tuple(ls_init_value, 4, "ls_init_value", False)
    for k in kernel_size:
        if k not in BRANCHES:
            raise ValueError(f"kernel_size entries must be in {sorted(BRANCHES)}, got {kernel_size!r}.")
    if smk_size % 2 == 0 or smk_size < 1:
        raise ValueError(f"smk_size must be a positive odd integer, got {smk_size!r}.")
    if embed_dim[3] % 4:
        raise ValueError(f"embed_dim[3] must be divisible by 4 (the context width), got {embed_dim[3]}.")
    for dim, heads in zip(embed_dim[2:], sub_num_heads):
        if dim % (4 * heads):
            raise ValueError(
                f"embed_dim[2:]={embed_dim[2:]} must be divisible by 4 * sub_num_heads={sub_num_heads} (ContMix "
                "splits the channels into two windows of 2 * sub_num_heads heads)."
            )

    x = _conv_bn(x, embed_dim[0] // 2, "patch_embed1", 0, 2)
    x = keras.layers.Activation("gelu", name="patch_embed1-2")(x)
    x = _conv_bn(x, embed_dim[0] // 2, "patch_embed1", 3, 1)
    x = keras.layers.Activation("gelu", name="patch_embed1-5")(x)
    x = _conv_bn(x, embed_dim[0], "patch_embed1", 6, 2)
    x = keras.layers.Activation("gelu", name="patch_embed1-8")(x)
    x = _conv_bn(x, embed_dim[0], "patch_embed1", 9, 1)

    rates = _base.drop_path_rates(drop_path_rate, sum(depth) + sum(sub_depth))
    block = 0

    def stage(x, i):
        nonlocal block
        for j in range(depth[i]):
            x = _rep_conv_block(
                x,
                f"blocks{i + 1}-{j}",
                kernel_size=kernel_size[i],
                mlp_ratio=mlp_ratio[i],
                ls_init_value=ls_init_value[i],
                res_scale=res_scale,
                drop_path=rates[block],
            )
            block += 1
        return x

    features = {}
    x = features["P2"] = stage(x, 0)
    x = features["P3"] = stage(_conv_bn(x, embed_dim[1], "patch_embed2", 0, 2), 1)
    x = stage(_conv_bn(x, embed_dim[2], "patch_embed3", 0, 2), 2)
    ctx = overview = stage(_conv_bn(x, embed_dim[3], "patch_embed4", 0, 2), 3)

    ctx_ref = _dense(embed_dim[3] // 4, "high_level_proj")(ctx)
    ctx = ctx_ref_up = ResizeLike(name="high_level_up")([ctx_ref, x])
    for i, (heads, refs) in enumerate(zip(sub_num_heads, (ctx_ref_up, ctx_ref))):
        if i == 1:
            x = _conv_bn(x, embed_dim[3], "patch_embedx-x_proj", 0, 2)
            ctx = _conv_bn(ctx, embed_dim[3] // 4, "patch_embedx-h_proj", 0, 2)
        dim = x.shape[-1]
        for j in range(sub_depth[i]):
            out = _dynamic_conv_block(
                x,
                ctx,
                refs,
                f"sub_blocks{i + 3}-{j}",
                kernel_size=kernel_size[i + 2],
                smk_size=smk_size,
                num_heads=heads,
                mlp_ratio=sub_mlp_ratio[i],
                ls_init_value=ls_init_value[i + 2],
                res_scale=res_scale,
                drop_path=rates[block],
                is_first=i == 0 and j == 0,
            )
            block += 1
            # a block's output is the next one's features and context, concatenated (unused slices of the last
            # block are not part of the model)
            x, ctx = out[..., :dim], out[..., dim:]
        if i == 0:
            features["P4"] = out

    x = _dense(projection, "head-0", use_bias=False)(out)
    x = batch_norm("head-1")(x)
    features["P5"] = keras.layers.Activation("silu", name="head-2")(x)

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="head-3")(x)
        logits = _dense(num_classes, "head-4")(x)
        if not use_ds:
            return logits
        aux = batch_norm("aux_head-0")(overview)
        aux = keras.layers.GlobalAveragePooling2D(name="aux_head-1")(aux)
        # the auxiliary logits follow the main ones: a second output, with the same final activation
        return [logits, _dense(num_classes, "aux_head-2")(aux)]

    return _base.Network(features, head)


def _features(embed_dim, projection, **_):
    embed_dim = _tuple(embed_dim, 4, "embed_dim")
    return _base.pyramid([embed_dim[0], embed_dim[1], embed_dim[2] + embed_dim[3] // 4, projection])


def convert_overlock(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official OverLoCK state dict (training form, as
    released: DilatedReparamBlocks unmerged).

    Strict: every tensor is consumed, except BatchNorm's `num_batches_tracked` (a training counter) and, when
    the model was built with `use_ds=False`, the auxiliary head `aux_head.*` (training-only deep supervision,
    unused by the eval output).
    """
    has_aux = any(layer.name.startswith("aux_head") for layer in model.layers)
    ignore = () if has_aux else (r"aux_head\..*",)
    m = mapping.StateDictMapper(state_dict, model, ignore=ignore)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if isinstance(layer, ContMix):
            block = key.rsplit(".", 1)[0]
            m.dense(layer.query, f"{block}.weight_query.0")
            m.batch_norm(layer.query_norm, f"{block}.weight_query.1")
            m.dense(layer.key, f"{block}.weight_key.1")
            m.batch_norm(layer.key_norm, f"{block}.weight_key.2")
            m.dense(layer.proj, f"{block}.weight_proj")
            m.assign(layer.rpb_small, f"{block}.rpb1")
            m.assign(layer.rpb_large, f"{block}.rpb2")
        elif isinstance(layer, DilatedReparamConv2D):
            names = ["lk_origin"] + [f"dil_conv_k{k}_{r}" for k, r in layer.branches]
            norms = ["origin_bn"] + [f"dil_bn_k{k}_{r}" for k, r in layer.branches]
            for kernel, norm, conv_name, norm_name in zip(layer.kernels, layer.norms, names, norms):
                m.assign(kernel, f"{key}.{conv_name}.weight", mapping.depthwise_kernel)
                m.batch_norm(norm, f"{key}.{norm_name}")
        elif isinstance(layer, SqueezeExcite):
            m.dense(layer.reduce, f"{key}.proj.1")
            m.dense(layer.expand, f"{key}.proj.3")
        elif isinstance(layer, GlobalResponseNorm):
            m.assign(layer.gamma, f"{key}.gamma", np.ravel)
            m.assign(layer.beta, f"{key}.beta", np.ravel)
        else:
            m.standard(layer, key)
    m.finish()


def reparameterize(model):
    """The inference model: the training-only auxiliary output dropped (if any), every DilatedReparamConv2D
    merged into one depthwise convolution and every ContMix's query/key BatchNormalization folded (`fuse()`),
    then every BatchNormalization next to a convolution or Dense folded into it (this also folds the BN after
    each merged large kernel, which the official `reparam()` keeps). Same outputs up to float rounding; keep the
    original for training."""
    if len(model.outputs) > 1:
        model = keras.Model(model.inputs, model.outputs[0], name=model.name)
    return _fusion.reparameterize(model)


def _fixture_kwargs(meta):
    official = meta["kwargs"]
    keys = (
        "depth",
        "sub_depth",
        "embed_dim",
        "kernel_size",
        "mlp_ratio",
        "sub_mlp_ratio",
        "sub_num_heads",
        "ls_init_value",
        "res_scale",
        "smk_size",
        "projection",
        "drop_path_rate",
    )
    # the eval output is the main head's; the fixture's aux_head tensors are ignored by the converter
    return {**{k: official[k] for k in keys}, "use_ds": False}


_PAPER = _base.Paper(
    "OverLoCK: An Overview-first-Look-Closely-next ConvNet with Context-Mixing Dynamic Kernels", "2502.20087", 24
)

_FULL = dict(kernel_size=(17, 15, 13, 7), mlp_ratio=(4, 4, 4, 4), sub_mlp_ratio=(3, 3))

# num_params is the single-output model's (use_ds=False). The official counts include the training-only aux head
# (BN + Linear on the embed_dim[3]-channel overview context): see test_official_counts_add_the_aux_head.

VARIANTS = (
    _base.Variant(
        "overlock_xt",
        dict(depth=(2, 2, 3, 2), sub_depth=(6, 2), embed_dim=(56, 112, 256, 336), sub_num_heads=(4, 6), **_FULL),
        num_params=16_969_600,
        crop_pct=0.925,
        paper_top1=82.7,
        builder_name="OverLoCKXT",
    ),
    _base.Variant(
        "overlock_t",
        dict(depth=(4, 4, 6, 2), sub_depth=(12, 2), embed_dim=(64, 128, 256, 512), sub_num_heads=(4, 8), **_FULL),
        num_params=34_476_448,
        crop_pct=0.95,
        paper_top1=84.2,
        builder_name="OverLoCKT",
    ),
    _base.Variant(
        "overlock_s",
        dict(depth=(6, 6, 8, 3), sub_depth=(16, 3), embed_dim=(64, 128, 320, 512), sub_num_heads=(8, 16), **_FULL),
        num_params=57_795_748,
        crop_pct=0.95,
        paper_top1=84.8,
        builder_name="OverLoCKS",
    ),
    _base.Variant(
        "overlock_b",
        dict(depth=(8, 8, 10, 4), sub_depth=(20, 4), embed_dim=(80, 160, 384, 576), sub_num_heads=(6, 9), **_FULL),
        num_params=97_434_816,
        crop_pct=0.975,
        paper_top1=85.1,
        builder_name="OverLoCKB",
    ),
)

ARCH = _base.Architecture(
    name="overlock",
    network=overlock,
    features=_features,
    min_size=32,
    convert=convert_overlock,
    paper=_PAPER,
    variants=VARIANTS,
    license="Apache-2.0",
    source="https://github.com/LMMMEng/OverLoCK",
    classifier="head-4",
    classifier_key="head.4.weight",
    testing=_base.Testing(
        tiny=dict(
            depth=(1, 1, 1, 1),
            sub_depth=(2, 2),
            embed_dim=(16, 32, 48, 64),
            kernel_size=(9, 7, 5, 5),
            sub_mlp_ratio=(3, 3),
            sub_num_heads=(2, 2),
            projection=64,
            num_classes=10,
        ),
        # At the tiny 32x32 input the Focus-Net's stage-4 map is 1x1: ContMix resizes it to a constant K x K map, where
        # every window averages equal values whatever the attention, so the query/key projections and their norms get
        # no gradient but rounding (~1e-12). The kernels and betas, small numbers, still move by that; the gammas, at
        # 1.0, do not.
        zero_grad_at_init=tuple(
            f"sub_blocks4-{i}-contmix/{norm}_norm/gamma" for i in range(2) for norm in ("query", "key")
        ),
    ),
    reference=_base.Reference(
        "overlock",
        kwargs=_fixture_kwargs,
        # the fixture's other taps (the Base-Net's stage 3, the overview context, the Focus-Net's output) are no
        # backbone features: tests/models/test_overlock.py compares them
        features={"feat/pre_stage2": "P3"},
    ),
    reparameterize=reparameterize,
)

overlock = ARCH.builder
