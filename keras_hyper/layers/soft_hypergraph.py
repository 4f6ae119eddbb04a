"""Soft hypergraph convolution of SoftHGNN (Lei et al., "SoftHGNN: Soft Hypergraph Neural
Networks for General Visual Recognition", arXiv:2505.15325; paper 22 in PAPERS.md), and the two pieces of the
small-dataset ViT its image classifier is built on (Lee, Lee, Song, "Vision Transformer for Small-Size Datasets",
arXiv:2112.13492): shifted patch tokenisation and locality self-attention.

All layers act on token sequences `(B, N, D)`.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_hyper.layers._args import check_at_least, check_positive, check_rate


def _dense_weights(layer, name, fan_in, units, bias=True):
    """A Linear layer's weights (PyTorch's default init bound 1/sqrt(fan_in) for kernel and bias)."""
    bound = 1.0 / math.sqrt(fan_in)
    init = keras.initializers.RandomUniform(-bound, bound)
    kernel = layer.add_weight(name=f"{name}_kernel", shape=(fan_in, units), initializer=init)
    return kernel, (layer.add_weight(name=f"{name}_bias", shape=(units,), initializer=init) if bias else None)


def _linear(x, kernel, bias):
    y = ops.matmul(x, ops.cast(kernel, x.dtype))
    return y if bias is None else y + ops.cast(bias, y.dtype)


@keras.saving.register_keras_serializable(package="keras_hyper")
class SoftHypergraphConv(keras.layers.Layer):
    """SoftHGNN's soft hypergraph convolution (arXiv:2505.15325, Sec. 3), basic or sparse (SeS).

    Every token takes part in every hyperedge with a soft weight. Hyperedge prototypes are a learned base plus an
    offset predicted from the sequence's mean and max tokens: `P = P0 + reshape(Linear([mean_N X, max_N X]))`
    `(B, E, D)`. The participation logits are the mean over `num_heads` heads of the scaled per-head dot products
    of `Linear(X)` and `P`; since the heads split the channels, that mean is one full dot product,
    `logits = Linear(X) @ P^T / sqrt(num_heads * D)` `(B, N, E)`, which is what is computed. The incidence
    `A = softmax(logits)` is normalised over the TOKENS (axis N), as the official code. Then
    `He = GELU(Linear(A^T X))` (hyperedge features from the raw tokens), `X_new = GELU(Linear(A He))` and the
    output is `X + g * X_new`.

    Sparse selection (`num_dynamic_hyperedges > 0`, the official SoftHGNN_SeS): the first `num_hyperedges`
    hyperedges are fixed (always active); of the dynamic ones only the `top_k` with the largest summed
    pre-softmax logits are kept per sample, by multiplying the softmaxed A with the 0/1 selection (no
    renormalisation). While training the layer adds the official load-balancing loss,
    `lb_loss_weight * mean_e (mean_B mask_e - top_k / num_dynamic)^2`, through `add_loss`; the selection is a
    hard top-k, so that term carries no gradient (the official one is computed from a detached mask): it reports
    how evenly the dynamic hyperedges are used.

    The gate `g` (`gate=True`, a learned scalar initialised at 1) is the output gate of the official classifier's
    basic module (`X + gate * X_new`; the stand-alone basic module has it commented out). The official SeS module
    declares the same parameter but its forward ignores it; here a sparse layer with `gate=True` uses it, which
    equals the official function while it is 1 (see `keras_hyper.models.softhgnn`).

    Args:
        num_hyperedges: hyperedges of the basic layer, or the fixed hyperedges of the sparse layer.
        num_heads: edge heads (must divide D).
        num_dynamic_hyperedges: dynamic hyperedges (0: the basic layer).
        top_k: dynamic hyperedges kept per sample (1 <= top_k <= num_dynamic_hyperedges).
        dropout: dropout on the participation logits while training.
        lb_loss_weight: weight of the load-balancing loss (sparse layer only).
        gate: learn a scalar output gate.
        seed: seed of the dropout.

    Shape: `(B, N, D)` -> `(B, N, D)`.
    """

    def __init__(
        self,
        num_hyperedges=16,
        num_heads=4,
        num_dynamic_hyperedges=0,
        top_k=0,
        dropout=0.0,
        lb_loss_weight=1.0,
        gate=False,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_at_least(0, num_hyperedges=num_hyperedges)
        check_at_least(1, num_heads=num_heads)
        check_at_least(0, num_dynamic_hyperedges=num_dynamic_hyperedges)
        if num_hyperedges + num_dynamic_hyperedges < 1:
            raise ValueError(
                "SoftHypergraphConv needs at least one hyperedge (num_hyperedges + num_dynamic_hyperedges)."
            )
        if num_dynamic_hyperedges and not (isinstance(top_k, int) and 1 <= top_k <= num_dynamic_hyperedges):
            raise ValueError(
                f"top_k must be an integer in [1, num_dynamic_hyperedges={num_dynamic_hyperedges}], got {top_k!r}."
            )
        if not num_dynamic_hyperedges and top_k:
            raise ValueError(f"top_k={top_k!r} selects dynamic hyperedges, but num_dynamic_hyperedges is 0.")
        check_rate(dropout=dropout)
        self.num_hyperedges = num_hyperedges
        self.num_heads = num_heads
        self.num_dynamic_hyperedges = num_dynamic_hyperedges
        self.top_k = top_k
        self.dropout = float(dropout)
        self.lb_loss_weight = float(lb_loss_weight)
        self.gate = bool(gate)
        self.seed = seed
        self.logit_dropout = keras.layers.Dropout(self.dropout, seed=seed)

    @property
    def total_hyperedges(self):
        return self.num_hyperedges + self.num_dynamic_hyperedges

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None or dim % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide the token channels, got {dim}.")
        edges = self.total_hyperedges
        self.prototype_base = self.add_weight(
            name="prototype_base", shape=(edges, dim), initializer=keras.initializers.GlorotUniform()
        )
        self.context_kernel, self.context_bias = _dense_weights(self, "context", 2 * dim, edges * dim)
        self.pre_head_kernel, self.pre_head_bias = _dense_weights(self, "pre_head", dim, dim)
        self.edge_kernel, self.edge_bias = _dense_weights(self, "edge", dim, dim)
        self.node_kernel, self.node_bias = _dense_weights(self, "node", dim, dim)
        if self.gate:
            self.gate_weight = self.add_weight(name="gate", shape=(), initializer="ones")

    def _logits(self, x, training):
        batch, dim = ops.shape(x)[0], x.shape[-1]
        context = ops.concatenate([ops.mean(x, axis=1), ops.max(x, axis=1)], axis=-1)
        offsets = ops.reshape(_linear(context, self.context_kernel, self.context_bias), (batch, -1, dim))
        prototypes = ops.cast(self.prototype_base, x.dtype)[None] + offsets  # (B, E, D)
        projected = _linear(x, self.pre_head_kernel, self.pre_head_bias)
        scale = ops.cast(1.0 / math.sqrt(self.num_heads * dim), x.dtype)
        logits = ops.matmul(projected, ops.transpose(prototypes, (0, 2, 1))) * scale  # (B, N, E)
        return self.logit_dropout(logits, training=training)

    def _selection(self, logits):
        """The (B, E) 0/1 mask of the sparse layer: fixed hyperedges, then the top-k dynamic ones per sample."""
        scores = ops.sum(logits[:, :, self.num_hyperedges :], axis=1)  # (B, E_dyn)
        _, index = ops.top_k(scores, self.top_k)
        # one-hot sum rather than a scatter: ONE_HOT and SUM are LiteRT builtins
        dynamic = ops.sum(ops.one_hot(index, self.num_dynamic_hyperedges, dtype=logits.dtype), axis=1)
        fixed = ops.ones((ops.shape(logits)[0], self.num_hyperedges), logits.dtype)
        return ops.stop_gradient(ops.concatenate([fixed, dynamic], axis=-1))

    def incidence(self, inputs, training=False):
        """The soft incidence matrix A `(B, N, E)` (after the top-k selection for the sparse layer) and the
        selection mask `(B, E)` (None for the basic layer)."""
        logits = self._logits(inputs, training)
        incidence = ops.softmax(logits, axis=1)  # over the tokens
        if not self.num_dynamic_hyperedges:
            return incidence, None
        mask = self._selection(logits)
        return incidence * mask[:, None, :], mask

    def call(self, inputs, training=None):
        incidence, mask = self.incidence(inputs, training=training)
        if training and mask is not None:
            usage = ops.mean(mask[:, self.num_hyperedges :], axis=0)
            target = self.top_k / self.num_dynamic_hyperedges
            self.add_loss(self.lb_loss_weight * ops.mean(ops.square(ops.cast(usage, "float32") - target)))
        edges = ops.matmul(ops.transpose(incidence, (0, 2, 1)), inputs)  # (B, E, D), from the raw tokens
        edges = ops.gelu(_linear(edges, self.edge_kernel, self.edge_bias), approximate=False)
        update = ops.gelu(_linear(ops.matmul(incidence, edges), self.node_kernel, self.node_bias), approximate=False)
        if self.gate:
            update = update * ops.cast(self.gate_weight, update.dtype)
        return inputs + update

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_hyperedges": self.num_hyperedges,
            "num_heads": self.num_heads,
            "num_dynamic_hyperedges": self.num_dynamic_hyperedges,
            "top_k": self.top_k,
            "dropout": self.dropout,
            "lb_loss_weight": self.lb_loss_weight,
            "gate": self.gate,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class ShiftedPatchTokens(keras.layers.Layer):
    """Shifted patch tokenisation (arXiv:2112.13492): the image and its four one-pixel shifts (right, left,
    down, up, zero-filled) are stacked on the channels and cut into `patch_size` patches, each flattened in
    (row, column, channel) order. The LayerNorm and Linear that follow are ordinary layers.

    Shape: `(B, H, W, C)` -> `(B, H/p, W/p, p * p * 5C)` (the token grid; flattening comes with the class token);
    H and W must be multiples of p.
    """

    def __init__(self, patch_size, **kwargs):
        super().__init__(**kwargs)
        check_positive(patch_size=patch_size)
        self.patch_size = patch_size

    def call(self, inputs):
        x = inputs
        height, width = ops.shape(x)[1], ops.shape(x)[2]
        padded = ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        # F.pad(x, (1, -1, 0, 0)) etc.: the content moves one pixel right, left, down, up
        right = padded[:, 1 : height + 1, 0:width]
        left = padded[:, 1 : height + 1, 2 : width + 2]
        down = padded[:, 0:height, 1 : width + 1]
        up = padded[:, 2 : height + 2, 1 : width + 1]
        x = ops.concatenate([x, right, left, down, up], axis=-1)
        p = self.patch_size
        channels = x.shape[-1]
        batch = ops.shape(x)[0]
        # (B, h, p, w, p * C') -> (B, h, w, p, p * C'): 5-D at most, LiteRT builtins
        x = ops.reshape(x, (batch, height // p, p, width // p, p * channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4))
        return ops.reshape(x, (batch, height // p, width // p, p * p * channels))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        p = self.patch_size
        return (
            batch,
            None if height is None else height // p,
            None if width is None else width // p,
            p * p * 5 * channels,
        )

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size}


@keras.saving.register_keras_serializable(package="keras_hyper")
class ClassTokenEmbedding(keras.layers.Layer):
    """Flattens a token grid, prepends a learned class token and adds learned position embeddings (ViT,
    arXiv:2010.11929), stored as the official `(1, 1 + gh * gw, D)` table for a `grid_size` grid. Another grid
    size gets the grid part of the table resized bilinearly (the class token's entry unchanged).

    Args:
        grid_size: `(gh, gw)`, the token grid of the training resolution.

    Shape: `(B, h, w, D)` -> `(B, 1 + h * w, D)`.
    """

    def __init__(self, grid_size, **kwargs):
        super().__init__(**kwargs)
        grid_size = tuple(grid_size)
        if len(grid_size) != 2 or any(not isinstance(g, int) or g < 1 for g in grid_size):
            raise ValueError(f"grid_size must be two positive integers, got {grid_size!r}.")
        self.grid_size = grid_size

    def build(self, input_shape):
        dim = input_shape[-1]
        normal = keras.initializers.RandomNormal(stddev=1.0)  # the official torch.randn
        self.cls_token = self.add_weight(name="cls_token", shape=(1, 1, dim), initializer=normal)
        self.pos_embedding = self.add_weight(
            name="pos_embedding", shape=(1, 1 + self.grid_size[0] * self.grid_size[1], dim), initializer=normal
        )

    def call(self, inputs):
        batch, dim = ops.shape(inputs)[0], inputs.shape[-1]
        table = ops.cast(self.pos_embedding, inputs.dtype)
        if tuple(inputs.shape[1:3]) != self.grid_size:
            grid = ops.reshape(table[:, 1:], (1, *self.grid_size, dim))
            grid = ops.image.resize(grid, ops.shape(inputs)[1:3], interpolation="bilinear")
            table = ops.concatenate([table[:, :1], ops.reshape(grid, (1, -1, dim))], axis=1)
        tokens = ops.reshape(inputs, (batch, -1, dim))
        cls = ops.broadcast_to(ops.cast(self.cls_token, inputs.dtype), (batch, 1, dim))
        return ops.concatenate([cls, tokens], axis=1) + table

    def compute_output_shape(self, input_shape):
        batch, height, width, dim = input_shape
        return (batch, None if height is None or width is None else 1 + height * width, dim)

    def get_config(self):
        return {**super().get_config(), "grid_size": self.grid_size}


@keras.saving.register_keras_serializable(package="keras_hyper")
class ClassTokenSelect(keras.layers.Layer):
    """The class token of a sequence that starts with it (ViT's `x[:, 0]`). Shape: `(B, N, D)` -> `(B, D)`."""

    def call(self, inputs):
        return inputs[:, 0, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


@keras.saving.register_keras_serializable(package="keras_hyper")
class PatchTokenGrid(keras.layers.Layer):
    """The patch tokens of a class-token sequence back on their grid: `layer([sequence, grid])` drops token 0 of
    `sequence (B, 1 + h * w, D)` and reshapes the rest to the height and width of `grid (B, h, w, ...)`.

    Shape: -> `(B, h, w, D)`.
    """

    def call(self, inputs):
        sequence, grid = inputs
        shape = ops.shape(grid)
        return ops.reshape(sequence[:, 1:, :], (shape[0], shape[1], shape[2], sequence.shape[-1]))

    def compute_output_shape(self, input_shape):
        sequence, grid = input_shape
        return (*grid[:3], sequence[-1])


@keras.saving.register_keras_serializable(package="keras_hyper")
class LocalitySelfAttention(keras.layers.Layer):
    """Locality self-attention (arXiv:2112.13492): multi-head attention with a learned temperature
    (`exp(t)`, `t` initialised at `log(dim_head**-0.5)`) and the diagonal masked, so that no token attends to
    itself. Weights as the official `LSA`: `qkv_kernel (D, 3 * heads * dim_head)` without bias, `out_kernel`,
    `out_bias`.

    Args:
        num_heads: attention heads.
        dim_head: channels per head.

    Shape: `(B, N, D)` -> `(B, N, D)`.
    """

    def __init__(self, num_heads=8, dim_head=64, **kwargs):
        super().__init__(**kwargs)
        check_positive(num_heads=num_heads, dim_head=dim_head)
        self.num_heads = num_heads
        self.dim_head = dim_head

    def build(self, input_shape):
        dim = input_shape[-1]
        inner = self.num_heads * self.dim_head
        self.qkv_kernel, _ = _dense_weights(self, "qkv", dim, 3 * inner, bias=False)
        self.out_kernel, self.out_bias = _dense_weights(self, "out", inner, dim)
        self.temperature = self.add_weight(
            name="temperature", shape=(), initializer=keras.initializers.Constant(math.log(self.dim_head**-0.5))
        )

    def call(self, inputs):
        batch, tokens = ops.shape(inputs)[0], ops.shape(inputs)[1]
        qkv = ops.matmul(inputs, ops.cast(self.qkv_kernel, inputs.dtype))
        qkv = ops.transpose(ops.reshape(qkv, (batch, tokens, 3 * self.num_heads, self.dim_head)), (0, 2, 1, 3))
        q, k, v = ops.split(qkv, 3, axis=1)
        dots = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * ops.exp(ops.cast(self.temperature, q.dtype))
        # the most negative finite value of the compute dtype, as the official -finfo(dtype).max
        lowest = float(np.finfo("float16").min) if dots.dtype == "float16" else -3.0e38
        dots = ops.where(ops.eye(tokens, dtype="bool"), ops.cast(lowest, dots.dtype), dots)
        out = ops.matmul(ops.softmax(dots, axis=-1), v)
        out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (batch, tokens, self.num_heads * self.dim_head))
        return _linear(out, self.out_kernel, self.out_bias)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "dim_head": self.dim_head}
