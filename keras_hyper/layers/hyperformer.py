"""HyperFormer's layers for hyper-relational knowledge-graph completion (Hu et al., "HyperFormer: Enhancing
Entity and Relation Interaction for Hyper-Relational Knowledge Graph Completion", CIKM 2023, arXiv:2308.06512).

A statement `(head, relation, ?, q_rel_1, q_ent_1, ...)` is a sequence of vocabulary ids. The layers here embed
it (`HyperRelationalEmbedding`), encode it with the pre-LN Transformer whose feed-forward is a mixture of experts
(`KnowformerEncoder`), read out token positions (`TokenReadout`), aggregate the entity neighbours
(`EntityNeighborAggregator`) and the qualifiers (`QualifierAggregator`), let entity, relation and qualifier
interact through the chequered convolution of InteractE and a gated fusion (`ConvInteraction`,
`BidirectionalInteraction`) and write the result back into the statement (`StatementContextMerge`).
"""

import math

import keras
import numpy as np
from keras import ops

from keras_hyper.layers._args import check_non_negative, check_positive, check_rate
from keras_hyper.layers.moe import MixtureOfExperts
from keras_hyper.layers.torch_defaults import batch_norm

LN_EPSILON = 1e-5
QUALIFIER_MODES = ("dismult", "transe", "complex")


def _official_normal():
    # The official init draws scipy truncnorm(-0.02, 0.02) of a unit normal: flat to within 0.02 %, so uniform.
    return keras.initializers.RandomUniform(-0.02, 0.02)


def _large_negative(dtype):
    # -1e9 as the official masked_fill, but representable in float16
    return -6.0e4 if keras.backend.standardize_dtype(dtype) == "float16" else -1e9


@keras.saving.register_keras_serializable(package="keras_hyper")
class HyperRelationalEmbedding(keras.layers.Layer):
    """The shared vocabulary table of special tokens, entities and relations, and the tied output projection.

    Vocabulary layout: ids `[0, num_specials)` are special tokens (PAD = 0, MASK, ...), then `num_entities`
    entities, then the relations. Inputs read LayerNorm-ed rows for entities and relations (ONE shared
    LayerNorm) and raw rows for special tokens; entity rows get `entity_dropout` in training. The output
    projection (`mode="logits"`) scores hidden states against the RAW table: `h @ E^T`, no bias.

    Args:
        vocab_size, hidden_size: table shape (V, D).
        num_specials, num_entities: the vocabulary layout above.
        entity_dropout: dropout of entity rows (official `entity_dropout_prob`).

    Shapes: `mode="embed"`: int ids `(...)` -> `(..., D)`; `mode="logits"`: `(..., D)` -> `(..., V)`.
    """

    def __init__(self, vocab_size, hidden_size, num_specials=7, num_entities=0, entity_dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        check_positive(vocab_size=vocab_size, hidden_size=hidden_size, num_specials=num_specials)
        if not isinstance(num_entities, int) or num_entities < 0 or num_specials + num_entities > vocab_size:
            raise ValueError(
                f"num_entities must be an integer in [0, vocab_size - num_specials] = [0, "
                f"{vocab_size - num_specials}], got {num_entities!r}."
            )
        check_rate(entity_dropout=entity_dropout)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_specials = num_specials
        self.num_entities = num_entities
        self.entity_dropout = entity_dropout
        self.norm = keras.layers.LayerNormalization(epsilon=LN_EPSILON, dtype=self.dtype_policy, name="norm")
        self.drop = keras.layers.Dropout(entity_dropout, dtype=self.dtype_policy, name="drop")

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.vocab_size, self.hidden_size), initializer=_official_normal()
        )
        self.norm.build((None, self.hidden_size))

    def call(self, inputs, mode="embed", training=None):
        if mode == "logits":
            return ops.matmul(inputs, ops.transpose(ops.cast(self.embeddings, self.compute_dtype)))
        if mode != "embed":
            raise ValueError(f"mode must be 'embed' or 'logits', got {mode!r}.")
        ids = ops.cast(inputs, "int32")
        raw = ops.take(ops.cast(self.embeddings, self.compute_dtype), ids, axis=0)
        normed = self.norm(raw)
        is_entity = ops.logical_and(ids >= self.num_specials, ids < self.num_specials + self.num_entities)
        normed = ops.where(is_entity[..., None], self.drop(normed, training=training), normed)
        return ops.where((ids >= self.num_specials)[..., None], normed, raw)

    def compute_output_shape(self, input_shape, mode="embed"):
        if mode == "logits":
            return tuple(input_shape[:-1]) + (self.vocab_size,)
        return tuple(input_shape) + (self.hidden_size,)

    def compute_output_spec(self, inputs, mode="embed", **kwargs):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape, mode), dtype=self.compute_dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_specials": self.num_specials,
            "num_entities": self.num_entities,
            "entity_dropout": self.entity_dropout,
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class TokenReadout(keras.layers.Layer):
    """The hidden state at one sequence position (HyperFormer reads the MASK token at position 2).

    Shapes: `(..., L, D) -> (..., D)`.
    """

    def __init__(self, position, **kwargs):
        super().__init__(**kwargs)
        check_non_negative(position=position)
        self.position = position

    def call(self, inputs):
        if self.position >= inputs.shape[-2]:
            raise ValueError(f"position {self.position} is outside sequences of length {inputs.shape[-2]}.")
        return inputs[..., self.position, :]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-2]) + (input_shape[-1],)

    def get_config(self):
        return {**super().get_config(), "position": self.position}


