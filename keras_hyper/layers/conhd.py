"""CoNHD: co-representation hypergraph diffusion (Zheng et al., "Modeling Edge-Specific Node Features through
Co-Representation Neural Hypergraph Diffusion", arXiv:2405.14286; paper 19 in PAPERS.md).

CoNHD keeps one representation per incidence, a (vertex, hyperedge) pair, and diffuses them inside two kinds
of sets: the incidences of one hyperedge (within-edge interactions) and the incidences of one vertex
(within-node interactions). Each set goes through permutation-equivariant set blocks, and a diffusion step
combines both results (gradient-descent form `CoNHDGDLayer`, ADMM form `CoNHDADMMLayer`).

Sets are variable-size, so the set blocks work on flat rows `x` (R, C) with `segment_ids` (R,) naming the set
of each row (`keras_hyper.ops.sets`): no padding, and a cost linear in R for `SetISAB` and `SetUNP`. `SetSAB`
attends between all pairs of rows of a set through an (R, R) mask, a cost quadratic in R.
"""

import math

import keras
from keras import ops

from keras_hyper.layers._args import check_positive, check_rate
from keras_hyper.ops import sets

LN_EPSILON = 1e-5
BLOCKS = ("ISAB", "SAB", "UNP")
UPDATES = ("gd", "admm")
ATT_TYPES = ("OrderPE", "pure")


def _layer_norm(name, dtype):
    return keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=name, dtype=dtype)


def _split_heads(x, num_heads):
    """(..., C) -> (..., heads, C / heads): contiguous channel chunks, one per head."""
    return ops.reshape(x, (*ops.shape(x)[:-1], num_heads, x.shape[-1] // num_heads))


def _merge_heads(x):
    return ops.reshape(x, (*ops.shape(x)[:-2], x.shape[-2] * x.shape[-1]))


def _softmax_float32(scores, axis=-1):
    return ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=axis), scores.dtype)


@keras.saving.register_keras_serializable(package="keras_hyper")
class SetMAB(keras.layers.Layer):
    """The multihead attention block of Set Transformer as CoNHD uses it (arXiv:2405.14286, after Lee et al.,
    arXiv:1810.00825): `O = ln0(fc_q(Q) + softmax(fc_q(Q) fc_k(K)^T / sqrt(units)) fc_v(K))`,
    `out = ln1(O + relu(fc_o(O)))`.

    Heads are contiguous channel chunks; the softmax scale is `1/sqrt(units)` (the full width, as in the
    official code, not the per-head width); the residual adds the projected query.

    Args:
        units: width of the projections and of the output; a multiple of `num_heads`.
        num_heads: attention heads.
        layernorm: apply `ln0` and `ln1` (LayerNorm, eps 1e-5); without them both are skipped.
    Call: `query` (B, Lq, Cq), `key` (B, Lk, Ck), optional boolean `attention_mask` (B, Lq, Lk) of the allowed pairs
    (every query row needs at least one) -> (B, Lq, units). `SetSAB` and `SetISAB` reuse its projections on
    segment-stored sets.
    """

    def __init__(self, units, num_heads, layernorm=False, **kwargs):
        super().__init__(**kwargs)
        check_positive(units=units, num_heads=num_heads)
        if units % num_heads:
            raise ValueError(f"units ({units}) must be a multiple of num_heads ({num_heads}).")
        self.units = units
        self.num_heads = num_heads
        self.layernorm = layernorm
        self.scale = 1.0 / math.sqrt(units)
        dense = dict(dtype=self.dtype_policy)
        self.fc_q = keras.layers.Dense(units, name="fc_q", **dense)
        self.fc_k = keras.layers.Dense(units, name="fc_k", **dense)
        self.fc_v = keras.layers.Dense(units, name="fc_v", **dense)
        self.fc_o = keras.layers.Dense(units, name="fc_o", **dense)
        self.ln0 = _layer_norm("ln0", self.dtype_policy) if layernorm else None
        self.ln1 = _layer_norm("ln1", self.dtype_policy) if layernorm else None

    def build(self, query_shape, key_shape=None):
        key_shape = query_shape if key_shape is None else key_shape
        self.fc_q.build((None, query_shape[-1]))
        self.fc_k.build((None, key_shape[-1]))
        self.fc_v.build((None, key_shape[-1]))
        self.fc_o.build((None, self.units))
        for norm in (self.ln0, self.ln1):
            if norm is not None:
                norm.build((None, self.units))

    def heads(self, x):
        return _split_heads(x, self.num_heads)

    def finish(self, o):
        """`ln1(O + relu(fc_o(O)))` with `O = ln0(o)`: the part after the attention sum."""
        if self.ln0 is not None:
            o = self.ln0(o)
        o = o + ops.relu(self.fc_o(o))
        return o if self.ln1 is None else self.ln1(o)

    def call(self, query, key, attention_mask=None):
        q = self.fc_q(query)
        scores = ops.einsum("bqhd,bkhd->bhqk", self.heads(q), self.heads(self.fc_k(key))) * self.scale
        if attention_mask is not None:
            scores = ops.where(ops.expand_dims(attention_mask, 1), scores, ops.full_like(scores, -1e4))
        attention = _softmax_float32(scores)
        o = ops.einsum("bhqk,bkhd->bqhd", attention, self.heads(self.fc_v(key)))
        return self.finish(q + _merge_heads(o))

    def compute_output_shape(self, query_shape, key_shape=None, attention_mask_shape=None):
        return (*query_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_heads": self.num_heads, "layernorm": self.layernorm}


class _SetBlock(keras.layers.Layer):
    """Call: `x` (R, C) rows, `segment_ids` (R,) int set of each row, `num_segments` (bound of the ids)
    -> (R, units). Permutation-equivariant inside each set; sets do not interact."""

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)


