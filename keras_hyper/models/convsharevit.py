"""ConvShareViT (Ibadulla, Chen, Reyes-Aldasoro, "ConvShareViT: Enhancing Vision Transformers with Convolutional
Attention Mechanisms for Free-Space Optical Accelerators", arXiv:2504.11517; paper 13 in PAPERS.md).

A ViT whose attention and MLP use only convolutions with kernels shared across channels (what a 4f optical
system computes): a convolutional patch embedding to `D = s * s` features per token, a class token and learned
position embeddings, `depth` pre-norm blocks of `SharedConvAttention` and `SharedConvMLP`
(`keras_hyper.layers.shared_attention`), LayerNorm and a Linear head on the class token.

There is no official code; see zoo/convsharevit.md for which parts come from the paper and which are our
reading of it. Layer names are those of a timm-like PyTorch port (`blocks-2-attn`, `patch_embed-proj`).

Input `(B, H, W, 3)` with H, W multiples of `patch_size` (>= 32); logits `(B, num_classes)`.
"""

import math

import keras

from keras_hyper.convert import mapping
from keras_hyper.layers import DropPath
from keras_hyper.layers._args import check_positive
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.shared_attention import SharedConvAttention, SharedConvMLP
from keras_hyper.layers.soft_hypergraph import ClassTokenEmbedding, ClassTokenSelect, PatchTokenGrid
from keras_hyper.models import _base

CIFAR_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR_STD = (0.2673, 0.2564, 0.2762)
LN_EPSILON = 1e-6
DEFAULT_SIZE = 32  # CIFAR's


def convsharevit(
    x,
    patch_size=4,
    embed_dim=256,
    depth=6,
    num_heads=4,
    kernel_size=3,
    mlp_ratio=4,
    padding="valid",
    drop_path_rate=0.0,
):
    """Builds a ConvShareViT model (the public builder `keras_hyper.models.convsharevit.convsharevit` takes these
    arguments and the keras.applications ones; this network function maps an input tensor to the token grid and
    the head).

    Args:
        patch_size: side of the square patches of the convolutional patch embedding, a power of two.
        embed_dim: token width D, a square number (each token is an `s x s` tile, s = sqrt(D)).
        depth: transformer blocks.
        num_heads: attention heads (each with its own shared query, key and value kernels).
        kernel_size: odd side of every shared kernel.
        mlp_ratio: maps per token in the MLP.
        padding: `"valid"` or `"same"`, the attention's query/key/value convolutions (the paper's central
            comparison: valid-padded ones learn attention).
        drop_path_rate: stochastic depth, linear from 0 over the blocks.

    The paper's dataset is CIFAR-100: the default input is 32x32 (the position table is sized by the input's
    token grid; a dynamic size keeps the 32x32 table and resizes it). Features: `P<log2 patch_size>` (`P2` for
    the registered variants), the normalised patch tokens on their grid `(B, H/p, W/p, D)`, class token dropped;
    the head reads the class token of the same sequence. Example:

        model = convsharevit(embed_dim=256, depth=6, num_heads=4, padding="same", num_classes=100)
        backbone = convsharevit(features_only=True)    # {"P2": (B, 8, 8, 256)} for the default 32x32 input
    """
    check_positive(patch_size=patch_size, depth=depth)
    if not isinstance(embed_dim, int) or embed_dim < 4 or math.isqrt(embed_dim) ** 2 != embed_dim:
        raise ValueError(f"embed_dim must be a square number >= 4 (tokens are s x s tiles), got {embed_dim!r}.")
    # the layers validate num_heads, kernel_size, mlp_ratio and padding when they are created
    attention = [SharedConvAttention(num_heads, kernel_size, padding, name=f"blocks-{i}-attn") for i in range(depth)]
    mlps = [SharedConvMLP(mlp_ratio, kernel_size, name=f"blocks-{i}-mlp") for i in range(depth)]
    rates = _base.drop_path_rates(drop_path_rate, depth)
    for size in x.shape[1:3]:
        if size is not None and size % patch_size:
            raise ValueError(f"Input height and width must be multiples of patch_size={patch_size}, got {x.shape}.")
    height, width = (size or DEFAULT_SIZE for size in x.shape[1:3])

    x = grid = Conv2D(embed_dim, patch_size, strides=patch_size, name="patch_embed-proj")(x)
    x = ClassTokenEmbedding((height // patch_size, width // patch_size), name="embedding")(x)
    for i in range(depth):
        for part, layer in (("1", attention[i]), ("2", mlps[i])):
            y = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=f"blocks-{i}-norm{part}")(x)
            y = layer(y)
            if rates[i] > 0:
                y = DropPath(rates[i], name=f"blocks-{i}-drop_path{part}")(y)
            x = keras.layers.Add(name=f"blocks-{i}-add{part}")([x, y])
    tokens = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="norm")(x)
    features = {_features(patch_size, embed_dim)[0].key: PatchTokenGrid(name="patch_grid")([tokens, grid])}

    def head(_, num_classes):
        # the class token is not on the grid: read the sequence
        y = ClassTokenSelect(name="cls")(tokens)
        return keras.layers.Dense(num_classes, name="head")(y)

    return _base.Network(features, head)


