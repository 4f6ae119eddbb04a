"""Polyhistor and Polyhistor-Lite on a Swin backbone for multi-task dense prediction (Liu, Ma, Tian, He, Kira,
"Polyhistor: Parameter-Efficient Multi-Task Adaptation for Dense Vision Tasks", NeurIPS 2022, arXiv:2210.03265;
paper 35 in PAPERS.md).

A Swin Transformer (patch embedding + LayerNorm, pre-norm blocks with (shifted-)window softmax attention and
relative position bias, 2x2 patch merging between stages) is frozen; every block gets a bottleneck adapter after
its MLP (`y = mlp(norm2(x)); x = x + y + adapter(y)`, HyperFormer's place), whose weights for each task come
from `PolyhistorAdapters` (Decomposed HyperNetworks; with `adapter="lite"` also Layer-wise Scaling Kernels).
Each task runs the backbone with its own adapters, and a head of its own turns the four stage maps into a dense
prediction at the input resolution: per stage a 1x1 projection to `head_dim`, bilinear upsampling to the first
stage's map, concatenation, a 3x3 conv + BN + ReLU, a 1x1 classifier and a bilinear x`patch_size` upsampling.

`load_swin_backbone(state_dict, model)` puts a pretrained Swin (official or timm checkpoint) into the backbone.
`adapter=None, freeze_backbone=False` is the multi-task full fine-tuning baseline (one shared backbone, the same
heads). Only the adapters and the heads are trainable otherwise: the variants' parameter counts are the
trainable counts, which is what the paper compares.

Input `(B, H, W, 3)`, H and W such that every stage map is a whole number of windows (224 for Swin-T's window
7); output a dict `{task: (B, H, W, channels)}` of logits (float32). The default tasks are PASCAL-Context's
(semantic segmentation 21 classes, human parts 7, saliency 1, surface normals 3).
"""

import re
import types

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers._args import check_positive
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.polyhistor import PolyhistorAdapters
from keras_hyper.layers.torch_defaults import batch_norm, trunc_normal
from keras_hyper.layers.window_attention import PatchMerging2x2, WindowSoftmaxAttention
from keras_hyper.models import _base

ADAPTERS = (None, "polyhistor", "lite")
PASCAL_CONTEXT_TASKS = {"semseg": 21, "human_parts": 7, "saliency": 1, "normals": 3}
LN_EPSILON = 1e-5


