"""ConvNeXt-dcls (Khalfaoui-Hassani, Pellegrini, Masquelier, "Dilated Convolution with Learnable Spacings",
ICLR 2023, arXiv:2112.03740; paper 55 in PAPERS.md).

ConvNeXt (a 4x4 stride-4 stem + LayerNorm, four stages of blocks
`x + gamma * Linear(GELU(Linear(LayerNorm(dwconv(x)))))`, LayerNorm + 2x2 stride-2 convolution between stages,
global average pool + LayerNorm + Linear head) with every 7x7 depthwise convolution replaced by a depthwise
`DCLSConv2D`: `kernel_count` elements per channel moving inside a `dcls_kernel_size` square, bilinear
interpolation ("v0"). The positions are learned once per stage: a `DCLSPositions` layer per stage
(`stages-i-positions`) feeds every block's convolution, so they are counted, trained and saved once, as in the
official model (whose state dict repeats them under `stages.i.j.dwconv.P`).

Layer names follow the official state dict with '-' for '.' (`downsample_layers-0-0`, `stages-2-1-dwconv`,
`head`). Input `(B, H, W, 3)` with H, W >= 32; features `(B, H/32, W/32, dims[-1])`; logits `(B, num_classes)`.
"""

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers import DCLSConv2D, DCLSPositions, DropPath, LayerScale
from keras_hyper.layers._args import check_positive
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.torch_defaults import trunc_normal
from keras_hyper.models import _base

LN_EPSILON = 1e-6


def _layer_norm(name):
    # ConvNeXt's channels-first LayerNorm (stem, downsampling) normalises over C: on channels-last inputs that is
    # keras' LayerNormalization over the last axis, the same as the blocks' channels-last one.
    return keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=name)


def _block(x, positions, prefix, *, kernel_size, kernel_count, ls_init_value, drop_path):
    dim = x.shape[-1]
    shortcut = x
    x = DCLSConv2D(
        dim,
        kernel_count,
        kernel_size,
        groups=dim,
        version="v0",
        kernel_initializer=trunc_normal(),
        name=f"{prefix}-dwconv",
    )([x, positions])
    x = _layer_norm(f"{prefix}-norm")(x)
    x = keras.layers.Dense(4 * dim, kernel_initializer=trunc_normal(), name=f"{prefix}-pwconv1")(x)
    x = keras.layers.Activation("gelu", name=f"{prefix}-act")(x)
    x = keras.layers.Dense(dim, kernel_initializer=trunc_normal(), name=f"{prefix}-pwconv2")(x)
    if ls_init_value:
        x = LayerScale(ls_init_value, name=f"{prefix}-gamma")(x)
    if drop_path > 0.0:
        x = DropPath(drop_path, name=f"{prefix}-drop_path")(x)
    return keras.layers.Add(name=f"{prefix}-add")([shortcut, x])


def convnext_dcls(
    x,
    depths=(3, 3, 9, 3),
    dims=(96, 192, 384, 768),
    dcls_kernel_size=17,
    dcls_kernel_count=34,
    drop_path_rate=0.0,
    layer_scale_init_value=1e-6,
    head_init_scale=1.0,
):
    """Builds a ConvNeXt-dcls model (Khalfaoui-Hassani et al., "Dilated Convolution with Learnable Spacings",
    ICLR 2023, arXiv:2112.03740).

    Args:
        depths: blocks per stage.
        dims: channels per stage.
        dcls_kernel_size: size of the square the kernel elements move in (odd: 'same' padding is `s // 2`).
        dcls_kernel_count: kernel elements per channel.
        drop_path_rate: stochastic depth rate of the last block, rising linearly from 0 over all blocks.
        layer_scale_init_value: initial layer scale (0 or None: no layer scale).
        head_init_scale: scale of the classifier's initial weights.

    Features: one per stage, its last block's output: `P2`, `P3`, ... (strides 4, 8, ...; `dims` channels; P2..P5
    for four stages). The final LayerNorm follows the head's pooling, so the last feature is not normalised.
    Example:

        model = convnext_dcls(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384), num_classes=10)
        pyramid = convnext_dcls(features_only=True)          # {"P2": (B, H/4, W/4, 96), ..., "P5": ...}
    """
    depths, dims = _base.stage_args(depths, dims)
    if not isinstance(dcls_kernel_size, int) or dcls_kernel_size < 1 or dcls_kernel_size % 2 == 0:
        raise ValueError(f"dcls_kernel_size must be a positive odd integer, got {dcls_kernel_size!r}.")
    check_positive(dcls_kernel_count=dcls_kernel_count)

    x = Conv2D(dims[0], 4, strides=4, kernel_initializer=trunc_normal(), name="downsample_layers-0-0")(x)
    x = _layer_norm("downsample_layers-0-1")(x)

    features = {}
    rates = _base.drop_path_rates(drop_path_rate, sum(depths))
    block = 0
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        if i > 0:
            x = _layer_norm(f"downsample_layers-{i}-0")(x)
            x = Conv2D(dim, 2, strides=2, kernel_initializer=trunc_normal(), name=f"downsample_layers-{i}-1")(x)
        positions = DCLSPositions(dim, dcls_kernel_count, dcls_kernel_size, name=f"stages-{i}-positions")(x)
        for j in range(depth):
            x = _block(
                x,
                positions,
                f"stages-{i}-{j}",
                kernel_size=dcls_kernel_size,
                kernel_count=dcls_kernel_count,
                ls_init_value=layer_scale_init_value,
                drop_path=rates[block],
            )
            block += 1
        features[f"P{i + 2}"] = x

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
        x = _layer_norm("norm")(x)
        return keras.layers.Dense(num_classes, kernel_initializer=trunc_normal(0.02 * head_init_scale), name="head")(x)

    return _base.Network(features, head)


