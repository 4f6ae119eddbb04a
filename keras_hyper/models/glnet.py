"""GLNet (Zhu, Wang, Zhang, Lau, "Revisiting the Integration of Convolution and Attention for Vision Backbone",
NeurIPS 2024, arXiv:2411.14429; paper 9 in PAPERS.md).

A four-stage hierarchical network (total stride 32). Each stage is preceded by a downsampling layer
(overlapped: a two-convolution deep stem and 3x3 stride-2 transitions; or non-overlapped: a 4x4 stride-4 stem
and 2x2 stride-2 transitions) and made of blocks of one of four kinds (`mixing_modes`, one per stage):

- `glmix`: GLMix block, `x += cpe(x)`, then `x + ls1(SoftClusterAttention(LN(x)) + conv_branch(LN(x)))`,
  the conv branch being 1x1 -> depthwise kxk -> 1x1, then `x + ls2(MLP(LN(x)))`;
- `mha_nchw`: `x += cpe(x)`, `x + ls1(MHSA(LN(x)))`, `x + ls2(MLP(LN(x)))` with a convolutional MLP;
- `glmix.mha_nchw`: the two above alternating (even blocks GLMix);
- `mha`: plain transformer blocks (no cpe, a Linear MLP).

The convolutional MLP is 1x1 -> [x + depthwise 3x3(x) with `mlp_dw`] -> GELU -> 1x1. Block norms are channel
LayerNorms (eps 1e-6); the downsampling layers and the pre-head norm are BatchNorms. The head is BN, global
mean, Linear; the token-labeling variants (`token_labeling=True`) add `0.5 * max over tokens` of an auxiliary
Linear head, their evaluation output. Layer names follow the official state dict with '-' for '.'
(`stages-1-blocks-0-mlp-3` for `stages.1.blocks.0.mlp.3`).

Input `(B, H, W, 3)` with H, W >= 32; features `(B, H/32, W/32, C_last)`; logits `(B, num_classes)`.
"""

import keras

from keras_hyper.convert import mapping
from keras_hyper.layers import DepthwiseConv2D, DropPath, LayerScale
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.glmix import MultiHeadSelfAttention, SoftClusterAttention
from keras_hyper.layers.torch_defaults import batch_norm, torch_padding, trunc_normal
from keras_hyper.models import _base

MIXING_MODES = ("glmix", "glmix.mha_nchw", "mha_nchw", "mha")
DOWNSAMPLE_STYLES = ("ovlp", "non_ovlp")
TRANSITION_LAYOUTS = ("proj.norm", "norm.proj")
LN_EPSILON = 1e-6


def _layer_norm(x, name):
    return keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=name)(x)


def _conv(x, filters, kernel, stride, name):
    """A biased strided convolution; 3x3 stride-2 ones pad 1 on every side as PyTorch, patchifying ones none."""
    x, padding = torch_padding(x, kernel, stride, f"{name}-pad")
    return Conv2D(filters, kernel, strides=stride, padding=padding, name=name)(x)


