"""Inference-time fusions of functional models: folding BatchNormalization into a neighbouring linear layer.

In eval mode a BatchNormalization is the per-channel affine map `x * s + t` with `s = gamma / sqrt(var + eps)`
and `t = beta - mean * s`, so it merges exactly into the Conv2D or Dense before it (scale the output channels)
or after it (scale the input channels; the shift becomes a bias, which needs 'valid' padding for a
convolution: zero padding would be shifted too). Training needs the BatchNormalization back, so this returns
a new model and leaves the original untouched.
"""

import keras
import numpy as np

from keras_hyper.layers.conv import Conv2D, DepthwiseConv2D

CONVS = (keras.layers.Conv2D, Conv2D)
LINEAR = (*CONVS, keras.layers.Dense, keras.layers.DepthwiseConv2D, DepthwiseConv2D)


def _affine(bn):
    """`(s, t)` of a BatchNormalization layer in inference mode, in float64."""
    channels = bn.moving_mean.shape[0]
    gamma = np.asarray(keras.ops.convert_to_numpy(bn.gamma), "float64") if bn.scale else np.ones(channels)
    beta = np.asarray(keras.ops.convert_to_numpy(bn.beta), "float64") if bn.center else np.zeros(channels)
    mean = np.asarray(keras.ops.convert_to_numpy(bn.moving_mean), "float64")
    var = np.asarray(keras.ops.convert_to_numpy(bn.moving_variance), "float64")
    s = gamma / np.sqrt(var + bn.epsilon)
    return s, beta - mean * s


def _foldable_into_input(layer):
    if isinstance(layer, keras.layers.Dense):
        return True
    # the shift of a folded input is a bias only if no zero padding touches it, and a grouped kernel mixes
    # only its own group's channels
    return type(layer) in CONVS and layer.padding == "valid" and layer.groups == 1


def _plan(model):
    """`{bn_name: (side, linear_layer)}`: side 'output' folds into the layer before, 'input' into the one after."""
    plan, taken = {}, set()
    for bn in model.layers:
        if not isinstance(bn, keras.layers.BatchNormalization) or bn.axis not in (-1, len(bn.input.shape) - 1):
            continue
        producers = [node.operation for node in bn._inbound_nodes[0].parent_nodes]
        consumers = [node.operation for node in bn._outbound_nodes]
        before = producers[0] if len(producers) == 1 else None
        after = consumers[0] if len(consumers) == 1 else None
        # exact types: a subclass may compute something other than a plain affine map
        if (
            type(before) in LINEAR
            and len(before._outbound_nodes) == 1
            and before.name not in taken
            and before.activation is keras.activations.linear
        ):
            plan[bn.name] = ("output", before)
            taken.add(before.name)
            continue
        if after is not None and _foldable_into_input(after) and after.name not in taken:
            plan[bn.name] = ("input", after)
            taken.add(after.name)
    return plan


def fold_batch_norms(model):
    """Returns a copy of `model` in which every BatchNormalization next to a Conv2D or Dense is folded into it
    and removed; other layers keep their names and weights. Outputs are equal up to float rounding."""
    plan = _plan(model)
    targets = {layer.name: (bn, side) for bn, (side, layer) in plan.items()}

    def clone(layer):
        config = layer.get_config()
        if layer.name in targets:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    def call(layer, *args, **kwargs):
        # a folded BatchNormalization leaves the graph: its input flows straight on
        return args[0] if layer.name in plan else layer(*args, **kwargs)

    fused = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for layer in fused.layers:
        if layer.name in targets:
            bn_name, side = targets[layer.name]
            layer.set_weights(_fold(model.get_layer(layer.name), model.get_layer(bn_name), side))
        elif layer.weights:  # weightless layers (inputs among them) may be renamed by cloning
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return fused


def _fold(linear, bn, side):
    if isinstance(linear, keras.layers.DepthwiseConv2D):
        return _fold_depthwise(linear, bn)
    kernel = np.asarray(keras.ops.convert_to_numpy(linear.kernel), "float64")
    bias = (
        np.asarray(keras.ops.convert_to_numpy(linear.bias), "float64")
        if linear.use_bias
        else np.zeros(kernel.shape[-1])
    )
    s, t = _affine(bn)
    if side == "output":
        kernel, bias = kernel * s, bias * s + t
    else:
        # kernel is (..., in, out): scale the input channels, and push the shift through the kernel
        bias = bias + (kernel * t[:, None]).reshape(-1, kernel.shape[-1]).sum(axis=0)
        kernel = kernel * s[:, None]
    dtype = linear.kernel.dtype
    return [kernel.astype(dtype), bias.astype(dtype)]


def _fold_depthwise(linear, bn):
    """Output-side fold into a DepthwiseConv2D, whose kernel is `(kh, kw, C, multiplier)` and output channel
    `c * multiplier + m`."""
    kernel = np.asarray(keras.ops.convert_to_numpy(linear.kernel), "float64")
    channels, multiplier = kernel.shape[-2:]
    bias = (
        np.asarray(keras.ops.convert_to_numpy(linear.bias), "float64")
        if linear.use_bias
        else np.zeros(channels * multiplier)
    )
    s, t = _affine(bn)
    kernel = kernel * s.reshape(channels, multiplier)
    dtype = linear.kernel.dtype
    return [kernel.astype(dtype), (bias * s + t).astype(dtype)]


def fuse_layers(model):
    """Returns a copy of `model` in which every layer that offers `fuse()` is replaced by what it returns: a
    new, built layer with its weights set that computes the same function at inference (e.g. the parallel
    dilated branches of a re-parameterisable block merged into one kernel). Other layers keep names and
    weights."""

    def clone(layer):
        if hasattr(layer, "fuse"):
            fused = layer.fuse()
            if not fused.built:
                raise ValueError(f"{type(layer).__name__}.fuse() of layer {layer.name!r} returned an unbuilt layer.")
            return fused
        return layer.__class__.from_config(layer.get_config())

    fused = keras.models.clone_model(model, clone_function=clone)
    for layer in fused.layers:
        if layer.weights and not hasattr(model.get_layer(layer.name), "fuse"):
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return fused


def reparameterize(model):
    """The generic inference form of a functional model: `fuse_layers`, then `fold_batch_norms`. Outputs equal
    the original's up to float rounding; the original is left untouched for training."""
    return fold_batch_norms(fuse_layers(model))
