"""What the SLAB architectures share (Guo, Chen, Tang, Wang, "SLAB: Efficient Transformers with Simplified
Linear Attention and Progressive Re-parameterized Batch Normalization", ICML 2024, arXiv:2405.11582; paper 59 in
PAPERS.md): the pre-norm transformer block of SLAB-DeiT/Swin/PVT/CSwin, the official `LinearNorm` state onto a
`PRepBN` layer, and the fold of a final norm through the mean pooling into the head."""

import keras
import numpy as np

from keras_hyper.layers import DropPath
from keras_hyper.layers.prepbn import PRepBN
from keras_hyper.layers.torch_defaults import trunc_normal
from keras_hyper.models import _base, _fusion

NORMS = ("prepbn", "layernorm")

# what the registry records of every SLAB architecture
PAPER = _base.Paper(
    "SLAB: Efficient Transformers with Simplified Linear Attention and Progressive Re-parameterized Batch "
    "Normalization",
    "2405.11582",
    59,
)
LICENSE = "none (the official repository has no licence file)"
SOURCE = "https://github.com/xinghaochen/SLAB"


def norm(x, name, kind, prepbn):
    """PRepBN (`prepbn`: its keyword arguments) or, for the softmax/LayerNorm twins, LayerNorm(eps 1e-6)."""
    if kind == "layernorm":
        return keras.layers.LayerNormalization(epsilon=1e-6, name=name)(x)
    return PRepBN(**prepbn, name=name)(x)


def dense(units, name, use_bias=True):
    """A Linear with the official truncated-normal(0.02) init."""
    return keras.layers.Dense(units, use_bias=use_bias, kernel_initializer=trunc_normal(), name=name)


def block(x, prefix, *, core, mlp_ratio, qkv_bias, prepbn, drop_path, norm_kind="prepbn", attn="attn-"):
    """Pre-norm block `x + proj(core(qkv(norm1(x))))`, `x + mlp(norm2(x))`, `core` the attention proper on the
    packed [q|k|v] tokens; `attn` is the prefix of the qkv/proj layer names (the official modules' nesting)."""
    dim = x.shape[-1]
    y = norm(x, f"{prefix}-norm1", norm_kind, prepbn)
    y = dense(3 * dim, f"{prefix}-{attn}qkv", qkv_bias)(y)
    y = dense(dim, f"{prefix}-{attn}proj")(core(y))
    if drop_path > 0.0:
        y = DropPath(drop_path, name=f"{prefix}-drop_path1")(y)
    x = keras.layers.Add(name=f"{prefix}-add1")([x, y])
    y = norm(x, f"{prefix}-norm2", norm_kind, prepbn)
    y = dense(int(dim * mlp_ratio), f"{prefix}-mlp-fc1")(y)
    y = keras.layers.Activation("gelu", name=f"{prefix}-mlp-act")(y)
    y = dense(dim, f"{prefix}-mlp-fc2")(y)
    if drop_path > 0.0:
        y = DropPath(drop_path, name=f"{prefix}-drop_path2")(y)
    return keras.layers.Add(name=f"{prefix}-add2")([x, y])


def convert_prepbn(m, layer, key):
    """Assigns the official `LinearNorm` at `key` (its LayerNorm `norm1`, RepBN `norm2`) to a `PRepBN` through
    the StateDictMapper `m`; the `warm`/`iter`/`total_step` buffers become the layer's `step` (steps done =
    warm-up consumed + `total_step - iter`). A schedule other than the model's raises ValueError."""
    m.layer_norm(layer.norm1, f"{key}.norm1")
    m.batch_norm(layer.bn, f"{key}.norm2.bn")
    m.assign(layer.alpha, f"{key}.norm2.alpha")
    warm, left, total = (m.take(f"{key}.{buffer}") for buffer in ("warm", "iter", "total_step"))
    if warm is None or left is None or total is None:
        return
    if int(total) != layer.total_steps or int(warm) > layer.warmup:
        raise ValueError(
            f"PRepBN schedule mismatch at '{key}': the checkpoint has total_step={int(total)}, warm={int(warm)}; "
            f"the model total_steps={layer.total_steps}, warmup={layer.warmup} (pass prepbn_steps/prepbn_warmup)."
        )
    layer.step.assign(layer.warmup - int(warm) + int(total) - int(left))
    m.assigned.add(id(layer.step))


def fold_norm_before_pool(model):
    """Folds a BatchNormalization followed by global average pooling and a Dense (the final norm before the
    head) into that Dense: in inference the norm is a per-channel affine map, which commutes with the mean."""
    plan = {}
    for layer in model.layers:
        if type(layer) is not keras.layers.BatchNormalization:
            continue
        pool = [node.operation for node in layer._outbound_nodes]
        if len(pool) != 1 or not isinstance(pool[0], keras.layers.GlobalAveragePooling2D):
            continue
        head = [node.operation for node in pool[0]._outbound_nodes]
        if len(head) == 1 and type(head[0]) is keras.layers.Dense:
            plan[layer.name] = head[0].name
    if not plan:
        return model
    heads = {dense: bn for bn, dense in plan.items()}

    def call(layer, *args, **kwargs):
        return args[0] if layer.name in plan else layer(*args, **kwargs)

    fused = keras.models.clone_model(model, call_function=call)
    for layer in fused.layers:
        source = model.get_layer(layer.name)
        if layer.name in heads:
            s, t = _fusion._affine(model.get_layer(heads[layer.name]))
            kernel, bias = (np.asarray(keras.ops.convert_to_numpy(w), "float64") for w in source.weights)
            kernel, bias = kernel * s[:, None], bias + t @ kernel
            layer.set_weights([kernel.astype(source.kernel.dtype), bias.astype(source.bias.dtype)])
        elif layer.weights:
            layer.set_weights(source.get_weights())
    return fused


def reparameterize(model):
    """The inference model of a SLAB network: every PRepBN becomes its BatchNorm (`PRepBN.fuse`), each of which
    then folds into the convolution before it or the Dense after it (qkv, fc1, and the head through the mean
    pooling). Equal outputs, no normalisation layer left; keep the original for training."""
    return fold_norm_before_pool(_fusion.reparameterize(model))