class _Backbone:
    """The Swin layers, created once and called once per task branch (shared, frozen weights)."""

    def __init__(self, *, embed_dim, depths, num_heads, window_size, mlp_ratio, patch_size, grid, trainable):
        self.layers = {}
        self.embed_dim, self.depths, self.num_heads = embed_dim, depths, num_heads
        self.window_size, self.mlp_ratio, self.patch_size, self.grid = window_size, mlp_ratio, patch_size, grid
        self.trainable = trainable

    def _get(self, name, factory):
        if name not in self.layers:
            self.layers[name] = factory(name)
        return self.layers[name]

    def _dense(self, name, units, use_bias=True):
        return self._get(
            name,
            lambda n: keras.layers.Dense(
                units, use_bias=use_bias, kernel_initializer=trunc_normal(), trainable=self.trainable, name=n
            ),
        )

    def _norm(self, name):
        return self._get(
            name, lambda n: keras.layers.LayerNormalization(epsilon=LN_EPSILON, trainable=self.trainable, name=n)
        )

    def __call__(self, x, adapt, branch):
        """The stage maps of `x`; `adapt(y, block_index)` is the adapter of the task being run (or None);
        `branch` names the weightless layers of this pass (each task runs its own)."""
        embed = self._get(
            "patch_embed-proj",
            lambda n: Conv2D(
                self.embed_dim, self.patch_size, strides=self.patch_size, trainable=self.trainable, name=n
            ),
        )
        x = self._norm("patch_embed-norm")(embed(x))
        features, block = [], 0
        for i, depth in enumerate(self.depths):
            res = self.grid // 2**i
            dim = self.embed_dim * 2**i
            for j in range(depth):
                prefix = f"layers-{i}-blocks-{j}"
                window, shift = self.window_size, (self.window_size // 2 if j % 2 else 0)
                if res <= window:  # one window covers the map: global attention, no shift (official rule)
                    window, shift = None, 0
                y = self._norm(f"{prefix}-norm1")(x)
                y = self._dense(f"{prefix}-attn-qkv", 3 * dim)(y)
                attention = self._get(
                    f"{prefix}-attn",
                    lambda n, w=window, s=shift, h=self.num_heads[i], r=res: WindowSoftmaxAttention(
                        h, w, s, grid_size=(r, r), trainable=self.trainable, name=n
                    ),
                )
                y = self._dense(f"{prefix}-attn-proj", dim)(attention(y))
                x = keras.layers.Add(name=f"{prefix}-add1-{branch}")([x, y])
                y = self._norm(f"{prefix}-norm2")(x)
                y = self._dense(f"{prefix}-mlp-fc1", int(dim * self.mlp_ratio))(y)
                y = keras.layers.Activation("gelu", name=f"{prefix}-mlp-act-{branch}")(y)
                y = self._dense(f"{prefix}-mlp-fc2", dim)(y)
                if adapt is not None:
                    y = adapt(y, block)
                x = keras.layers.Add(name=f"{prefix}-add2-{branch}")([x, y])
                block += 1
            features.append(x)
            if i < len(self.depths) - 1:
                x = PatchMerging2x2(name=f"layers-{i}-downsample-{branch}")(x)
                x = self._norm(f"layers-{i}-downsample-norm")(x)
                x = self._dense(f"layers-{i}-downsample-reduction", 2 * dim, use_bias=False)(x)
        return features


def _head(features, task, channels, head_dim, patch_size):
    prefix = f"heads-{task}"
    maps = []
    for s, f in enumerate(features):
        f = keras.layers.Dense(head_dim, name=f"{prefix}-proj{s}")(f)
        if s:
            f = keras.layers.UpSampling2D(2**s, interpolation="bilinear", name=f"{prefix}-up{s}")(f)
        maps.append(f)
    x = keras.layers.Concatenate(name=f"{prefix}-cat")(maps) if len(maps) > 1 else maps[0]
    x = Conv2D(head_dim, 3, padding="same", use_bias=False, name=f"{prefix}-fuse-conv")(x)
    x = batch_norm(f"{prefix}-fuse-bn")(x)
    x = keras.layers.ReLU(name=f"{prefix}-fuse-act")(x)
    x = keras.layers.Dense(channels, name=f"{prefix}-out")(x)
    x = keras.layers.UpSampling2D(patch_size, interpolation="bilinear", name=f"{prefix}-resize")(x)
    # the logits in float32 under mixed precision, under the task's name
    return keras.layers.Activation("linear", dtype="float32", name=task)(x)


def polyhistor(
    tasks=None,
    adapter="polyhistor",
    *,
    img_size=224,
    patch_size=4,
    embed_dim=96,
    depths=(2, 2, 6, 2),
    num_heads=(3, 6, 12, 24),
    window_size=7,
    mlp_ratio=4.0,
    reduction=4,
    rank=4,
    embedding_dim=64,
    zero_init_adapters=True,
    freeze_backbone=True,
    head_dim=64,
    weights=None,
    input_tensor=None,
    input_shape=None,
    include_preprocessing=False,
    name="polyhistor",
):
    """Builds a multi-task dense-prediction Swin with Polyhistor / Polyhistor-Lite adapters.

    Args:
        tasks: dict task name -> output channels (None: PASCAL-Context's four tasks).
        adapter: "polyhistor" (Decomposed HyperNetworks), "lite" (Polyhistor-Lite: also Layer-wise Scaling
            Kernels) or None (no adapters: with `freeze_backbone=False`, multi-task full fine-tuning).
        img_size: the input size the stage maps and attention windows are laid out for (the default input).
        patch_size, embed_dim, depths, num_heads, window_size, mlp_ratio: Swin's (Swin-T by default).
        reduction, rank, embedding_dim: adapter bottleneck `d / reduction`, rank of the generated factors,
            width of the task and block embeddings.
        zero_init_adapters: up projections start at zero, so every task starts from the backbone's features.
        freeze_backbone: the Swin weights are not trainable (the parameter-efficient setting).
        head_dim: width of each task head.
        weights: None or a local `.weights.h5` / `.keras` file of the same configuration.
        input_tensor, input_shape, include_preprocessing, name: as in `keras.applications`.

    Returns:
        A functional `keras.Model` with a dict of outputs, one `(B, H, W, channels)` map per task.
    """
    tasks = dict(PASCAL_CONTEXT_TASKS if tasks is None else tasks)
    if not tasks:
        raise ValueError("tasks must name at least one task, got an empty dict.")
    for task, channels in tasks.items():
        if not isinstance(task, str) or not task.isidentifier():
            raise ValueError(f"Task names must be identifiers (they name the outputs), got {task!r}.")
        if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
            raise ValueError(f"tasks[{task!r}] must be a positive number of channels, got {channels!r}.")
    if adapter not in ADAPTERS:
        raise ValueError(f"adapter must be one of {ADAPTERS}, got {adapter!r}.")
    depths, num_heads = tuple(depths), tuple(num_heads)
    if not depths or any(not isinstance(d, int) or d < 1 for d in depths):
        raise ValueError(f"depths must be a non-empty sequence of positive integers, got {depths!r}.")
    if len(num_heads) != len(depths):
        raise ValueError(f"num_heads must have one entry per stage ({len(depths)}), got {num_heads!r}.")
    for i, heads in enumerate(num_heads):
        if not isinstance(heads, int) or heads < 1 or (embed_dim * 2**i) % heads:
            raise ValueError(f"num_heads[{i}]={heads!r} must be a positive integer dividing {embed_dim * 2**i}.")
    stride = patch_size * 2 ** (len(depths) - 1)
    if not isinstance(img_size, int) or img_size % stride:
        raise ValueError(f"img_size must be a multiple of patch_size * 2**(stages-1) = {stride}, got {img_size!r}.")
    grid = img_size // patch_size
    for i in range(len(depths)):
        res = grid // 2**i
        if res > window_size and res % window_size:
            raise ValueError(
                f"Stage {i} has a {res}x{res} map at img_size={img_size}, not a whole number of {window_size}x"
                f"{window_size} windows; choose img_size or window_size so that it is."
            )
    check_positive(head_dim=head_dim)

    inputs = x = _base.image_input(input_tensor, input_shape, default_size=img_size, min_size=max(32, stride))
    if tuple(inputs.shape[1:3]) != (img_size, img_size):
        raise ValueError(
            f"The window layout is fixed at img_size={img_size}; got an input of {tuple(inputs.shape[1:3])}. "
            "Pass img_size equal to the input size."
        )
    if include_preprocessing:
        x = _base.preprocessing(x, ARCH.mean, ARCH.std)
    backbone = _Backbone(
        embed_dim=embed_dim,
        depths=depths,
        num_heads=num_heads,
        window_size=window_size,
        mlp_ratio=mlp_ratio,
        patch_size=patch_size,
        grid=grid,
        trainable=not freeze_backbone,
    )
    outputs = {}
    if adapter is None:
        features = backbone(x, None, "shared")
        for task, channels in tasks.items():
            outputs[task] = _head(features, task, channels, head_dim, patch_size)
    else:
        layer_dims = [embed_dim * 2**i for i, depth in enumerate(depths) for _ in range(depth)]
        adapters = PolyhistorAdapters(
            len(tasks),
            layer_dims,
            mode=adapter,
            reduction=reduction,
            rank=rank,
            embedding_dim=embedding_dim,
            zero_init=zero_init_adapters,
            name="adapters",
        )
        for t, (task, channels) in enumerate(tasks.items()):
            features = backbone(x, lambda y, block, t=t: adapters(y, task_index=t, layer_index=block), task)
            outputs[task] = _head(features, task, channels, head_dim, patch_size)
    return _base.finish(inputs, outputs, name=name, weights=weights, arch=ARCH)


def load_swin_backbone(state_dict, model):
    """Fills the backbone of a Polyhistor model from a Swin state dict, official (microsoft/Swin-Transformer,
    patch merging at the end of a stage) or timm (at the start of the next); adapters and heads keep their
    values. Strict over the backbone: every backbone variable is assigned and every tensor used, except the
    classifier and final norm (the heads read the stage maps) and the `relative_position_index` / `attn_mask`
    buffers (recomputed here)."""
    if "layers.0.downsample.reduction.weight" not in state_dict:
        state_dict = {
            re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", key): value
            for key, value in state_dict.items()
        }
    backbone = [layer for layer in model.layers if layer.weights and not layer.name.startswith(("adapters", "heads-"))]
    # the mapper proves completeness over the variables of the object it is given: the backbone's alone here
    scope = types.SimpleNamespace(name=model.name, weights=[w for layer in backbone for w in layer.weights])
    ignore = (r"head\..*", r"norm\.(weight|bias)", r".*\.relative_position_index", r".*\.attn_mask")
    m = mapping.StateDictMapper(state_dict, scope, ignore=ignore)
    for layer in backbone:
        prefix = mapping.torch_prefix(layer.name)
        if isinstance(layer, WindowSoftmaxAttention):
            m.assign(layer.relative_position_bias_table, f"{prefix}.relative_position_bias_table")
        elif not m.standard(layer, prefix):
            raise ValueError(f"No Swin checkpoint mapping for backbone layer {layer.name!r}.")
    m.finish()


def _example_inputs(batch):
    return np.random.default_rng(0).normal(size=(batch, 32, 32, 3)).astype("float32")


_SWIN_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7)