def _dcls_weight(w):
    """`(C, 1, count)` -> `(count, 1, C)`."""
    return np.transpose(w, (2, 1, 0))


def _dcls_positions(p):
    """`(2, C, 1, count)` -> `(2, count, 1, C)`."""
    return np.transpose(p, (0, 3, 2, 1))


def convert_convnext_dcls(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official ConvNeXt-dcls state dict.

    Strict: every tensor is consumed and every model variable assigned. Each stage's shared positions appear in
    the state dict once per block (`stages.i.j.dwconv.P`); all copies are consumed and must be identical, since
    the model learns one tensor per stage.
    """
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if m.standard(layer, key):
            continue
        if isinstance(layer, LayerScale):
            m.assign(layer.gamma, key)
        elif isinstance(layer, DCLSConv2D):
            m.assign(layer.kernel, f"{key}.weight", _dcls_weight)
            m.assign(layer.bias, f"{key}.bias")
        elif isinstance(layer, DCLSPositions):
            # every convolution fed by this layer holds a copy in the state dict
            users = [node.operation for node in layer._outbound_nodes]
            keys = [f"{mapping.torch_prefix(c.name)}.P" for c in users if isinstance(c, DCLSConv2D)]
            m.assign(layer.positions, keys[0], _dcls_positions)
            first = state_dict.get(keys[0])
            for other in keys[1:]:
                copy = m.take(other)
                if first is not None and copy is not None and not np.array_equal(np.asarray(first), copy):
                    raise ValueError(
                        f"ConvNeXt-dcls shares one position tensor per stage, but checkpoint tensors '{keys[0]}' and "
                        f"'{other}' differ (max |diff| {np.max(np.abs(np.asarray(first) - copy)):.3g})."
                    )
    m.finish()


def _producers(layer):
    return [node.operation for node in layer._inbound_nodes[0].parent_nodes]


def reparameterize(model):
    """The inference model: every `DCLSConv2D` replaced by the depthwise convolution holding its constructed
    kernel (`DCLSConv2D.fuse` with its stage's positions) and the `DCLSPositions` layers dropped, so that no
    kernel is interpolated per call. Same outputs up to float rounding and the same layer names; keep the
    original for training (the fused model has more parameters: a dense `s x s` kernel per channel)."""
    shared = {}
    for layer in model.layers:
        if isinstance(layer, DCLSConv2D):
            holder = next(p for p in _producers(layer) if isinstance(p, DCLSPositions))
            shared[layer.name] = keras.ops.convert_to_numpy(holder.positions)

    def clone(layer):
        if layer.name in shared:
            return model.get_layer(layer.name).fuse(shared[layer.name])
        return layer.__class__.from_config(layer.get_config())

    def call(layer, *args, **kwargs):
        if layer.name in shared:
            return layer(args[0][0])
        return layer(*args, **kwargs)

    fused = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for layer in fused.layers:
        if layer.weights and layer.name not in shared:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return fused


def fixture_kwargs(meta):
    """Builder kwargs of a reference case (its `kwargs` are the official constructor's)."""
    names = (
        "depths",
        "dims",
        "dcls_kernel_size",
        "dcls_kernel_count",
        "drop_path_rate",
        "layer_scale_init_value",
        "head_init_scale",
    )
    return {name: meta["kwargs"][name] for name in names if name in meta["kwargs"]}


_PAPER = _base.Paper("Dilated Convolution with Learnable Spacings", "2112.03740", 55)

VARIANTS = (
    _base.Variant(
        "convnext_dcls_tiny",
        dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), dcls_kernel_size=17, dcls_kernel_count=34),
        num_params=28_587_688,
        paper_top1=82.5,
        builder_name="ConvNeXtDCLSTiny",
    ),
    _base.Variant(
        "convnext_dcls_small",
        dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768), dcls_kernel_size=17, dcls_kernel_count=40),
        num_params=50_217_064,
        paper_top1=83.7,
        builder_name="ConvNeXtDCLSSmall",
    ),
    _base.Variant(
        "convnext_dcls_base",
        dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024), dcls_kernel_size=17, dcls_kernel_count=40),
        num_params=88_582_632,
        paper_top1=84.1,
        builder_name="ConvNeXtDCLSBase",
    ),
)

ARCH = _base.Architecture(
    name="convnext_dcls",
    network=convnext_dcls,
    features=_base.convnext_features,
    min_size=lambda depths, **_: 2 ** (len(depths) + 1),
    convert=convert_convnext_dcls,
    paper=_PAPER,
    variants=VARIANTS,
    license="MIT",
    source="https://github.com/K-H-Ismail/ConvNeXt-dcls",
    classifier="head",
    classifier_key="head.weight",
    testing=_base.Testing(
        # The fixtures' configuration, but with layer scale starting at 0.1 instead of 1e-6: at 1e-6 the first
        # stage's LayerNorm receives gradients near 1e-10, too small for one Adam step (lr 1e-3, eps 1e-7) to move a
        # float32 weight of 1.0, so the harness' "every variable changes" check could not see them learn.
        tiny=dict(
            depths=(1, 1, 2, 1),
            dims=(16, 24, 32, 48),
            dcls_kernel_size=5,
            dcls_kernel_count=6,
            layer_scale_init_value=0.1,
            num_classes=10,
        ),
    ),
    reference=_base.Reference(
        "convnext_dcls",
        kwargs=fixture_kwargs,
        cases=("tiny", "tiny_strong"),
        features={f"feat/stage{i}": f"P{i + 2}" for i in range(4)},
    ),
    reparameterize=reparameterize,
)

convnext_dcls = ARCH.builder
