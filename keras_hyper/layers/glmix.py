"""Layers of GLNet's GLMix block (Zhu, Wang, Zhang, Lau, "Revisiting the Integration of Convolution and Attention
for Vision Backbone", NeurIPS 2024, arXiv:2411.14429; paper 9 in PAPERS.md).

GLMix splits a block's spatial mixing into a local branch (convolutions) and a global branch that works on a
few "slots": the tokens are softly clustered into slots, the slots exchange information through multi-head
self-attention, and the slots are softly dispatched back to the tokens. `MultiHeadSelfAttention` is that
attention (PyTorch's `nn.MultiheadAttention` weight layout, so checkpoints map one to one);
`SoftClusterAttention` is the global branch.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_hyper.layers._args import check_positive
from keras_hyper.layers.torch_defaults import trunc_normal

SLOT_INITS = ("ada_avgpool", "param")


def _flatten_tokens(x):
    """`(B, ..., C)` -> `(B, L, C)`, with the grid sizes read at run time (inputs may be of any size)."""
    shape = ops.shape(x)
    return ops.reshape(x, (shape[0], -1, shape[-1]))


def _l2_normalize(x, epsilon=1e-12):
    """`F.normalize(x, dim=-1)`: x / max(||x||, eps), so a zero vector stays zero."""
    norm = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
    return x / ops.maximum(norm, ops.cast(epsilon, x.dtype))


def _adaptive_pool_matrix(size, bins, dtype):
    """The `(bins, size)` matrix of PyTorch's adaptive average pooling along one axis: row i averages the inputs
    `[floor(i * size / bins), ceil((i + 1) * size / bins))`, windows that overlap when bins does not divide size.
    A constant when the size is known while tracing (one matmul, no index arithmetic at run time)."""
    if isinstance(size, int):
        matrix = np.zeros((bins, size), "float32")
        for i in range(bins):
            start, end = (i * size) // bins, -((-(i + 1) * size) // bins)
            matrix[i, start:end] = 1.0 / (end - start)
        return ops.convert_to_tensor(matrix, dtype=dtype)
    size_f = ops.cast(size, "float32")
    index = ops.cast(ops.arange(bins), "float32")[:, None]
    start = ops.floor(index * size_f / bins)
    end = ops.ceil((index + 1.0) * size_f / bins)
    position = ops.cast(ops.arange(size), "float32")[None, :]
    inside = ops.logical_and(position >= start, position < end)
    return ops.cast(ops.where(inside, 1.0 / (end - start), 0.0), dtype)


def adaptive_avg_pool_tokens(x, pool_size):
    """`F.adaptive_avg_pool2d(x, pool_size)` of a channels-last grid, flattened row-major: `(B, H, W, C)` ->
    `(B, pool_size**2, C)`. Two matmuls with pooling matrices built from the run-time H and W, so any input size
    (also one that pool_size does not divide) pools as PyTorch does."""
    shape = ops.shape(x)
    rows = _adaptive_pool_matrix(shape[1], pool_size, x.dtype)  # (p, H)
    cols = _adaptive_pool_matrix(shape[2], pool_size, x.dtype)  # (p, W)
    # (B, H, W, C) -> (B, C, H, W): pool W then H as matmuls on the trailing axes (4-D, LiteRT builtins)
    y = ops.transpose(x, (0, 3, 1, 2))
    y = ops.matmul(ops.matmul(rows, y), ops.transpose(cols))  # (B, C, p, p)
    y = ops.transpose(y, (0, 2, 3, 1))
    return ops.reshape(y, (shape[0], pool_size * pool_size, shape[3]))


@keras.saving.register_keras_serializable(package="keras_hyper")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Multi-head self-attention with PyTorch `nn.MultiheadAttention`'s weights: one fused query/key/value
    projection `qkv_kernel (C, 3C)` (+ `qkv_bias`), queries scaled by `head_dim**-0.5`, an output projection
    `out_kernel (C, C)` (+ `out_bias`). Used by GLNet (arXiv:2411.14429) on token grids and on slots.

    Args:
        num_heads: number of heads; must divide the channels.

    Shape: `(B, ..., C)` -> same; every position between the batch and the channel axes is a token (a
    `(B, H, W, C)` grid attends over its H * W tokens).
    """

    def __init__(self, num_heads, **kwargs):
        super().__init__(**kwargs)
        check_positive(num_heads=num_heads)
        self.num_heads = num_heads

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None or dim % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide the channels, got {dim}.")
        init = trunc_normal()
        self.qkv_kernel = self.add_weight(name="qkv_kernel", shape=(dim, 3 * dim), initializer="glorot_uniform")
        self.qkv_bias = self.add_weight(name="qkv_bias", shape=(3 * dim,), initializer="zeros")
        self.out_kernel = self.add_weight(name="out_kernel", shape=(dim, dim), initializer=init)
        self.out_bias = self.add_weight(name="out_bias", shape=(dim,), initializer="zeros")

    def call(self, inputs):
        shape = ops.shape(inputs)
        x = _flatten_tokens(inputs)
        dim = inputs.shape[-1]
        head_dim = dim // self.num_heads
        qkv = ops.matmul(x, ops.cast(self.qkv_kernel, x.dtype)) + ops.cast(self.qkv_bias, x.dtype)
        # (B, L, 3 * heads, d) -> (B, 3 * heads, L, d): q, k, v heads side by side, 4-D only
        qkv = ops.transpose(ops.reshape(qkv, (shape[0], -1, 3 * self.num_heads, head_dim)), (0, 2, 1, 3))
        q, k, v = ops.split(qkv, 3, axis=1)
        attn = ops.matmul(q * ops.cast(head_dim**-0.5, q.dtype), ops.transpose(k, (0, 1, 3, 2)))
        out = ops.matmul(ops.softmax(attn, axis=-1), v)  # (B, heads, L, d)
        out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (shape[0], -1, dim))
        out = ops.matmul(out, ops.cast(self.out_kernel, out.dtype)) + ops.cast(self.out_bias, out.dtype)
        return ops.reshape(out, shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads}


