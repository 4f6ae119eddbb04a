"""Hyena ViT: DeiT with 2-D Hyena token mixers (Zimerman, Wolf, "Multi-Dimensional Hyena for Spatial Inductive Bias",
arXiv:2309.13600; paper 45 in PAPERS.md).

The official models (Itamarzimm/HyenaND, its timm fork's `VisionTransformer`) are DeiT without a class token: a
patch embedding, a learned position embedding, pre-norm blocks (`x + mixer(LN(x))`, `x + MLP(LN(x))`), a final
LayerNorm, and a linear classifier that reads the FIRST PATCH TOKEN (the official `x[:, 0]`, which without a class
token is the top-left patch). The token mixer is `HyenaOperator2D` in every block ('hyena2d'), or, in the hybrid
('hyena2dattn'), in blocks `0 .. depth // 2` with multi-head self-attention after them. With the paper's 'seq'
directional mode, even blocks anchor their first long convolution at the bottom-right corner and odd blocks at
the top-left ('standard').

Tokens stay a channels-last grid `(B, H/p, W/p, C)` throughout. Layer names follow the official state dict with
'-' for '.' (`blocks-3-attn` for `blocks.3.attn`).

Input `(B, H, W, 3)`, H and W multiples of the patch size with a grid no larger than `img_size / patch_size`;
features: the one token grid `(B, H/p, W/p, C)`; logits `(B, num_classes)`.
"""

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers import GridSelfAttention, HyenaOperator2D, PositionEmbedding2D
from keras_hyper.layers._args import check_positive
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.hyena import FirstToken, decay_rates, positional_features
from keras_hyper.models import _base, _vit

METHODS = ("hyena2d", "hyena2dattn")


