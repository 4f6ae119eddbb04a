"""HyperFormer for hyper-relational knowledge-graph completion (Hu et al., "HyperFormer: Enhancing Entity and
Relation Interaction for Hyper-Relational Knowledge Graph Completion", CIKM 2023, arXiv:2308.06512; paper 28 in
PAPERS.md). The official model is `Knowformer` (zhiweihu1103/HKGC-HyperFormer); its training wrapper's loss
is `LabelSmoothingCrossEntropy` + `hyperformer_loss`, its ranking `entity_scores` + `filtered_ranks`.

Vocabulary: 7 special tokens (PAD = 0, MASK = 1, SEP, CLS, R_None, QR_None, QE_None), then the entities, then
the relations as pairs (r, r_reverse): `vocab_size = 7 + num_entities + 2 * num_relations`.

Inputs (int ids, batch first):
- `src_ids` (B, 3 + 2 * rel_neighbor_num): the query statement `[head, relation, MASK, qr_1, qe_1, ..., PAD]`;
- `ent_context_ids` (B, ent_neighbor_num, 3 + 2 * ent_qual_neighbor_num): statements around the head entity,
  `[entity, relation or R_None, MASK, qr, qe, ..., PAD]`;
- `rel_context_ids` (B, rel_neighbor_num, 3): qualifier prompts `[q_rel, q_ent, MASK]`.

Forward: (1) the statement is encoded with its padding masked (the only masked pass) and the MASK state scores
the vocabulary (`triple_logits`); (2) each entity-neighbour statement is encoded by the same encoder, unmasked
(`neighbor_logits` from their MASK states), and their MASK states are averaged; (3) the qualifier pairs are
composed (DistMult) and averaged; (4) entity, the first pass's relation state and qualifiers interact
(InteractE convolution + gated fusion); (5) the fused entity and qualifier vectors are averaged into the head
and relation tokens of the statement, which is encoded again, unmasked: `logits`. Inputs read LayerNorm-ed
entity/relation rows; every projection uses the raw table.

Layer names follow the official modules (`ele_embedding`, `triple_encoder`, `interaction`, ...).
"""

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers._args import check_non_negative, check_positive, check_rate
from keras_hyper.layers.hyperformer import (
    QUALIFIER_MODES,
    BidirectionalInteraction,
    EntityNeighborAggregator,
    HyperRelationalEmbedding,
    InertWeights,
    KnowformerEncoder,
    QualifierAggregator,
    StatementContextMerge,
    TokenReadout,
)
from keras_hyper.layers.moe import GATES
from keras_hyper.models import _base

NUM_SPECIALS = 7
MASK_POSITION = 2


def vocab_size(num_entities, num_relations):
    """The official vocabulary size: 7 special tokens, the entities and every relation with its reverse."""
    return NUM_SPECIALS + num_entities + 2 * num_relations


def _inert_shapes(hidden_size, num_layers, num_experts, expert_units, flatten_size):
    """Official parameters that no forward of `Knowformer` reads (with `double_encoder=False`, the default and
    what run.sh uses): the whole `context_encoder`, each encoder's `pooler` and `dense`, the per-layer `norm1`,
    `norm2` and `sublayer.1.norm` (unused in MoE mode), `bn2` and `fc` (InteractE's single-output head)."""
    d = hidden_size
    shapes = {}

    def linear(key, out_features, in_features):
        shapes[f"{key}.weight"] = (out_features, in_features)
        shapes[f"{key}.bias"] = (out_features,)

    def norm(key):
        shapes[f"{key}.weight"] = (d,)
        shapes[f"{key}.bias"] = (d,)

    for encoder in ("triple_encoder", "context_encoder"):
        for i in range(num_layers):
            layer = f"{encoder}.layers.{i}"
            if encoder == "context_encoder":
                for j in range(4):
                    linear(f"{layer}.self_attn.linears.{j}", d, d)
                linear(f"{layer}.feed_forward.gate.gate", num_experts, d)
                shapes[f"{layer}.feed_forward.experts.htoh4.weight"] = (num_experts, expert_units, d)
                shapes[f"{layer}.feed_forward.experts.htoh4.bias"] = (num_experts, expert_units)
                shapes[f"{layer}.feed_forward.experts.h4toh.weight"] = (num_experts, d, expert_units)
                shapes[f"{layer}.feed_forward.experts.h4toh.bias"] = (num_experts, d)
                norm(f"{layer}.feed_forward.layer_norm")
                norm(f"{layer}.sublayer.0.norm")
            norm(f"{layer}.sublayer.1.norm")
            norm(f"{layer}.norm1")
            norm(f"{layer}.norm2")
        if encoder == "context_encoder":
            norm(f"{encoder}.norm")
        linear(f"{encoder}.dense", d, d)
        linear(f"{encoder}.pooler.dense", d, d)
    norm("bn2")
    linear("fc", d, flatten_size)
    return {key.replace(".", "-"): shape for key, shape in shapes.items()}


