"""Token mixers and embeddings of the parameter-free-layer transformers (Han, Yun, Heo, Yoo, Shin, Lee,
Kim, Kim, "Learning Features with Parameter-Free Layers", ICLR 2022, arXiv:2202.02777).

The paper's efficient transformers alternate multi-head self-attention with `EffLayer`, a token mixer whose
only spatial operation is a parameter-free 3x3 max pooling on the token grid. Both mixers here act on the
token grid `(B, H, W, C)` (not a flat token sequence), so that the grid's height and width travel through
the functional graph and non-square inputs work.
"""

import keras
from keras import ops

from keras_hyper.layers._args import check_positive
from keras_hyper.layers.torch_defaults import trunc_normal


@keras.saving.register_keras_serializable(package="keras_hyper")
class EffLayer(keras.layers.Layer):
    """The parameter-free token mixer: `Linear(C, rC) -> GELU -> MaxPool(k, stride 1) -> GELU -> Linear(rC, C)`.

    The max pooling over a `k x k` neighbourhood of the token grid replaces the attention map; the two
    linear layers only mix channels. The pooling pads with -inf (PyTorch's `MaxPool2d(k, 1, k // 2)`), so a
    border token takes the maximum of its in-grid neighbours only.

    Args:
        expansion: hidden channels / input channels (the official model uses 3).
        pool_size: odd side of the max-pooling window.
        use_bias: whether both linear layers have a bias.

    Shape: `(B, H, W, C)` -> `(B, H, W, C)`. Weights `qkv_kernel (C, rC)`, `proj_kernel (rC, C)` (+ biases),
    named after the official `qkv` / `proj` linears.
    """

    def __init__(self, expansion=3, pool_size=3, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        check_positive(expansion=expansion)
        # the official padding k // 2 keeps the grid size only for odd windows
        if not isinstance(pool_size, int) or pool_size < 1 or pool_size % 2 == 0:
            raise ValueError(f"pool_size must be a positive odd integer, got {pool_size!r}.")
        self.expansion = expansion
        self.pool_size = pool_size
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        dim = input_shape[-1]
        hidden = dim * self.expansion
        self.qkv_kernel = self.add_weight(name="qkv_kernel", shape=(dim, hidden), initializer=trunc_normal())
        self.proj_kernel = self.add_weight(name="proj_kernel", shape=(hidden, dim), initializer=trunc_normal())
        if self.use_bias:
            self.qkv_bias = self.add_weight(name="qkv_bias", shape=(hidden,), initializer="zeros")
            self.proj_bias = self.add_weight(name="proj_bias", shape=(dim,), initializer="zeros")

    def call(self, inputs):
        x = ops.matmul(inputs, ops.cast(self.qkv_kernel, inputs.dtype))
        if self.use_bias:
            x = x + ops.cast(self.qkv_bias, x.dtype)
        x = ops.gelu(x, approximate=False)
        x = ops.max_pool(x, self.pool_size, strides=1, padding="same")
        x = ops.gelu(x, approximate=False)
        x = ops.matmul(x, ops.cast(self.proj_kernel, x.dtype))
        if self.use_bias:
            x = x + ops.cast(self.proj_bias, x.dtype)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "expansion": self.expansion,
            "pool_size": self.pool_size,
            "use_bias": self.use_bias,
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class GridSelfAttention(keras.layers.Layer):
    """Multi-head self-attention over all `H * W` tokens of a token grid (ViT's attention, Dosovitskiy et al.
    2021, arXiv:2010.11929), the mixer that the parameter-free transformers alternate with `EffLayer`.

    Args:
        num_heads: attention heads; the channels must divide evenly among them.
        use_bias: whether the fused query/key/value projection has a bias (the output projection always has).

    Shape: `(B, H, W, C)` -> `(B, H, W, C)`. Weights `qkv_kernel (C, 3C)` (query, key, value channels in that
    order, heads contiguous inside each), `proj_kernel (C, C)` and biases, laid out like timm's `Attention`.
    """

    def __init__(self, num_heads, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        check_positive(num_heads=num_heads)
        self.num_heads = num_heads
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim % self.num_heads:
            raise ValueError(f"GridSelfAttention needs channels divisible by num_heads={self.num_heads}, got {dim}.")
        self.qkv_kernel = self.add_weight(name="qkv_kernel", shape=(dim, 3 * dim), initializer=trunc_normal())
        if self.use_bias:
            self.qkv_bias = self.add_weight(name="qkv_bias", shape=(3 * dim,), initializer="zeros")
        self.proj_kernel = self.add_weight(name="proj_kernel", shape=(dim, dim), initializer=trunc_normal())
        self.proj_bias = self.add_weight(name="proj_bias", shape=(dim,), initializer="zeros")

    def call(self, inputs):
        shape = ops.shape(inputs)
        batch, height, width, dim = shape[0], shape[1], shape[2], inputs.shape[-1]
        heads, head_dim = self.num_heads, dim // self.num_heads
        x = ops.reshape(inputs, (batch, -1, dim))
        qkv = ops.matmul(x, ops.cast(self.qkv_kernel, x.dtype))
        if self.use_bias:
            qkv = qkv + ops.cast(self.qkv_bias, qkv.dtype)
        # 4-D reshapes and transposes only: LiteRT lowers them to builtin kernels
        q, k, v = (
            ops.transpose(ops.reshape(t, (batch, -1, heads, head_dim)), (0, 2, 1, 3)) for t in ops.split(qkv, 3, -1)
        )
        scores = ops.matmul(q * ops.cast(head_dim**-0.5, q.dtype), ops.transpose(k, (0, 1, 3, 2)))
        x = ops.matmul(ops.softmax(scores, axis=-1), v)
        x = ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (batch, height, width, dim))
        return ops.matmul(x, ops.cast(self.proj_kernel, x.dtype)) + ops.cast(self.proj_bias, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "use_bias": self.use_bias}


def _bicubic_matrix(out_size, in_size):
    """`(out_size, in_size)` matrix of PyTorch's bicubic resize along one axis (`align_corners=False`,
    Keys kernel with a = -0.75, edge taps clamped): what `F.interpolate(mode='bicubic')` computes."""
    a = -0.75
    src = (ops.arange(out_size, dtype="float32") + 0.5) * (in_size / ops.cast(out_size, "float32")) - 0.5
    first = ops.floor(src)
    t = src - first

    def near(d):  # |d| <= 1
        return ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a

    taps = (far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t))
    matrix = 0.0
    for offset, weight in zip((-1, 0, 1, 2), taps):
        index = ops.cast(ops.clip(first + offset, 0, in_size - 1), "int32")
        matrix = matrix + weight[:, None] * ops.one_hot(index, in_size, dtype="float32")
    return matrix


