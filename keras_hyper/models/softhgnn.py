"""SoftHGNN image classifier (Lei et al., "SoftHGNN: Soft Hypergraph Neural Networks for
General Visual Recognition", arXiv:2505.15325; paper 22 in PAPERS.md).

The repository's CIFAR classifier (`ImageClassification/models/vit_softhgnn*.py`): the small-dataset ViT of
Lee et al. (arXiv:2112.13492) — shifted patch tokens, LayerNorm, Linear, a class token and learned position
embeddings, `depth` pre-norm blocks of locality self-attention and a GELU MLP — followed by one soft hypergraph
convolution over all tokens (`keras_hyper.layers.SoftHypergraphConv`, basic, or sparse with top-k dynamic
hyperedges and the load-balancing loss), then the class token (or the token mean), LayerNorm and Linear.
Layer names follow the official state dict with '-' for '.' (`transformer-layers-0-1-fn-net-3`).

Input `(B, H, W, 3)` with H, W multiples of `patch_size` (one patch at least); logits `(B, num_classes)`.
"""

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers._args import check_positive, check_rate
from keras_hyper.layers.soft_hypergraph import (
    ClassTokenEmbedding,
    ClassTokenSelect,
    LocalitySelfAttention,
    PatchTokenGrid,
    ShiftedPatchTokens,
    SoftHypergraphConv,
)
from keras_hyper.models import _base

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
LN_EPSILON = 1e-5
POOLS = ("cls", "mean")
DEFAULT_SIZE = 32  # CIFAR's


def _dense(units, name):
    return keras.layers.Dense(units, name=name)


def _dropout(x, rate, name):
    return keras.layers.Dropout(rate, name=name)(x) if rate > 0 else x