@keras.saving.register_keras_serializable(package="keras_hyper")
class SoftClusterAttention(keras.layers.Layer):
    """GLMix's global branch (arXiv:2411.14429, Sec. 3): soft clustering of the tokens into slots, multi-head
    self-attention among the slots, soft dispatching of the slots back to the tokens.

    With `x` the (normalised) tokens and `s` the initial slots, `logits = l2n(s) @ (tau * l2n(x))^T` (S, L);
    the slots are `softmax_L(logits) @ x`, updated by `MultiHeadSelfAttention`, and each token receives
    `softmax_S(logits^T) @ slots`. The initial slots are either the adaptive average pooling of the block's raw
    input to a `sqrt(S) x sqrt(S)` grid (`slot_init="ada_avgpool"`), or a learned `(1, S, C)` parameter
    (`"param"`). `tau` is a learned scalar (`slot_scale`, initialised at `C**-0.5`).

    Args:
        num_heads: heads of the slot attention.
        num_slots: number of slots S (a square number with `"ada_avgpool"`).
        slot_init: `"ada_avgpool"` or `"param"`.

    Call: `layer([x, source])` with `"ada_avgpool"` (`source` the block's raw input grid the slots are pooled
    from), `layer(x)` with `"param"`. Shape: `x (B, H, W, C)`, `source (B, H, W, C)` -> `(B, H, W, C)`.
    """

    def __init__(self, num_heads, num_slots=64, slot_init="ada_avgpool", **kwargs):
        super().__init__(**kwargs)
        if slot_init not in SLOT_INITS:
            raise ValueError(f"slot_init must be one of {SLOT_INITS}, got {slot_init!r}.")
        check_positive(num_slots=num_slots)
        if slot_init == "ada_avgpool" and math.isqrt(num_slots) ** 2 != num_slots:
            raise ValueError(
                f"slot_init='ada_avgpool' pools to a square grid: num_slots must be square, got {num_slots}."
            )
        self.num_heads = num_heads
        self.num_slots = num_slots
        self.slot_init = slot_init
        self.attention = MultiHeadSelfAttention(num_heads, name="relation_mha")

    def build(self, input_shape):
        x_shape = input_shape[0] if self.slot_init == "ada_avgpool" else input_shape
        dim = x_shape[-1]
        self.slot_scale = self.add_weight(
            name="slot_scale", shape=(), initializer=keras.initializers.Constant(dim**-0.5)
        )
        if self.slot_init == "param":
            self.init_slots = self.add_weight(
                name="init_slots",
                shape=(1, self.num_slots, dim),
                initializer=keras.initializers.RandomNormal(stddev=0.02),
            )
        self.attention.build((None, self.num_slots, dim))

    def call(self, inputs):
        if self.slot_init == "ada_avgpool":
            x, source = inputs
            slots = adaptive_avg_pool_tokens(source, math.isqrt(self.num_slots))
        else:
            x = inputs
            slots = ops.broadcast_to(ops.cast(self.init_slots, x.dtype), (ops.shape(x)[0], self.num_slots, x.shape[-1]))
        shape = ops.shape(x)
        tokens = _flatten_tokens(x)  # (B, L, C), row-major as PyTorch's flatten of (H, W)
        scaled = ops.cast(self.slot_scale, x.dtype) * _l2_normalize(tokens)
        logits = ops.matmul(_l2_normalize(ops.cast(slots, x.dtype)), ops.transpose(scaled, (0, 2, 1)))  # (B, S, L)
        slots = ops.matmul(ops.softmax(logits, axis=-1), tokens)
        slots = self.attention(slots)
        out = ops.matmul(ops.softmax(ops.transpose(logits, (0, 2, 1)), axis=-1), slots)  # (B, L, C)
        return ops.reshape(out, shape)

    def compute_output_shape(self, input_shape):
        return input_shape[0] if self.slot_init == "ada_avgpool" else input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "num_slots": self.num_slots,
            "slot_init": self.slot_init,
        }