@keras.saving.register_keras_serializable(package="keras_hyper")
class KnowformerEncoder(keras.layers.Layer):
    """HyperFormer's (Knowformer's) pre-LN Transformer encoder with mixture-of-experts feed-forward blocks.

    Per layer: `x = x + MHA(LN(x))`, `x = x + dropout(MoE(LN(x)))` (`MixtureOfExperts`, ReLU experts); a final
    LayerNorm. Heads are contiguous channel chunks, scores are scaled by `1/sqrt(D/heads)`. With `token_ids`
    given, keys holding `pad_id` are masked before the softmax (HyperFormer masks only its first pass).

    Args:
        num_layers, num_heads: depth and attention heads (hidden size divisible by heads).
        num_experts, expert_units, top_k, gate: the MoE feed-forward (see `MixtureOfExperts`); HyperFormer's
            `expert_units` is `intermediate_size // top_k`.
        attention_dropout, hidden_dropout, residual_dropout: official `attention_dropout_prob`,
            `hidden_dropout_prob` (experts' activations and MoE output) and `residual_dropout_prob`.
        pad_id: the padding token id.

    Shapes: `(..., L, D)` (+ optional int `token_ids` `(..., L)`) -> `(..., L, D)`; leading axes are folded
    into the batch, so a set of neighbour statements `(B, n, L, D)` is encoded in one call.
    """

    def __init__(
        self,
        num_layers,
        num_heads,
        num_experts,
        expert_units,
        top_k=2,
        gate="raw",
        attention_dropout=0.0,
        hidden_dropout=0.0,
        residual_dropout=0.0,
        pad_id=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive(num_layers=num_layers, num_heads=num_heads)
        check_rate(
            attention_dropout=attention_dropout, hidden_dropout=hidden_dropout, residual_dropout=residual_dropout
        )
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.num_experts = num_experts
        self.expert_units = expert_units
        self.top_k = top_k
        self.gate = gate
        self.attention_dropout = attention_dropout
        self.hidden_dropout = hidden_dropout
        self.residual_dropout = residual_dropout
        self.pad_id = pad_id
        policy = self.dtype_policy
        self.attn_norms = [
            keras.layers.LayerNormalization(epsilon=LN_EPSILON, dtype=policy, name=f"layers-{i}-attn_norm")
            for i in range(num_layers)
        ]
        self.ffn_norms = [
            keras.layers.LayerNormalization(epsilon=LN_EPSILON, dtype=policy, name=f"layers-{i}-ffn_norm")
            for i in range(num_layers)
        ]
        self.experts = [
            MixtureOfExperts(
                num_experts, expert_units, top_k, gate, hidden_dropout, dtype=policy, name=f"layers-{i}-moe"
            )
            for i in range(num_layers)
        ]
        self.norm = keras.layers.LayerNormalization(epsilon=LN_EPSILON, dtype=policy, name="norm")
        self.attn_drop = keras.layers.Dropout(attention_dropout, dtype=policy, name="attn_drop")
        self.hidden_drop = keras.layers.Dropout(hidden_dropout, dtype=policy, name="hidden_drop")
        self.residual_drop = keras.layers.Dropout(residual_dropout, dtype=policy, name="residual_drop")

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim % self.num_heads:
            raise ValueError(f"The hidden size {dim} must be divisible by num_heads={self.num_heads}.")

        def projection(i, kind):
            layer = keras.layers.Dense(
                dim, kernel_initializer=_official_normal(), dtype=self.dtype_policy, name=f"layers-{i}-{kind}"
            )
            layer.build((None, dim))
            return layer

        # q, k, v and the output projection (official `self_attn.linears.0..3`); built here, where D is known
        self.attn_query = [projection(i, "query") for i in range(self.num_layers)]
        self.attn_key = [projection(i, "key") for i in range(self.num_layers)]
        self.attn_value = [projection(i, "value") for i in range(self.num_layers)]
        self.attn_output = [projection(i, "output") for i in range(self.num_layers)]
        for i in range(self.num_layers):
            self.attn_norms[i].build((None, dim))
            self.ffn_norms[i].build((None, dim))
            self.experts[i].build((None, dim))
        self.norm.build((None, dim))

    def _attention(self, i, x, keep, training):
        length, dim = x.shape[-2], x.shape[-1]
        heads, head_dim = self.num_heads, dim // self.num_heads

        def split(t):
            return ops.transpose(ops.reshape(t, (-1, length, heads, head_dim)), (0, 2, 1, 3))

        q, k, v = split(self.attn_query[i](x)), split(self.attn_key[i](x)), split(self.attn_value[i](x))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / ops.cast(math.sqrt(head_dim), x.dtype)
        if keep is not None:
            scores = ops.where(keep, scores, ops.cast(_large_negative(scores.dtype), scores.dtype))
        probs = self.attn_drop(ops.softmax(scores, axis=-1), training=training)
        out = ops.reshape(ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3)), (-1, length, dim))
        return self.attn_output[i](out)

    def call(self, inputs, token_ids=None, training=None):
        length, dim = inputs.shape[-2], inputs.shape[-1]
        x = ops.reshape(inputs, (-1, length, dim))
        keep = None
        if token_ids is not None:
            keep = ops.reshape(ops.not_equal(ops.cast(token_ids, "int32"), self.pad_id), (-1, 1, 1, length))
        for i in range(self.num_layers):
            x = x + self.residual_drop(self._attention(i, self.attn_norms[i](x), keep, training), training=training)
            x = x + self.hidden_drop(self.experts[i](self.ffn_norms[i](x), training=training), training=training)
        return ops.reshape(self.norm(x), ops.shape(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_experts": self.num_experts,
            "expert_units": self.expert_units,
            "top_k": self.top_k,
            "gate": self.gate,
            "attention_dropout": self.attention_dropout,
            "hidden_dropout": self.hidden_dropout,
            "residual_dropout": self.residual_dropout,
            "pad_id": self.pad_id,
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class EntityNeighborAggregator(keras.layers.Layer):
    """HyperFormer's entity neighbour aggregator: the mean of the encoded neighbour statements' MASK states.

    Each of the `n` neighbour statements of the head entity is encoded by the statement encoder; their MASK
    readouts (different perspectives on the entity) are averaged into one context vector.

    Shapes: `(B, n, D) -> (B, D)`.
    """

    def call(self, inputs):
        return ops.mean(inputs, axis=-2)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-2]) + (input_shape[-1],)


