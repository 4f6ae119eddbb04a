"""RCNet's neck ("RCNet: Reverse Feature Pyramid and Cross-scale Shift Network for Object Detection", ACM MM 2021;
paper 21 in PAPERS.md), the official `RCFPN` of TempleX98/RCNet (mmdet/models/necks/rcfpn.py, Apache-2.0).

A neck: it takes the backbone's feature maps (C2..C5 in the official configs, of which C3..C5 are used) and returns
the five-level pyramid P3..P7 a RetinaNet-style head reads.

1. Laterals: a 1x1 convolution + norm per used backbone level; extra levels (P6, P7 inputs) are a 1x1 convolution
   + norm of the level above, max-pooled 2x2 after replicate-padding odd sizes (so sizes halve rounding up).
2. Reverse Feature Pyramid (RevFP): five fusion nodes in a fixed order, p3 <- (c3, c4), p4 <- (c4, c5, p3),
   p5 <- (c5, c6, p4), p6 <- (c6, c7, p5), p7 <- (c7, p6). A node resizes its inputs to its own level (coarser ones
   bilinearly up, finer ones max-pooled down), blends its own level with the second input through a sigmoid gate
   on their global average pools (p3..p6 first rescale the upsampled input by a spatial softmax attention), and in
   three-input nodes blends the result, after `pre_fusion`, with the finer previous output through a second gate;
   `post_fusion` ends every node. pre/post fusion are ReLU -> 3x3 convolution (DCNv2 with 2 deformable groups in
   the official neck, or a plain convolution) -> norm.
3. Cross-scale Shift Network (CSN): the five levels resampled to the P4 grid, four blocks of `C // shift_ratio`
   channels shifted cyclically across levels (+1, -1, +2, -2), a per-level 1x1 conv/norm/ReLU/1x1 conv with a
   residual, plus a global spatial and a global scale context; each level gets its part back at its own size.

Details a port must respect (PyTorch semantics, reproduced exactly): bilinear resizing is `align_corners=False`
without antialiasing; the up/down decision compares (H, W) tuples lexicographically; adaptive max pooling uses
PyTorch's overlapping bins; BatchNorm eps 1e-5.

The spatial sizes of every level must be static when the layers run (they are under JAX and PyTorch, and in
TensorFlow's eager calls and traced functions of fixed-size data): the resizing decisions depend on them.
"""

import keras
from keras import ops

from keras_hyper import ops as hyper_ops
from keras_hyper.convert.mapping import StateDictMapper, conv_kernel, torch_prefix
from keras_hyper.layers._args import check_positive, static_spatial_size
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.deform import DeformConv2D
from keras_hyper.layers.torch_defaults import batch_norm
from keras_hyper.ops.pooling import adaptive_max_pool2d

LEVELS = 5  # RevFP's five nodes and the CSN's level shifts are written for exactly five levels
FUSION_CONVS = ("dcnv2", "dcn", "conv")
NORMS = (None, "batch_norm", "group_norm")
OUTPUT_NAMES = ("P3", "P4", "P5", "P6", "P7")


def _static_size(x, what):
    return static_spatial_size(x, f"RCNet's {what}", "its resizing decisions depend on them")


def _upsample(x, size):
    """`F.interpolate(x, size, mode="bilinear")` (align_corners False, no antialiasing)."""
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    return ops.image.resize(x, size, interpolation="bilinear", antialias=False)


def _pool_half(x):
    """`F.max_pool2d(F.pad(x, [0, w % 2, 0, h % 2], "replicate"), 2)`: a max pool whose "same" padding pads odd sizes
    by one -inf row/column after, which for a max equals repeating the last one."""
    return ops.max_pool(x, 2, 2, padding="same")


def _resize(x, size):
    """FusionNode._resize: unchanged at the node's size; bilinear up if `(h, w) < size` (Python's lexicographic
    tuple order, as the official `torch.Size` comparison); else one replicate-padded 2x2 max pool."""
    own = _static_size(x, "fusion node")
    if own == tuple(size):
        return x
    if own < tuple(size):
        return _upsample(x, size)
    return _pool_half(x)


