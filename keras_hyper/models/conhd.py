"""CoNHD for edge-dependent node classification (Zheng et al., "Modeling Edge-Specific Node Features through
Co-Representation Neural Hypergraph Diffusion", arXiv:2405.14286; paper 19 in PAPERS.md).

`conhd` builds the official `CoNHD_GD` (`update="gd"`) or `CoNHD_ADMM` (`update="admm"`) encoder, the
`CoNHDDiffusion` layer named `diffusion`, and on top (`include_top=True`) the official `CoNHDScorer`: per
incidence, `scorer_layers` Linear layers (tanh and LayerNorm between them) giving the class logits of the
vertex *in that hyperedge*.

Inputs: `features` (B, N, input_dim) vertex features, `incidence` (B, M, 2) int rows `[vertex, hyperedge]`
(hyperedges numbered 0..E-1) and, when OrderPE is on, `weight` (B, M, weight_dim) per-incidence positional
inputs (officially the vertex's centrality ranks inside the hyperedge). Output: (B, M, num_classes) scores, or
with `include_top=False` the (B, M, co_rep_dim) co-representations, in incidence order.

The variants are the official run scripts' configurations (all `CoNHD_GD`, ISAB or UNP blocks, 128 wide);
no checkpoints are published. Their counts include the one-layer scorer; the official vertex-feature
tables (random-walk embeddings) are inputs here, not weights.
"""

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers._args import check_positive
from keras_hyper.layers.conhd import ATT_TYPES, BLOCKS, CoNHDDiffusion, SetISAB, SetSAB, SetUNP
from keras_hyper.models import _base

LN_EPSILON = 1e-5


def conhd(
    input_dim,
    *,
    co_rep_dim=128,
    update="gd",
    block="ISAB",
    num_layers=2,
    share_weights=True,
    num_att_layer=2,
    num_heads=4,
    num_inds=4,
    att_type_v="OrderPE",
    att_type_e="OrderPE",
    weight_dim=4,
    layernorm=False,
    dropout=0.6,
    input_dropout=0.0,
    node_agg=False,
    hedge_agg=False,
    include_top=True,
    num_classes=3,
    scorer_layers=1,
    scorer_hidden=64,
    classifier_activation="softmax",
    num_nodes=None,
    num_incidences=None,
    weights=None,
    name="conhd",
):
    """Builds CoNHD (the encoder and, with `include_top`, the per-incidence scorer).

    Args:
        input_dim: vertex feature width (official `input_vdim`).
        co_rep_dim: co-representation width.
        update: "gd" (`CoNHD_GD`) or "admm" (`CoNHD_ADMM`).
        block: set block, "ISAB", "SAB" or "UNP".
        num_layers: diffusion steps; share_weights: one step layer for all of them (official default).
        num_att_layer, num_heads, num_inds: set blocks per side, heads, ISAB inducing points.
        att_type_v, att_type_e: "OrderPE" or "pure" for the hyperedge-side / vertex-side sets.
        weight_dim: width of the per-incidence `weight` input, used only with OrderPE.
        layernorm: LayerNorms in the set blocks and after each update.
        dropout, input_dropout: dropout of the set blocks' outputs and of the initial co-representations.
        node_agg, hedge_agg: the official GD ablations (set means instead of the equivariant outputs).
        include_top: add the scorer; num_classes, scorer_layers, scorer_hidden: its classes, Linear layers
            and hidden width (`CoNHDScorer`'s num_classes, num_layers, dim_hidden).
        classifier_activation: activation of the scores (None for logits).
        num_nodes, num_incidences: fix N and M in the input shapes (None: any graph size).
        weights: None or an official state dict file (see `convert_conhd`).
        name: model name.
    Returns:
        A `keras.Model` taking `[features, incidence]`, or `[features, incidence, weight]` with OrderPE.
    """
    check_positive(input_dim=input_dim, co_rep_dim=co_rep_dim, scorer_hidden=scorer_hidden)
    check_positive(scorer_layers=scorer_layers)
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {BLOCKS}, got {block!r}.")
    uses_weight = "OrderPE" in (att_type_v, att_type_e)
    if uses_weight:
        check_positive(weight_dim=weight_dim)
    _base.validate_head(include_top, None, num_classes, classifier_activation)
    for key, value in (("num_nodes", num_nodes), ("num_incidences", num_incidences)):
        if value is not None:
            check_positive(**{key: value})

    features = keras.Input((num_nodes, input_dim), name="features")
    incidence = keras.Input((num_incidences, 2), dtype="int32", name="incidence")
    inputs = [features, incidence]
    if uses_weight:
        inputs.append(keras.Input((num_incidences, weight_dim), name="weight"))
    x = CoNHDDiffusion(
        co_rep_dim,
        update,
        block,
        num_layers=num_layers,
        share_weights=share_weights,
        num_att_layer=num_att_layer,
        num_heads=num_heads,
        num_inds=num_inds,
        att_type_v=att_type_v,
        att_type_e=att_type_e,
        layernorm=layernorm,
        dropout=dropout,
        input_dropout=input_dropout,
        node_agg=node_agg,
        hedge_agg=hedge_agg,
        name="diffusion",
    )(inputs)
    if include_top:
        for i in range(scorer_layers - 1):
            x = keras.layers.Dense(scorer_hidden, activation="tanh", name=f"scorer-predict_layer-{i}")(x)
            x = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=f"scorer-normalization-{i}")(x)
        x = keras.layers.Dense(num_classes, name=f"scorer-predict_layer-{scorer_layers - 1}")(x)
        x = _base.predictions(x, classifier_activation)
    return _base.finish(inputs, x, name=name, weights=weights, arch=ARCH)