@keras.saving.register_keras_serializable(package="keras_hyper")
class QualifierAggregator(keras.layers.Layer):
    """HyperFormer's relation-qualifier aggregator: each qualifier pair `(q_rel, q_ent)` becomes one vector by a
    KGE composition, and the pairs are averaged.

    Modes (official `ablation_mode`): "dismult" `r * e` (the paper's), "transe" `r + e`, "complex" the complex
    product with real parts in the first half of the channels and imaginary parts in the second.

    Shapes: embedded qualifier prompts `(B, n, L >= 2, D)` (position 0 the qualifier relation, 1 its entity)
    -> `(B, D)`.
    """

    def __init__(self, mode="dismult", **kwargs):
        super().__init__(**kwargs)
        if mode not in QUALIFIER_MODES:
            raise ValueError(f"mode must be one of {QUALIFIER_MODES}, got {mode!r}.")
        self.mode = mode

    def build(self, input_shape):
        if input_shape[-2] is not None and input_shape[-2] < 2:
            raise ValueError(f"Qualifier prompts need at least 2 tokens (relation, entity), got {input_shape}.")
        if self.mode == "complex" and input_shape[-1] % 2:
            raise ValueError(f"mode='complex' needs an even hidden size, got {input_shape[-1]}.")

    def call(self, inputs):
        rel, ent = inputs[..., 0, :], inputs[..., 1, :]
        if self.mode == "dismult":
            pair = rel * ent
        elif self.mode == "transe":
            pair = rel + ent
        else:
            rel_re, rel_im = ops.split(rel, 2, axis=-1)
            ent_re, ent_im = ops.split(ent, 2, axis=-1)
            pair = ops.concatenate([ent_re * rel_re - ent_im * rel_im, ent_re * rel_im + ent_im * rel_re], axis=-1)
        return ops.mean(pair, axis=-2)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-3]) + (input_shape[-1],)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def chequer_permutation(hidden_size, kernel_width, kernel_height, permutations, seed=0):
    """InteractE's chequered feature permutations of the concatenation `[a (D), b (D)]`.

    Each of `permutations` rows interleaves a random permutation of `a`'s channels with one of `b`'s (offset
    by D) in a chequer pattern over a `(kernel_height, 2*kernel_width)` grid, odd rows starting with the other
    vector. Returns an int32 array `(permutations, 2*D)`; `D` must equal `kernel_width * kernel_height`.
    """
    if kernel_width * kernel_height != hidden_size:
        raise ValueError(
            f"conv_kernel_width * conv_kernel_height must equal the hidden size {hidden_size}, got "
            f"{kernel_width} * {kernel_height}."
        )
    rng = np.random.RandomState(seed)
    a_perm = [rng.permutation(hidden_size) for _ in range(permutations)]
    b_perm = [rng.permutation(hidden_size) + hidden_size for _ in range(permutations)]
    rows = []
    for k in range(permutations):
        row, a_index, b_index = [], 0, 0
        for i in range(kernel_height):
            for _ in range(kernel_width):
                pair = [a_perm[k][a_index], b_perm[k][b_index]]
                a_index, b_index = a_index + 1, b_index + 1
                row.extend(pair if (k % 2 == 0) == (i % 2 == 0) else pair[::-1])
        rows.append(row)
    return np.asarray(rows, dtype="int32")