def _norm(norm, norm_groups, name, channels):
    if norm == "batch_norm":
        return batch_norm(name)
    if norm == "group_norm":
        if channels % norm_groups:
            raise ValueError(f"norm_groups ({norm_groups}) must divide the {channels} channels for GroupNorm.")
        return keras.layers.GroupNormalization(norm_groups, epsilon=1e-5, name=name)
    return None


def _norm_name(norm):
    """mmcv's build_norm_layer names: `bn` for BatchNorm, `gn` for GroupNorm."""
    return "gn" if norm == "group_norm" else "bn"


def _gate(weights, a, b):
    """`sigmoid(conv1x1(cat[GAP(a), GAP(b)]))`, `(B, 1, 1, 1)`."""
    kernel, bias = weights
    pooled = ops.concatenate([ops.mean(a, axis=(1, 2)), ops.mean(b, axis=(1, 2))], axis=-1)
    return ops.sigmoid(ops.matmul(pooled, kernel) + bias)[:, None, None, :]


@keras.saving.register_keras_serializable(package="keras_hyper")
class RCNetFusionNode(keras.layers.Layer):
    """One node of RCNet's Reverse Feature Pyramid (the official `FusionNode`).

    Inputs `[x1, x2]` or `[x1, x2, x3]`: the node's own level `x1`, the other level to blend (`x2`, resized to `x1`:
    the coarser lateral in p3..p6, the finer p6 in p7) and, in three-input nodes, the finer previous output `x3`.
    `r = w x1 + (1 - w) x2` with `w = sigmoid(gate_0(cat[GAP(x1), GAP(x2)]))`; with `attention`, `x2` is first
    rescaled by `H W softmax_{HW}(temperature C^-1/2 conv3x3(cat[x1, x2]))` (the gates pool x2 before). Three
    inputs: `y = pre_fusion(r)`, `r = w' y + (1 - w') x3` with `w' = sigmoid(gate_1(cat[GAP(y), GAP(x3)]))`. Output
    `post_fusion(r)`; pre/post fusion are ReLU, a 3x3 convolution (`fusion_conv`) and the norm.

    Args:
        channels: width of every input and of the output.
        num_inputs: 2 or 3 (the official `op_num`).
        attention: the spatial attention on `x2` (the official `upsample_attn`; False in p7).
        fusion_conv: "dcnv2" (official default, ModulatedDeformConv2dPack), "dcn" (DeformConv2dPack) or "conv".
        deformable_groups: of the deformable convolutions.
        norm: "batch_norm", "group_norm" or None (then the fusion convolutions have biases).
        norm_groups: GroupNorm's groups.

    Weights: `gate{i}_kernel` `(2C, 1)` and `gate{i}_bias` (official `weight.{i}`), `attention_kernel`
    `(3, 3, 2C, 1)`, `attention_bias`, `temperature` (official `spatial_weight`, `temp`), and the sublayers
    `pre_fusion-conv`, `pre_fusion-<bn|gn>`, `post_fusion-conv`, `post_fusion-<bn|gn>`.

    Shape: list of `(B, Hi, Wi, C)` -> `(B, H1, W1, C)`.
    """

    def __init__(
        self,
        channels,
        num_inputs=2,
        attention=True,
        fusion_conv="dcnv2",
        deformable_groups=2,
        norm="batch_norm",
        norm_groups=32,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive(channels=channels, deformable_groups=deformable_groups, norm_groups=norm_groups)
        if num_inputs not in (2, 3):
            raise ValueError(f"num_inputs must be 2 or 3 (the official op_num), got {num_inputs!r}.")
        if fusion_conv not in FUSION_CONVS:
            raise ValueError(f"fusion_conv must be one of {FUSION_CONVS}, got {fusion_conv!r}.")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")
        self.channels = channels
        self.num_inputs = num_inputs
        self.attention = bool(attention)
        self.fusion_conv = fusion_conv
        self.deformable_groups = deformable_groups
        self.norm = norm
        self.norm_groups = norm_groups
        self.post_conv, self.post_norm = self._conv_module("post_fusion")
        self.pre_conv, self.pre_norm = self._conv_module("pre_fusion") if num_inputs == 3 else (None, None)

    def _conv_module(self, prefix):
        use_bias = self.norm is None  # mmcv ConvModule's bias="auto"
        if self.fusion_conv == "conv":
            conv = Conv2D(
                self.channels,
                3,
                padding="same",
                use_bias=use_bias,
                kernel_initializer="glorot_uniform",  # the official xavier_init(uniform) of plain fusion convs
                name=f"{prefix}-conv",
            )
        else:
            conv = DeformConv2D(
                self.channels,
                3,
                padding=1,
                deformable_groups=self.deformable_groups,
                modulated=self.fusion_conv == "dcnv2",
                use_bias=use_bias,
                name=f"{prefix}-conv",
            )
        return conv, _norm(self.norm, self.norm_groups, f"{prefix}-{_norm_name(self.norm)}", self.channels)

    def build(self, input_shape):
        if len(input_shape) != self.num_inputs or any(s[-1] != self.channels for s in input_shape):
            raise ValueError(
                f"RCNetFusionNode expects {self.num_inputs} maps of {self.channels} channels, got shapes {input_shape}."
            )
        c = self.channels
        self.gates = []
        for i in range(self.num_inputs - 1):
            # the official constant_init(0): gates start at sigmoid(0) = 1/2
            kernel = self.add_weight(name=f"gate{i}_kernel", shape=(2 * c, 1), initializer="zeros")
            bias = self.add_weight(name=f"gate{i}_bias", shape=(1,), initializer="zeros")
            self.gates.append((kernel, bias))
        if self.attention:
            self.attention_kernel = self.add_weight(
                name="attention_kernel", shape=(3, 3, 2 * c, 1), initializer="zeros"
            )
            self.attention_bias = self.add_weight(name="attention_bias", shape=(1,), initializer="zeros")
            self.temperature = self.add_weight(name="temperature", shape=(1,), initializer="ones")
        feature = (None, None, None, c)
        for layer in (self.pre_conv, self.pre_norm, self.post_conv, self.post_norm):
            if layer is not None:
                layer.build(feature)

    def _conv_block(self, x, conv, norm, training):
        x = conv(ops.relu(x))
        return x if norm is None else norm(x, training=training)

    def call(self, inputs, training=None):
        size = _static_size(inputs[0], "fusion node")
        x1, x2, *rest = [_resize(x, size) for x in inputs]
        weight = _gate(self.gates[0], x1, x2)  # pooled before the attention rescales x2
        if self.attention:
            logits = hyper_ops.conv2d(ops.concatenate([x1, x2], axis=-1), self.attention_kernel, padding="same")
            logits = (logits + self.attention_bias) * (self.temperature * self.channels**-0.5)
            positions = size[0] * size[1]
            attention = ops.softmax(ops.reshape(logits, (-1, positions)), axis=-1) * positions
            x2 = ops.reshape(attention, (-1, *size, 1)) * x2
        result = weight * x1 + (1.0 - weight) * x2
        if self.num_inputs == 3:
            (x3,) = rest
            y = self._conv_block(result, self.pre_conv, self.pre_norm, training)
            weight = _gate(self.gates[1], y, x3)
            result = weight * y + (1.0 - weight) * x3
        return self._conv_block(result, self.post_conv, self.post_norm, training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:3]) + (self.channels,)

    def get_config(self):
        return {
            **super().get_config(),
            "channels": self.channels,
            "num_inputs": self.num_inputs,
            "attention": self.attention,
            "fusion_conv": self.fusion_conv,
            "deformable_groups": self.deformable_groups,
            "norm": self.norm,
            "norm_groups": self.norm_groups,
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class CrossShiftNet(keras.layers.Layer):
    """RCNet's Cross-scale Shift Network (the official `CrossShiftNet` with `ScaleShift`, `SpatialBranch` and
    `ScaleBranch`) over five pyramid levels.

    The levels are resampled to the second level's grid (the first adaptive-max-pooled, the others bilinearly
    resized). ScaleShift: with `part = C // shift_ratio`, level `l` gets channel block `[0, part)` of level `l + 1`,
    `[part, 2 part)` of `l - 1`, `[2 part, 3 part)` of `l + 2` and `[3 part, 4 part)` of `l - 2` (cyclically),
    prepended to its own C channels, then its own 1x1 conv + norm + ReLU and 1x1 conv (with bias), plus a residual.
    The spatial context (mean over levels, a softmax over positions of a 1x1 C -> 1 projection, the weighted mean,
    a 1x1 C -> C) and the scale context (mean over positions, a softmax over the levels, the weighted mean, a 1x1)
    are added to every level. Each level then gets its result back at its own size: bilinear for the first,
    adaptive max pooling for the others.

    Args:
        channels: width `C` of every level; `4 * C // shift_ratio` must equal `4 * (C // shift_ratio)`.
        shift_ratio: the official `ScaleShift.ratio` (16).
        norm, norm_groups: as `RCNetFusionNode`.

    Sublayers (official names with '-' for '.'): `msm-aggregation-{l}-0-conv`, `msm-aggregation-{l}-0-<bn|gn>`,
    `msm-aggregation-{l}-1`, `spatialContext-channel_agg`, `spatialContext-trans`, `scaleContext-channel_agg`,
    `scaleContext-trans`.

    Shape: list of five `(B, Hl, Wl, C)` -> the same.
    """

    def __init__(self, channels, shift_ratio=16, norm="batch_norm", norm_groups=32, **kwargs):
        super().__init__(**kwargs)
        check_positive(channels=channels, shift_ratio=shift_ratio, norm_groups=norm_groups)
        if channels * 4 // shift_ratio != 4 * (channels // shift_ratio):
            # the official aggregation convs take C + 4C // ratio channels but the shift fills 4 (C // ratio)
            raise ValueError(
                f"channels ({channels}) must make 4 * channels // shift_ratio equal 4 * (channels // shift_ratio) "
                f"(shift_ratio {shift_ratio}), as the official ScaleShift assumes; e.g. a multiple of {shift_ratio}."
            )
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")
        self.channels = channels
        self.shift_ratio = shift_ratio
        self.norm = norm
        self.norm_groups = norm_groups
        self.part = channels // shift_ratio
        self.aggregation = []
        for level in range(LEVELS):
            prefix = f"msm-aggregation-{level}"
            conv = Conv2D(channels, 1, use_bias=norm is None, name=f"{prefix}-0-conv")
            normalization = _norm(norm, norm_groups, f"{prefix}-0-{_norm_name(norm)}", channels)
            self.aggregation.append((conv, normalization, Conv2D(channels, 1, name=f"{prefix}-1")))
        self.spatial_agg = Conv2D(1, 1, name="spatialContext-channel_agg")
        self.spatial_trans = Conv2D(channels, 1, name="spatialContext-trans")
        self.scale_agg = Conv2D(1, 1, name="scaleContext-channel_agg")
        self.scale_trans = Conv2D(channels, 1, name="scaleContext-trans")

    def build(self, input_shape):
        if len(input_shape) != LEVELS or any(s[-1] != self.channels for s in input_shape):
            raise ValueError(
                f"CrossShiftNet expects {LEVELS} maps of {self.channels} channels, got shapes {input_shape}."
            )
        c = self.channels
        for conv, normalization, out in self.aggregation:
            conv.build((None, None, None, c + 4 * self.part))
            if normalization is not None:
                normalization.build((None, None, None, c))
            out.build((None, None, None, c))
        for layer in (self.spatial_agg, self.spatial_trans, self.scale_agg, self.scale_trans):
            layer.build((None, None, None, c))

    def _shift(self, levels, level):
        """ScaleShift.shift for one level: the four shifted blocks, then the level's own channels."""
        p = self.part
        sources = ((level + 1) % LEVELS, (level - 1) % LEVELS, (level + 2) % LEVELS, (level - 2) % LEVELS)
        blocks = [levels[src][..., block * p : (block + 1) * p] for block, src in enumerate(sources)]
        return ops.concatenate([*blocks, levels[level]], axis=-1)

    def call(self, inputs, training=None):
        sizes = [_static_size(x, "cross-scale shift") for x in inputs]
        grid = sizes[1]
        levels = [adaptive_max_pool2d(inputs[0], grid)] + [_upsample(x, grid) for x in inputs[1:]]
        mixed = []
        for level, (conv, normalization, out) in enumerate(self.aggregation):
            y = conv(self._shift(levels, level))
            if normalization is not None:
                y = normalization(y, training=training)
            mixed.append(levels[level] + out(ops.relu(y)))
        positions = grid[0] * grid[1]
        # spatial context: the level mean, weighted by a softmax over positions
        mean = ops.mean(ops.stack(mixed, axis=1), axis=1)
        weights = ops.softmax(ops.reshape(self.spatial_agg(mean), (-1, positions)), axis=-1) * positions
        pooled = ops.mean(ops.reshape(mean, (-1, positions, self.channels)) * weights[..., None], axis=1)
        spatial = self.spatial_trans(pooled[:, None, None, :])
        # scale context: the per-level spatial means, weighted by a softmax over the levels
        means = ops.stack([ops.mean(m, axis=(1, 2)) for m in mixed], axis=1)  # (B, 5, C)
        weights = ops.softmax(self.scale_agg(means[:, :, None, :])[:, :, 0, 0], axis=-1) * LEVELS
        pooled = ops.mean(means * weights[..., None], axis=1)
        scale = self.scale_trans(pooled[:, None, None, :])
        outputs = []
        for level, (x, size) in enumerate(zip(inputs, sizes)):
            y = mixed[level] + spatial + scale
            y = _upsample(y, size) if level == 0 else adaptive_max_pool2d(y, size)
            outputs.append(x + y)
        return outputs

    def compute_output_shape(self, input_shape):
        return [tuple(s) for s in input_shape]

    def get_config(self):
        return {
            **super().get_config(),
            "channels": self.channels,
            "shift_ratio": self.shift_ratio,
            "norm": self.norm,
            "norm_groups": self.norm_groups,
        }


def rcnet_neck(
    in_channels=(256, 512, 1024, 2048),
    out_channels=256,
    num_outs=5,
    start_level=1,
    end_level=-1,
    add_extra_convs="on_input",
    norm="batch_norm",
    norm_groups=32,
    fusion_conv="dcnv2",
    deformable_groups=2,
    shift_ratio=16,
    input_names=None,
    input_shapes=None,
    output_names=OUTPUT_NAMES,
    name="rcnet_neck",
):
    """Builds RCNet's neck (the official `RCFPN`) as a Keras model from backbone maps to the P3..P7 pyramid.

    The defaults are the official `retinanet_r50_rcfpn_1x_coco` neck (ResNet-50's C2..C5, C2 unused, 256 channels,
    BatchNorm, DCNv2 fusion convolutions with 2 deformable groups): 7,665,346 parameters, 6,669,586 with
    `fusion_conv="conv"`.

    Args:
        in_channels: channels of every backbone map passed (the official `in_channels`).
        out_channels: pyramid width (a multiple of `shift_ratio` for the cross-scale shift).
        num_outs, start_level, end_level: the official arguments: maps `start_level..end_level-1` get laterals, and
            `num_outs` minus their count extra levels are pooled on top. RevFP and the CSN are written for five
            levels, so these must give five.
        add_extra_convs: accepted for config compatibility; the official RCFPN ignores it (its extra levels are
            always 1x1 conv + norm + max pool).
        norm: "batch_norm" (official configs), "group_norm" (the GFL X101 config) or None (convolution biases).
        norm_groups: GroupNorm's groups (32 in the official GN config).
        fusion_conv: "dcnv2" (the official default), "dcn" (DCNv1) or "conv" (the ablation's plain 3x3).
        deformable_groups: of the fusion convolutions (official 2).
        shift_ratio: the cross-scale shift moves `4 * (C // shift_ratio)` channels (official 16).
        input_names: keys of the input dict, one per `in_channels` (default "C2", "C3", ... from the second level
            up, the official naming; pass a zoo backbone's feature keys such as "P2".."P5" to plug it in).
        input_shapes: `(H, W)` per input, or None for any size (sizes must be known when the model runs).
        output_names: keys of the output dict.
        name: the model's name.

    Returns:
        A `keras.Model` from `{input name: (B, H, W, C_in)}` to `{output name: (B, H, W, out_channels)}`.

    Example:
        >>> neck = rcnet_neck(in_channels=(64, 128, 256, 512), out_channels=64)
        >>> pyramid = neck({f"C{i + 2}": np.zeros((1, 64 // 2**i, 64 // 2**i, 64 * 2**i)) for i in range(4)})
        >>> sorted(pyramid)  # ['P3', 'P4', 'P5', 'P6', 'P7'] at 32, 16, 8, 4, 2 pixels
    """
    in_channels = tuple(in_channels)
    if not in_channels or any(not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in in_channels):
        raise ValueError(f"in_channels must be a non-empty list of positive integers, got {in_channels!r}.")
    check_positive(out_channels=out_channels, num_outs=num_outs)
    if not isinstance(start_level, int) or not 0 <= start_level < len(in_channels):
        raise ValueError(f"start_level must be in [0, {len(in_channels)}), got {start_level!r}.")
    if end_level == -1:
        end = len(in_channels)
        if num_outs < end - start_level:
            raise ValueError(f"num_outs ({num_outs}) must be at least the {end - start_level} used backbone levels.")
    else:
        if not isinstance(end_level, int) or not start_level < end_level <= len(in_channels):
            raise ValueError(f"end_level must be -1 or in ({start_level}, {len(in_channels)}], got {end_level!r}.")
        end = end_level
        if num_outs != end - start_level:
            raise ValueError(f"num_outs ({num_outs}) must equal end_level - start_level ({end - start_level}).")
    if num_outs != LEVELS:
        raise ValueError(
            f"num_outs must be {LEVELS}: RCNet's fusion nodes and cross-scale shift use P3..P7, got {num_outs}."
        )
    if fusion_conv not in FUSION_CONVS:
        raise ValueError(f"fusion_conv must be one of {FUSION_CONVS}, got {fusion_conv!r}.")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")
    input_names = tuple(input_names or (f"C{i + 2}" for i in range(len(in_channels))))
    if len(input_names) != len(in_channels) or len(set(input_names)) != len(input_names):
        raise ValueError(f"input_names must be {len(in_channels)} distinct names, got {input_names!r}.")
    output_names = tuple(output_names)
    if len(output_names) != LEVELS or len(set(output_names)) != LEVELS:
        raise ValueError(f"output_names must be {LEVELS} distinct names, got {output_names!r}.")
    shapes = tuple(input_shapes) if input_shapes is not None else ((None, None),) * len(in_channels)
    if len(shapes) != len(in_channels) or any(len(tuple(s)) != 2 for s in shapes):
        raise ValueError(f"input_shapes must hold one (height, width) per input, got {input_shapes!r}.")
    del add_extra_convs  # the official RCFPN stores it and never reads it

    inputs = {
        key: keras.Input((*shape, channels), name=key) for key, shape, channels in zip(input_names, shapes, in_channels)
    }
    use_bias = norm is None
    norm_name = _norm_name(norm)

    def conv_norm(x, prefix):
        x = Conv2D(out_channels, 1, use_bias=use_bias, name=f"{prefix}-conv")(x)
        normalization = _norm(norm, norm_groups, f"{prefix}-{norm_name}", out_channels)
        return x if normalization is None else normalization(x)

    feats = [conv_norm(inputs[input_names[i]], f"lateral_convs-{i - start_level}") for i in range(start_level, end)]
    for i in range(num_outs - len(feats)):
        # the official replicate pad commutes with the 1x1 conv + norm, so the pool's own padding does it
        x = conv_norm(feats[-1], f"extra_downsamples-{i}-0")
        feats.append(keras.layers.MaxPooling2D(2, padding="same", name=f"extra_downsamples-{i}-1")(x))

    node_args = dict(fusion_conv=fusion_conv, deformable_groups=deformable_groups, norm=norm, norm_groups=norm_groups)
    c3, c4, c5, c6, c7 = feats

    def node(level, maps, attention=True):
        layer = RCNetFusionNode(out_channels, len(maps), attention, name=f"RevFP-p{level}", **node_args)
        return layer(maps)

    p3 = node(3, [c3, c4])
    p4 = node(4, [c4, c5, p3])
    p5 = node(5, [c5, c6, p4])
    p6 = node(6, [c6, c7, p5])
    p7 = node(7, [c7, p6], attention=False)
    pyramid = CrossShiftNet(out_channels, shift_ratio, norm, norm_groups, name="CSN")([p3, p4, p5, p6, p7])
    outputs = {key: keras.layers.Identity(name=key)(x) for key, x in zip(output_names, pyramid)}
    return keras.Model(inputs, outputs, name=name)


def _conv_module(mapper, conv, norm, prefix):
    """An mmcv ConvModule (`conv`, then `bn`/`gn`) or a DeformConv2D(Pack) with its `conv_offset`."""
    if isinstance(conv, DeformConv2D):
        mapper.assign(conv.kernel, f"{prefix}.conv.weight", conv_kernel)
        if conv.use_bias:
            mapper.assign(conv.bias, f"{prefix}.conv.bias")
        mapper.assign(conv.offset_kernel, f"{prefix}.conv.conv_offset.weight", conv_kernel)
        mapper.assign(conv.offset_bias, f"{prefix}.conv.conv_offset.bias")
    else:
        mapper.conv2d(conv, f"{prefix}.conv")
    if norm is not None:
        mapper.standard(norm, f"{prefix}.{norm.name.rsplit('-', 1)[-1]}")


def convert_rcnet(state_dict, model):
    """Loads an official RCFPN state dict (mmdet naming: `lateral_convs.*`, `extra_downsamples.*`, `RevFP.p*.*`,
    `CSN.*`; a detector checkpoint's `neck.` prefix stripped) into `rcnet_neck(...)` of the same configuration.

    Strict: every tensor is consumed (BatchNorm's `num_batches_tracked` counters aside) and every variable assigned.
    """
    state_dict = {k.removeprefix("neck."): v for k, v in state_dict.items()}
    mapper = StateDictMapper(state_dict, model)
    for layer in model.layers:
        if isinstance(layer, RCNetFusionNode):
            prefix = torch_prefix(layer.name)
            for i, (kernel, bias) in enumerate(layer.gates):
                mapper.assign(kernel, f"{prefix}.weight.{i}.weight", lambda w: w[:, :, 0, 0].T)
                mapper.assign(bias, f"{prefix}.weight.{i}.bias")
            if layer.attention:
                mapper.assign(layer.attention_kernel, f"{prefix}.spatial_weight.weight", conv_kernel)
                mapper.assign(layer.attention_bias, f"{prefix}.spatial_weight.bias")
                mapper.assign(layer.temperature, f"{prefix}.temp")
            _conv_module(mapper, layer.post_conv, layer.post_norm, f"{prefix}.post_fusion")
            if layer.pre_conv is not None:
                _conv_module(mapper, layer.pre_conv, layer.pre_norm, f"{prefix}.pre_fusion")
        elif isinstance(layer, CrossShiftNet):
            for level, (conv, normalization, out) in enumerate(layer.aggregation):
                _conv_module(mapper, conv, normalization, f"CSN.msm.aggregation.{level}.0")
                mapper.conv2d(out, f"CSN.msm.aggregation.{level}.1")
            for sub in (layer.spatial_agg, layer.spatial_trans, layer.scale_agg, layer.scale_trans):
                mapper.conv2d(sub, f"CSN.{torch_prefix(sub.name)}")
        elif layer.weights:
            mapper.standard(layer, torch_prefix(layer.name))
    mapper.finish()