def block_mixers(depth, method):
    """The official per-block token mixer: 'hyena2d' everywhere, or ('hyena2dattn') Hyena in blocks
    `0 .. depth // 2` and attention after."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if method == "hyena2d":
        return ["hyena2d"] * depth
    return ["attention" if i > depth // 2 else "hyena2d" for i in range(depth)]


def hyena_vit(
    x,
    embed_dim=192,
    depth=12,
    num_heads=3,
    mlp_ratio=4.0,
    patch_size=16,
    img_size=224,
    method="hyena2d",
    hyena_order=2,
    hyena_filter_order=64,
    directional_mode="seq",
    drop_path_rate=0.0,
    long_conv="auto",
):
    """Builds a Hyena ViT (the official DeiT `VisionTransformer` with `--method hyena2d` or `hyena2dattn`,
    `--hyena2d_filter`, no class token); the public builder `keras_hyper.models.hyena_vit.hyena_vit` takes these
    arguments and the keras.applications ones.

    Args:
        embed_dim, depth, num_heads, mlp_ratio, patch_size: the DeiT configuration (heads serve the attention
            blocks of the hybrid).
        img_size: the training input size; `img_size / patch_size` is the grid side of the position embedding and
            the Hyena filters' `l_max`. Smaller (and non-square) inputs use the filters' first rows and columns and
            a bicubically resized position embedding; larger ones are refused.
        method: 'hyena2d' (Hyena in every block) or 'hyena2dattn' (the hybrid, see `block_mixers`).
        hyena_order, hyena_filter_order: the Hyena recurrence depth and filter MLP width.
        directional_mode: 'seq' (even blocks anchor their first long convolution at the bottom-right corner,
            odd ones at the top-left, as the official training setting) or 'standard' (all at the top-left).
        drop_path_rate: stochastic depth, linear over the blocks.
        long_conv: how the Hyena layers compute their long convolutions ('auto', 'fft' or 'direct').

    Features: one token grid, the final LayerNorm's `(B, H/p, W/p, embed_dim)`, keyed by its stride `patch_size`
    (`"P4"` for the official 16); the head reads its first (top-left) token. Example:

        model = hyena_vit(method="hyena2dattn")                    # Hyena-DeiT-T hybrid
        grid = hyena_vit(features_only=True)(images)["P4"]         # (B, 14, 14, 192) at 224
    """
    mixers = _checks(embed_dim, depth, num_heads, patch_size, img_size, method, directional_mode)
    rates = _base.drop_path_rates(drop_path_rate, depth)
    grid = img_size // patch_size
    for size in x.shape[1:3]:
        if size is not None and (size % patch_size or size > img_size):
            raise ValueError(
                f"Input height and width must be multiples of patch_size={patch_size} no larger than "
                f"img_size={img_size} (the Hyena filters cover a {grid}x{grid} token grid), got "
                f"input_shape={tuple(x.shape[1:])}."
            )
    x = Conv2D(embed_dim, patch_size, strides=patch_size, name="patch_embed-proj")(x)
    x = PositionEmbedding2D(grid, name="pos_embed")(x)
    for index, (kind, rate) in enumerate(zip(mixers, rates)):
        if kind == "attention":
            mixer = GridSelfAttention(num_heads, name=f"blocks-{index}-attn")
        else:
            mode = "seq" if directional_mode == "seq" and index % 2 == 0 else "standard"
            mixer = HyenaOperator2D(
                grid,
                order=hyena_order,
                filter_order=hyena_filter_order,
                directional_mode=mode,
                long_conv=long_conv,
                name=f"blocks-{index}-attn",
            )
        x = _vit.block(x, f"blocks-{index}", mixer, mlp_ratio=mlp_ratio, drop_path=rate)

    def head(x, num_classes):
        # no class token: the official head reads token 0, the top-left patch
        x = FirstToken(name="first_token")(x)
        return keras.layers.Dense(num_classes, kernel_initializer=_vit.dense_init(), name="head")(x)

    return _base.Network({_base.feature_key(patch_size): _vit.layer_norm("norm")(x)}, head)


def _checks(embed_dim, depth, num_heads, patch_size, img_size, method, directional_mode):
    """Validates the configuration; returns the per-block mixers."""
    check_positive(embed_dim=embed_dim, depth=depth, num_heads=num_heads, img_size=img_size)
    if not isinstance(patch_size, int) or patch_size < 1 or img_size % patch_size:
        raise ValueError(f"patch_size must be a positive integer dividing img_size={img_size}, got {patch_size!r}.")
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}.")
    if directional_mode not in ("standard", "seq"):
        raise ValueError(f"directional_mode must be 'standard' or 'seq', got {directional_mode!r}.")
    return block_mixers(depth, method)


def _input_size(embed_dim, depth, num_heads, patch_size, img_size, method, directional_mode, **_):
    # validated before the input's size is checked
    _checks(embed_dim, depth, num_heads, patch_size, img_size, method, directional_mode)
    return img_size


def _features(patch_size, embed_dim, **_):
    return _vit.grid_feature(patch_size, embed_dim)


def convert_hyena_operator(m, layer, key):
    """Assigns one `HyenaOperator2D` from the official `HyenaOperator2d` keys under `key` (a `StateDictMapper`
    `m`). The buffers `pos_emb.t` and `modulation.{X,Y}deltas` are fixed by the official formulas: they are
    checked against ours, not loaded. The one Sin module appears three times (`implicit_filter.{1,3,5}.freq`);
    the copies must agree."""
    prefix = f"{key}.filter_fn"
    m.assign(layer.in_proj_kernel, f"{key}.in_proj.weight", mapping.dense_kernel)
    m.assign(layer.in_proj_bias, f"{key}.in_proj.bias")
    m.assign(layer.out_proj_kernel, f"{key}.out_proj.weight", mapping.dense_kernel)
    m.assign(layer.out_proj_bias, f"{key}.out_proj.bias")
    m.assign(layer.short_kernel, f"{key}.short_filter.weight", mapping.depthwise_kernel)
    m.assign(layer.short_bias, f"{key}.short_filter.bias")
    m.assign(layer.filter_bias, f"{prefix}.bias")
    m.assign(layer.pos_z, f"{prefix}.pos_emb.z", lambda w: w.reshape(w.shape[-2], w.shape[-1]))
    for i, (kernel, bias) in enumerate(zip(layer.mlp_kernels, layer.mlp_biases)):
        m.assign(kernel, f"{prefix}.implicit_filter.{2 * i}.weight", mapping.dense_kernel)
        m.assign(bias, f"{prefix}.implicit_filter.{2 * i}.bias")
    m.assign(layer.mlp_out_kernel, f"{prefix}.implicit_filter.6.weight", mapping.dense_kernel)
    freqs = [m.take(f"{prefix}.implicit_filter.{i}.freq") for i in (1, 3, 5)]
    if all(f is not None for f in freqs):
        if not all(np.array_equal(freqs[0], f) for f in freqs[1:]):
            raise ValueError(f"'{prefix}.implicit_filter.{{1,3,5}}.freq' differ; the official filter shares one Sin.")
        m.assign(layer.sin_freq, f"{prefix}.implicit_filter.1.freq", lambda w: w.reshape(-1))
    _, t = positional_features(layer.l_max)
    rates = decay_rates(layer.mlp_out_kernel.shape[-1])
    for buffer, expected in (("pos_emb.t", t), ("modulation.Xdeltas", rates), ("modulation.Ydeltas", rates)):
        value = m.take(f"{prefix}.{buffer}")
        if value is not None and not np.allclose(value.reshape(-1), expected, atol=1e-6):
            raise ValueError(
                f"Buffer '{prefix}.{buffer}' differs from the official formula this layer computes it with (a "
                "trained or modified modulation, which HyenaOperator2D does not support)."
            )


def convert_hyena_vit(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official Hyena-DeiT state dict (`patch_embed.proj`,
    `pos_embed (1, N, C)`, `blocks.i.{norm1,attn,norm2,mlp}`, `norm`, `head`). Strict."""
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if isinstance(layer, HyenaOperator2D):
            convert_hyena_operator(m, layer, key)
        elif isinstance(layer, GridSelfAttention):
            for part in ("qkv", "proj"):
                m.assign(getattr(layer, f"{part}_kernel"), f"{key}.{part}.weight", mapping.dense_kernel)
                m.assign(getattr(layer, f"{part}_bias"), f"{key}.{part}.bias")
        elif isinstance(layer, PositionEmbedding2D):
            m.assign(layer.embedding, "pos_embed", lambda w, g=layer.grid_size: w.reshape(*g, w.shape[-1]))
        else:
            m.standard(layer, key)
    m.finish()


