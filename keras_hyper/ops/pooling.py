"""Pooling that keras.ops lacks: PyTorch's adaptive max pooling."""

from keras import ops


def _bins(length, bins):
    """PyTorch's adaptive bins over `length` positions: bin i covers `[floor(i L / n), ceil((i + 1) L / n))`."""
    return [((i * length) // bins, -((-(i + 1) * length) // bins)) for i in range(bins)]


def _adaptive_max_axis(x, axis, size):
    length = x.shape[axis]
    if length == size:
        return x
    if length % size == 0:
        # equal, disjoint bins: a reshape and a max (no gather)
        shape = [-1, *ops.shape(x)[1:]]  # -1: the batch may be unknown while tracing
        shape[axis : axis + 1] = [size, length // size]
        return ops.max(ops.reshape(x, shape), axis=axis + 1)
    bins = _bins(length, size)
    width = max(end - start for start, end in bins)
    # every bin read as `width` positions; a shorter bin repeats its last position, which leaves its max unchanged
    index = [min(start + j, end - 1) for start, end in bins for j in range(width)]
    shape = [-1, *ops.shape(x)[1:]]
    shape[axis : axis + 1] = [size, width]
    return ops.max(ops.reshape(ops.take(x, index, axis=axis), shape), axis=axis + 1)


def adaptive_max_pool2d(x, output_size):
    """PyTorch's `F.adaptive_max_pool2d(x, output_size)` on a channels-last `(B, H, W, C)` map of static size.

    Bins overlap when the size does not divide evenly and repeat positions when the output is larger, as
    PyTorch's. The 2-D max over a bin is the max over its rows of the max over its columns, so each axis is
    pooled on its own: by a reshape where the bins are equal, else by one gather of every bin's positions (builtin
    LiteRT ops either way).

    Args:
        x: `(B, H, W, C)` with static `H` and `W`.
        output_size: `(Ho, Wo)`, positive ints.

    Returns:
        `(B, Ho, Wo, C)`.
    """
    height, width = x.shape[1], x.shape[2]
    if height is None or width is None:
        raise ValueError(f"adaptive_max_pool2d needs a static spatial size, got a map of shape {tuple(x.shape)}.")
    out_h, out_w = output_size
    return _adaptive_max_axis(_adaptive_max_axis(x, 1, out_h), 2, out_w)