@keras.saving.register_keras_serializable(package="keras_hyper")
class SetSAB(_SetBlock):
    """Set Transformer's self-attention block `MAB(X, X)` inside each set (CoNHD, arXiv:2405.14286).

    Args: `units`, `num_heads`, `layernorm` as `SetMAB`. Call as the other set blocks; attention runs over an
    (R, R) same-set mask, so memory grows with the square of the number of rows.
    """

    def __init__(self, units, num_heads, layernorm=False, **kwargs):
        super().__init__(**kwargs)
        self.units, self.num_heads, self.layernorm = units, num_heads, layernorm
        self.mab = SetMAB(units, num_heads, layernorm, dtype=self.dtype_policy, name="mab")

    def build(self, input_shape):
        self.mab.build(input_shape, input_shape)

    def call(self, x, segment_ids, num_segments=None):
        same_set = ops.equal(ops.expand_dims(segment_ids, 1), ops.expand_dims(segment_ids, 0))
        x = ops.expand_dims(x, 0)
        return self.mab(x, x, ops.expand_dims(same_set, 0))[0]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_heads": self.num_heads, "layernorm": self.layernorm}


@keras.saving.register_keras_serializable(package="keras_hyper")
class SetISAB(_SetBlock):
    """Set Transformer's induced self-attention block inside each set (CoNHD, arXiv:2405.14286):
    `H = MAB0(I, X)` summarises a set with `num_inds` learned inducing points `I`, then `MAB1(X, H)`.

    Both attentions are computed per row: the inducing points' attention over a set is a segment softmax and a
    segment sum, the rows' attention over their set's `H` a gather; the cost is linear in the number of rows.

    Args: `units`, `num_heads`, `layernorm` as `SetMAB`; `num_inds` inducing points (weight `inducing`
    (num_inds, units)). Call as the other set blocks.
    """

    def __init__(self, units, num_heads, num_inds, layernorm=False, **kwargs):
        super().__init__(**kwargs)
        check_positive(num_inds=num_inds)
        self.units, self.num_heads, self.num_inds, self.layernorm = units, num_heads, num_inds, layernorm
        self.mab0 = SetMAB(units, num_heads, layernorm, dtype=self.dtype_policy, name="mab0")
        self.mab1 = SetMAB(units, num_heads, layernorm, dtype=self.dtype_policy, name="mab1")

    def build(self, input_shape):
        self.inducing = self.add_weight(
            shape=(self.num_inds, self.units), initializer="glorot_uniform", name="inducing"
        )
        self.mab0.build((None, self.units), input_shape)
        self.mab1.build(input_shape, (None, self.units))

    def call(self, x, segment_ids, num_segments):
        mab0, mab1 = self.mab0, self.mab1
        query = mab0.fc_q(ops.cast(self.inducing, self.compute_dtype))  # (I, C)
        scores = ops.einsum("rhd,ihd->rhi", mab0.heads(mab0.fc_k(x)), mab0.heads(query)) * mab0.scale
        attention = sets.segment_softmax(scores, segment_ids, num_segments)  # over each set's rows
        weighted = ops.einsum("rhi,rhd->rihd", attention, mab0.heads(mab0.fc_v(x)))
        summary = ops.segment_sum(_merge_heads(weighted), segment_ids, num_segments=num_segments)  # (S, I, C)
        summary = mab0.finish(ops.expand_dims(query, 0) + summary)

        query = mab1.fc_q(x)  # (R, C)
        keys = ops.take(mab1.heads(mab1.fc_k(summary)), segment_ids, axis=0)  # (R, I, h, d)
        values = ops.take(mab1.heads(mab1.fc_v(summary)), segment_ids, axis=0)
        scores = ops.einsum("rhd,rihd->rhi", mab1.heads(query), keys) * mab1.scale
        o = ops.einsum("rhi,rihd->rhd", _softmax_float32(scores), values)
        return mab1.finish(query + _merge_heads(o))

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "num_heads": self.num_heads,
            "num_inds": self.num_inds,
            "layernorm": self.layernorm,
        }