def softhgnn(
    x,
    patch_size=4,
    dim=512,
    depth=6,
    heads=8,
    dim_head=64,
    mlp_dim=512,
    pool="cls",
    dropout=0.1,
    emb_dropout=0.1,
    num_hyperedges=16,
    num_edge_head=8,
    num_dynamic_hyperedges=0,
    top_k=0,
    lb_loss_weight=0.01,
):
    """Builds the ViT + SoftHGNN classifier (`ViTWithSoftHGNN`, or `ViTWithSoftHGNN_SeS` with dynamic hyperedges;
    the public builder `keras_hyper.models.softhgnn.softhgnn` takes these arguments and the keras.applications
    ones; this network function maps an input tensor to the token grid and the head).

    Args:
        patch_size: side of the square patches, a power of two; the input's height and width must be multiples
            of it (one patch at least: a 16x24 input takes 4 or 8).
        dim, depth, heads, dim_head, mlp_dim: the transformer's width, blocks, heads, channels per head and MLP
            width.
        pool: `"cls"` (the class token) or `"mean"` (the mean token) feeds the head.
        dropout, emb_dropout: dropout in the blocks and the hypergraph logits; after the embeddings.
        num_hyperedges: hyperedges of the basic module, or the FIXED hyperedges of the sparse one (the official
            `num_fixed_hyperedges`).
        num_edge_head: edge heads of the hypergraph module.
        num_dynamic_hyperedges, top_k: the sparse (SeS) module's dynamic hyperedges and how many are kept per
            sample; 0 for the basic module.
        lb_loss_weight: weight of the sparse module's load-balancing loss (added with `add_loss` while training).

    The position table is sized by the input's token grid (`input_shape` defaults to 32x32, CIFAR's size; a
    dynamic size keeps the 32x32 table and resizes it). Features: `P<log2 patch_size>` (`P2` for the CIFAR
    variants), the patch tokens after the hypergraph module on their grid `(B, H/p, W/p, dim)`, class token
    dropped; the head reads the class token (or the mean token) of the same sequence. Example:

        model = softhgnn(dim=192, depth=4, num_dynamic_hyperedges=32, top_k=16, num_classes=10,
                         input_shape=(16, 24, 3))
        backbone = softhgnn(features_only=True)        # {"P2": (B, 8, 8, 512)} for the default 32x32 input
    """
    check_positive(patch_size=patch_size, dim=dim, depth=depth, heads=heads, dim_head=dim_head, mlp_dim=mlp_dim)
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}.")
    check_rate(dropout=dropout, emb_dropout=emb_dropout)
    for size in x.shape[1:3]:
        if size is not None and size % patch_size:
            raise ValueError(f"Input height and width must be multiples of patch_size={patch_size}, got {x.shape}.")
    height, width = (size or DEFAULT_SIZE for size in x.shape[1:3])
    # checked here so that a bad configuration fails before any layer is built
    hypergraph = SoftHypergraphConv(
        num_hyperedges,
        num_edge_head,
        num_dynamic_hyperedges=num_dynamic_hyperedges,
        top_k=top_k,
        dropout=dropout,
        lb_loss_weight=lb_loss_weight,
        gate=True,
        name="soft_hgnn",
    )

    x = grid = ShiftedPatchTokens(patch_size, name="to_patch_embedding-shift")(x)
    x = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="to_patch_embedding-to_patch_tokens-1")(x)
    x = _dense(dim, "to_patch_embedding-to_patch_tokens-2")(x)
    x = ClassTokenEmbedding((height // patch_size, width // patch_size), name="embedding")(x)
    x = _dropout(x, emb_dropout, "emb_dropout")
    for i in range(depth):
        prefix = f"transformer-layers-{i}"
        y = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=f"{prefix}-0-norm")(x)
        y = LocalitySelfAttention(heads, dim_head, name=f"{prefix}-0-fn")(y)
        y = _dropout(y, dropout, f"{prefix}-0-fn-to_out-1")
        x = keras.layers.Add(name=f"{prefix}-0-add")([x, y])
        y = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=f"{prefix}-1-norm")(x)
        y = _dense(mlp_dim, f"{prefix}-1-fn-net-0")(y)
        y = keras.layers.Activation("gelu", name=f"{prefix}-1-fn-net-1")(y)
        y = _dropout(y, dropout, f"{prefix}-1-fn-net-2")
        y = _dense(dim, f"{prefix}-1-fn-net-3")(y)
        y = _dropout(y, dropout, f"{prefix}-1-fn-net-4")
        x = keras.layers.Add(name=f"{prefix}-1-add")([x, y])
    tokens = hypergraph(x)
    features = {_features(patch_size, dim)[0].key: PatchTokenGrid(name="patch_grid")([tokens, grid])}

    def head(_, num_classes):
        # the class token (or the mean over it and the patches) is not on the grid: read the sequence
        if pool == "cls":
            y = ClassTokenSelect(name="cls")(tokens)
        else:
            y = keras.layers.GlobalAveragePooling1D(name="mean")(tokens)
        y = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="mlp_head-0")(y)
        return _dense(num_classes, "mlp_head-1")(y)

    return _base.Network(features, head)


def _features(patch_size, dim, **_):
    return _base.pyramid([dim], [patch_size])


def convert_hypergraph(m, layer, prefix):
    """Maps an official SoftHGNN / SoftHGNN_SeS module under `prefix` ('' for a bare module) onto `layer`.

    The classifier's basic module multiplies its update by `gate`, which is taken as is; the SeS module declares a
    `gate` that its forward never reads: the official function is ours with the gate at 1, so the sparse layer's
    gate is set to 1 whatever the checkpoint holds.
    """
    key = f"{prefix}." if prefix else ""
    m.assign(layer.prototype_base, f"{key}edge_generator.prototype_base")
    for kernel, bias, name in (
        (layer.context_kernel, layer.context_bias, "edge_generator.context_net"),
        (layer.pre_head_kernel, layer.pre_head_bias, "edge_generator.pre_head_proj"),
        (layer.edge_kernel, layer.edge_bias, "edge_proj.0"),
        (layer.node_kernel, layer.node_bias, "node_proj.0"),
    ):
        m.assign(kernel, f"{key}{name}.weight", mapping.dense_kernel)
        m.assign(bias, f"{key}{name}.bias")
    if layer.gate:
        m.assign(layer.gate_weight, f"{key}gate", np.ones_like if layer.num_dynamic_hyperedges else None)


