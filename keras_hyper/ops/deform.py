"""Deformable convolution (Dai et al., "Deformable Convolutional Networks", ICCV 2017, arXiv:1703.06211; Zhu et
al., "Deformable ConvNets v2: More Deformable, Better Results", CVPR 2019, arXiv:1811.11168).

Each kernel tap of each output position reads the input at its regular grid position plus a learnt fractional
offset, bilinearly interpolated, optionally scaled by a learnt modulation mask (v2), before the usual weighted sum.
The layouts are those of mmcv's and torchvision's `deform_conv2d` (in channels-last form), so that checkpoints of
the official detectors load as they are:

- offset `(B, Ho, Wo, dg * 2 * kh * kw)`: deformable group `g` owns channels `[g * 2K, (g + 1) * 2K)` (`K = kh * kw`);
  inside them kernel point `k = i * kw + j` (row-major) has its row offset `dy` at `2k` and its column offset `dx`
  at `2k + 1`;
- mask `(B, Ho, Wo, dg * K)`: channel `g * K + k` scales sample `k` of group `g` (already through its sigmoid);
- input channel `c` belongs to deformable group `c // (C / dg)` (contiguous blocks).

The sampling position of tap `(i, j)` at output `(oy, ox)` is `(oy * sh - ph + i * dh + dy, ox * sw - pw + j * dw +
dx)`; bilinear interpolation reads the four neighbouring pixels, each contributing only if it lies inside the map
(zero padding), which is torchvision's rule (a position at or beyond one pixel outside reads 0).

The computation is gather-based: the four neighbours of every tap are read with one `take` each from the
flattened input, weighted, summed into `(B * Ho * Wo, K * C)` columns and multiplied by the kernel (a batched
matmul per convolution group). Gathers, floors, comparisons, selects and matmuls all have builtin LiteRT
kernels, so a model with deformable convolutions exports without Flex ops.
"""

from keras import ops

from keras_hyper.ops.conv import _pair


def _non_negative_pair(value, name):
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in pair):
        raise ValueError(f"{name} must be a non-negative integer or 2 non-negative integers, got {value!r}.")
    return pair


def deform_output_size(size, kernel_size, strides, padding, dilation):
    """The output extent of one axis, as PyTorch's convolution: `(size + 2p - d (k - 1) - 1) // s + 1`."""
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // strides + 1


