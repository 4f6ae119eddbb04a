"""Parameter-free-layer vision transformers (Han et al., "Learning Features with Parameter-Free Layers",
ICLR 2022, arXiv:2202.02777; paper 43 in PAPERS.md): ViT-max and PiT-max.

Both alternate two kinds of pre-norm transformer block: even blocks mix tokens with multi-head
self-attention (`GridSelfAttention`), odd blocks with the parameter-free `EffLayer` (Linear to 3C, GELU,
3x3 max pooling on the token grid, GELU, Linear back to C); every block then applies a GELU MLP. Neither model
has a class token: the head is LayerNorm, global average pooling over the tokens and a linear classifier.

- ViT-max (`pflayer_vit`): a 16x16 stride-16 patch embedding, a learned position embedding, one stage.
- PiT-max (`pflayer_pit`): an overlapping patch embedding (kernel 16, stride 8), a learned position embedding
  and three stages joined by PiT's pooling layer, a 3x3 stride-2 depthwise convolution that doubles the
  channels (`groups = in_channels`).

Tokens stay on their `(B, H, W, C)` grid throughout, so the layer names follow the official state dict
(`blocks-3-attn` for `blocks.3.attn`, `transformers-1-blocks-0-mlp-fc1`, `pools-0-conv`) and any input size
works: the position embedding is resized bicubically (PyTorch's kernel) when the grid differs from the
training grid. Features: ViT-max its one token grid, PiT-max one map per stage.
"""

import math

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers import EffLayer, GridSelfAttention, PositionEmbedding2D
from keras_hyper.layers._args import check_rate
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.torch_defaults import torch_padding
from keras_hyper.models import _base, _vit

ATTN_TYPES = ("max", "attn")


def _block(x, prefix, *, mixer, num_heads, mlp_ratio, drop_path):
    if mixer == "attn":
        layer = GridSelfAttention(num_heads, name=f"{prefix}-attn")
    else:
        layer = EffLayer(expansion=3, pool_size=3, name=f"{prefix}-attn")
    return _vit.block(x, prefix, layer, mlp_ratio=mlp_ratio, drop_path=drop_path)


def _mixers(depth, attn_type):
    """The official alternation: attention in even blocks, `attn_type` in odd ones."""
    if attn_type not in ATTN_TYPES:
        raise ValueError(f"attn_type must be one of {ATTN_TYPES}, got {attn_type!r}.")
    return ["attn" if i % 2 == 0 else attn_type for i in range(depth)]


def _head(x, num_classes):
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.layers.Dense(num_classes, kernel_initializer=_vit.dense_init(), name="head")(x)