def hyperformer(
    num_entities,
    num_relations,
    *,
    hidden_size=400,
    num_layers=8,
    num_heads=2,
    intermediate_size=2048,
    num_experts=64,
    top_k=2,
    moe_gate="raw",
    ent_neighbor_num=3,
    rel_neighbor_num=6,
    ent_qual_neighbor_num=2,
    conv_channels=96,
    conv_kernel_size=9,
    conv_kernel_width=20,
    conv_kernel_height=20,
    conv_permutations=1,
    conv_padding=0,
    qualifier_mode="dismult",
    input_dropout=0.7,
    context_dropout=0.1,
    qualifier_dropout=0.3,
    attention_dropout=0.1,
    hidden_dropout=0.1,
    entity_dropout=0.3,
    residual_dropout=0.0,
    conv_input_dropout=0.2,
    conv_hidden_dropout=0.5,
    conv_feature_dropout=0.5,
    permutation_seed=0,
    official_unused_weights=True,
    weights=None,
    name="hyperformer",
):
    """Builds HyperFormer (the official `Knowformer`). Defaults are the official run.sh configuration.

    Args:
        num_entities, num_relations: the dataset's vocabulary (see `vocab_size`).
        hidden_size, num_layers, num_heads: the statement encoder.
        intermediate_size, num_experts, top_k: the MoE feed-forward; each expert has
            `intermediate_size // top_k` hidden units, as the official.
        moe_gate: "raw" (the raw top-k gate logits weigh the experts, fastmoe 0.2.0, which the official README
            pins) or "softmax" (softmax of the top-k logits, fastmoe >= 1.0).
        ent_neighbor_num, rel_neighbor_num, ent_qual_neighbor_num: neighbour statements per query, qualifier
            pairs per statement, qualifier pairs per neighbour statement; they fix the input shapes.
        conv_channels, conv_kernel_size, conv_kernel_width, conv_kernel_height, conv_permutations,
            conv_padding: the InteractE interaction (`conv_kernel_width * conv_kernel_height == hidden_size`).
        qualifier_mode: "dismult" (official), "transe" or "complex" composition of qualifier pairs.
        input_dropout, context_dropout, qualifier_dropout, attention_dropout, hidden_dropout, entity_dropout,
            residual_dropout, conv_input_dropout, conv_hidden_dropout, conv_feature_dropout: the official
            `*_dropout_prob` rates (run.sh values).
        permutation_seed: seed of the chequer permutations (the official draws them from numpy's global state;
            the converter takes them from a `chequer_perm` entry when the state dict has one).
        official_unused_weights: keep the official parameters that no forward reads (second encoder, poolers,
            unused norms, `bn2`, `fc`) in an `InertWeights` layer, so that counts and checkpoints match exactly.
        weights: None or a local official state-dict file.
        name: model name.

    Returns:
        A `keras.Model` taking `[src_ids, ent_context_ids, rel_context_ids]` and returning a dict of logits
        over the whole vocabulary: `logits` (B, V) from the fused second pass, `triple_logits` (B, V) from the
        first pass and `neighbor_logits` (B, ent_neighbor_num, V).
    """
    check_positive(
        num_entities=num_entities,
        num_relations=num_relations,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        ent_neighbor_num=ent_neighbor_num,
        rel_neighbor_num=rel_neighbor_num,
    )
    check_non_negative(ent_qual_neighbor_num=ent_qual_neighbor_num)
    if not isinstance(top_k, int) or top_k < 1 or intermediate_size % top_k:
        raise ValueError(f"top_k must be a positive divisor of intermediate_size={intermediate_size}, got {top_k!r}.")
    if conv_kernel_width * conv_kernel_height != hidden_size:
        raise ValueError(
            f"conv_kernel_width * conv_kernel_height must equal hidden_size={hidden_size}, got "
            f"{conv_kernel_width} * {conv_kernel_height}."
        )
    if not isinstance(num_heads, int) or num_heads < 1 or hidden_size % num_heads:
        raise ValueError(f"hidden_size={hidden_size} must be divisible by num_heads, got num_heads={num_heads!r}.")
    if qualifier_mode not in QUALIFIER_MODES:
        raise ValueError(f"qualifier_mode must be one of {QUALIFIER_MODES}, got {qualifier_mode!r}.")
    if moe_gate not in GATES:
        raise ValueError(f"moe_gate must be one of {GATES}, got {moe_gate!r}.")
    vocab = vocab_size(num_entities, num_relations)
    src = keras.Input((3 + 2 * rel_neighbor_num,), dtype="int32", name="src_ids")
    ent_context = keras.Input((ent_neighbor_num, 3 + 2 * ent_qual_neighbor_num), dtype="int32", name="ent_context_ids")
    rel_context = keras.Input((rel_neighbor_num, 3), dtype="int32", name="rel_context_ids")

    embedding = HyperRelationalEmbedding(
        vocab, hidden_size, NUM_SPECIALS, num_entities, entity_dropout=entity_dropout, name="ele_embedding"
    )
    encoder = KnowformerEncoder(
        num_layers,
        num_heads,
        num_experts,
        intermediate_size // top_k,
        top_k,
        moe_gate,
        attention_dropout=attention_dropout,
        hidden_dropout=hidden_dropout,
        residual_dropout=residual_dropout,
        name="triple_encoder",
    )
    readout = TokenReadout(MASK_POSITION, name="mask_readout")

    # (1) first pass, the only one with the padding mask
    x = keras.layers.Dropout(input_dropout, name="input_drop")(embedding(src))
    first = encoder(x, token_ids=src)
    triple_logits = embedding(readout(first), mode="logits")
    relation = TokenReadout(1, name="relation_readout")(first)

    # (2) entity neighbours, encoded by the same encoder without a mask
    context = keras.layers.Dropout(input_dropout, name="context_input_drop")(embedding(ent_context))
    context_states = readout(encoder(context))
    neighbor_logits = embedding(context_states, mode="logits")
    entity = EntityNeighborAggregator(name="entity_neighbors")(context_states)

    # (3) qualifiers
    qualifiers = QualifierAggregator(qualifier_mode, name="qualifiers")(embedding(rel_context))

    # (4) bidirectional interaction, (5) second pass
    fused_entity, fused_qualifiers = BidirectionalInteraction(
        channels=conv_channels,
        kernel_size=conv_kernel_size,
        kernel_width=conv_kernel_width,
        kernel_height=conv_kernel_height,
        permutations=conv_permutations,
        padding=conv_padding,
        input_dropout=conv_input_dropout,
        feature_dropout=conv_feature_dropout,
        hidden_dropout=conv_hidden_dropout,
        seed=permutation_seed,
        name="interaction",
    )([entity, relation, qualifiers])
    merged = StatementContextMerge(context_dropout, qualifier_dropout, name="context_merge")(
        [embedding(src), fused_entity, fused_qualifiers]
    )
    second = encoder(keras.layers.Dropout(input_dropout, name="second_input_drop")(merged))
    logits = embedding(readout(second), mode="logits")

    if official_unused_weights:
        # the official fc's input size, whatever the convolution's real output size
        flatten = 2 * conv_kernel_width * conv_kernel_height * conv_channels * conv_permutations
        shapes = _inert_shapes(hidden_size, num_layers, num_experts, intermediate_size // top_k, flatten)
        logits = InertWeights(shapes, name="official_unused")(logits)
    outputs = {"logits": logits, "triple_logits": triple_logits, "neighbor_logits": neighbor_logits}
    return _base.finish([src, ent_context, rel_context], outputs, name=name, weights=weights, arch=ARCH)


def convert_hyperformer(state_dict, model):
    """Fills `model` from an official `Knowformer` state dict.

    Strict: `num_batches_tracked` counters are ignored (training counters), and so are `bn2`'s running
    statistics (the official `bn2` is never applied); the parameters no forward reads go to the
    `official_unused` layer, or are ignored when the model was built with `official_unused_weights=False`.
    The chequer permutations are not in an official state dict (the official model redraws them from numpy's
    global random state): a `chequer_perm` entry `(permutations, 2 * hidden)` is used when present, the
    model's own otherwise. FMoELinear weights `(experts, out, in)` become `(experts, in, out)`.
    """
    ignore = [r"bn2\.running_(mean|var)$"]
    names = {layer.name for layer in model.layers}
    if "official_unused" not in names:
        ignore += [
            r"context_encoder\..*",
            r"triple_encoder\.(pooler|dense)\..*",
            r"triple_encoder\.layers\.\d+\.(norm1|norm2|sublayer\.1\.norm)\..*",
            r"bn2\..*",
            r"fc\..*",
        ]
    m = mapping.StateDictMapper(state_dict, model, ignore=ignore)
    embedding = model.get_layer("ele_embedding")
    m.assign(embedding.embeddings, "ele_embedding")
    m.layer_norm(embedding.norm, "entity_or_relation_layernorm_layer")

    encoder = model.get_layer("triple_encoder")
    for i in range(encoder.num_layers):
        prefix = f"triple_encoder.layers.{i}"
        projections = (encoder.attn_query, encoder.attn_key, encoder.attn_value, encoder.attn_output)
        for j, layers in enumerate(projections):
            m.dense(layers[i], f"{prefix}.self_attn.linears.{j}")
        m.layer_norm(encoder.attn_norms[i], f"{prefix}.sublayer.0.norm")
        m.layer_norm(encoder.ffn_norms[i], f"{prefix}.feed_forward.layer_norm")
        moe = encoder.experts[i]
        m.dense(moe.gate_dense, f"{prefix}.feed_forward.gate.gate")
        experts = f"{prefix}.feed_forward.experts"
        m.assign(moe.kernel_in, f"{experts}.htoh4.weight", lambda w: np.transpose(w, (0, 2, 1)))
        m.assign(moe.bias_in, f"{experts}.htoh4.bias")
        m.assign(moe.kernel_out, f"{experts}.h4toh.weight", lambda w: np.transpose(w, (0, 2, 1)))
        m.assign(moe.bias_out, f"{experts}.h4toh.bias")
    m.layer_norm(encoder.norm, "triple_encoder.norm")

    interaction = model.get_layer("interaction")
    conv = interaction.conv
    m.batch_norm(conv.bn0, "bn0")
    m.batch_norm(conv.bn1, "bn1")
    m.batch_norm(conv.bn3, "bn3")
    m.assign(conv.kernel, "conv_filt", mapping.conv_kernel)
    m.dense(conv.fc, "fc2")
    m.dense(interaction.fuse_net, "fuse_net.linear")
    if "chequer_perm" in state_dict:
        m.assign(conv.permutation, "chequer_perm")
    else:
        m.assigned.add(id(conv.permutation))

    if "official_unused" in names:
        for key, variable in model.get_layer("official_unused").inert.items():
            m.assign(variable, key.replace("-", "."))
    m.finish()


@keras.saving.register_keras_serializable(package="keras_hyper")
class LabelSmoothingCrossEntropy(keras.losses.Loss):
    """The official training loss: cross-entropy over the whole vocabulary against a smoothed one-hot target,
    `1 - s` on the label and `s / (V - 1)` elsewhere (official `kge_label_smoothing` s = 0.9).

    `y_true` holds entity indices (0-based, as the official datasets' labels); `label_offset` (the number of
    special tokens) turns them into vocabulary ids. `y_true` (...,) against `y_pred` (..., V) logits.
    """

    def __init__(self, label_smoothing=0.9, label_offset=NUM_SPECIALS, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name or "label_smoothing_cross_entropy")
        check_rate(label_smoothing=label_smoothing)
        self.label_smoothing = label_smoothing
        self.label_offset = label_offset

    def call(self, y_true, y_pred):
        y_pred = keras.ops.cast(y_pred, "float32")
        classes = y_pred.shape[-1]
        labels = keras.ops.cast(y_true, "int32") + self.label_offset
        off = self.label_smoothing / (classes - 1)
        target = keras.ops.one_hot(labels, classes) * (1.0 - self.label_smoothing - off) + off
        return -keras.ops.sum(target * keras.ops.log_softmax(y_pred, axis=-1), axis=-1)

    def get_config(self):
        return {
            "label_smoothing": self.label_smoothing,
            "label_offset": self.label_offset,
            "reduction": self.reduction,
            "name": self.name,
        }


def hyperformer_loss(label_smoothing=0.9):
    """`compile` arguments for the official wrapper loss: `loss + triple_loss + 0.5 * mean neighbour loss`.

    Targets: `{"logits": labels (B,), "triple_logits": labels (B,), "neighbor_logits": neighbour labels
    repeated per neighbour (B, ent_neighbor_num)}`; labels are entity indices. Returns
    `dict(loss=..., loss_weights=...)` for `model.compile(optimizer, **hyperformer_loss())`.
    """
    loss = LabelSmoothingCrossEntropy(label_smoothing)
    keys = ("logits", "triple_logits", "neighbor_logits")
    return {"loss": dict.fromkeys(keys, loss), "loss_weights": dict(zip(keys, (1.0, 1.0, 0.5)))}


def entity_scores(outputs, num_entities):
    """The official ranking scores (B, num_entities): the entity slices of `logits` and `triple_logits` added."""
    entities = slice(NUM_SPECIALS, NUM_SPECIALS + num_entities)
    return outputs["logits"][:, entities] + outputs["triple_logits"][:, entities]


def filtered_ranks(scores, labels, filters=None):
    """Filtered ranks (1 = best) of the `labels` (entity indices) under `scores` (B, num_entities), numpy.

    `filters` (N, 2) rows `[row, entity]` name the other true answers, which are removed before ranking (the
    official `get_ranks`).
    """
    scores = np.array(scores, dtype="float64")
    labels = np.asarray(labels)
    rows = np.arange(len(labels))
    target = scores[rows, labels]
    if filters is not None and len(filters):
        filters = np.asarray(filters)
        scores[filters[:, 0], filters[:, 1]] = -np.inf
    return 1 + np.sum(scores > target[:, None], axis=1)


def _tiny_inputs(batch):
    rng = np.random.default_rng(0)
    num_entities, num_relations = 12, 4
    entities = rng.integers(NUM_SPECIALS, NUM_SPECIALS + num_entities, size=(batch, 7))
    relations = rng.integers(NUM_SPECIALS + num_entities, vocab_size(num_entities, num_relations), size=(batch, 7))
    src = np.stack([entities[:, 0], relations[:, 0], np.ones(batch, int), relations[:, 1], entities[:, 1]], 1)
    src = np.concatenate([src, np.zeros((batch, 2), int)], axis=1)  # one qualifier pair and one padding pair
    ent_context = np.stack(
        [entities[:, 2:4], relations[:, 2:4], np.ones((batch, 2), int), relations[:, 4:6], entities[:, 4:6]], -1
    )
    rel_context = np.stack([relations[:, 5:7], entities[:, 5:7], np.ones((batch, 2), int)], -1)
    return src.astype("int32"), ent_context.astype("int32"), rel_context.astype("int32")


_RUN_SH = dict(
    hidden_size=400,
    num_layers=8,
    num_heads=2,
    intermediate_size=2048,
    num_experts=64,
    top_k=2,
    conv_channels=96,
    conv_kernel_size=9,
    conv_kernel_width=20,
    conv_kernel_height=20,
    conv_permutations=1,
)

# dataset: (entities, relations) from the commonly published statistics (StarE-style splits); the official
# data are not reachable here, so these counts, and the parameter counts below, are estimates
DATASETS = {"wd50k": (47156, 532), "jf17k": (28645, 322), "wikipeople": (34825, 178)}


def _run_sh_params(num_entities, num_relations):
    """The official count of the run.sh configuration: 944,035,170 + 400 * vocab_size."""
    return 944035170 + 400 * vocab_size(num_entities, num_relations)


VARIANTS = tuple(
    _base.Variant(
        f"hyperformer_{dataset}",
        dict(num_entities=entities, num_relations=relations, **_RUN_SH),
        num_params=_run_sh_params(entities, relations),
    )
    for dataset, (entities, relations) in DATASETS.items()
)

ARCH = _base.Architecture(
    name="hyperformer",
    builder=hyperformer,
    convert=convert_hyperformer,
    paper=_base.Paper(
        "HyperFormer: Enhancing Entity and Relation Interaction for Hyper-Relational Knowledge Graph Completion",
        "2308.06512",
        28,
    ),
    variants=VARIANTS,
    license="none stated (no LICENSE file in the official repository)",
    source="https://github.com/zhiweihu1103/HKGC-HyperFormer",
    testing=_base.Testing(
        tiny=dict(
            num_entities=12,
            num_relations=4,
            hidden_size=16,
            num_layers=1,
            num_heads=2,
            intermediate_size=16,
            num_experts=4,
            top_k=2,
            ent_neighbor_num=2,
            rel_neighbor_num=2,
            ent_qual_neighbor_num=1,
            conv_channels=3,
            conv_kernel_size=3,
            conv_kernel_width=4,
            conv_kernel_height=4,
            conv_permutations=2,
            # no unused variables, so that the harness's fit step can move every one
            official_unused_weights=False,
        ),
        # InteractE's bn0 scale reaches the loss only through a bias-free convolution followed by the training-mode
        # bn1, which normalises any per-map scale away while bn0's shift is still zero: its first gradient is zero up
        # to BatchNorm's epsilon (the official architecture; the weight matters at inference)
        zero_grad_at_init=("interaction/conv/bn0/gamma",),
    ),
    example_inputs=_tiny_inputs,
    kind="knowledge graph",
)