class _TwoLayerMLP(keras.layers.Layer):
    """`lins.1(norms.1(relu(lins.0(norms.0(x)))))`, the norms LayerNorms when `layernorm` (the official
    `MLP(..., num_layers=2, Normalization='ln', InputNorm='ln')`) and absent otherwise."""

    def __init__(self, units, layernorm, **kwargs):
        super().__init__(**kwargs)
        dtype = self.dtype_policy
        self.lins = [keras.layers.Dense(units, name=f"lins-{i}", dtype=dtype) for i in range(2)]
        self.norms = [_layer_norm(f"normalizations-{i}", dtype) for i in range(2)] if layernorm else []

    def build(self, input_shape):
        self.lins[0].build(input_shape)
        self.lins[1].build((None, self.lins[0].units))
        if self.norms:
            self.norms[0].build(input_shape)
            self.norms[1].build((None, self.lins[0].units))

    def call(self, x):
        if self.norms:
            x = self.norms[0](x)
        x = ops.relu(self.lins[0](x))
        if self.norms:
            x = self.norms[1](x)
        return self.lins[1](x)


@keras.saving.register_keras_serializable(package="keras_hyper")
class SetUNP(_SetBlock):
    """The unweighted-pooling equivariant block of CoNHD (arXiv:2405.14286, after ED-HNN):
    `W2([x, mean_set(W1(x))])` with two-layer MLPs `W1`, `W2` (ReLU; with `layernorm`, an input LayerNorm and
    one after the hidden ReLU).

    Args: `units` (hidden and output width), `layernorm`. Call as the other set blocks.
    """

    def __init__(self, units, layernorm=False, **kwargs):
        super().__init__(**kwargs)
        check_positive(units=units)
        self.units, self.layernorm = units, layernorm
        self.w1 = _TwoLayerMLP(units, layernorm, dtype=self.dtype_policy, name="W1")
        self.w2 = _TwoLayerMLP(units, layernorm, dtype=self.dtype_policy, name="W2")

    def build(self, input_shape):
        self.w1.build(input_shape)
        self.w2.build((None, input_shape[-1] + self.units))

    def call(self, x, segment_ids, num_segments):
        mean = sets.segment_mean(self.w1(x), segment_ids, num_segments)
        return self.w2(ops.concatenate([x, ops.take(mean, segment_ids, axis=0)], axis=-1))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "layernorm": self.layernorm}


def _set_block(block, units, num_heads, num_inds, layernorm, dtype, name):
    if block == "ISAB":
        return SetISAB(units, num_heads, num_inds, layernorm, dtype=dtype, name=name)
    if block == "SAB":
        return SetSAB(units, num_heads, layernorm, dtype=dtype, name=name)
    return SetUNP(units, layernorm, dtype=dtype, name=name)


class IncidenceSets:
    """The two set partitions of a batch of hypergraphs' incidences, as flat segment ids.

    `edge_ids` groups the incidences of each hyperedge, `node_ids` those of each vertex; `num_edge_sets`,
    `num_node_sets` bound them. Built by `CoNHDDiffusion` from its inputs; see `keras_hyper.ops.sets`.
    """

    def __init__(self, incidence, num_nodes):
        incidence = ops.cast(incidence, "int32")
        self.node_ids, self.num_node_sets = sets.batched_segment_ids(incidence[..., 0], num_nodes)
        # hyperedge ids are compact (0..E-1) and E <= M: the incidence count bounds them
        self.edge_ids, self.num_edge_sets = sets.batched_segment_ids(incidence[..., 1], ops.shape(incidence)[1])