def _downsample(x, index, dim, style, layout):
    prefix = f"downsample_layers-{index}"
    if index == 0:
        if style == "ovlp":  # the official deep stem; item 0 is the (unused) dual patch norm
            x = _conv(x, dim // 2, 3, 2, f"{prefix}-1")
            x = batch_norm(f"{prefix}-2")(x)
            x = keras.layers.Activation("gelu", name=f"{prefix}-3")(x)
            x = _conv(x, dim, 3, 2, f"{prefix}-4")
            return batch_norm(f"{prefix}-5")(x)
        x = _conv(x, dim, 4, 4, f"{prefix}-0")
        return batch_norm(f"{prefix}-1")(x)
    kernel = 3 if style == "ovlp" else 2
    if layout == "norm.proj":
        x = batch_norm(f"{prefix}-0")(x)
        return _conv(x, dim, kernel, 2, f"{prefix}-1")
    x = _conv(x, dim, kernel, 2, f"{prefix}-0")
    return batch_norm(f"{prefix}-1")(x)


def _residual(x, y, prefix, index, layerscale, drop_path):
    if layerscale > 0:
        y = LayerScale(layerscale, name=f"{prefix}-ls{index}")(y)
    if drop_path > 0:
        y = DropPath(drop_path, name=f"{prefix}-drop_path{index}")(y)
    return keras.layers.Add(name=f"{prefix}-add{index}")([x, y])


def _cpe(x, prefix, kernel):
    if kernel <= 0:
        return x
    y = DepthwiseConv2D(kernel, padding="same", name=f"{prefix}-pos_conv")(x)
    return keras.layers.Add(name=f"{prefix}-pos_add")([x, y])


def _conv_mlp(x, prefix, hidden, mlp_dw):
    """The NCHW blocks' MLP: 1x1 -> [x + dw3x3(x)] -> GELU -> 1x1 (Sequential items 0, 1, 2, 3)."""
    dim = x.shape[-1]
    x = keras.layers.Dense(hidden, name=f"{prefix}-0")(x)
    if mlp_dw:
        y = DepthwiseConv2D(3, padding="same", name=f"{prefix}-1")(x)
        x = keras.layers.Add(name=f"{prefix}-1-add")([x, y])
    x = keras.layers.Activation("gelu", name=f"{prefix}-2")(x)
    return keras.layers.Dense(dim, name=f"{prefix}-3")(x)


def _glmix_block(x, prefix, *, num_heads, mlp_ratio, num_slots, slot_init, local_dw_ks, cpe_ks, mlp_dw, ls, dp):
    dim = x.shape[-1]
    source = x  # the slots pool the raw block input, before cpe and norm
    x = _cpe(x, prefix, cpe_ks)
    y = _layer_norm(x, f"{prefix}-norm1")
    mixer = SoftClusterAttention(num_heads, num_slots, slot_init, name=f"{prefix}-glmix")
    out = mixer([y, source]) if slot_init == "ada_avgpool" else mixer(y)
    if local_dw_ks > 0:
        local = keras.layers.Dense(dim, name=f"{prefix}-feature_conv-0")(y)
        local = DepthwiseConv2D(local_dw_ks, padding="same", name=f"{prefix}-feature_conv-1")(local)
        local = keras.layers.Dense(dim, name=f"{prefix}-feature_conv-2")(local)
        out = keras.layers.Add(name=f"{prefix}-mix_add")([out, local])
    x = _residual(x, out, prefix, 1, ls, dp)
    y = _conv_mlp(_layer_norm(x, f"{prefix}-norm2"), f"{prefix}-mlp", int(mlp_ratio * dim), mlp_dw)
    return _residual(x, y, prefix, 2, ls, dp)


def _mhsa_block(x, prefix, *, num_heads, mlp_ratio, cpe_ks, mlp_dw, ls, dp, conv_mlp):
    """MHSA_NCHW_Block (`conv_mlp=True`) or MHSA_Block (the 'mha' stage: no cpe, a Linear MLP)."""
    dim = x.shape[-1]
    x = _cpe(x, prefix, cpe_ks)
    y = MultiHeadSelfAttention(num_heads, name=f"{prefix}-mha_op")(_layer_norm(x, f"{prefix}-norm1"))
    x = _residual(x, y, prefix, 1, ls, dp)
    y = _layer_norm(x, f"{prefix}-norm2")
    hidden = int(mlp_ratio * dim)
    if conv_mlp:
        y = _conv_mlp(y, f"{prefix}-mlp", hidden, mlp_dw)
    else:
        y = keras.layers.Dense(hidden, kernel_initializer=trunc_normal(), name=f"{prefix}-mlp-0")(y)
        y = keras.layers.Activation("gelu", name=f"{prefix}-mlp-1")(y)
        y = keras.layers.Dense(dim, kernel_initializer=trunc_normal(), name=f"{prefix}-mlp-2")(y)
    return _residual(x, y, prefix, 2, ls, dp)


def glnet(
    x,
    depth=(2, 2, 6, 2),
    embed_dim=(96, 192, 384, 768),
    head_dim=32,
    mlp_ratios=(4, 4, 4, 4),
    mixing_modes=("glmix", "glmix", "glmix", "mha"),
    local_dw_ks=5,
    slot_init="ada_avgpool",
    num_slots=64,
    cpe_ks=0,
    downsample_style="non_ovlp",
    transition_layout="norm.proj",
    mlp_dw=False,
    layerscale=-1.0,
    token_labeling=False,
    drop_path_rate=0.0,
):
    """Builds a GLNet model (Zhu et al., "Revisiting the Integration of Convolution and Attention for Vision
    Backbone", NeurIPS 2024, arXiv:2411.14429): the official `GLNet` with BatchNorm downsampling, as every
    official variant. The defaults are `glnet_stl`'s configuration (the official constructor's own defaults mix
    learned slots with the 'proj.norm' layout and LayerNorm downsampling, a combination no variant uses).

    Args:
        depth: blocks per stage (4 stages).
        embed_dim: channels per stage.
        head_dim: channels per attention head (heads = channels // head_dim, in the slot and token attention).
        mlp_ratios: MLP expansion per stage.
        mixing_modes: block kind per stage, each one of `MIXING_MODES`.
        local_dw_ks: kernel of the GLMix local branch's depthwise convolution (an int, or one per stage);
            0 drops the local branch.
        slot_init: `"ada_avgpool"` (slots pooled from the block input) or `"param"` (learned slots).
        num_slots: slots per GLMix block (a square number with `"ada_avgpool"`).
        cpe_ks: kernel of the depthwise convolutional position encoding of GLMix and MHSA_NCHW blocks (0: none).
        downsample_style: `"ovlp"` (deep 3x3 stem, 3x3 stride-2 transitions) or `"non_ovlp"` (4x4 / 2x2 patches).
        transition_layout: `"proj.norm"` or `"norm.proj"`, the order in the transitions between stages.
        mlp_dw: add the residual depthwise 3x3 convolution in the convolutional MLPs.
        layerscale: initial layer scale of every residual branch; <= 0 means none.
        token_labeling: the token-labeling model (`GLNet_tklb`): logits `head(mean) + 0.5 * max_tokens(aux)`.
        drop_path_rate: stochastic depth, linear from 0 over all blocks.

    Features: `P2`..`P4` (strides 4, 8, 16), the first three stages' last blocks, and `P5` (stride 32), the
    last stage after the pre-head BatchNorm `norm` (what the head pools); `embed_dim` channels. Example:

        model = glnet(embed_dim=(64, 128, 256, 512), num_classes=10)
        pyramid = glnet(features_only=True)                  # {"P2": (B, H/4, W/4, 96), ..., "P5": ...}
    """
    depth, embed_dim = _stages(depth, embed_dim)
    mlp_ratios, mixing_modes = tuple(mlp_ratios), tuple(mixing_modes)
    if len(mlp_ratios) != 4:
        raise ValueError(f"mlp_ratios must have 4 entries (one per stage), got {mlp_ratios}.")
    if len(mixing_modes) != 4 or any(m not in MIXING_MODES for m in mixing_modes):
        raise ValueError(f"mixing_modes must be 4 entries from {MIXING_MODES}, got {mixing_modes}.")
    if not isinstance(head_dim, int) or head_dim < 1 or any(d % head_dim for d in embed_dim):
        raise ValueError(f"head_dim must be a positive integer dividing every embed_dim {embed_dim}, got {head_dim!r}.")
    local_dw_ks = (local_dw_ks,) * 4 if isinstance(local_dw_ks, int) else tuple(local_dw_ks)
    if len(local_dw_ks) != 4 or any(k < 0 or (k and k % 2 == 0) for k in local_dw_ks):
        raise ValueError(f"local_dw_ks must be 0 or odd, an int or one per stage, got {local_dw_ks}.")
    if cpe_ks < 0 or (cpe_ks and cpe_ks % 2 == 0):
        raise ValueError(f"cpe_ks must be 0 or an odd kernel size, got {cpe_ks!r}.")
    if downsample_style not in DOWNSAMPLE_STYLES:
        raise ValueError(f"downsample_style must be one of {DOWNSAMPLE_STYLES}, got {downsample_style!r}.")
    if transition_layout not in TRANSITION_LAYOUTS:
        raise ValueError(f"transition_layout must be one of {TRANSITION_LAYOUTS}, got {transition_layout!r}.")
    if embed_dim[0] % 2 and downsample_style == "ovlp":
        raise ValueError(f"The overlapped stem halves embed_dim[0]: it must be even, got {embed_dim[0]}.")
    rates = _base.drop_path_rates(drop_path_rate, sum(depth))

    features = {}
    block = 0
    for stage in range(4):
        x = _downsample(x, stage, embed_dim[stage], downsample_style, transition_layout)
        heads = embed_dim[stage] // head_dim
        for i in range(depth[stage]):
            prefix = f"stages-{stage}-blocks-{i}"
            mode = mixing_modes[stage]
            common = dict(num_heads=heads, mlp_ratio=mlp_ratios[stage], ls=layerscale, dp=rates[block])
            if mode == "glmix" or (mode == "glmix.mha_nchw" and i % 2 == 0):
                x = _glmix_block(
                    x,
                    prefix,
                    num_slots=num_slots,
                    slot_init=slot_init,
                    local_dw_ks=local_dw_ks[stage],
                    cpe_ks=cpe_ks,
                    mlp_dw=mlp_dw,
                    **common,
                )
            elif mode == "mha":
                x = _mhsa_block(x, prefix, cpe_ks=0, mlp_dw=False, conv_mlp=False, **common)
            else:
                x = _mhsa_block(x, prefix, cpe_ks=cpe_ks, mlp_dw=mlp_dw, conv_mlp=True, **common)
            block += 1
        if stage < 3:
            features[f"P{stage + 2}"] = x
    # the deepest feature is what the head pools (and `include_top=False` returned): the last stage normalised
    features["P5"] = batch_norm("norm")(x)

    def head(x, num_classes):
        logits = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        logits = keras.layers.Dense(num_classes, kernel_initializer=trunc_normal(), name="head")(logits)
        if token_labeling:
            aux = keras.layers.Dense(num_classes, kernel_initializer=trunc_normal(), name="tklb_aux_head")(x)
            aux = keras.layers.GlobalMaxPooling2D(name="tklb_aux_max")(aux)
            aux = keras.layers.Rescaling(0.5, name="tklb_aux_scale")(aux)
            logits = keras.layers.Add(name="tklb_add")([logits, aux])
        return logits

    return _base.Network(features, head)


def _stages(depth, embed_dim):
    depth, embed_dim = tuple(depth), tuple(embed_dim)
    for label, value in (("depth", depth), ("embed_dim", embed_dim)):
        if len(value) != 4:
            raise ValueError(f"{label} must have 4 entries (one per stage), got {value}.")
    if any(not isinstance(d, int) or d < 1 for d in depth):
        raise ValueError(f"depth must hold positive integers, got {depth}.")
    return depth, embed_dim


def _features(depth, embed_dim, **_):
    _, embed_dim = _stages(depth, embed_dim)
    return _base.pyramid(embed_dim)


def _flat(value):
    return value.reshape(-1)


def convert_glnet(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official GLNet / GLNet_tklb state dict.

    Strict: every tensor is consumed (BatchNorm's `num_batches_tracked` is a training counter and is ignored)
    and every model variable is assigned; shapes are checked against both names.
    """
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if m.standard(layer, key):
            continue
        if isinstance(layer, LayerScale):
            m.assign(layer.gamma, f"{key}.gamma", _flat)
        elif isinstance(layer, MultiHeadSelfAttention):
            _attention(m, layer, key)
        elif isinstance(layer, SoftClusterAttention):
            block = key.rsplit(".", 1)[0]
            m.assign(layer.slot_scale, f"{block}.slot_scale")
            if layer.slot_init == "param":
                m.assign(layer.init_slots, f"{block}.init_slots")
            _attention(m, layer.attention, f"{block}.relation_mha")
    m.finish()


def _attention(m, layer, key):
    m.assign(layer.qkv_kernel, f"{key}.in_proj_weight", mapping.dense_kernel)
    m.assign(layer.qkv_bias, f"{key}.in_proj_bias")
    m.assign(layer.out_kernel, f"{key}.out_proj.weight", mapping.dense_kernel)
    m.assign(layer.out_bias, f"{key}.out_proj.bias")


_FIXTURE_KEYS = (
    "depth",
    "embed_dim",
    "head_dim",
    "mlp_ratios",
    "mixing_modes",
    "local_dw_ks",
    "slot_init",
    "num_slots",
    "cpe_ks",
    "downsample_style",
    "transition_layout",
    "mlp_dw",
    "layerscale",
)


def fixture_kwargs(meta):
    """Builder kwargs of a fixture case from the official constructor's kwargs (BatchNorm downsampling only)."""
    kwargs = meta["kwargs"]
    if kwargs.get("norm_layer", "torch.nn.BatchNorm2d") != "torch.nn.BatchNorm2d":
        raise ValueError(f"Only GLNet(norm_layer=nn.BatchNorm2d) is ported, got {kwargs['norm_layer']!r}.")
    return {k: kwargs[k] for k in _FIXTURE_KEYS if k in kwargs}


_PAPER = _base.Paper("Revisiting the Integration of Convolution and Attention for Vision Backbone", "2411.14429", 9)

_G = dict(
    depth=(4, 4, 18, 4),
    mlp_ratios=(3, 3, 3, 3),
    head_dim=32,
    mixing_modes=("glmix", "glmix", "glmix.mha_nchw", "mha_nchw"),
    local_dw_ks=5,
    slot_init="ada_avgpool",
    num_slots=64,
    cpe_ks=3,
    downsample_style="ovlp",
    transition_layout="proj.norm",
    mlp_dw=True,
)
_STL = dict(
    depth=(2, 2, 6, 2),
    embed_dim=(96, 192, 384, 768),
    mlp_ratios=(4, 4, 4, 4),
    head_dim=32,
    mixing_modes=("glmix", "glmix", "glmix", "mha"),
    local_dw_ks=5,
    num_slots=64,
    downsample_style="non_ovlp",
    transition_layout="norm.proj",
)

VARIANTS = (
    _base.Variant(
        "glnet_4g",
        dict(_G, embed_dim=(64, 128, 256, 512)),
        num_params=27_001_593,
        paper_top1=83.7,
        builder_name="GLNet4G",
    ),
    _base.Variant(
        "glnet_9g",
        dict(_G, embed_dim=(96, 192, 384, 768)),
        num_params=60_010_617,
        paper_top1=84.5,
        builder_name="GLNet9G",
    ),
    _base.Variant(
        "glnet_16g",
        dict(_G, embed_dim=(128, 256, 512, 1024), layerscale=1e-4),
        num_params=106_055_161,
        paper_top1=85.0,
        builder_name="GLNet16G",
    ),
    _base.Variant(
        "glnet_stl",
        dict(_STL, slot_init="ada_avgpool"),
        num_params=30_296_786,
        paper_top1=82.5,
        builder_name="GLNetSTL",
    ),
    _base.Variant(
        "glnet_stl_paramslot",
        dict(_STL, slot_init="param"),
        num_params=30_481_106,
        paper_top1=82.1,
        builder_name="GLNetSTLParamSlot",
    ),
    _base.Variant(
        "glnet_4g_tklb",
        dict(_G, embed_dim=(64, 128, 256, 512), token_labeling=True),
        num_params=27_514_593,
        paper_top1=84.4,
        builder_name="GLNet4GTokenLabeling",
    ),
    _base.Variant(
        "glnet_9g_tklb",
        dict(_G, embed_dim=(96, 192, 384, 768), token_labeling=True),
        num_params=60_779_617,
        paper_top1=85.3,
        builder_name="GLNet9GTokenLabeling",
    ),
)

ARCH = _base.Architecture(
    name="glnet",
    network=glnet,
    features=_features,
    min_size=32,
    convert=convert_glnet,
    paper=_PAPER,
    variants=VARIANTS,
    license="MIT",
    source="https://github.com/rayleizhu/GLMix",
    classifier="head",
    classifier_key="head.weight",
    testing=_base.Testing(
        # Every block kind, cpe, mlp_dw and layer scale, one block per stage (the fixture covers the alternating
        # stage and the official 5x5 local kernel); at 32 px the last stage is 1x1. One width and a 3x3 local kernel:
        # JAX runs the harness eagerly, compiling every operation (and every depthwise tap) once per shape.
        tiny=dict(
            depth=(1, 1, 1, 1),
            embed_dim=(16, 16, 16, 16),
            head_dim=8,
            mlp_ratios=(2, 2, 2, 2),
            mixing_modes=("glmix", "glmix", "mha_nchw", "mha"),
            local_dw_ks=3,
            num_slots=4,
            cpe_ks=3,
            downsample_style="ovlp",
            transition_layout="proj.norm",
            mlp_dw=True,
            layerscale=1e-4,
            num_classes=10,
        ),
        min_input_size=32,
    ),
    reference=_base.Reference(
        "glnet",
        kwargs=fixture_kwargs,
        features={"feat/stages.0": "P2", "feat/stages.1": "P3", "feat/stages.2": "P4", "feat/norm": "P5"},
    ),
)

glnet = ARCH.builder