_PAPER = _base.Paper("Multi-Dimensional Hyena for Spatial Inductive Bias", "2309.13600", 45)

_DEIT = dict(tiny=(192, 3), small=(384, 6), base=(768, 12))
_COUNTS = {
    ("tiny", "hyena2d"): 6_042_400,
    ("tiny", "hyena2dattn"): 5_906_830,
    ("small", "hyena2d"): 22_594_144,
    ("small", "hyena2dattn"): 22_367_374,
    ("base", "hyena2d"): 87_548_128,
    ("base", "hyena2dattn"): 87_138_958,
}

VARIANTS = tuple(
    _base.Variant(
        f"hyena_deit{'_hybrid' if method == 'hyena2dattn' else ''}_{size}_patch16_224",
        dict(embed_dim=_DEIT[size][0], depth=12, num_heads=_DEIT[size][1], method=method),
        num_params=count,
        builder_name=f"HyenaDeiT{'Hybrid' if method == 'hyena2dattn' else ''}{size.title()}",
    )
    for (size, method), count in _COUNTS.items()
)

ARCH = _base.Architecture(
    name="hyena_vit",
    network=hyena_vit,
    features=_features,
    input_size=_input_size,
    min_size=lambda patch_size, **_: max(32, patch_size),
    convert=convert_hyena_vit,
    paper=_PAPER,
    variants=VARIANTS,
    license="Apache-2.0",
    source="https://github.com/Itamarzimm/HyenaND",
    classifier="head",
    classifier_key="head.weight",
    testing=_base.Testing(
        # img_size 96 with 8-pixel patches: Hyena filters for up to 12x12 grids, so the harness' 32x32 (4x4) and
        # 64x72 (8x9) inputs fit; the hybrid puts attention in block 2 of 3.
        tiny=dict(
            embed_dim=16,
            depth=3,
            num_heads=2,
            patch_size=8,
            img_size=96,
            method="hyena2dattn",
            hyena_filter_order=8,
            num_classes=10,
        ),
        min_input_size=32,
    ),
    interpolation="bicubic",
)

hyena_vit = ARCH.builder