@keras.saving.register_keras_serializable(package="keras_hyper")
class PositionEmbedding2D(keras.layers.Layer):
    """Learned absolute position embedding of a token grid, added to the tokens.

    It is stored at the training grid `grid_size`; a grid of another size gets the embedding resized by
    PyTorch's bicubic interpolation (`align_corners=False`, a = -0.75), as PiT does for other input sizes.

    Args:
        grid_size: `(height, width)` (or one int) of the stored embedding.

    Shape: `(B, H, W, C)` -> `(B, H, W, C)`; weight `embedding (gh, gw, C)`.
    """

    def __init__(self, grid_size, **kwargs):
        super().__init__(**kwargs)
        grid = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
        if len(grid) != 2 or not all(isinstance(g, int) and g >= 1 for g in grid):
            raise ValueError(f"grid_size must be a positive int or (height, width), got {grid_size!r}.")
        self.grid_size = grid

    def build(self, input_shape):
        self.embedding = self.add_weight(
            name="embedding", shape=(*self.grid_size, input_shape[-1]), initializer=trunc_normal()
        )

    def call(self, inputs):
        pos = ops.cast(self.embedding, "float32")
        if tuple(inputs.shape[1:3]) != self.grid_size:
            shape, (gh, gw) = ops.shape(inputs), self.grid_size
            pos = ops.einsum("oh,hwc->owc", _bicubic_matrix(shape[1], gh), pos)
            pos = ops.einsum("pw,owc->opc", _bicubic_matrix(shape[2], gw), pos)
        return inputs + ops.cast(pos, inputs.dtype)[None]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "grid_size": self.grid_size}
