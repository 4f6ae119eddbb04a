"""Context-mixing dynamic convolution (ContMix) of OverLoCK, and the resizing it relies on.

Lou and Yu, "OverLoCK: An Overview-first-Look-Closely-next ConvNet with Context-Mixing Dynamic Kernels",
CVPR 2025, arXiv:2502.20087.
"""

import keras
import numpy as np
from keras import ops

from keras_hyper.layers._args import check_positive
from keras_hyper.layers.torch_defaults import BN_EPSILON, BN_MOMENTUM, batch_norm, trunc_normal


def clamped_window_starts(size, kernel_size):
    """First index of each position's `kernel_size` window along an axis of `size`: the window is centred where
    it fits and shifted inwards at the borders (`clamp(i - k // 2, 0, size - k)`), as in neighbourhood
    attention (NATTEN's `na2d_av`): border positions reuse the nearest full window, nothing is zero padded."""
    return np.clip(np.arange(size) - kernel_size // 2, 0, size - kernel_size)


def window_indices(height, width, kernel_size):
    """`(H * W * k * k,)` flat indices into an `H * W` grid: for each query, row-major, its clamped `k x k`
    window, row-major."""
    rows = clamped_window_starts(height, kernel_size)[:, None] + np.arange(kernel_size)
    cols = clamped_window_starts(width, kernel_size)[:, None] + np.arange(kernel_size)
    return (rows[:, None, :, None] * width + cols[None, :, None, :]).reshape(-1).astype("int32")


def relative_position_indices(height, width, kernel_size):
    """`(H * W * k * k,)` indices into a flattened `(2k - 1, 2k - 1)` relative position bias table: the offset
    of each window position from its query, shifted to be non-negative."""
    size = 2 * kernel_size - 1
    rows = clamped_window_starts(height, kernel_size)[:, None] + np.arange(kernel_size) - np.arange(height)[:, None]
    cols = clamped_window_starts(width, kernel_size)[:, None] + np.arange(kernel_size) - np.arange(width)[:, None]
    rows, cols = rows + kernel_size - 1, cols + kernel_size - 1
    return (rows[:, None, :, None] * size + cols[None, :, None, :]).reshape(-1).astype("int32")


def _pool_axis(x, axis, out_size):
    """PyTorch's adaptive average pooling along one static axis: bin `i` averages `[floor(i n / m),
    ceil((i + 1) n / m))`."""
    size = x.shape[axis]
    if size == out_size:
        return x
    if size % out_size == 0:
        shape = [-1 if d is None else d for d in x.shape]
        shape[axis : axis + 1] = [out_size, size // out_size]
        return ops.mean(ops.reshape(x, shape), axis=axis + 1)
    bins = []
    for i in range(out_size):
        start, stop = (i * size) // out_size, -((-(i + 1) * size) // out_size)
        bins.append(ops.mean(ops.take(x, np.arange(start, stop, dtype="int32"), axis=axis), axis=axis, keepdims=True))
    return ops.concatenate(bins, axis=axis)


def adaptive_average_pool(x, height, width):
    """`(B, H, W, C)` -> `(B, height, width, C)` with static `H, W`, bins as in PyTorch's `adaptive_avg_pool2d`."""
    return _pool_axis(_pool_axis(x, 1, height), 2, width)


def _static_size(shape, layer):
    height, width = shape[1], shape[2]
    if height is None or width is None:
        raise ValueError(
            f"{layer} needs a static height and width when it runs (its windows are built per size), got a "
            f"tensor of shape {tuple(shape)}; call the model on concrete inputs."
        )
    return int(height), int(width)


@keras.saving.register_keras_serializable(package="keras_hyper")
class ResizeLike(keras.layers.Layer):
    """Bilinearly resizes its first input to the height and width of its second (half-pixel centres, no
    antialiasing: PyTorch's `F.interpolate(mode='bilinear', align_corners=False)` when upsampling). OverLoCK
    uses it to bring the overview context to the focus stage's resolution.

    Shape: `[(B, h, w, C), (B, H, W, C')]` -> `(B, H, W, C)`.
    """

    def call(self, inputs):
        x, like = inputs
        shape = ops.shape(like)
        return ops.image.resize(x, (shape[1], shape[2]), interpolation="bilinear", antialias=False)

    def compute_output_shape(self, input_shape):
        x, like = input_shape
        return (x[0], like[1], like[2], x[3])


@keras.saving.register_keras_serializable(package="keras_hyper")
class ContMix(keras.layers.Layer):
    """Context-mixing dynamic convolution (ContMix) of OverLoCK (Lou and Yu, CVPR 2025, arXiv:2502.20087).

    Every pixel gets its own depthwise kernels, computed from its affinity to a 7x7 summary of a context map:
    query `q = BN(Dense(f))` from the focus features `f`, keys `k = BN(Dense(pool7(ctx)))` from the context,
    `heads` affinities `q . k / sqrt(C / heads)` to the 49 context tokens, then a learnt linear map from those
    49 affinities to `s^2 + K^2` kernel taps per head, plus a relative position bias, and a softmax. The first
    half of the value channels is aggregated over each pixel's clamped `s x s` window, the second half over its
    clamped `K x K` window (border pixels use the nearest full window, as NATTEN's `na2d_av`). When the map is
    smaller than `K`, values and features are first resized bilinearly so that its short side is `K`, and the
    result is adaptively average-pooled back.

    The window aggregation is one static gather of the `K x K` window of every pixel and a batched `(1, K^2) x
    (K^2, c)` matmul per pixel and head: builtin TFLite ops (GATHER, BATCH_MATMUL), no patch extraction.

    Inputs: `[x, f]`: `x` `(B, H, W, C)` the values (C divisible by `2 * num_heads`); `f` `(B, H, W, C + C')`
    the concatenated focus features (first `C` channels, queries) and context (last `C'`, keys).

    Args:
        kernel_size: `K`, the large window (odd).
        small_kernel_size: `s`, the small window (odd).
        num_heads: heads per window size (OverLoCK's `2 * sub_num_heads`).
        pool_size: side of the pooled context (49 tokens for 7).
        fused: query and key projections with a bias and no BatchNormalization (the inference form `fuse()`
            returns).
        epsilon, momentum: of the BatchNormalizations.
        kernel_initializer: of the projections (default: timm's trunc_normal_(std=.02)).

    Weights: sublayers `query`, `key` (Dense, `C -> C / 2`, `C' -> C / 2`), `query_norm`, `key_norm`
    (BatchNormalization, unless fused), `proj` (Dense, `pool_size^2 -> s^2 + K^2`); `rpb_small`
    `(num_heads, 2s - 1, 2s - 1)`, `rpb_large` `(num_heads, 2K - 1, 2K - 1)`.

    Shape: `[(B, H, W, C), (B, H, W, C + C')]` -> `(B, H, W, C)`. Height and width must be static when the
    layer runs.
    """

    def __init__(
        self,
        kernel_size,
        small_kernel_size=5,
        num_heads=4,
        pool_size=7,
        fused=False,
        epsilon=BN_EPSILON,
        momentum=BN_MOMENTUM,
        kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (("kernel_size", kernel_size), ("small_kernel_size", small_kernel_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
                raise ValueError(f"{name} must be a positive odd integer, got {value!r}.")
        check_positive(num_heads=num_heads, pool_size=pool_size)
        self.kernel_size = kernel_size
        self.small_kernel_size = small_kernel_size
        self.num_heads = num_heads
        self.pool_size = pool_size
        self.fused = bool(fused)
        self.epsilon = float(epsilon)
        self.momentum = float(momentum)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or trunc_normal())

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"ContMix takes two inputs [values, features], got input shape {input_shape}.")
        x_shape, f_shape = input_shape
        channels, total = x_shape[-1], f_shape[-1]
        if channels is None or total is None or channels % (2 * self.num_heads):
            raise ValueError(
                f"ContMix needs value channels divisible by 2 * num_heads = {2 * self.num_heads}, got {channels}."
            )
        if total <= channels:
            raise ValueError(
                f"ContMix features must hold the {channels} query channels plus context channels, got {total}."
            )
        self.channels, self.context_channels = channels, total - channels

        def dense(units, name, use_bias):
            # a copy per projection: an unseeded Keras initializer draws the same values at every call
            init = self.kernel_initializer.__class__.from_config(self.kernel_initializer.get_config())
            return keras.layers.Dense(
                units, use_bias=use_bias, kernel_initializer=init, dtype=self.dtype_policy, name=name
            )

        def norm(name):
            return batch_norm(name, epsilon=self.epsilon, momentum=self.momentum, dtype=self.dtype_policy)

        self.query = dense(channels // 2, "query", self.fused)
        self.query.build((None, channels))
        self.key = dense(channels // 2, "key", self.fused)
        self.key.build((None, self.context_channels))
        if not self.fused:
            self.query_norm = norm("query_norm")
            self.query_norm.build((None, None, None, channels // 2))
            self.key_norm = norm("key_norm")
            self.key_norm.build((None, None, None, channels // 2))
        self.proj = dense(self.small_kernel_size**2 + self.kernel_size**2, "proj", True)
        self.proj.build((None, self.pool_size**2))
        self.rpb_small, self.rpb_large = (
            self.add_weight(name=name, shape=(self.num_heads, 2 * k - 1, 2 * k - 1), initializer="zeros")
            for name, k in (("rpb_small", self.small_kernel_size), ("rpb_large", self.kernel_size))
        )

    def _window_softmax(self, logits, rpb, height, width, kernel_size):
        """Adds the relative position bias of each window tap and normalises over the window."""
        index = relative_position_indices(height, width, kernel_size)
        bias = ops.take(ops.reshape(ops.cast(rpb, logits.dtype), (self.num_heads, -1)), index, axis=1)
        bias = ops.reshape(bias, (1, self.num_heads, height * width, kernel_size**2))
        return ops.softmax(logits + bias, axis=-1)

    def _aggregate(self, attn, values, height, width, kernel_size):
        """`attn` `(B, G, N, k^2)`, `values` `(B, N, G * c)` -> `(B, N, G * c)`: each query's window average."""
        heads, depth = self.num_heads, values.shape[-1] // self.num_heads
        v = ops.transpose(ops.reshape(values, (-1, height * width, heads, depth)), (0, 2, 1, 3))
        windows = ops.take(v, window_indices(height, width, kernel_size), axis=2)
        windows = ops.reshape(windows, (-1, kernel_size**2, depth))
        out = ops.matmul(ops.reshape(attn, (-1, 1, kernel_size**2)), windows)
        out = ops.transpose(ops.reshape(out, (-1, heads, height * width, depth)), (0, 2, 1, 3))
        return ops.reshape(out, (-1, height * width, heads * depth))

    def call(self, inputs, training=None):
        x, features = inputs
        height, width = _static_size(x.shape, "ContMix")
        k, s, heads = self.kernel_size, self.small_kernel_size, self.num_heads
        h, w = height, width
        if min(height, width) < k:
            # as the official code: the short side becomes K, the long side scales with it (truncated)
            h, w = (k, int(k / height * width)) if height < width else (int(k / width * height), k)
            x = ops.image.resize(x, (h, w), interpolation="bilinear", antialias=False)
            features = ops.image.resize(features, (h, w), interpolation="bilinear", antialias=False)
        query = self.query(features[..., : self.channels])
        context = adaptive_average_pool(features[..., self.channels :], self.pool_size, self.pool_size)
        key = self.key(context)
        if not self.fused:
            query = self.query_norm(query, training=training)
            key = self.key_norm(key, training=training)
        depth = self.channels // 2 // heads
        query = query * ops.cast((self.channels // heads) ** -0.5, query.dtype)
        query = ops.transpose(ops.reshape(query, (-1, h * w, heads, depth)), (0, 2, 1, 3))
        key = ops.transpose(ops.reshape(key, (-1, self.pool_size**2, heads, depth)), (0, 2, 3, 1))
        logits = self.proj(ops.matmul(query, key))  # (B, G, N, s^2 + K^2)
        attn_small = self._window_softmax(logits[..., : s * s], self.rpb_small, h, w, s)
        attn_large = self._window_softmax(logits[..., s * s :], self.rpb_large, h, w, k)
        values = ops.reshape(x, (-1, h * w, self.channels))
        half = self.channels // 2
        out = ops.concatenate(
            [
                self._aggregate(attn_small, values[..., :half], h, w, s),
                self._aggregate(attn_large, values[..., half:], h, w, k),
            ],
            axis=-1,
        )
        out = ops.reshape(out, (-1, h, w, self.channels))
        if (h, w) != (height, width):
            out = adaptive_average_pool(out, height, width)
        return out

    def fuse(self):
        """The inference form: a new built ContMix (same name, `fused=True`) with the query and key
        BatchNormalizations folded into their projections."""
        if self.fused:
            raise ValueError(f"ContMix layer {self.name!r} is already fused.")
        config = {**self.get_config(), "fused": True}
        fused = ContMix.from_config(config)
        fused.build(((None, None, None, self.channels), (None, None, None, self.channels + self.context_channels)))
        for dense, norm, target in ((self.query, self.query_norm, fused.query), (self.key, self.key_norm, fused.key)):
            gamma, beta, mean, var = (
                np.asarray(ops.convert_to_numpy(v), "float64")
                for v in (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance)
            )
            scale = gamma / np.sqrt(var + norm.epsilon)
            kernel = np.asarray(ops.convert_to_numpy(dense.kernel), "float64") * scale
            target.set_weights([kernel.astype(target.kernel.dtype), (beta - mean * scale).astype(target.bias.dtype)])
        fused.proj.set_weights(self.proj.get_weights())
        fused.rpb_small.assign(self.rpb_small)
        fused.rpb_large.assign(self.rpb_large)
        return fused

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "small_kernel_size": self.small_kernel_size,
            "num_heads": self.num_heads,
            "pool_size": self.pool_size,
            "fused": self.fused,
            "epsilon": self.epsilon,
            "momentum": self.momentum,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