def _convert_mab(m, mab, prefix):
    for part in ("fc_q", "fc_k", "fc_v"):
        m.dense(getattr(mab, part), f"{prefix}.{part}")
    m.dense(mab.fc_o, f"{prefix}.fc_o.0")
    for norm in ("ln0", "ln1"):
        if getattr(mab, norm) is not None:
            m.layer_norm(getattr(mab, norm), f"{prefix}.{norm}")


def _convert_block(m, block, prefix):
    if isinstance(block, SetISAB):
        m.assign(block.inducing, f"{prefix}.I", lambda w: w[0])
        _convert_mab(m, block.mab0, f"{prefix}.mab0")
        _convert_mab(m, block.mab1, f"{prefix}.mab1")
    elif isinstance(block, SetSAB):
        _convert_mab(m, block.mab, f"{prefix}.mab")
    elif isinstance(block, SetUNP):
        for name, mlp in (("W1", block.w1), ("W2", block.w2)):
            for i, lin in enumerate(mlp.lins):
                m.dense(lin, f"{prefix}.{name}.lins.{i}")
            for i, norm in enumerate(mlp.norms):
                m.layer_norm(norm, f"{prefix}.{name}.normalizations.{i}")


def convert_conhd(state_dict, model):
    """Fills a model from the official state dicts: the encoder's keys (`CoNHD_GD` / `CoNHD_ADMM`:
    `lin_in.*`, `conv.*` or `conv.<i>.*`) as they are and, for a model with its scorer, the `CoNHDScorer`
    keys under `scorer.` (the official training saves the two as `embedder.pt` and `scorer.pt`)."""
    m = mapping.StateDictMapper(state_dict, model)
    diffusion = model.get_layer("diffusion")
    m.dense(diffusion.lin_in, "lin_in")
    for step in diffusion.steps:
        prefix = step.name.replace("-", ".")
        for pe in (step.pe_v, step.pe_e):
            if pe is not None:
                m.dense(pe, f"{prefix}.{pe.name}")
        for side, blocks in (("enc_v", step.enc_v), ("enc_e", step.enc_e)):
            for i, block in enumerate(blocks):
                _convert_block(m, block, f"{prefix}.{side}.{i}")
        m.dense(step.update_func, f"{prefix}.update_func")
        if step.ln0 is not None:
            m.layer_norm(step.ln0, f"{prefix}.ln0")
    for layer in model.layers:
        if layer.name.startswith("scorer-"):
            _, kind, index = layer.name.split("-")
            m.standard(layer, f"scorer.predict_layer.{kind}.{index}")
    m.finish()


