"""Blocked local self-attention with a halo (HaloNet) and the padded max pooling of the ResNet-style stems it
sits in.

Vaswani, Ramachandran, Srinivas, Parmar, Hechtman, Shlens, "Scaling Local Self-Attention for Parameter Efficient
Visual Backbones", CVPR 2021, arXiv:2103.12731; the layout follows timm's `HaloAttn` (Apache-2.0), the
implementation behind every published HaloNet checkpoint.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_hyper.layers._args import check_at_least, check_non_negative, check_positive
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.torch_defaults import trunc_normal


def _make_divisible(value, divisor=8, round_limit=0.9):
    """timm's `make_divisible`: the nearest multiple of `divisor` (at least `divisor`), one step up where
    rounding lost more than `1 - round_limit` of `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < round_limit * value else rounded


def _windows(x, block, halo):
    """Overlapping windows of `block + 2 * halo` along axis 1 of a 4-D tensor, one per block, from a tensor
    already zero-padded by `ceil(halo / block) * block` on both ends of that axis.

    `(B, (n + 2m) * block, R, C)` -> `(B, n, block + 2 * halo, R * C)`, m = ceil(halo / block). Each window is
    cut from 2m + 1 consecutive blocks laid side by side, so it costs 2m + 1 slices and a concat whatever the
    window count, with static slice bounds (a dynamic input size works) and no tensor above 4-D.
    """
    m = -(-halo // block)
    shape = ops.shape(x)
    x = ops.reshape(x, (shape[0], -1, block, shape[2] * shape[3]))
    parts = [x[:, j : j - 2 * m if j < 2 * m else None] for j in range(2 * m + 1)]
    x = ops.concatenate(parts, axis=2) if len(parts) > 1 else parts[0]
    start = m * block - halo
    return x[:, :, start : start + block + 2 * halo]


def _skew_indices(height, width, win, axis):
    """Flat indices that turn relative logits `(by, bx, 2 * win - 1)` into absolute ones `(by, bx, win)`:
    `out[y, x, k] = logits[y, x, k - i + win - 1]`, i the query position along `axis` (0: y, 1: x)."""
    rel = 2 * win - 1
    y, x, k = np.meshgrid(np.arange(height), np.arange(width), np.arange(win), indexing="ij")
    position = y if axis == 0 else x
    return ((y * width + x) * rel + k - position + win - 1).reshape(-1).astype("int32")


def _skew(logits, win, axis):
    """`(N, by, bx, 2 * win - 1)` relative logits -> `(N, by, bx, win)` logits per absolute key row (`axis` 0)
    or column (1) of the window: one constant-index gather (the Music-Transformer pad/reshape trick of timm
    computes the same selection)."""
    height, width = logits.shape[1], logits.shape[2]
    flat = ops.reshape(logits, (-1, height * width * (2 * win - 1)))
    picked = ops.take(flat, _skew_indices(height, width, win, axis), axis=1)
    return ops.reshape(picked, (-1, height, width, win))


def _rel_logits(q, height_rel, width_rel, win_h, win_w):
    """`(N, by, bx, D)` queries -> `(N, by, bx, win_h, win_w)` position logits (key row, key column)."""
    height = _skew(ops.matmul(q, ops.transpose(ops.cast(height_rel, q.dtype))), win_h, axis=0)
    width = _skew(ops.matmul(q, ops.transpose(ops.cast(width_rel, q.dtype))), win_w, axis=1)
    return height[..., :, None] + width[..., None, :]


@keras.saving.register_keras_serializable(package="keras_hyper")
class HaloAttention(keras.layers.Layer):
    """Halo attention (Vaswani et al., "Scaling Local Self-Attention for Parameter Efficient Visual Backbones",
    arXiv:2103.12731).

    The map is cut into non-overlapping `block_size` x `block_size` query blocks; each attends, per head, to the
    `win` x `win` window (`win = block_size + 2 * halo_size`) around its block of the keys and values, with
    relative-position logits `q . r_h[ky - y] + q . r_w[kx - x]` added to the scaled dot products (unscaled,
    unless `scale_pos_embed`). As in timm's `HaloAttn`:

    - `q` is a 1x1 convolution with the block stride, `kv` a 1x1 convolution whose channels are grouped per
      head as `[k_h, v_h]`; kv is zero-padded by the halo after the projection and padded keys are not masked
      (their logit is the position term alone);
    - with `stride=2` and an even `block_size`, the query convolution has stride 2 (block_size/2 queries per
      block side); with an odd `block_size` (or `avg_down`) the attention runs at full resolution and a 2x2
      average pool halves the output;
    - `dim_head` (q/k width per head) defaults to `make_divisible(dim_out * qk_ratio, 8) // num_heads`; the
      v width per head is `dim_out // num_heads`.

    LiteRT: the block/halo unfolding uses reshapes and transposes of at most 5 dimensions, static slices and
    concatenations (no `extract_patches`, no 6-D transpose), and the relative logits two matmuls against the
    tables and two constant-index gathers, so the layer exports with builtin operators only.

    Args:
        dim_out: output channels (default: input channels); a multiple of `num_heads`.
        num_heads: attention heads.
        dim_head: q/k channels per head (see above).
        block_size: query block side; height and width must be multiples of it.
        halo_size: extra key rows/columns around each block, on each side.
        qk_ratio: q/k width relative to `dim_out` when `dim_head` is None.
        qkv_bias: biases in the q and kv projections.
        stride: 1 or 2.
        avg_down: downsample with the average pool even when the block size is even.
        scale_pos_embed: scale the position logits together with the dot products.

    Sublayers and weights: `q` (Conv2D 1x1), `kv` (Conv2D 1x1), `height_rel` and `width_rel` of shape
    `(2 * win - 1, dim_head)`.

    Shape: `(B, H, W, C)` -> `(B, H / stride, W / stride, dim_out)`.
    """

    def __init__(
        self,
        dim_out=None,
        num_heads=8,
        dim_head=None,
        block_size=8,
        halo_size=3,
        qk_ratio=1.0,
        qkv_bias=False,
        stride=1,
        avg_down=False,
        scale_pos_embed=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if stride not in (1, 2):
            raise ValueError(f"HaloAttention stride must be 1 or 2, got {stride!r}.")
        check_positive(**{"HaloAttention num_heads": num_heads, "HaloAttention block_size": block_size})
        check_non_negative(**{"HaloAttention halo_size": halo_size})
        if dim_out is not None and (not isinstance(dim_out, int) or dim_out < 1 or dim_out % num_heads):
            raise ValueError(
                f"HaloAttention dim_out must be a positive multiple of num_heads={num_heads}, got {dim_out!r}."
            )
        if dim_head is not None and (not isinstance(dim_head, int) or dim_head < 1):
            raise ValueError(f"HaloAttention dim_head must be a positive integer or None, got {dim_head!r}.")
        if qk_ratio <= 0:
            raise ValueError(f"HaloAttention qk_ratio must be positive, got {qk_ratio!r}.")
        self.dim_out = dim_out
        self.num_heads = num_heads
        self.dim_head = dim_head
        self.block_size = block_size
        self.halo_size = halo_size
        self.qk_ratio = float(qk_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.stride = stride
        self.avg_down = bool(avg_down)
        self.scale_pos_embed = bool(scale_pos_embed)
        self.win_size = block_size + 2 * halo_size
        self.use_pool = stride > 1 and (self.avg_down or block_size % stride != 0)
        self.block_stride = 1 if self.use_pool else stride
        self.query_block = block_size // self.block_stride

    def _check_size(self, size):
        if size is not None and size % self.block_size:
            raise ValueError(
                f"HaloAttention '{self.name}': height and width must be multiples of block_size={self.block_size}, "
                f"got a {size}-pixel side (HaloNet inputs must be divisible by block_size times the stride at "
                "every halo layer)."
            )

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"HaloAttention expects (batch, height, width, channels) with known channels, got {tuple(input_shape)}."
            )
        for size in input_shape[1:3]:
            self._check_size(size)
        channels = int(input_shape[-1])
        dim_out = self.dim_out or channels
        if dim_out % self.num_heads:
            raise ValueError(
                f"HaloAttention output channels {dim_out} must be a multiple of num_heads={self.num_heads}."
            )
        self.dim_head_qk = self.dim_head or _make_divisible(dim_out * self.qk_ratio) // self.num_heads
        self.dim_head_v = dim_out // self.num_heads
        self.scale = self.dim_head_qk**-0.5
        self.q = Conv2D(
            self.num_heads * self.dim_head_qk,
            1,
            strides=self.block_stride,
            use_bias=self.qkv_bias,
            kernel_initializer=trunc_normal(channels**-0.5),
            dtype=self.dtype_policy,
            name="q",
        )
        self.kv = Conv2D(
            self.num_heads * (self.dim_head_qk + self.dim_head_v),
            1,
            use_bias=self.qkv_bias,
            kernel_initializer=trunc_normal(channels**-0.5),
            dtype=self.dtype_policy,
            name="kv",
        )
        self.q.build(input_shape)
        self.kv.build(input_shape)
        rel_shape = (2 * self.win_size - 1, self.dim_head_qk)
        self.height_rel = self.add_weight(shape=rel_shape, initializer=trunc_normal(self.scale), name="height_rel")
        self.width_rel = self.add_weight(shape=rel_shape, initializer=trunc_normal(self.scale), name="width_rel")

    def _blocks(self, x, block):
        """`(B, nh * block, nw * block, heads * D)` -> `(B * heads, nh * nw, block * block, D)`."""
        shape = ops.shape(x)
        batch, width, channels = shape[0], shape[2], shape[3]
        nw = width // block
        x = ops.reshape(x, (-1, block, nw, block * channels))
        x = ops.transpose(x, (0, 2, 1, 3))  # (B * nh, nw, by, bx * C)
        x = ops.reshape(x, (batch, -1, block * block, self.num_heads, channels // self.num_heads))
        x = ops.transpose(x, (0, 3, 1, 2, 4))
        return ops.reshape(x, (batch * self.num_heads, -1, block * block, channels // self.num_heads))

    def call(self, inputs):
        shape = ops.shape(inputs)
        batch, height, width = shape[0], shape[1], shape[2]
        block, halo, win, qb = self.block_size, self.halo_size, self.win_size, self.query_block
        dqk, dv, heads = self.dim_head_qk, self.dim_head_v, self.num_heads

        q = self._blocks(self.q(inputs), qb)  # (B * heads, nblocks, qb * qb, dqk)

        kv = self.kv(inputs)
        pad = -(-halo // block) * block
        kv = ops.pad(kv, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        kv = _windows(kv, block, halo)  # (B, nh, win, Wp * Ckv)
        channels = heads * (dqk + dv)
        kv = ops.reshape(kv, (-1, width + 2 * pad, 1, channels))
        kv = _windows(kv, block, halo)  # (B * nh * win, nw, win, Ckv)
        nw = width // block
        kv = ops.reshape(kv, (-1, win, nw, win * channels))
        kv = ops.transpose(kv, (0, 2, 1, 3))  # (B * nh, nw, win_y, win_x * Ckv)
        kv = ops.reshape(kv, (batch, -1, win * win, heads, dqk + dv))
        kv = ops.transpose(kv, (0, 3, 1, 2, 4))
        kv = ops.reshape(kv, (batch * heads, -1, win * win, dqk + dv))
        k, v = kv[..., :dqk], kv[..., dqk:]

        attn = ops.matmul(q, ops.swapaxes(k, -1, -2))  # (B * heads, nblocks, qb * qb, win * win)
        rel = _rel_logits(ops.reshape(q, (-1, qb, qb, dqk)), self.height_rel, self.width_rel, win, win)
        rel = ops.reshape(rel, ops.shape(attn))
        attn = (attn + rel) * self.scale if self.scale_pos_embed else attn * self.scale + rel
        attn = ops.softmax(attn, axis=-1)
        out = ops.matmul(attn, v)  # (B * heads, nblocks, qb * qb, dv)

        out = ops.reshape(out, (batch, heads, -1, qb * qb, dv))
        out = ops.transpose(out, (0, 2, 3, 1, 4))  # (B, nblocks, qb * qb, heads, dv)
        out = ops.reshape(out, (-1, nw, qb, qb * heads * dv))
        out = ops.transpose(out, (0, 2, 1, 3))  # (B * nh, qb, nw, qb * C)
        out = ops.reshape(out, (batch, (height // block) * qb, nw * qb, heads * dv))
        if self.use_pool:
            out = ops.average_pool(out, 2, strides=2, padding="valid")
        return out

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        dim_out = self.dim_out or channels

        def out(size):
            return None if size is None else size // self.stride

        return (batch, out(height), out(width), dim_out)

    def get_config(self):
        return {
            **super().get_config(),
            "dim_out": self.dim_out,
            "num_heads": self.num_heads,
            "dim_head": self.dim_head,
            "block_size": self.block_size,
            "halo_size": self.halo_size,
            "qk_ratio": self.qk_ratio,
            "qkv_bias": self.qkv_bias,
            "stride": self.stride,
            "avg_down": self.avg_down,
            "scale_pos_embed": self.scale_pos_embed,
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class BottleneckAttention(keras.layers.Layer):
    """Global multi-head self-attention with 2-D relative-position logits over a fixed-size map (Srinivas et
    al., "Bottleneck Transformers for Visual Recognition", arXiv:2101.11605), as timm's `BottleneckAttn`; the
    last-stage attention of timm's halo2botnet50ts (HaloNet paper, arXiv:2103.12731, hybrid models).

    One 1x1 convolution `qkv` gives `[q (heads x dim_head) | k (heads x dim_head) | v (heads x dim_out/heads)]`;
    every position attends to every other with `q . k * scale + q . r_h[ky - y] + q . r_w[kx - x]`; with
    `stride=2` a 2x2 average pool halves the output. The position tables are sized by the map, so the input
    height and width must be static (and equal those of a converted checkpoint). The relative logits use the
    same constant-index gathers as `HaloAttention` (builtin LiteRT operators).

    Args:
        dim_out, num_heads (default 4), dim_head, qk_ratio, qkv_bias, stride, scale_pos_embed: as in
        `HaloAttention`.

    Weights: `qkv` (Conv2D 1x1), `height_rel` `(2H - 1, dim_head)`, `width_rel` `(2W - 1, dim_head)`.

    Shape: `(B, H, W, C)` -> `(B, H / stride, W / stride, dim_out)`.
    """

    def __init__(
        self,
        dim_out=None,
        num_heads=4,
        dim_head=None,
        qk_ratio=1.0,
        qkv_bias=False,
        stride=1,
        scale_pos_embed=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if stride not in (1, 2):
            raise ValueError(f"BottleneckAttention stride must be 1 or 2, got {stride!r}.")
        check_positive(**{"BottleneckAttention num_heads": num_heads})
        if dim_out is not None and (not isinstance(dim_out, int) or dim_out < 1 or dim_out % num_heads):
            raise ValueError(
                f"BottleneckAttention dim_out must be a positive multiple of num_heads={num_heads}, got {dim_out!r}."
            )
        if qk_ratio <= 0:
            raise ValueError(f"BottleneckAttention qk_ratio must be positive, got {qk_ratio!r}.")
        self.dim_out = dim_out
        self.num_heads = num_heads
        self.dim_head = dim_head
        self.qk_ratio = float(qk_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.stride = stride
        self.scale_pos_embed = bool(scale_pos_embed)

    def build(self, input_shape):
        if len(input_shape) != 4 or None in tuple(input_shape[1:]):
            raise ValueError(
                f"BottleneckAttention '{self.name}' needs a static (batch, height, width, channels) input: its "
                f"position tables are sized by the map; got {tuple(input_shape)}."
            )
        _, self.height, self.width, channels = (int(d) if d is not None else None for d in input_shape)
        dim_out = self.dim_out or channels
        if dim_out % self.num_heads:
            raise ValueError(
                f"BottleneckAttention output channels {dim_out} must be a multiple of num_heads={self.num_heads}."
            )
        self.dim_head_qk = self.dim_head or _make_divisible(dim_out * self.qk_ratio) // self.num_heads
        self.dim_head_v = dim_out // self.num_heads
        self.scale = self.dim_head_qk**-0.5
        self.qkv = Conv2D(
            self.num_heads * (2 * self.dim_head_qk + self.dim_head_v),
            1,
            use_bias=self.qkv_bias,
            kernel_initializer=trunc_normal(channels**-0.5),
            dtype=self.dtype_policy,
            name="qkv",
        )
        self.qkv.build(input_shape)
        self.height_rel = self.add_weight(
            shape=(2 * self.height - 1, self.dim_head_qk), initializer=trunc_normal(self.scale), name="height_rel"
        )
        self.width_rel = self.add_weight(
            shape=(2 * self.width - 1, self.dim_head_qk), initializer=trunc_normal(self.scale), name="width_rel"
        )

    def call(self, inputs):
        heads, dqk, dv = self.num_heads, self.dim_head_qk, self.dim_head_v
        height, width = self.height, self.width
        positions = height * width
        x = ops.reshape(self.qkv(inputs), (-1, positions, heads * (2 * dqk + dv)))

        def split(t, depth):  # (B, HW, heads * depth) -> (B * heads, HW, depth)
            t = ops.transpose(ops.reshape(t, (-1, positions, heads, depth)), (0, 2, 1, 3))
            return ops.reshape(t, (-1, positions, depth))

        q = split(x[..., : heads * dqk], dqk)
        k = split(x[..., heads * dqk : 2 * heads * dqk], dqk)
        v = split(x[..., 2 * heads * dqk :], dv)
        attn = ops.matmul(q, ops.swapaxes(k, -1, -2))
        rel = _rel_logits(ops.reshape(q, (-1, height, width, dqk)), self.height_rel, self.width_rel, height, width)
        rel = ops.reshape(rel, (-1, positions, positions))
        attn = (attn + rel) * self.scale if self.scale_pos_embed else attn * self.scale + rel
        out = ops.matmul(ops.softmax(attn, axis=-1), v)  # (B * heads, HW, dv)
        out = ops.transpose(ops.reshape(out, (-1, heads, positions, dv)), (0, 2, 1, 3))
        out = ops.reshape(out, (-1, height, width, heads * dv))
        if self.stride > 1:
            out = ops.average_pool(out, 2, strides=2, padding="valid")
        return out

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape

        def out(size):
            return None if size is None else size // self.stride

        return (batch, out(height), out(width), self.dim_out or channels)

    def get_config(self):
        return {
            **super().get_config(),
            "dim_out": self.dim_out,
            "num_heads": self.num_heads,
            "dim_head": self.dim_head,
            "qk_ratio": self.qk_ratio,
            "qkv_bias": self.qkv_bias,
            "stride": self.stride,
            "scale_pos_embed": self.scale_pos_embed,
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class PaddedMaxPool2D(keras.layers.Layer):
    """PyTorch's `MaxPool2d(pool_size, strides, padding)`: symmetric padding with -inf, then a valid max pool.

    Keras' "same" max pool pads a stride-2 pool only at the bottom/right of an even input, which shifts every
    window by one pixel against PyTorch; the stems of the ResNet-T family pool after a SiLU (negative values),
    so zero padding would not do either.

    Shape: `(B, H, W, C)` -> `(B, floor((H + 2p - k) / s) + 1, ..., C)`.
    """

    def __init__(self, pool_size=3, strides=2, padding=1, **kwargs):
        super().__init__(**kwargs)
        for label, value, low in (("pool_size", pool_size, 1), ("strides", strides, 1), ("padding", padding, 0)):
            check_at_least(low, **{f"PaddedMaxPool2D {label}": value})
        if 2 * padding > pool_size:
            raise ValueError(f"PaddedMaxPool2D padding {padding} must be at most half of pool_size {pool_size}.")
        self.pool_size = pool_size
        self.strides = strides
        self.padding = padding

    def call(self, inputs):
        p = self.padding
        x = ops.pad(inputs, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=-math.inf) if p else inputs
        return ops.max_pool(x, self.pool_size, strides=self.strides, padding="valid")

    def compute_output_shape(self, input_shape):
        def out(size):
            return None if size is None else (size + 2 * self.padding - self.pool_size) // self.strides + 1

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides, "padding": self.padding}
