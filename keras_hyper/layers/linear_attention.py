"""Simplified linear attention (SLA) of SLAB (Guo, Chen, Tang, Wang, "SLAB: Efficient Transformers with
Simplified Linear Attention and Progressive Re-parameterized Batch Normalization", ICML 2024, arXiv:2405.11582;
paper 59 in PAPERS.md), its softmax counterpart on the same interface, and the learned position table they use.

The attention cores take the output of the `qkv` projection, `(B, H, W, 3C)` = `[q | k | v]` blocks of C
channels, and return `(B, H, W, C)` for the output projection; keeping both projections outside the core lets
a preceding BatchNorm fold into `qkv`. Token maps stay 2-D (channels last, row-major like the official
`(B, N, C)` token order), so the depthwise convolution on `v` needs no reshape from tokens to an image.

Learned tables (the model's `pos_embed`, SLA's `positional_encoding`) are stored at the grid of the size the
model was built for (the official hard-codes 14x14 = 224 / 16); a token map of another size (448 or 896 inputs,
a dynamic input shape) gets the table bilinearly resized to its grid (half-pixel centres, no antialiasing).

SLA also runs inside square windows, cyclically shifted or not, as SLAB-Swin's blocks do: every window is a
separate attention with the window's positional encoding, its own normaliser and the depthwise convolution
zero-padded at the window's border; the official shifted SLA windows have no attention mask.
"""

import keras

from keras_hyper.layers._args import check_positive
from keras_hyper.layers.conv import DepthwiseConv2D
from keras_hyper.layers.torch_defaults import trunc_normal
from keras_hyper.layers.window_attention import _roll


def _grid(x):
    height, width = x.shape[1], x.shape[2]
    if height is None or width is None:
        shape = keras.ops.shape(x)
        height, width = shape[1], shape[2]
    return height, width


def resize_table(table, height, width):
    """A `(1, h, w, C)` learned table at the token grid `(height, width)`: unchanged when it already fits,
    bilinearly resized otherwise."""
    if isinstance(height, int) and isinstance(width, int) and (height, width) == tuple(table.shape[1:3]):
        return table
    table = keras.ops.convert_to_tensor(table)
    return keras.ops.image.resize(table, (height, width), interpolation="bilinear", antialias=False)


