"""Strict mapping of a PyTorch-layout state dict onto the variables of a Keras model.

Layouts: PyTorch Conv2d kernels are `(out, in, kh, kw)`, Keras `(kh, kw, in, out)`; depthwise kernels are
`(C, 1, kh, kw)` against Keras' `(kh, kw, C, 1)`; Linear weights are `(out, in)` against Dense's `(in, out)`.
"""

import re

import keras
import numpy as np


def torch_prefix(layer_name):
    """The state-dict prefix of a layer named after it with '-' for '.' (`stages-0-blocks-1` -> `stages.0.blocks.1`).

    keras-hyper layer names cannot hold '.', since the torch backend registers variables under their paths
    and PyTorch forbids '.' in parameter names.
    """
    return layer_name.replace("-", ".")


def conv_kernel(w):
    """`(out, in, kh, kw)` -> `(kh, kw, in, out)`."""
    return np.transpose(w, (2, 3, 1, 0))


def depthwise_kernel(w):
    """`(C, 1, kh, kw)` -> `(kh, kw, C, 1)`."""
    return np.transpose(w, (2, 3, 0, 1))


def dense_kernel(w):
    """`(out, in)` or a 1x1 convolution's `(out, in, 1, 1)` -> `(in, out)`."""
    if w.ndim == 4:
        if w.shape[2:] != (1, 1):
            raise ValueError(f"Only a 1x1 convolution maps onto a Dense layer, got a kernel of shape {w.shape}.")
        w = w[:, :, 0, 0]
    return np.transpose(w)


TRAINING_COUNTERS = r"(.*\.)?num_batches_tracked$"


class StateDictMapper:
    """Assigns state-dict tensors to model variables and, at `finish()`, proves that nothing was left over.

    Every problem is collected and reported at once: the checkpoint keys the model expected but did not
    find (missing), the keys nobody consumed (unexpected) and the model variables never assigned, so that a
    checkpoint of another architecture gives one clear error rather than the first KeyError.

    Args:
        state_dict: mapping of name -> array (PyTorch layout).
        model: the Keras model to fill.
        ignore: regular expressions of keys that are deliberately unused (say why at the call site). BatchNorm's
            `num_batches_tracked` is always ignored: a training counter that only sets PyTorch's momentum when
            `momentum=None`, which no ported architecture uses.
    """

    def __init__(self, state_dict, model, ignore=()):
        self.state_dict = dict(state_dict)
        self.model = model
        self.ignore = [re.compile(p) for p in (TRAINING_COUNTERS, *ignore)]
        self.used = set()
        self.missing = []
        self.assigned = set()

    def take(self, key):
        """The array at `key`, marked as consumed; None (and recorded as missing) if absent."""
        if key not in self.state_dict:
            self.missing.append(key)
            return None
        self.used.add(key)
        return np.asarray(self.state_dict[key])

    def assign(self, variable, key, transform=None):
        """Assigns `transform(state_dict[key])` to `variable` after checking the shape."""
        value = self.take(key)
        if value is None:
            return
        if transform is not None:
            value = transform(value)
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"Shape mismatch: checkpoint tensor '{key}' of shape {tuple(self.state_dict[key].shape)} becomes "
                f"{tuple(value.shape)} in Keras layout, but variable '{variable.path}' has shape "
                f"{tuple(variable.shape)}."
            )
        variable.assign(value.astype(variable.dtype))
        self.assigned.add(id(variable))

    def conv2d(self, layer, prefix):
        """A Conv2D or DepthwiseConv2D (whose PyTorch weight is `(C * multiplier, 1, kh, kw)`) and its bias."""
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        self.assign(layer.kernel, f"{prefix}.weight", depthwise_kernel if depthwise else conv_kernel)
        if layer.use_bias:
            self.assign(layer.bias, f"{prefix}.bias")

    def dense(self, layer, prefix):
        self.assign(layer.kernel, f"{prefix}.weight", dense_kernel)
        if layer.use_bias:
            self.assign(layer.bias, f"{prefix}.bias")

    def batch_norm(self, layer, prefix):
        if layer.scale:
            self.assign(layer.gamma, f"{prefix}.weight")
        if layer.center:
            self.assign(layer.beta, f"{prefix}.bias")
        self.assign(layer.moving_mean, f"{prefix}.running_mean")
        self.assign(layer.moving_variance, f"{prefix}.running_var")

    def layer_norm(self, layer, prefix):
        if layer.scale:
            self.assign(layer.gamma, f"{prefix}.weight")
        if layer.center:
            self.assign(layer.beta, f"{prefix}.bias")

    def standard(self, layer, prefix):
        """Assigns a layer of a kind every architecture maps the same way (Conv2D, DepthwiseConv2D, Dense,
        BatchNormalization, LayerNormalization, GroupNormalization: PyTorch's `weight`/`bias`/running stats
        under `prefix`) and returns True; returns False, assigning nothing, for any other layer."""
        if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D):
            self.conv2d(layer, prefix)
        elif isinstance(layer, keras.layers.Dense):
            self.dense(layer, prefix)
        elif isinstance(layer, keras.layers.BatchNormalization):
            self.batch_norm(layer, prefix)
        elif isinstance(layer, keras.layers.LayerNormalization | keras.layers.GroupNormalization):
            self.layer_norm(layer, prefix)
        else:
            return False
        return True

    def finish(self):
        """Raises one ValueError listing missing keys, unexpected keys and unassigned variables, if any."""
        unexpected = [k for k in self.state_dict if k not in self.used and not any(p.fullmatch(k) for p in self.ignore)]
        unassigned = [v.path for v in _checkpoint_variables(self.model) if id(v) not in self.assigned]
        if self.missing or unexpected or unassigned:
            parts = []
            for title, items in (
                ("missing keys (expected by the model, absent from the checkpoint)", self.missing),
                ("unexpected keys (in the checkpoint, unused by the model)", unexpected),
                ("model variables left unassigned", unassigned),
            ):
                if items:
                    shown = ", ".join(items[:20]) + (f", ... ({len(items) - 20} more)" if len(items) > 20 else "")
                    parts.append(f"{len(items)} {title}: {shown}")
            raise ValueError(
                f"The checkpoint does not match model '{self.model.name}' "
                f"(is it a checkpoint of another architecture or configuration?):\n  " + "\n  ".join(parts)
            )


def _checkpoint_variables(model):
    """The variables a checkpoint must provide: all but random-generator states and fixed preprocessing."""
    return [v for v in model.weights if "seed_generator" not in v.path and not v.path.startswith("preprocessing/")]
