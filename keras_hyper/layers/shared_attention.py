"""Shared-convolution attention and MLP of ConvShareViT (Ibadulla, Chen, Reyes-Aldasoro, "ConvShareViT: Enhancing
Vision Transformers with Convolutional Attention Mechanisms for Free-Space Optical Accelerators",
arXiv:2504.11517; paper 13 in PAPERS.md).

ConvShareViT replaces every linear layer of a ViT block by a depthwise convolution whose kernel is shared by all
input channels, so that a block needs only 2-D convolutions (what a 4f free-space optical system computes).
There is no official code; this is our reading of the paper's description: each token's `D = s * s` features
form an `s x s` tile, the tokens are the channels of the depthwise convolution, and one `k x k` kernel per
output map is shared by all of them (a convolution with one input channel, applied to every token's tile).
With `padding="valid"` the query/key/value tiles shrink to `(s - k + 1)^2` features and the output projection
is a full convolution (padding `k - 1`) that grows them back to `s x s`; with `padding="same"` every tile keeps
its size. The paper reports that the valid-padded form learns attention and the same-padded one behaves like a
CNN; both are offered.

Both layers act on token sequences `(B, N, D)` with D a square number.
"""

import math

import keras
from keras import ops

from keras_hyper.layers._args import check_positive

PADDINGS = ("valid", "same")


def _tile_side(dim, layer):
    side = math.isqrt(dim) if dim else 0
    if dim is None or side * side != dim:
        raise ValueError(f"{layer}: the token width must be a square number (tokens are s x s tiles), got {dim}.")
    return side


def _to_tiles(x, side):
    shape = ops.shape(x)
    return ops.reshape(x, (shape[0] * shape[1], side, side, 1))


def _conv(x, kernel, bias, padding):
    return ops.conv(x, ops.cast(kernel, x.dtype), padding=padding) + ops.cast(bias, x.dtype)


@keras.saving.register_keras_serializable(package="keras_hyper")
class SharedConvAttention(keras.layers.Layer):
    """Multi-head self-attention whose projections are shared depthwise convolutions (ConvShareViT,
    arXiv:2504.11517).

    Every token's `D = s * s` features are an `s x s` tile. Head h's query, key and value tiles are the tile
    convolved with that head's own `k x k` kernels (`qkv_kernel (k, k, 1, 3 * heads)`, one bias per map),
    shared by every token; flattened, they give the usual scaled dot-product attention over the tokens. The
    heads' output tiles are merged back into one `s x s` tile per token by a `k x k` convolution
    (`out_kernel (k, k, heads, 1)`, one bias), a full convolution when `padding="valid"` (the tiles had shrunk
    by `k - 1`).

    Args:
        num_heads: heads (each with its own query, key and value kernels).
        kernel_size: odd side k of the shared kernels (< s with "valid").
        padding: `"valid"` (query/key/value tiles of `(s - k + 1)^2` features) or `"same"`.

    Shape: `(B, N, D)` -> `(B, N, D)`, D = s * s.
    """

    def __init__(self, num_heads=4, kernel_size=3, padding="valid", **kwargs):
        super().__init__(**kwargs)
        check_positive(num_heads=num_heads)
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}.")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}.")
        self.num_heads = num_heads
        self.kernel_size = kernel_size
        self.padding = padding

    def build(self, input_shape):
        self.side = _tile_side(input_shape[-1], self.name)
        k = self.kernel_size
        if self.padding == "valid" and k >= self.side:
            raise ValueError(f"kernel_size={k} must be smaller than the tile side {self.side} with padding='valid'.")
        self.qkv_kernel = self.add_weight(
            name="qkv_kernel", shape=(k, k, 1, 3 * self.num_heads), initializer=keras.initializers.HeNormal()
        )
        self.qkv_bias = self.add_weight(name="qkv_bias", shape=(3 * self.num_heads,), initializer="zeros")
        self.out_kernel = self.add_weight(
            name="out_kernel", shape=(k, k, self.num_heads, 1), initializer=keras.initializers.HeNormal()
        )
        self.out_bias = self.add_weight(name="out_bias", shape=(1,), initializer="zeros")

    def call(self, inputs):
        batch, tokens, dim = ops.shape(inputs)[0], ops.shape(inputs)[1], inputs.shape[-1]
        heads, k = self.num_heads, self.kernel_size
        side = self.side if self.padding == "same" else self.side - k + 1
        qkv = _conv(_to_tiles(inputs, self.side), self.qkv_kernel, self.qkv_bias, self.padding)
        qkv = ops.transpose(ops.reshape(qkv, (batch, tokens, side * side, 3 * heads)), (0, 3, 1, 2))
        q, key, v = ops.split(qkv, 3, axis=1)  # (B, heads, N, side^2) each
        scores = ops.matmul(q, ops.transpose(key, (0, 1, 3, 2))) * ops.cast((side * side) ** -0.5, q.dtype)
        out = ops.matmul(ops.softmax(scores, axis=-1), v)
        out = ops.reshape(ops.transpose(out, (0, 2, 3, 1)), (batch * tokens, side, side, heads))
        if self.padding == "valid":  # a full convolution grows the tiles back by k - 1
            out = ops.pad(out, ((0, 0), (k - 1, k - 1), (k - 1, k - 1), (0, 0)))
        out = _conv(out, self.out_kernel, self.out_bias, self.padding)
        return ops.reshape(out, (batch, tokens, dim))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "kernel_size": self.kernel_size,
            "padding": self.padding,
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class SharedConvMLP(keras.layers.Layer):
    """ConvShareViT's MLP (arXiv:2504.11517): each token's `s x s` tile is expanded into `expansion` maps by
    shared `k x k` kernels (`in_kernel (k, k, 1, r)`), GELU, and merged back into one tile by a `k x k`
    convolution (`out_kernel (k, k, r, 1)`), both "same"-padded and shared by every token.

    Args:
        expansion: hidden maps per token (the MLP ratio).
        kernel_size: odd side of the kernels.

    Shape: `(B, N, D)` -> `(B, N, D)`, D = s * s.
    """

    def __init__(self, expansion=4, kernel_size=3, **kwargs):
        super().__init__(**kwargs)
        check_positive(expansion=expansion)
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}.")
        self.expansion = expansion
        self.kernel_size = kernel_size

    def build(self, input_shape):
        self.side = _tile_side(input_shape[-1], self.name)
        k, r = self.kernel_size, self.expansion
        self.in_kernel = self.add_weight(
            name="in_kernel", shape=(k, k, 1, r), initializer=keras.initializers.HeNormal()
        )
        self.in_bias = self.add_weight(name="in_bias", shape=(r,), initializer="zeros")
        self.out_kernel = self.add_weight(
            name="out_kernel", shape=(k, k, r, 1), initializer=keras.initializers.GlorotUniform()
        )
        self.out_bias = self.add_weight(name="out_bias", shape=(1,), initializer="zeros")

    def call(self, inputs):
        shape = ops.shape(inputs)
        x = ops.gelu(_conv(_to_tiles(inputs, self.side), self.in_kernel, self.in_bias, "same"), approximate=False)
        x = _conv(x, self.out_kernel, self.out_bias, "same")
        return ops.reshape(x, shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "expansion": self.expansion, "kernel_size": self.kernel_size}