def official_kwargs(kwargs, scorer=None):
    """Builder kwargs of an official `CoNHD_GD` / `CoNHD_ADMM` configuration (constructor kwargs, as in the
    reference fixtures and `variants.json`) and, optionally, of its `CoNHDScorer` kwargs."""
    if kwargs["PE_Block"] not in BLOCKS or kwargs["att_type_v"] not in ATT_TYPES:
        raise ValueError(f"Unsupported official configuration {kwargs!r}.")
    out = dict(
        input_dim=kwargs["input_vdim"],
        co_rep_dim=kwargs["co_rep_dim"],
        update="gd" if kwargs["model"] == "CoNHD_GD_Layer" else "admm",
        block=kwargs["PE_Block"],
        num_layers=kwargs["num_layers"],
        share_weights=kwargs.get("share_weights", True),
        num_att_layer=kwargs["num_att_layer"],
        num_heads=kwargs["num_heads"],
        num_inds=kwargs["num_inds"],
        att_type_v=kwargs["att_type_v"],
        att_type_e=kwargs["att_type_e"],
        weight_dim=kwargs["weight_dim"],
        layernorm=kwargs["layernorm"],
        dropout=kwargs["dropout"],
        input_dropout=kwargs["input_dropout"],
        node_agg=kwargs.get("node_agg", False),
        hedge_agg=kwargs.get("hedge_agg", False),
    )
    if scorer is None:
        return {**out, "include_top": False}
    return {
        **out,
        "num_classes": scorer["num_classes"],
        "scorer_layers": scorer["num_layers"],
        "scorer_hidden": scorer["dim_hidden"],
        "classifier_activation": None,
    }


# The harness graph (the tiny_gd fixture's): 12 vertices, six hyperedges, 22 incidences.
_HYPEREDGES = ((6, 11), (5, 2, 3), (6, 1, 10, 2, 7), (2, 4, 8, 9), (1, 9, 0), (3, 7, 2, 9, 8))
_INCIDENCE = np.array([(v, e) for e, members in enumerate(_HYPEREDGES) for v in members], "int32")


def _example_inputs(batch):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(batch, 12, 8)).astype("float32")
    weight = rng.uniform(size=(batch, len(_INCIDENCE), 4)).astype("float32")
    return features, np.repeat(_INCIDENCE[None], batch, axis=0), weight


# dataset: (vertex feature width, diffusion steps, OrderPE, classes, counts with the scorer for UNP and ISAB),
# from the official run scripts (script/edge_dependent_node_classification/run_*.sh); the pubmed script runs
# ISAB only.
DATASETS = {
    "emailEnron": (44, 1, True, 3, 402819, 603523),
    "emailEu": (44, 1, True, 2, 402690, 603394),
    "StackOverflowBiology": (44, 2, True, 3, 402819, 603523),
    "StackOverflowPhysics": (44, 1, True, 3, 402819, 603523),
    "DBLP": (44, 2, True, 3, 402819, 603523),
    "AMinerAuthor": (44, 1, True, 3, 402819, 603523),
    "cora_coauthorship_outsider_id": (1433, 1, False, 2, 579202, 779906),
    "dblp_coauthorship_outsider_id": (1425, 1, False, 2, 578178, 778882),
    "citeseer_cocitation_outsider_id": (3703, 1, False, 2, 869762, 1070466),
    "pubmed_cocitation_outsider_id": (500, 1, False, 2, None, 660482),
}


def _variant_kwargs(input_dim, num_layers, order_pe, classes, block):
    att = "OrderPE" if order_pe else "pure"
    return dict(
        input_dim=input_dim,
        block=block,
        num_layers=num_layers,
        att_type_v=att,
        att_type_e=att,
        weight_dim=4 if order_pe else 0,
        dropout=0.7,
        input_dropout=0.7,
        num_classes=classes,
    )


VARIANTS = tuple(
    _base.Variant(f"conhd_{dataset.lower()}_{block.lower()}", _variant_kwargs(c, n, pe, k, block), num_params=count)
    for dataset, (c, n, pe, k, unp, isab) in DATASETS.items()
    for block, count in (("UNP", unp), ("ISAB", isab))
    if count is not None
)

ARCH = _base.Architecture(
    name="conhd",
    builder=conhd,
    convert=convert_conhd,
    paper=_base.Paper(
        "Modeling Edge-Specific Node Features through Co-Representation Neural Hypergraph Diffusion", "2405.14286", 19
    ),
    variants=VARIANTS,
    license="MIT",
    source="https://github.com/zhengyijia/CoNHD",
    testing=_base.Testing(
        # the tiny_gd fixture's configuration with one set block per side (a smaller graph to trace) and a little
        # dropout, so that the harness trains every layer kind, the shared step twice
        tiny=dict(
            input_dim=8,
            co_rep_dim=16,
            num_att_layer=1,
            num_inds=3,
            layernorm=True,
            dropout=0.1,
            input_dropout=0.1,
            scorer_layers=2,
            scorer_hidden=8,
        ),
    ),
    example_inputs=_example_inputs,
    kind="hypergraph",
)