def partition_windows(x, height, width, win_h, win_w):
    """`(B, H, W, C)` -> `(B * H/win_h * W/win_w, win_h, win_w, C)`, windows in row-major order (5-D reshapes and
    transposes only, for LiteRT)."""
    channels = x.shape[-1]
    x = keras.ops.reshape(x, (-1, win_h, width // win_w, win_w, channels))
    x = keras.ops.transpose(x, (0, 2, 1, 3, 4))
    return keras.ops.reshape(x, (-1, win_h, win_w, channels))


def merge_windows(x, height, width, win_h, win_w):
    """The inverse of `partition_windows`."""
    channels = x.shape[-1]
    x = keras.ops.reshape(x, (-1, width // win_w, win_h, win_w, channels))
    x = keras.ops.transpose(x, (0, 2, 1, 3, 4))
    return keras.ops.reshape(x, (-1, height, width, channels))


def _split_heads(x, num_heads, height, width):
    """`(B, H, W, C)` -> `(B, heads, H*W, C/heads)`, heads taking contiguous channel blocks ('b n (h c)')."""
    x = keras.ops.reshape(x, (-1, height * width, num_heads, x.shape[-1] // num_heads))
    return keras.ops.transpose(x, (0, 2, 1, 3))


def _merge_heads(x, height, width):
    """`(B, heads, H*W, d)` -> `(B, H, W, heads*d)`."""
    heads, dim = x.shape[1], x.shape[3]
    x = keras.ops.transpose(x, (0, 2, 1, 3))
    return keras.ops.reshape(x, (-1, height, width, heads * dim))


def _check_qkv(layer, input_shape):
    channels = input_shape[-1]
    if len(input_shape) != 4 or channels is None or channels % 3:
        raise ValueError(
            f"{type(layer).__name__} expects the (B, H, W, 3C) output of a qkv projection, got shape {input_shape}."
        )
    dim = channels // 3
    if dim % layer.num_heads:
        raise ValueError(f"num_heads={layer.num_heads} must divide the {dim} channels of {layer.name!r}.")
    return dim


@keras.saving.register_keras_serializable(package="keras_hyper")
class SimplifiedLinearAttention(keras.layers.Layer):
    """SLA: `k += positional_encoding`; `q, k = ReLU(q), ReLU(k)`; per head `out = (q (k^T v)) / (q . sum_j k_j +
    eps)` (no softmax, no scale, linear in the number of tokens); plus a depthwise convolution of `v`, shared by
    all heads (a `head_dim`-channel kernel applied to each head's map), as the local term.

    The attention product runs in float32 whatever the compute dtype (the official code disables autocast
    there: the normaliser's sum over tokens overflows float16).

    Args:
        num_heads: heads; must divide C.
        grid_size: `(h, w)` of the stored positional encoding (the official `14 * 14` tokens -> `(14, 14)`; with
            windows, the window it was trained for), resized to the map (or window) when they differ.
        kernel_size: of the depthwise convolution on `v` (official 5), odd.
        epsilon: added to the normaliser (official 1e-6).
        window_size: None (one attention over the whole map) or the side of square windows, each attended on
            its own (SLAB-Swin's windowed SLA).
        shift_size: cyclic shift of the windows towards the origin before attending, undone after (0 <= shift
            < window_size; 0 without windows). As in the official code, no mask keeps a shifted window's
            wrapped-around tokens apart.

    Shape: `(B, H, W, 3C)` ([q | k | v]) -> `(B, H, W, C)`; with windows H and W must be static multiples of
    `window_size`.
    """

    def __init__(
        self, num_heads, grid_size=(14, 14), kernel_size=5, epsilon=1e-6, window_size=None, shift_size=0, **kwargs
    ):
        super().__init__(**kwargs)
        check_positive(num_heads=num_heads)
        grid_size = tuple(grid_size)
        if len(grid_size) != 2 or any(not isinstance(g, int) or g < 1 for g in grid_size):
            raise ValueError(f"grid_size must be two positive integers (h, w), got {grid_size!r}.")
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}.")
        if window_size is not None and (not isinstance(window_size, int) or window_size < 1):
            raise ValueError(f"window_size must be a positive integer or None, got {window_size!r}.")
        if not isinstance(shift_size, int) or not 0 <= shift_size < (window_size or 1):
            raise ValueError(f"shift_size must be in [0, window_size={window_size}), got {shift_size!r}.")
        self.num_heads = num_heads
        self.grid_size = grid_size
        self.kernel_size = kernel_size
        self.epsilon = epsilon
        self.window_size = window_size
        self.shift_size = shift_size

    def build(self, input_shape):
        dim = _check_qkv(self, input_shape)
        self.dim = dim
        self.head_dim = dim // self.num_heads
        self.positional_encoding = self.add_weight(
            shape=(1, *self.grid_size, dim), initializer="zeros", name="positional_encoding"
        )
        self.dwc = DepthwiseConv2D(self.kernel_size, padding="same", dtype=self.dtype_policy, name="dwc")
        self.dwc.build((None, None, None, self.head_dim))

    def call(self, inputs):
        size, shift = self.window_size, self.shift_size
        if size is None:
            return self._attend(inputs)
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:
            raise ValueError(f"{self.name}: windowed SLA needs a static spatial size (call it eagerly or build it so).")
        if height % size or width % size:
            raise ValueError(f"{self.name}: the {height}x{width} map is not a whole number of {size}x{size} windows.")
        x = _roll(inputs, -shift) if shift else inputs
        out = merge_windows(self._attend(partition_windows(x, height, width, size, size)), height, width, size, size)
        return _roll(out, shift) if shift else out

    def _attend(self, inputs):
        """SLA over each map of the batch (a whole map, or one window)."""
        height, width = _grid(inputs)
        dim, heads, head_dim = self.dim, self.num_heads, self.head_dim
        q, k, v = inputs[..., :dim], inputs[..., dim : 2 * dim], inputs[..., 2 * dim :]
        k = k + keras.ops.cast(resize_table(self.positional_encoding, height, width), k.dtype)
        q, k = keras.ops.relu(q), keras.ops.relu(k)
        q, k, vh = (keras.ops.cast(_split_heads(t, heads, height, width), "float32") for t in (q, k, v))
        kv = keras.ops.matmul(keras.ops.transpose(k, (0, 1, 3, 2)), vh)
        z = 1.0 / (keras.ops.sum(q * keras.ops.sum(k, axis=2, keepdims=True), axis=-1, keepdims=True) + self.epsilon)
        out = _merge_heads(keras.ops.matmul(q, kv) * z, height, width)

        # the local term: each head's v map through one shared head_dim-channel depthwise kernel
        v = keras.ops.reshape(v, (-1, height, width, heads, head_dim))
        v = keras.ops.reshape(keras.ops.transpose(v, (0, 3, 1, 2, 4)), (-1, height, width, head_dim))
        v = keras.ops.reshape(self.dwc(v), (-1, heads, height, width, head_dim))
        v = keras.ops.reshape(keras.ops.transpose(v, (0, 2, 3, 1, 4)), (-1, height, width, dim))
        return keras.ops.cast(out, v.dtype) + v

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // 3)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            grid_size=self.grid_size,
            kernel_size=self.kernel_size,
            epsilon=self.epsilon,
            window_size=self.window_size,
            shift_size=self.shift_size,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_hyper")
class SoftmaxAttention(keras.layers.Layer):
    """Standard multi-head softmax attention (`softmax(q k^T / sqrt(d)) v`, global over the token map) on the
    same `[q | k | v]` interface as `SimplifiedLinearAttention`: the quadratic baseline SLA replaces (DeiT's
    attention, arXiv:2012.12877).

    Args:
        num_heads: heads; must divide C.

    Shape: `(B, H, W, 3C)` -> `(B, H, W, C)`.
    """

    def __init__(self, num_heads, **kwargs):
        super().__init__(**kwargs)
        check_positive(num_heads=num_heads)
        self.num_heads = num_heads

    def build(self, input_shape):
        self.dim = _check_qkv(self, input_shape)

    def call(self, inputs):
        height, width = _grid(inputs)
        dim = self.dim
        q, k, v = (_split_heads(inputs[..., i * dim : (i + 1) * dim], self.num_heads, height, width) for i in range(3))
        scale = (dim // self.num_heads) ** -0.5
        attn = keras.ops.softmax(keras.ops.matmul(q * scale, keras.ops.transpose(k, (0, 1, 3, 2))), axis=-1)
        return _merge_heads(keras.ops.matmul(attn, v), height, width)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // 3)

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads)
        return config


@keras.saving.register_keras_serializable(package="keras_hyper")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned `(1, h, w, C)` position table to a token map (resized to the map's grid when it differs).

    Args:
        grid_size: `(h, w)` of the stored table.
        cls_token: also create a `(1, 1, C)` `cls_token` weight that the forward never reads. SLAB-DeiT's
            official model holds one (DeiT's, left over after its forward switched to mean pooling) and counts
            it among its parameters; keeping it makes checkpoints and parameter counts match exactly.

    Shape: `(B, H, W, C)` -> same.
    """

    def __init__(self, grid_size=(14, 14), cls_token=False, **kwargs):
        super().__init__(**kwargs)
        grid_size = tuple(grid_size)
        if len(grid_size) != 2 or any(not isinstance(g, int) or g < 1 for g in grid_size):
            raise ValueError(f"grid_size must be two positive integers (h, w), got {grid_size!r}.")
        self.grid_size = grid_size
        self.cls_token = bool(cls_token)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.pos_embed = self.add_weight(
            shape=(1, *self.grid_size, channels), initializer=trunc_normal(), name="pos_embed"
        )
        if self.cls_token:
            self.cls = self.add_weight(shape=(1, 1, channels), initializer=trunc_normal(), name="cls_token")

    def call(self, inputs):
        height, width = _grid(inputs)
        return inputs + keras.ops.cast(resize_table(self.pos_embed, height, width), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(grid_size=self.grid_size, cls_token=self.cls_token)
        return config