@keras.saving.register_keras_serializable(package="keras_hyper")
class ConvInteraction(keras.layers.Layer):
    """InteractE's chequered circular convolution of two vectors, as HyperFormer's interaction module uses it.

    `[a, b]` (B, 2D) is permuted by `permutations` chequer patterns (`chequer_permutation`, a non-trainable
    int variable), each reshaped to a `(2*kernel_width, kernel_height)` map -> BatchNorm -> dropout ->
    circular padding by `kernel_size // 2` -> a convolution whose `channels` filters are SHARED by all
    permutation maps (the official grouped conv of a repeated filter) -> BatchNorm -> ReLU -> channel dropout
    -> flatten (channel-major, as the official NCHW view) -> Dense(2D) -> dropout -> BatchNorm -> split into the
    two interacted vectors `(a', b')`.

    Args:
        channels, kernel_size: the convolution (official `conv_number_channel`, `conv_kernel_size`).
        kernel_width, kernel_height: the reshape grid; `kernel_width * kernel_height` must be D.
        permutations: number of chequer patterns (official `conv_permution_size`).
        padding: extra zero padding of the convolution (official `conv_padding`).
        input_dropout, feature_dropout, hidden_dropout: official `conv_input_dropout_prob`,
            `conv_feature_dropout_prob` (whole channels) and `conv_hidden_dropout_prob`.
        seed: seed of the default permutations (a converter overwrites them with the official ones).

    Shapes: `[(B, D), (B, D)] -> [(B, D), (B, D)]`.
    """

    def __init__(
        self,
        channels,
        kernel_size,
        kernel_width,
        kernel_height,
        permutations=1,
        padding=0,
        input_dropout=0.0,
        feature_dropout=0.0,
        hidden_dropout=0.0,
        seed=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive(
            channels=channels,
            kernel_size=kernel_size,
            kernel_width=kernel_width,
            kernel_height=kernel_height,
            permutations=permutations,
        )
        check_non_negative(padding=padding)
        check_rate(input_dropout=input_dropout, feature_dropout=feature_dropout, hidden_dropout=hidden_dropout)
        self.channels = channels
        self.kernel_size = kernel_size
        self.kernel_width = kernel_width
        self.kernel_height = kernel_height
        self.permutations = permutations
        self.padding = padding
        self.input_dropout = input_dropout
        self.feature_dropout = feature_dropout
        self.hidden_dropout = hidden_dropout
        self.seed = seed
        policy = self.dtype_policy
        self.bn0 = batch_norm("bn0", axis=1, dtype=policy)
        self.bn1 = batch_norm("bn1", axis=1, dtype=policy)
        self.bn3 = batch_norm("bn3", axis=-1, dtype=policy)
        self.input_drop = keras.layers.Dropout(input_dropout, dtype=policy, name="input_drop")
        self.hidden_drop = keras.layers.Dropout(hidden_dropout, dtype=policy, name="hidden_drop")
        # whole channels (torch's Dropout2d)
        self.feature_drop = keras.layers.Dropout(
            feature_dropout, noise_shape=(None, permutations * channels, 1), dtype=policy, name="feature_drop"
        )

    def _out_size(self, size):
        return size + 2 * (self.kernel_size // 2) + 2 * self.padding - self.kernel_size + 1

    def build(self, input_shape):
        dim = input_shape[0][-1]
        perm = chequer_permutation(dim, self.kernel_width, self.kernel_height, self.permutations, self.seed)
        self.permutation = self.add_weight(
            name="permutation",
            shape=perm.shape,
            dtype="int32",
            initializer=keras.initializers.Constant(perm),
            trainable=False,
        )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size, self.kernel_size, 1, self.channels),
            initializer=keras.initializers.GlorotNormal(),
        )
        height, width = self._out_size(2 * self.kernel_width), self._out_size(self.kernel_height)
        if height < 1 or width < 1:
            raise ValueError(
                f"kernel_size={self.kernel_size} is too large for the {2 * self.kernel_width}x{self.kernel_height} "
                "interaction map."
            )
        maps = self.permutations * self.channels
        self.fc = keras.layers.Dense(2 * dim, dtype=self.dtype_policy, name="fc")
        self.fc.build((None, maps * height * width))
        self.bn0.build((None, self.permutations, 2 * dim))
        self.bn1.build((None, maps, height * width))
        self.bn3.build((None, 2 * dim))

    def _circular_pad(self, x):
        pad = self.kernel_size // 2
        if pad:
            x = ops.concatenate([x[:, -pad:], x, x[:, :pad]], axis=1)
            x = ops.concatenate([x[:, :, -pad:], x, x[:, :, :pad]], axis=2)
        if self.padding:
            p = self.padding
            x = ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        return x

    def call(self, inputs, training=None):
        a, b = inputs
        dim = a.shape[-1]
        perms, grid_h, grid_w = self.permutations, 2 * self.kernel_width, self.kernel_height
        x = ops.take(ops.concatenate([a, b], axis=-1), self.permutation, axis=1)  # (B, P, 2D)
        x = self.input_drop(self.bn0(x, training=training), training=training)
        # every permutation map is convolved by the same filters: fold the maps into the batch
        x = self._circular_pad(ops.reshape(x, (-1, grid_h, grid_w, 1)))
        x = ops.conv(x, ops.cast(self.kernel, self.compute_dtype), padding="valid")
        height, width = x.shape[1], x.shape[2]
        x = ops.reshape(x, (-1, perms, height, width, self.channels))
        x = ops.reshape(ops.transpose(x, (0, 1, 4, 2, 3)), (-1, perms * self.channels, height * width))
        x = self.feature_drop(ops.relu(self.bn1(x, training=training)), training=training)
        x = self.fc(ops.reshape(x, (-1, perms * self.channels * height * width)))
        x = self.bn3(self.hidden_drop(x, training=training), training=training)
        return [x[:, :dim], x[:, dim:]]

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape[0]), tuple(input_shape[0])]

    def get_config(self):
        return {
            **super().get_config(),
            "channels": self.channels,
            "kernel_size": self.kernel_size,
            "kernel_width": self.kernel_width,
            "kernel_height": self.kernel_height,
            "permutations": self.permutations,
            "padding": self.padding,
            "input_dropout": self.input_dropout,
            "feature_dropout": self.feature_dropout,
            "hidden_dropout": self.hidden_dropout,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class BidirectionalInteraction(keras.layers.Layer):
    """HyperFormer's convolution-based bidirectional interaction of entity, relation and qualifier vectors.

    One `ConvInteraction` (shared) interacts each pair: (ent, rel) -> (e_r, r_e), (ent, qual) -> (e_q, q_e),
    (rel, qual) -> (r_q, q_r); a gate with ONE shared Linear `L` fuses the two views of each vector,
    `fuse(p, q) = p * s + q * (1 - s)`, `s = sigmoid(L(p) + L(q))`: ent' = fuse(e_r, e_q),
    qual' = fuse(q_e, q_r). The relation's fused view is not returned: the official model computes and
    discards it, and it has no weights of its own.

    Args: those of `ConvInteraction`.

    Shapes: `[ent (B, D), rel (B, D), qual (B, D)] -> [ent' (B, D), qual' (B, D)]`.
    """

    def __init__(self, **conv_kwargs):
        base = {k: conv_kwargs.pop(k) for k in list(conv_kwargs) if k in ("name", "dtype", "trainable")}
        super().__init__(**base)
        self.conv_kwargs = conv_kwargs
        self.conv = ConvInteraction(**conv_kwargs, dtype=self.dtype_policy, name="conv")
        self.fuse_net = None

    def build(self, input_shape):
        dim = input_shape[0][-1]
        self.conv.build([input_shape[0], input_shape[0]])
        self.fuse_net = keras.layers.Dense(dim, dtype=self.dtype_policy, name="fuse_net")
        self.fuse_net.build((None, dim))

    def _fuse(self, p, q):
        gate = ops.sigmoid(self.fuse_net(p) + self.fuse_net(q))
        return p * gate + q * (1.0 - gate)

    def call(self, inputs, training=None):
        ent, rel, qual = inputs
        ent_rel, _ = self.conv([ent, rel], training=training)
        ent_qual, qual_ent = self.conv([ent, qual], training=training)
        _, qual_rel = self.conv([rel, qual], training=training)
        return [self._fuse(ent_rel, ent_qual), self._fuse(qual_ent, qual_rel)]

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape[0]), tuple(input_shape[0])]

    def get_config(self):
        return {**super().get_config(), **self.conv_kwargs}