# trainable parameters with PASCAL-Context's four tasks: adapters + heads (the heads alone are 962,080; the frozen
# backbone is Swin-T's 27,517,818, timm's swin_tiny_patch4_window7_224 less its classifier and final norm)
VARIANTS = (
    _base.Variant(
        "polyhistor_swin_t", dict(_SWIN_T, adapter="polyhistor"), num_params=2_820_704, builder_name="PolyhistorSwinT"
    ),
    _base.Variant(
        "polyhistor_lite_swin_t",
        dict(_SWIN_T, adapter="lite"),
        num_params=1_087_412,
        builder_name="PolyhistorLiteSwinT",
    ),
    _base.Variant(
        "swin_t_multitask_finetune",
        dict(_SWIN_T, adapter=None, freeze_backbone=False),
        num_params=28_479_898,
        builder_name="SwinTMultiTaskFinetune",
    ),
)

ARCH = _base.Architecture(
    name="polyhistor",
    builder=polyhistor,
    # no Polyhistor checkpoint exists; a Swin checkpoint (official or timm) fills the frozen backbone, the
    # paper's starting point, leaving adapters and heads to train
    convert=load_swin_backbone,
    paper=_base.Paper("Polyhistor: Parameter-Efficient Multi-Task Adaptation for Dense Vision Tasks", "2210.03265", 35),
    variants=VARIANTS,
    license="none (no official code or weights published)",
    source="https://arxiv.org/abs/2210.03265",
    testing=_base.Testing(
        # every path at 32 px: shifted 4x4 windows on the 8x8 map, patch merging, a global stage (4x4); adapters not
        # zero-initialised so that one fit step reaches every hypernetwork weight
        tiny=dict(
            tasks={"semseg": 5, "saliency": 1},
            adapter="polyhistor",
            img_size=32,
            embed_dim=16,
            depths=(2, 1),
            num_heads=(1, 2),
            window_size=4,
            mlp_ratio=2.0,
            rank=2,
            embedding_dim=8,
            zero_init_adapters=False,
            head_dim=8,
        ),
    ),
    example_inputs=_example_inputs,
    kind="dense prediction",
)
