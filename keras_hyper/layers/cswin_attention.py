"""Cross-shaped window attention with locally-enhanced positional encoding (LePE), after CSWin Transformer (Dong
et al., "CSWin Transformer: A General Vision Transformer Backbone with Cross-Shaped Windows", arXiv:2107.00652),
in the two forms SLAB-CSwin uses (Guo, Chen, Tang, Wang, "SLAB: Efficient Transformers with Simplified Linear
Attention and Progressive Re-parameterized Batch Normalization", ICML 2024, arXiv:2405.11582; paper 59 in
PAPERS.md): softmax attention, and SLAB's simplified linear attention (SLA).

The heads are split in two halves: one half attends inside vertical stripes (full height, `split_size` wide),
the other inside horizontal stripes (`split_size` high, full width), and the two outputs are concatenated; a
stripe as large as the map makes it one global window for all heads. Each half adds LePE, a 3x3 depthwise
convolution of its `v` applied inside each stripe (zero padding at the stripe's borders), to its attention
output. The attention inside a window is `SoftmaxAttention` or `SimplifiedLinearAttention` (with its
positional encoding on `k` and its shared depthwise convolution of `v`), run on the windows as a batch.

Windows are cut with 5-D reshapes and transposes only, so the layer exports to LiteRT with builtin ops.
"""

import keras

from keras_hyper.layers._args import check_positive
from keras_hyper.layers.conv import DepthwiseConv2D
from keras_hyper.layers.linear_attention import (
    SimplifiedLinearAttention,
    SoftmaxAttention,
    merge_windows,
    partition_windows,
)

ATTENTIONS = ("softmax", "linear")


@keras.saving.register_keras_serializable(package="keras_hyper")
class CrossShapedWindowAttention(keras.layers.Layer):
    """CSWin's attention core on the `[q | k | v]` output of a qkv projection: two halves of the heads in
    vertical and horizontal stripes of width `split_size` (or all heads in one global window with
    `split_size=None`), each with LePE (a 3x3 depthwise convolution of `v` inside the window, with bias).

    Args:
        num_heads: heads of the whole layer; with stripes each half gets `num_heads // 2` (at least 1 each).
        split_size: stripe width, or None for one global window (the official `last_stage`, or a stripe as
            large as the map).
        attention: "softmax" (scale `head_dim ** -0.5`) or "linear" (SLA, `SimplifiedLinearAttention`).
        grid_size: `(h, w)` of the token map the model is laid out for; SLA's positional encoding is stored
            for the window at that size (`(h, split)`, `(split, w)` or `(h, w)`) and resized for other windows.
        kernel_size: of SLA's depthwise convolution of `v` (official 5).
        unused_scale: also create, per half, the official SLA module's `scale` parameter `(1, 1, C/2)`, which
            its forward never reads; kept so that parameter counts and checkpoints match exactly.

    Shape: `(B, H, W, 3C)` -> `(B, H, W, C)`; with stripes H and W must be multiples of `split_size`.
    """

    def __init__(
        self,
        num_heads,
        split_size=None,
        attention="softmax",
        grid_size=(14, 14),
        kernel_size=5,
        unused_scale=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive(num_heads=num_heads)
        if split_size is not None:
            if not isinstance(split_size, int) or split_size < 1:
                raise ValueError(f"split_size must be a positive integer or None, got {split_size!r}.")
            if num_heads < 2:
                raise ValueError(f"Stripes split the heads in two halves: num_heads must be >= 2, got {num_heads}.")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}.")
        grid_size = tuple(grid_size)
        if len(grid_size) != 2 or any(not isinstance(g, int) or g < 1 for g in grid_size):
            raise ValueError(f"grid_size must be two positive integers (h, w), got {grid_size!r}.")
        if split_size is not None and any(g % split_size for g in grid_size):
            raise ValueError(f"split_size={split_size} must divide both sides of grid_size={grid_size}.")
        self.num_heads = num_heads
        self.split_size = split_size
        self.attention = attention
        self.grid_size = grid_size
        self.kernel_size = kernel_size
        self.unused_scale = bool(unused_scale)

    def _windows(self, height, width):
        """The `(win_h, win_w)` of each half (one entry without stripes)."""
        if self.split_size is None:
            return [(height, width)]
        return [(height, self.split_size), (self.split_size, width)]

    def build(self, input_shape):
        channels = input_shape[-1]
        if len(input_shape) != 4 or channels is None or channels % 3:
            raise ValueError(f"CrossShapedWindowAttention expects a (B, H, W, 3C) qkv map, got shape {input_shape}.")
        self.dim = channels // 3
        halves = 1 if self.split_size is None else 2
        heads = self.num_heads // halves
        if self.dim % halves or (self.dim // halves) % heads:
            raise ValueError(
                f"The {self.dim} channels of {self.name!r} do not split into {halves} half(s) of {heads} heads."
            )
        self.branch_dim = self.dim // halves
        self.cores, self.lepe, self.scales = [], [], []
        for b, window in enumerate(self._windows(*self.grid_size)):
            if self.attention == "linear":
                core = SimplifiedLinearAttention(
                    heads, grid_size=window, kernel_size=self.kernel_size, dtype=self.dtype_policy, name=f"attn_{b}"
                )
            else:
                core = SoftmaxAttention(heads, dtype=self.dtype_policy, name=f"attn_{b}")
            core.build((None, *window, 3 * self.branch_dim))
            lepe = DepthwiseConv2D(3, padding="same", dtype=self.dtype_policy, name=f"get_v_{b}")
            lepe.build((None, *window, self.branch_dim))
            self.cores.append(core)
            self.lepe.append(lepe)
            if self.unused_scale:
                self.scales.append(
                    self.add_weight(shape=(1, 1, self.branch_dim), initializer="zeros", name=f"scale_{b}")
                )

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:
            shape = keras.ops.shape(inputs)
            height, width = shape[1], shape[2]
        elif self.split_size is not None and (height % self.split_size or width % self.split_size):
            raise ValueError(f"The {height}x{width} map is not a whole number of {self.split_size}-wide stripes.")
        dim, part = self.dim, self.branch_dim
        outputs = []
        for b, (win_h, win_w) in enumerate(self._windows(height, width)):
            qkv = keras.ops.concatenate(
                [inputs[..., i * dim + b * part : i * dim + (b + 1) * part] for i in range(3)], axis=-1
            )
            windows = partition_windows(qkv, height, width, win_h, win_w)
            out = self.cores[b](windows) + self.lepe[b](windows[..., 2 * part :])
            outputs.append(merge_windows(out, height, width, win_h, win_w))
        return outputs[0] if len(outputs) == 1 else keras.ops.concatenate(outputs, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // 3)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            split_size=self.split_size,
            attention=self.attention,
            grid_size=self.grid_size,
            kernel_size=self.kernel_size,
            unused_scale=self.unused_scale,
        )
        return config