def deform_conv2d(
    inputs,
    offset,
    mask,
    kernel,
    bias=None,
    strides=1,
    padding=0,
    dilation=1,
    groups=1,
    deformable_groups=1,
):
    """Deformable convolution v1 (`mask=None`) or v2 (modulated), channels last.

    Args:
        inputs: `(B, H, W, C)`.
        offset: `(B, Ho, Wo, deformable_groups * 2 * kh * kw)`, `(dy, dx)` interleaved per kernel point (module
            docstring).
        mask: `(B, Ho, Wo, deformable_groups * kh * kw)` modulation in [0, 1] (DCNv2), or None (DCNv1).
        kernel: `(kh, kw, C / groups, filters)`, as `keras.layers.Conv2D` stores it.
        bias: `(filters,)` or None.
        strides, dilation: positive int or pair.
        padding: non-negative int or pair, zeros on both sides of each axis (PyTorch's `padding`).
        groups: convolution groups (divides C and filters).
        deformable_groups: groups of input channels that share one set of offsets (divides C).

    Returns:
        `(B, Ho, Wo, filters)` in the dtype of `inputs`. Sampling positions are computed in float32 whatever the
        input dtype: in float16 a position near 200 would round to 1/8 pixel.

    Example:
        >>> x = np.random.rand(1, 8, 8, 4).astype("float32")
        >>> offset = np.zeros((1, 8, 8, 18), "float32")  # zero offsets: an ordinary 3x3 convolution
        >>> y = deform_conv2d(x, offset, None, np.ones((3, 3, 4, 2), "float32"), padding=1)  # (1, 8, 8, 2)
    """
    strides = _pair(strides, "strides")
    dilation = _pair(dilation, "dilation")
    padding = _non_negative_pair(padding, "padding")
    if len(kernel.shape) != 4:
        raise ValueError(f"kernel must be (kh, kw, channels / groups, filters), got shape {tuple(kernel.shape)}.")
    kh, kw, group_channels, filters = kernel.shape
    taps = kh * kw
    if len(inputs.shape) != 4:
        raise ValueError(f"inputs must be (batch, height, width, channels), got shape {tuple(inputs.shape)}.")
    channels = inputs.shape[-1]
    for name, value in (("groups", groups), ("deformable_groups", deformable_groups)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1 or channels % value:
            raise ValueError(
                f"{name} must be a positive integer dividing the {channels} input channels, got {value!r}."
            )
    if group_channels * groups != channels or filters % groups:
        raise ValueError(
            f"kernel of shape {tuple(kernel.shape)} does not fit {channels} input channels in {groups} groups "
            f"(expected (kh, kw, {channels // groups}, a multiple of {groups}))."
        )
    if offset.shape[-1] != deformable_groups * 2 * taps:
        raise ValueError(
            f"offset must have deformable_groups * 2 * kh * kw = {deformable_groups * 2 * taps} channels, "
            f"got shape {tuple(offset.shape)}."
        )
    if mask is not None and mask.shape[-1] != deformable_groups * taps:
        raise ValueError(
            f"mask must have deformable_groups * kh * kw = {deformable_groups * taps} channels, "
            f"got shape {tuple(mask.shape)}."
        )

    shape = ops.shape(inputs)
    batch, height, width = shape[0], shape[1], shape[2]
    out_shape = ops.shape(offset)
    out_h, out_w = out_shape[1], out_shape[2]
    for axis, size in enumerate((height, width)):
        if isinstance(size, int) and isinstance(out_shape[axis + 1], int):
            expected = deform_output_size(size, (kh, kw)[axis], strides[axis], padding[axis], dilation[axis])
            if out_shape[axis + 1] != expected:
                raise ValueError(
                    f"offset's spatial size {tuple(out_shape[1:3])} must be the convolution's output size; axis "
                    f"{axis} of the {size}-pixel input gives {expected}."
                )
    dtype = inputs.dtype

    # Sampling positions, (B, Ho, Wo, K, dg) per axis, in float32.
    offset = ops.cast(offset, "float32")
    offset = ops.reshape(offset, (batch, out_h, out_w, deformable_groups, taps, 2))
    offset = ops.transpose(offset, (0, 1, 2, 4, 3, 5))  # (B, Ho, Wo, K, dg, 2): the order of the columns below
    rows = ops.cast(ops.arange(out_h) * strides[0] - padding[0], "float32")
    cols = ops.cast(ops.arange(out_w) * strides[1] - padding[1], "float32")
    tap_rows = [float(i * dilation[0]) for i in range(kh) for _ in range(kw)]
    tap_cols = [float(j * dilation[1]) for _ in range(kh) for j in range(kw)]
    tap_rows = ops.convert_to_tensor(tap_rows, "float32")
    tap_cols = ops.convert_to_tensor(tap_cols, "float32")
    y = rows[None, :, None, None, None] + tap_rows[None, None, None, :, None] + offset[..., 0]
    x = cols[None, None, :, None, None] + tap_cols[None, None, None, :, None] + offset[..., 1]

    y0, x0 = ops.floor(y), ops.floor(x)
    ly, lx = y - y0, x - x0  # the floors carry no gradient: d/d(offset) flows through these fractions only

    # The input as (B * H * W * dg, C / dg): row ((b * H + y) * W + x) * dg + g holds group g's channels of pixel
    # (b, y, x), so that the gathered rows come out in (B, Ho, Wo, K, dg) order, which reshapes to the columns.
    flat = ops.reshape(inputs, (-1, channels // deformable_groups))
    base = ops.reshape(ops.arange(batch, dtype="int32"), (-1, 1, 1, 1, 1)) * (height * width * deformable_groups)
    group = ops.reshape(ops.arange(deformable_groups, dtype="int32"), (1, 1, 1, 1, -1))
    if mask is not None:
        mask = ops.cast(mask, "float32")
        mask = ops.reshape(mask, (batch, out_h, out_w, deformable_groups, taps))
        mask = ops.transpose(mask, (0, 1, 2, 4, 3))

    last_y, last_x = ops.cast(height - 1, "float32"), ops.cast(width - 1, "float32")
    columns = None
    for dy, wy in ((0, 1.0 - ly), (1, ly)):
        for dx, wx in ((0, 1.0 - lx), (1, lx)):
            # integer-valued floats: clipping int32 tensors converts to a Relu6 that LiteRT has no int kernel for
            yy, xx = y0 + float(dy), x0 + float(dx)
            inside = ops.logical_and(ops.logical_and(yy >= 0.0, yy <= last_y), ops.logical_and(xx >= 0.0, xx <= last_x))
            weight = ops.where(inside, wy * wx, 0.0)
            if mask is not None:
                weight = weight * mask
            # out-of-map neighbours read a pixel inside (clipped) with weight 0
            yy = ops.cast(ops.clip(yy, 0.0, last_y), "int32")
            xx = ops.cast(ops.clip(xx, 0.0, last_x), "int32")
            index = base + (yy * width + xx) * deformable_groups
            values = ops.take(flat, ops.reshape(index + group, (-1,)), axis=0)
            term = values * ops.cast(ops.reshape(weight, (-1, 1)), dtype)
            columns = term if columns is None else columns + term

    columns = ops.reshape(columns, (-1, taps, channels))  # (B * Ho * Wo, K, C): kernel's (kh, kw, C) order
    if groups == 1:
        out = ops.matmul(ops.reshape(columns, (-1, taps * channels)), ops.reshape(kernel, (taps * channels, filters)))
    else:
        columns = ops.reshape(columns, (-1, taps, groups, group_channels))
        columns = ops.reshape(ops.transpose(columns, (2, 0, 1, 3)), (groups, -1, taps * group_channels))
        weights = ops.reshape(kernel, (taps, group_channels, groups, filters // groups))
        weights = ops.reshape(ops.transpose(weights, (2, 0, 1, 3)), (groups, taps * group_channels, -1))
        out = ops.reshape(ops.transpose(ops.matmul(columns, weights), (1, 0, 2)), (-1, filters))
    if bias is not None:
        out = out + bias
    return ops.reshape(out, (batch, out_h, out_w, filters))
