"""Swin-style (shifted-)window softmax attention with relative position bias, and Swin's 2x2 patch merging, as
used by SLAB-Swin (Guo, Chen, Tang, Wang, "SLAB: Efficient Transformers with Simplified Linear Attention and
Progressive Re-parameterized Batch Normalization", ICML 2024, arXiv:2405.11582; paper 59 in PAPERS.md), after
Swin Transformer (Liu et al., arXiv:2103.14030).

Everything lowers to LiteRT builtin ops: windows are cut with 5-D reshapes/transposes, the cyclic shift is two
slices and a concatenation (no ROLL kernel), the bias a GATHER of constant indices, the 2x2 merge a 5-D
transpose.
"""

import keras
import numpy as np

from keras_hyper.layers._args import check_positive
from keras_hyper.layers.torch_defaults import trunc_normal


def relative_position_index(height, width):
    """`(h*w, h*w)` index into a `((2h-1)*(2w-1), heads)` bias table of the offset between two tokens."""
    coords = np.stack(np.meshgrid(np.arange(height), np.arange(width), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
    return (rel[..., 0] + height - 1) * (2 * width - 1) + rel[..., 1] + width - 1


def shifted_window_mask(height, width, window, shift):
    """`(windows, w*w, w*w)` additive mask (0 / -100) that keeps the cyclically shifted windows from mixing
    tokens that are not neighbours in the image (Swin's construction)."""
    regions = np.zeros((height, width))
    count = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            regions[hs, ws] = count
            count += 1
    regions = regions.reshape(height // window, window, width // window, window).transpose(0, 2, 1, 3)
    regions = regions.reshape(-1, window * window)
    return np.where(regions[:, None, :] != regions[:, :, None], -100.0, 0.0).astype("float32")


def _roll(x, shift):
    """Cyclic shift by `shift` along H and W (negative: towards the origin)."""
    for axis in (1, 2):
        size = x.shape[axis]
        s = shift % size
        x = keras.ops.concatenate([_slice(x, axis, size - s, size), _slice(x, axis, 0, size - s)], axis=axis)
    return x


def _slice(x, axis, start, stop):
    return x[:, start:stop] if axis == 1 else x[:, :, start:stop]


@keras.saving.register_keras_serializable(package="keras_hyper")
class WindowSoftmaxAttention(keras.layers.Layer):
    """Multi-head softmax attention inside `window_size` x `window_size` windows, optionally cyclically shifted by
    `shift_size`, with a learned relative position bias per head; `window_size=None` is one window covering the
    whole map (the official model's case whenever the map is no larger than its window).

    The bias table is stored for the window (or, global, for `grid_size`); a global map of another size gets
    the table bilinearly resized to its `(2H-1, 2W-1)` offsets.

    Args:
        num_heads: heads; must divide C.
        window_size: window side, or None for global attention.
        shift_size: cyclic shift (0 <= shift < window); 0 without windows.
        grid_size: `(h, w)` the global bias table is stored for (ignored with windows).
        qk_scale: logit scale (default `head_dim ** -0.5`).

    Shape: `(B, H, W, 3C)` ([q | k | v]) -> `(B, H, W, C)`; with windows H and W must be multiples of
    `window_size`.
    """

    def __init__(self, num_heads, window_size=None, shift_size=0, grid_size=(7, 7), qk_scale=None, **kwargs):
        super().__init__(**kwargs)
        check_positive(num_heads=num_heads)
        if window_size is not None and (not isinstance(window_size, int) or window_size < 1):
            raise ValueError(f"window_size must be a positive integer or None, got {window_size!r}.")
        limit = window_size or 1
        if not isinstance(shift_size, int) or not 0 <= shift_size < limit:
            raise ValueError(f"shift_size must be in [0, window_size={window_size}), got {shift_size!r}.")
        grid_size = tuple(grid_size)
        if len(grid_size) != 2 or any(not isinstance(g, int) or g < 1 for g in grid_size):
            raise ValueError(f"grid_size must be two positive integers (h, w), got {grid_size!r}.")
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.grid_size = grid_size
        self.qk_scale = qk_scale

    def _table_grid(self):
        return (self.window_size,) * 2 if self.window_size else self.grid_size

    def build(self, input_shape):
        channels = input_shape[-1]
        if len(input_shape) != 4 or channels is None or channels % 3 or (channels // 3) % self.num_heads:
            raise ValueError(
                f"WindowSoftmaxAttention expects a (B, H, W, 3C) qkv map with C divisible by num_heads="
                f"{self.num_heads}, got shape {input_shape}."
            )
        self.dim = channels // 3
        h, w = self._table_grid()
        self.relative_position_bias_table = self.add_weight(
            shape=((2 * h - 1) * (2 * w - 1), self.num_heads),
            initializer=trunc_normal(),
            name="relative_position_bias_table",
        )

    def _bias(self, height, width):
        """`(heads, N, N)` bias of a `height` x `width` window."""
        table = keras.ops.convert_to_tensor(self.relative_position_bias_table)
        h, w = self._table_grid()
        if (height, width) != (h, w):
            table = keras.ops.reshape(table, (1, 2 * h - 1, 2 * w - 1, self.num_heads))
            table = keras.ops.image.resize(table, (2 * height - 1, 2 * width - 1), interpolation="bilinear")
            table = keras.ops.reshape(table, (-1, self.num_heads))
        index = relative_position_index(height, width).reshape(-1)
        bias = keras.ops.take(table, index, axis=0)
        bias = keras.ops.reshape(bias, (height * width, height * width, self.num_heads))
        return keras.ops.transpose(bias, (2, 0, 1))

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:
            raise ValueError("WindowSoftmaxAttention needs a static spatial size (call it eagerly or build with it).")
        dim, heads = self.dim, self.num_heads
        head_dim = dim // heads
        win_h, win_w = (self.window_size,) * 2 if self.window_size else (height, width)
        if height % win_h or width % win_w:
            raise ValueError(f"The {height}x{width} map is not a whole number of {win_h}x{win_w} windows.")
        x = _roll(inputs, -self.shift_size) if self.shift_size else inputs
        rows, cols, tokens = height // win_h, width // win_w, win_h * win_w
        # windows: (B * rows, win_h, cols, win_w, 3C) -> (B * rows * cols, tokens, 3, heads, head_dim)
        x = keras.ops.reshape(x, (-1, win_h, cols, win_w, 3 * dim))
        x = keras.ops.transpose(x, (0, 2, 1, 3, 4))
        x = keras.ops.reshape(x, (-1, tokens, 3 * dim))
        q, k, v = (
            keras.ops.transpose(
                keras.ops.reshape(x[..., i * dim : (i + 1) * dim], (-1, tokens, heads, head_dim)), (0, 2, 1, 3)
            )
            for i in range(3)
        )
        scale = self.qk_scale or head_dim**-0.5
        logits = keras.ops.matmul(q * scale, keras.ops.transpose(k, (0, 1, 3, 2)))
        logits = logits + keras.ops.cast(self._bias(win_h, win_w), logits.dtype)[None]
        if self.shift_size:
            mask = shifted_window_mask(height, width, win_h, self.shift_size)
            logits = keras.ops.reshape(logits, (-1, rows * cols, heads, tokens, tokens))
            logits = logits + keras.ops.cast(mask[None, :, None], logits.dtype)
            logits = keras.ops.reshape(logits, (-1, heads, tokens, tokens))
        out = keras.ops.matmul(keras.ops.softmax(logits, axis=-1), v)
        out = keras.ops.reshape(keras.ops.transpose(out, (0, 2, 1, 3)), (-1, cols, win_h, win_w, dim))
        out = keras.ops.reshape(keras.ops.transpose(out, (0, 2, 1, 3, 4)), (-1, height, width, dim))
        return _roll(out, self.shift_size) if self.shift_size else out

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // 3)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            window_size=self.window_size,
            shift_size=self.shift_size,
            grid_size=self.grid_size,
            qk_scale=self.qk_scale,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_hyper")
class PatchMerging2x2(keras.layers.Layer):
    """Swin's patch merging rearrangement: each 2x2 block of tokens becomes one token of 4C channels, ordered
    `[x(0,0), x(1,0), x(0,1), x(1,1)]` (row offset fastest), as the official `cat([x0, x1, x2, x3])`.

    Shape: `(B, H, W, C)` -> `(B, H/2, W/2, 4C)`; H and W even.
    """

    def call(self, inputs):
        height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        if height is None or width is None:
            shape = keras.ops.shape(inputs)
            height, width = shape[1], shape[2]
        elif height % 2 or width % 2:
            raise ValueError(f"PatchMerging2x2 needs an even height and width, got {height}x{width}.")
        x = keras.ops.reshape(inputs, (-1, 2, width // 2, 2, channels))  # (B*H/2, i, W/2, j, C)
        x = keras.ops.transpose(x, (0, 2, 3, 1, 4))  # (B*H/2, W/2, j, i, C)
        return keras.ops.reshape(x, (-1, height // 2, width // 2, 4 * channels))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        half = [None if s is None else s // 2 for s in (height, width)]
        return (batch, *half, 4 * channels)