def convert_softhgnn(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official `ViTWithSoftHGNN(_SeS)` state dict; strict."""
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if m.standard(layer, key):
            continue
        if isinstance(layer, ClassTokenEmbedding):
            m.assign(layer.cls_token, "cls_token")
            m.assign(layer.pos_embedding, "pos_embedding")
        elif isinstance(layer, LocalitySelfAttention):
            m.assign(layer.qkv_kernel, f"{key}.to_qkv.weight", mapping.dense_kernel)
            m.assign(layer.out_kernel, f"{key}.to_out.0.weight", mapping.dense_kernel)
            m.assign(layer.out_bias, f"{key}.to_out.0.bias")
            m.assign(layer.temperature, f"{key}.temperature")
        elif isinstance(layer, SoftHypergraphConv):
            convert_hypergraph(m, layer, key)
    m.finish()


_PAPER = _base.Paper("SoftHGNN: Soft Hypergraph Neural Networks for General Visual Recognition", "2505.15325", 22)

_CIFAR = dict(
    patch_size=4, dim=512, depth=6, heads=8, dim_head=64, mlp_dim=512, dropout=0.1, emb_dropout=0.1, num_classes=10
)

VARIANTS = (
    _base.Variant(
        "vit_softhgnn",
        dict(_CIFAR, num_hyperedges=16, num_edge_head=8),
        num_params=18_815_473,
        input_size=32,
        crop_pct=1.0,
        paper_top1=80.5,
        builder_name="ViTSoftHGNN",
    ),
    _base.Variant(
        "vit_softhgnn_ses",
        dict(_CIFAR, num_hyperedges=16, num_dynamic_hyperedges=32, top_k=16, num_edge_head=8, lb_loss_weight=0.01),
        num_params=35_625_457,
        input_size=32,
        crop_pct=1.0,
        paper_top1=81.1,
        builder_name="ViTSoftHGNNSeS",
    ),
)

ARCH = _base.Architecture(
    name="softhgnn",
    network=softhgnn,
    features=_features,
    num_classes=10,
    input_size=DEFAULT_SIZE,
    min_size=lambda patch_size, **_: patch_size,
    convert=convert_softhgnn,
    paper=_PAPER,
    variants=VARIANTS,
    license="MIT",
    source="https://github.com/Mengqi-Lei/SoftHGNN",
    classifier="mlp_head-1",
    classifier_key="mlp_head.1.weight",
    testing=_base.Testing(
        # the sparse module (top-k, load-balancing loss); at the smallest input, one patch (the harness' dynamic-size
        # check runs it on a 2x3 grid); the fixture's cases are single modules, checked by
        # tests/layers/test_soft_hypergraph.py
        tiny=dict(
            patch_size=8,
            dim=32,
            depth=1,
            heads=2,
            dim_head=16,
            mlp_dim=32,
            dropout=0.0,
            emb_dropout=0.0,
            num_hyperedges=2,
            num_edge_head=2,
            num_dynamic_hyperedges=4,
            top_k=2,
            num_classes=10,
        ),
        min_input_size=8,
        # At that input (one patch and the class token) locality attention, which masks each token's own entry,
        # leaves one entry to attend to: its softmax is 1 whatever the temperature (trained on a 2x2 grid in
        # tests/models/test_softhgnn.py).
        zero_grad_at_init=("transformer-layers-0-0-fn/temperature",),
    ),
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    interpolation="bilinear",
)

softhgnn = ARCH.builder