class _DiffusionStep(keras.layers.Layer):
    update_inputs = 4

    def __init__(
        self,
        units,
        block="ISAB",
        *,
        num_att_layer=2,
        num_heads=4,
        num_inds=4,
        order_pe_v=False,
        order_pe_e=False,
        layernorm=False,
        dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive(units=units, num_att_layer=num_att_layer, num_heads=num_heads, num_inds=num_inds)
        check_rate(dropout=dropout)
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {block!r}.")
        self.units, self.block, self.num_att_layer = units, block, num_att_layer
        self.num_heads, self.num_inds, self.layernorm, self.dropout_rate = num_heads, num_inds, layernorm, dropout
        self.order_pe_v, self.order_pe_e = order_pe_v, order_pe_e
        dtype = self.dtype_policy
        self.pe_v = keras.layers.Dense(units, name="pe_v", dtype=dtype) if order_pe_v else None
        self.pe_e = keras.layers.Dense(units, name="pe_e", dtype=dtype) if order_pe_e else None
        self.enc_v = [
            _set_block(block, units, num_heads, num_inds, layernorm, dtype, f"enc_v-{i}") for i in range(num_att_layer)
        ]
        self.enc_e = [
            _set_block(block, units, num_heads, num_inds, layernorm, dtype, f"enc_e-{i}") for i in range(num_att_layer)
        ]
        self.dropout = keras.layers.Dropout(dropout, dtype=dtype)
        self.update_func = keras.layers.Dense(units, name="update_func", dtype=dtype)
        self.ln0 = _layer_norm("ln0", dtype) if layernorm else None

    def build(self, input_shape, weight_shape=None):
        for pe in (self.pe_v, self.pe_e):
            if pe is not None:
                if weight_shape is None:
                    raise ValueError("OrderPE needs the per-incidence weight (positional encoding) input.")
                pe.build(weight_shape)
        for block in self.enc_v + self.enc_e:
            block.build((None, self.units))
        self.update_func.build((None, self.update_inputs * self.units))
        if self.ln0 is not None:
            self.ln0.build((None, self.units))

    def _diffuse(self, x, blocks, pe, segment_ids, num_segments, weight, training):
        if pe is not None:
            x = x + pe(weight)
        for block in blocks:
            x = block(x, segment_ids, num_segments=num_segments)
        return self.dropout(x, training=training)

    def within_edges(self, x, sets_, weight, training):
        """The hyperedge sets (node -> hyperedge in the official code) through `enc_v`."""
        return self._diffuse(x, self.enc_v, self.pe_v, sets_.edge_ids, sets_.num_edge_sets, weight, training)

    def within_nodes(self, x, sets_, weight, training):
        """The vertex sets (hyperedge -> node) through `enc_e`."""
        return self._diffuse(x, self.enc_e, self.pe_e, sets_.node_ids, sets_.num_node_sets, weight, training)

    def _update(self, parts):
        x = self.update_func(ops.concatenate(parts, axis=-1))
        return x if self.ln0 is None else self.ln0(x)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "block": self.block,
            "num_att_layer": self.num_att_layer,
            "num_heads": self.num_heads,
            "num_inds": self.num_inds,
            "order_pe_v": self.order_pe_v,
            "order_pe_e": self.order_pe_e,
            "layernorm": self.layernorm,
            "dropout": self.dropout_rate,
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class CoNHDGDLayer(_DiffusionStep):
    """One gradient-descent diffusion step of CoNHD (arXiv:2405.14286, the official `CoNHD_GD_Layer`):
    `x' = ln0(update_func([x, enc_v(x [+ pe_v(w)]), enc_e(x [+ pe_e(w)]), x0]))`, `enc_v` running on the
    incidences of each hyperedge and `enc_e` on those of each vertex (`num_att_layer` set blocks each).

    Args:
        units: co-representation width.
        block: "ISAB", "SAB" or "UNP" (the set blocks above).
        num_att_layer, num_heads, num_inds: set blocks per side, attention heads, ISAB inducing points.
        order_pe_v, order_pe_e: add a linear projection of the per-incidence weight `w` (OrderPE) before the
            hyperedge / vertex sets.
        layernorm: LayerNorms in the blocks and after the update.
        dropout: on each side's output (training only).
        node_agg, hedge_agg: the official ablations that replace the hyperedge-side / vertex-side output by its
            set mean.
    Call: `x`, `x0` (R, units) flat co-representations (current, initial), `sets_` an `IncidenceSets`,
    `weight` (R, weight_dim) or None -> (R, units).
    """

    def __init__(self, units, block="ISAB", *, node_agg=False, hedge_agg=False, **kwargs):
        super().__init__(units, block, **kwargs)
        self.node_agg, self.hedge_agg = node_agg, hedge_agg

    def call(self, x, x0, sets_, weight=None, training=None):
        edge_side = self.within_edges(x, sets_, weight, training)
        if self.node_agg:
            mean = sets.segment_mean(edge_side, sets_.edge_ids, sets_.num_edge_sets)
            edge_side = ops.take(mean, sets_.edge_ids, axis=0)
        node_side = self.within_nodes(x, sets_, weight, training)
        if self.hedge_agg:
            mean = sets.segment_mean(node_side, sets_.node_ids, sets_.num_node_sets)
            node_side = ops.take(mean, sets_.node_ids, axis=0)
        return self._update([x, edge_side, node_side, x0])

    def compute_output_shape(self, x_shape):
        return x_shape

    def get_config(self):
        return {**super().get_config(), "node_agg": self.node_agg, "hedge_agg": self.hedge_agg}


@keras.saving.register_keras_serializable(package="keras_hyper")
class CoNHDADMMLayer(_DiffusionStep):
    """One ADMM diffusion step of CoNHD (arXiv:2405.14286, the official `CoNHD_ADMM_Layer`): with messages
    `m_in` (hyperedge side) and `m_con` (vertex side),
    `m_v = enc_v(2x - m_in [+ pe_v(w)]) + m_in - x`, `m_e = enc_e(2x - m_con [+ pe_e(w)]) + m_con - x`,
    `x' = ln0(update_func([m_v, m_e, x0]))`; the next step's messages are `m_v`, `m_e`.

    Args as `CoNHDGDLayer` (without the ablations). Call: `x`, `x0`, `m_in`, `m_con` (R, units), `sets_`,
    `weight` -> `(x', m_v, m_e)`.
    """

    update_inputs = 3

    def call(self, x, x0, m_in, m_con, sets_, weight=None, training=None):
        m_v = self.within_edges(2.0 * x - m_in, sets_, weight, training) + m_in - x
        m_e = self.within_nodes(2.0 * x - m_con, sets_, weight, training) + m_con - x
        return self._update([m_v, m_e, x0]), m_v, m_e

    def compute_output_shape(self, x_shape):
        return x_shape, x_shape, x_shape


@keras.saving.register_keras_serializable(package="keras_hyper")
class CoNHDDiffusion(keras.layers.Layer):
    """The CoNHD encoder (arXiv:2405.14286, the official `CoNHD_GD` / `CoNHD_ADMM` forward): co-representations
    `x0 = relu(lin_in(features[v]))` for every incidence (v, e), then `num_layers` diffusion steps.

    Args:
        units: co-representation width (`co_rep_dim`).
        update: "gd" (`CoNHDGDLayer`) or "admm" (`CoNHDADMMLayer`).
        num_layers: diffusion steps.
        share_weights: one step layer (`conv`) for all steps, or one per step (`conv-<i>`).
        att_type_v, att_type_e: "OrderPE" (add a projection of the per-incidence weight before the hyperedge /
            vertex sets) or "pure".
        input_dropout: dropout on `x0` (training only).
        block, num_att_layer, num_heads, num_inds, layernorm, dropout, node_agg, hedge_agg: of the steps.
    Inputs: `[features (B, N, C), incidence (B, M, 2)]`, plus `weight (B, M, weight_dim)` with OrderPE.
        `incidence` rows are int `[vertex, hyperedge]`, vertices in [0, N), hyperedges numbered 0..E-1
        (so below M); every graph of a batch has M incidences.
    Output: (B, M, units), one co-representation per incidence, in incidence order.
    """

    def __init__(
        self,
        units,
        update="gd",
        block="ISAB",
        *,
        num_layers=2,
        share_weights=True,
        num_att_layer=2,
        num_heads=4,
        num_inds=4,
        att_type_v="pure",
        att_type_e="pure",
        layernorm=False,
        dropout=0.0,
        input_dropout=0.0,
        node_agg=False,
        hedge_agg=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive(units=units, num_layers=num_layers)
        check_rate(input_dropout=input_dropout)
        if update not in UPDATES:
            raise ValueError(f"update must be one of {UPDATES}, got {update!r}.")
        for key, value in (("att_type_v", att_type_v), ("att_type_e", att_type_e)):
            if value not in ATT_TYPES:
                raise ValueError(f"{key} must be one of {ATT_TYPES}, got {value!r}.")
        if update == "admm" and (node_agg or hedge_agg):
            raise ValueError("node_agg and hedge_agg are ablations of the GD update; got update='admm'.")
        self.units, self.update, self.block, self.num_layers = units, update, block, num_layers
        self.share_weights, self.num_att_layer, self.num_heads, self.num_inds = (
            share_weights,
            num_att_layer,
            num_heads,
            num_inds,
        )
        self.att_type_v, self.att_type_e, self.layernorm = att_type_v, att_type_e, layernorm
        self.dropout_rate, self.input_dropout_rate = dropout, input_dropout
        self.node_agg, self.hedge_agg = node_agg, hedge_agg
        self.uses_weight = "OrderPE" in (att_type_v, att_type_e)
        dtype = self.dtype_policy
        self.lin_in = keras.layers.Dense(units, name="lin_in", dtype=dtype)
        self.input_dropout = keras.layers.Dropout(input_dropout, dtype=dtype)
        step = dict(
            num_att_layer=num_att_layer,
            num_heads=num_heads,
            num_inds=num_inds,
            order_pe_v=att_type_v == "OrderPE",
            order_pe_e=att_type_e == "OrderPE",
            layernorm=layernorm,
            dropout=dropout,
            dtype=dtype,
        )
        if update == "gd":
            step.update(node_agg=node_agg, hedge_agg=hedge_agg)
        step_class = CoNHDGDLayer if update == "gd" else CoNHDADMMLayer
        names = ["conv"] if share_weights else [f"conv-{i}" for i in range(num_layers)]
        self.steps = [step_class(units, block, name=name, **step) for name in names]

    def _split(self, inputs):
        expected = 3 if self.uses_weight else 2
        if not isinstance(inputs, (list, tuple)) or len(inputs) != expected:
            names = "[features, incidence, weight]" if self.uses_weight else "[features, incidence]"
            raise ValueError(f"CoNHDDiffusion takes {names} with these att_type_v/att_type_e, got {inputs!r}.")
        return inputs[0], inputs[1], inputs[2] if self.uses_weight else None

    def build(self, input_shape):
        features_shape, incidence_shape, weight_shape = self._split(input_shape)
        if incidence_shape[-1] != 2:
            raise ValueError(f"incidence must have shape (batch, M, 2), got {tuple(incidence_shape)}.")
        self.lin_in.build(features_shape)
        for step in self.steps:
            step.build((None, self.units), None if weight_shape is None else (None, weight_shape[-1]))

    def call(self, inputs, training=None):
        features, incidence, weight = self._split(inputs)
        sets_ = IncidenceSets(incidence, ops.shape(features)[1])
        nodes = ops.reshape(ops.relu(self.lin_in(features)), (-1, self.units))
        x0 = self.input_dropout(ops.take(nodes, sets_.node_ids, axis=0), training=training)
        if weight is not None:
            weight = ops.reshape(weight, (-1, weight.shape[-1]))
        x = x0
        if self.update == "admm":
            m_in = m_con = x0
        for i in range(self.num_layers):
            step = self.steps[0 if self.share_weights else i]
            if self.update == "gd":
                x = step(x, x0, sets_=sets_, weight=weight, training=training)
            else:
                x, m_in, m_con = step(x, x0, m_in, m_con, sets_=sets_, weight=weight, training=training)
        shape = ops.shape(incidence)
        return ops.reshape(x, (shape[0], shape[1], self.units))

    def compute_output_shape(self, input_shape):
        incidence_shape = input_shape[1]
        return (incidence_shape[0], incidence_shape[1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "update": self.update,
            "block": self.block,
            "num_layers": self.num_layers,
            "share_weights": self.share_weights,
            "num_att_layer": self.num_att_layer,
            "num_heads": self.num_heads,
            "num_inds": self.num_inds,
            "att_type_v": self.att_type_v,
            "att_type_e": self.att_type_e,
            "layernorm": self.layernorm,
            "dropout": self.dropout_rate,
            "input_dropout": self.input_dropout_rate,
            "node_agg": self.node_agg,
            "hedge_agg": self.hedge_agg,
        }