def pflayer_vit(
    x,
    patch_size=16,
    embed_dim=768,
    depth=12,
    num_heads=12,
    mlp_ratio=4.0,
    img_size=224,
    attn_type="max",
    drop_path_rate=0.0,
):
    """Builds a ViT-max (official `EffTransformer`); the public builder `keras_hyper.models.pflayer_vit.pflayer_vit`
    takes these arguments and the keras.applications ones.

    Args:
        patch_size: side of the square, non-overlapping patches.
        embed_dim, depth, num_heads, mlp_ratio: width, blocks, attention heads and MLP hidden/width ratio.
        img_size: the training input size; it sets the stored position-embedding grid (`img_size //
            patch_size` a side) and the default input shape.
        attn_type: the odd blocks' token mixer: "max" (`EffLayer`) or "attn" (a plain ViT without class token).
        drop_path_rate: stochastic depth of the last block, rising linearly from 0 over the blocks.

    Features: one token grid, the normalised `(B, H/p, W/p, embed_dim)`, keyed by its stride `patch_size`
    (`"P4"` for the official 16). Example:

        model = pflayer_vit(embed_dim=384, num_heads=6)            # ViT-S-max
        grid = pflayer_vit(features_only=True)(images)["P4"]       # (B, 14, 14, 768) at 224
    """
    mixers = _vit_checks(patch_size, depth, img_size, attn_type)
    x = Conv2D(embed_dim, patch_size, strides=patch_size, name="patch_embed-proj")(x)
    x = PositionEmbedding2D(img_size // patch_size, name="pos_embed")(x)
    for i, (mixer, rate) in enumerate(zip(mixers, _base.drop_path_rates(drop_path_rate, depth))):
        x = _block(x, f"blocks-{i}", mixer=mixer, num_heads=num_heads, mlp_ratio=mlp_ratio, drop_path=rate)
    return _base.Network({_base.feature_key(patch_size): _vit.layer_norm("norm")(x)}, _head)


def _vit_checks(patch_size, depth, img_size, attn_type):
    mixers = _mixers(depth, attn_type)
    if img_size < patch_size:
        raise ValueError(f"img_size={img_size} is smaller than patch_size={patch_size}.")
    return mixers


def _vit_features(patch_size, embed_dim, **_):
    return _vit.grid_feature(patch_size, embed_dim)


def _vit_input_size(patch_size, depth, img_size, attn_type, **_):
    _vit_checks(patch_size, depth, img_size, attn_type)  # before the input's size is checked
    return img_size


def pflayer_pit(
    x,
    patch_size=16,
    stride=8,
    base_dims=(48, 48, 48),
    depths=(2, 6, 4),
    heads=(3, 6, 12),
    mlp_ratio=4.0,
    img_size=224,
    attn_type="max",
    drop_path_rate=0.0,
):
    """Builds a PiT-max (official `PoolingTransformer`); the public builder
    `keras_hyper.models.pflayer_vit.pflayer_pit` takes these arguments and the keras.applications ones.

    Args:
        patch_size, stride: kernel and stride of the (overlapping) patch-embedding convolution.
        base_dims, depths, heads: per stage, the channels per head, the blocks and the heads; a stage has
            `base_dims[s] * heads[s]` channels, a multiple of the previous stage's.
        mlp_ratio: MLP hidden/width ratio.
        img_size: the training input size; it sets the stored position-embedding grid
            (`(img_size - patch_size) // stride + 1` a side) and the default input shape.
        attn_type: the odd blocks' token mixer: "max" (`EffLayer`) or "attn".
        drop_path_rate: stochastic depth; block `i` of `n` gets `drop_path_rate * i / n` as officially.

    Features: one per stage, each stage's last block (the last one normalised, as the head reads it), strides
    `stride * 2**s` (P3..P5 for the official stride 8; PiT-B's 7, 14, 28 are keyed P3..P5 too) with
    `base_dims[s] * heads[s]` channels. The valid-padded embedding makes the first map
    `(H - patch_size) // stride + 1` a side, one token less than `H / stride` for the official 16/8. Example:

        model = pflayer_pit(base_dims=(32, 32, 32), heads=(2, 4, 8))   # PiT-Ti-max
        pyramid = pflayer_pit(features_only=True)      # {"P3": (B, 27, 27, 144), ..., "P5": (B, 7, 7, 576)}
    """
    dims = _pit_dims(base_dims, depths, heads, drop_path_rate, img_size, patch_size)
    x = Conv2D(dims[0], patch_size, strides=stride, name="patch_embed-conv")(x)
    x = PositionEmbedding2D(math.floor((img_size - patch_size) / stride + 1), name="pos_embed")(x)
    features, total, block = {}, sum(depths), 0
    for s, (depth, num_heads) in enumerate(zip(depths, heads)):
        for i, mixer in enumerate(_mixers(depth, attn_type)):
            x = _block(
                x,
                f"transformers-{s}-blocks-{i}",
                mixer=mixer,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                drop_path=drop_path_rate * block / total,
            )
            block += 1
        if s < len(depths) - 1:
            features[_base.feature_key(stride * 2**s)] = x
            x, padding = torch_padding(x, 3, 2, f"pools-{s}-pad")
            x = keras.layers.DepthwiseConv2D(
                3, strides=2, padding=padding, depth_multiplier=dims[s + 1] // dims[s], name=f"pools-{s}-conv"
            )(x)
    features[_base.feature_key(stride * 2 ** (len(depths) - 1))] = _vit.layer_norm("norm")(x)
    return _base.Network(features, _head)


def _pit_dims(base_dims, depths, heads, drop_path_rate, img_size, patch_size):
    """Validates the stage layout; returns the channels of each stage."""
    base_dims, depths, heads = tuple(base_dims), tuple(depths), tuple(heads)
    if not len(base_dims) == len(depths) == len(heads) or not depths:
        raise ValueError(
            f"base_dims, depths and heads need one entry per stage, got base_dims={base_dims}, depths={depths}, "
            f"heads={heads}."
        )
    dims = [b * h for b, h in zip(base_dims, heads)]
    for prev, dim in zip(dims, dims[1:]):
        # the pooling is a grouped convolution with one group per input channel
        if dim % prev:
            raise ValueError(f"Each stage's channels must be a multiple of the previous stage's, got {dims}.")
    check_rate(drop_path_rate=drop_path_rate)
    if img_size < patch_size:
        raise ValueError(f"img_size={img_size} is smaller than patch_size={patch_size}.")
    return dims


def _pit_features(base_dims, depths, heads, drop_path_rate, img_size, patch_size, stride, **_):
    dims = _pit_dims(base_dims, depths, heads, drop_path_rate, img_size, patch_size)
    return tuple(_base.Feature(_base.feature_key(stride * 2**s), stride * 2**s, dim) for s, dim in enumerate(dims))


def _pit_input_size(base_dims, depths, heads, drop_path_rate, img_size, patch_size, **_):
    _pit_dims(base_dims, depths, heads, drop_path_rate, img_size, patch_size)  # before the input's size is checked
    return img_size


def _grouped_kernel(multiplier):
    """A `groups = in` convolution's `(in * m, 1, kh, kw)` -> DepthwiseConv2D's `(kh, kw, in, m)`: output
    channel `c * m + j` is multiplier `j` of input channel `c` in both layouts."""

    def transform(w):
        return np.transpose(w.reshape(-1, multiplier, *w.shape[2:]), (2, 3, 0, 1))

    return transform


def _convert(state_dict, model, pos_embed):
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            m.assign(layer.kernel, f"{key}.weight", _grouped_kernel(layer.depth_multiplier))
            m.assign(layer.bias, f"{key}.bias")
        elif isinstance(layer, keras.layers.Conv2D):
            m.conv2d(layer, key)
        elif isinstance(layer, keras.layers.Dense):
            m.dense(layer, key)
        elif isinstance(layer, keras.layers.LayerNormalization):
            m.layer_norm(layer, key)
        elif isinstance(layer, (GridSelfAttention, EffLayer)):
            for part in ("qkv", "proj"):
                m.assign(getattr(layer, f"{part}_kernel"), f"{key}.{part}.weight", mapping.dense_kernel)
                bias = getattr(layer, f"{part}_bias", None)
                if bias is not None:
                    m.assign(bias, f"{key}.{part}.bias")
        elif isinstance(layer, PositionEmbedding2D):
            m.assign(layer.embedding, "pos_embed", lambda w, g=layer.grid_size: pos_embed(w, g))
    m.finish()


def convert_pflayer_vit(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official ViT-max state dict (`vit_pf.py`:
    `patch_embed.proj`, `pos_embed (1, N, C)`, `blocks.i.{norm1,attn,norm2,mlp}`, `norm`, `head`). Strict."""
    _convert(state_dict, model, lambda w, grid: w.reshape(*grid, w.shape[-1]))


def convert_pflayer_pit(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official PiT-max state dict (`pit_pf.py`:
    `patch_embed.conv`, `pos_embed (1, C, h, w)`, `transformers.s.blocks.i.*`, `pools.s.conv`, `norm`, `head`).
    Strict."""
    _convert(state_dict, model, lambda w, grid: np.transpose(w[0], (1, 2, 0)))


_PAPER = _base.Paper("Learning Features with Parameter-Free Layers", "2202.02777", 43)
_SOURCE = "https://github.com/naver-ai/PfLayer"

VIT_VARIANTS = (
    _base.Variant(
        "pflayer_vit_ti_max",
        dict(embed_dim=192, depth=12, num_heads=3),
        num_params=6_159_400,
        builder_name="PfViTTiMax",
    ),
    _base.Variant(
        "pflayer_vit_s_max",
        dict(embed_dim=384, depth=12, num_heads=6),
        num_params=23_819_368,
        paper_top1=74.2,
        builder_name="PfViTSMax",
    ),
    _base.Variant(
        "pflayer_vit_b_max",
        dict(embed_dim=768, depth=12, num_heads=12),
        num_params=93_644_008,
        builder_name="PfViTBMax",
    ),
)

PIT_VARIANTS = (
    _base.Variant(
        "pflayer_pit_ti_max",
        dict(base_dims=(32, 32, 32), depths=(2, 6, 4), heads=(2, 4, 8)),
        num_params=5_174_504,
        builder_name="PfPiTTiMax",
    ),
    _base.Variant(
        "pflayer_pit_s_max",
        dict(base_dims=(48, 48, 48), depths=(2, 6, 4), heads=(3, 6, 12)),
        num_params=25_119_784,
        paper_top1=75.7,
        builder_name="PfPiTSMax",
    ),
    _base.Variant(
        "pflayer_pit_b_max",
        dict(patch_size=14, stride=7, base_dims=(64, 64, 64), depths=(3, 6, 4), heads=(4, 8, 16)),
        num_params=79_005_928,
        builder_name="PfPiTBMax",
    ),
)

VIT_ARCH = _base.Architecture(
    name="pflayer_vit",
    network=pflayer_vit,
    features=_vit_features,
    input_size=_vit_input_size,
    min_size=lambda patch_size, **_: 2 * patch_size,
    convert=convert_pflayer_vit,
    paper=_PAPER,
    variants=VIT_VARIANTS,
    license="Apache-2.0",
    source=_SOURCE,
    classifier="head",
    classifier_key="head.weight",
    testing=_base.Testing(
        tiny=dict(patch_size=16, embed_dim=24, depth=2, num_heads=2, mlp_ratio=2.0, img_size=32, num_classes=10),
    ),
)

PIT_ARCH = _base.Architecture(
    name="pflayer_pit",
    network=pflayer_pit,
    features=_pit_features,
    input_size=_pit_input_size,
    min_size=lambda patch_size, stride, **_: patch_size + stride,
    convert=convert_pflayer_pit,
    paper=_PAPER,
    variants=PIT_VARIANTS,
    license="Apache-2.0",
    source=_SOURCE,
    classifier="head",
    classifier_key="head.weight",
    testing=_base.Testing(
        tiny=dict(base_dims=(8, 8), depths=(2, 2), heads=(2, 4), mlp_ratio=2.0, img_size=32, num_classes=10),
    ),
)

ARCHITECTURES = (VIT_ARCH, PIT_ARCH)

pflayer_vit = VIT_ARCH.builder
pflayer_pit = PIT_ARCH.builder