@keras.saving.register_keras_serializable(package="keras_hyper")
class StatementContextMerge(keras.layers.Layer):
    """Writes the fused entity and qualifier vectors back into the embedded statement for HyperFormer's second
    pass: `x[:, 0] = (x[:, 0] + dropout(ent)) / 2` (head entity), `x[:, 1] = (x[:, 1] + dropout(qual)) / 2`
    (relation).

    Args:
        context_dropout, qualifier_dropout: official `context_dropout_prob`, `qual_dropout_prob`.

    Shapes: `[x (B, L, D), ent (B, D), qual (B, D)] -> (B, L, D)`.
    """

    def __init__(self, context_dropout=0.0, qualifier_dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        check_rate(context_dropout=context_dropout, qualifier_dropout=qualifier_dropout)
        self.context_dropout = context_dropout
        self.qualifier_dropout = qualifier_dropout
        self.context_drop = keras.layers.Dropout(context_dropout, dtype=self.dtype_policy, name="context_drop")
        self.qualifier_drop = keras.layers.Dropout(qualifier_dropout, dtype=self.dtype_policy, name="qualifier_drop")

    def call(self, inputs, training=None):
        x, ent, qual = inputs
        head = (x[:, 0] + self.context_drop(ent, training=training)) * 0.5
        relation = (x[:, 1] + self.qualifier_drop(qual, training=training)) * 0.5
        return ops.concatenate([head[:, None], relation[:, None], x[:, 2:]], axis=1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {
            **super().get_config(),
            "context_dropout": self.context_dropout,
            "qualifier_dropout": self.qualifier_dropout,
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class InertWeights(keras.layers.Layer):
    """Holds parameters that an official model owns but no forward reads (an identity on its input).

    It keeps parameter counts and checkpoints of the official model exact (HyperFormer builds a second,
    unused encoder, a pooler and a few norms); builders make it optional. No gradient reaches these weights.

    Args:
        shapes: mapping of weight name -> shape.

    Shapes: any -> the same.
    """

    def __init__(self, shapes, **kwargs):
        super().__init__(**kwargs)
        self.shapes = {str(k): tuple(int(d) for d in v) for k, v in dict(shapes).items()}

    def build(self, input_shape):
        self.inert = {
            key: self.add_weight(name=key, shape=shape, initializer="zeros") for key, shape in self.shapes.items()
        }

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "shapes": {k: list(v) for k, v in self.shapes.items()}}