def _features(patch_size, embed_dim, **_):
    return _base.pyramid([embed_dim], [patch_size])


def convert_convsharevit(state_dict, model):
    """Fills `model` from a PyTorch-layout state dict of the same layer paths. No official code or checkpoint
    exists; this is the converter for a PyTorch port with timm-like names: `cls_token`, `pos_embed`
    `(1, 1 + N, D)`, `patch_embed.proj`, `blocks.i.norm1/norm2`, `blocks.i.attn.qkv` (an
    `nn.Conv2d(1, 3 * heads, k)`), `blocks.i.attn.proj` (`nn.Conv2d(heads, 1, k)`), `blocks.i.mlp.fc1`
    (`nn.Conv2d(1, r, k)`), `blocks.i.mlp.fc2` (`nn.Conv2d(r, 1, k)`), `norm`, `head`. Strict."""
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if m.standard(layer, key):
            continue
        if isinstance(layer, ClassTokenEmbedding):
            m.assign(layer.cls_token, "cls_token")
            m.assign(layer.pos_embedding, "pos_embed")
        elif isinstance(layer, SharedConvAttention):
            for kernel, bias, part in (
                (layer.qkv_kernel, layer.qkv_bias, "qkv"),
                (layer.out_kernel, layer.out_bias, "proj"),
            ):
                m.assign(kernel, f"{key}.{part}.weight", mapping.conv_kernel)
                m.assign(bias, f"{key}.{part}.bias")
        elif isinstance(layer, SharedConvMLP):
            for kernel, bias, part in (
                (layer.in_kernel, layer.in_bias, "fc1"),
                (layer.out_kernel, layer.out_bias, "fc2"),
            ):
                m.assign(kernel, f"{key}.{part}.weight", mapping.conv_kernel)
                m.assign(bias, f"{key}.{part}.bias")
    m.finish()


_PAPER = _base.Paper(
    "ConvShareViT: Enhancing Vision Transformers with Convolutional Attention Mechanisms for Free-Space Optical "
    "Accelerators",
    "2504.11517",
    13,
)

# Not official configurations (no code was published, and the paper's model tables were not available to us):
# CIFAR-100 models of the paper's two padding kinds; counts computed from this builder.
_CIFAR = dict(patch_size=4, embed_dim=256, depth=6, num_heads=4, kernel_size=3, mlp_ratio=4, num_classes=100)

VARIANTS = (
    _base.Variant(
        "convsharevit_valid",
        dict(_CIFAR, padding="valid"),
        num_params=63_200,
        input_size=32,
        crop_pct=1.0,
        builder_name="ConvShareViTValid",
    ),
    _base.Variant(
        "convsharevit_same",
        dict(_CIFAR, padding="same"),
        num_params=63_200,
        input_size=32,
        crop_pct=1.0,
        builder_name="ConvShareViTSame",
    ),
)

ARCH = _base.Architecture(
    name="convsharevit",
    network=convsharevit,
    features=_features,
    num_classes=100,
    input_size=DEFAULT_SIZE,
    min_size=lambda patch_size, **_: max(32, patch_size),
    convert=convert_convsharevit,
    paper=_PAPER,
    variants=VARIANTS,
    license="Apache-2.0",
    source="https://arxiv.org/abs/2504.11517 (no official code; keras-hyper's reading of the paper)",
    classifier="head",
    classifier_key="head.weight",
    testing=_base.Testing(
        tiny=dict(patch_size=8, embed_dim=16, depth=1, num_heads=2, kernel_size=3, mlp_ratio=2, num_classes=10),
        # The output convolutions' bias is one scalar per block added to the whole tile, i.e. to every feature of a
        # token alike, and the residual stream is read only through per-token LayerNorms, which subtract it: its
        # gradient is zero up to rounding at any depth (a dead parameter of this reading, as a PyTorch port would have).
        zero_grad_at_init=("blocks-0-attn/out_bias", "blocks-0-mlp/out_bias"),
        min_input_size=32,
    ),
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    interpolation="bilinear",
)

convsharevit = ARCH.builder
