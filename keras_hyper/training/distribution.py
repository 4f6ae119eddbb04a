"""Layouts for training zoo models on several devices with `keras.distribution` (JAX backend; see
docs/distributed.md).

`keras.distribution.DataParallel` needs nothing from the zoo: every variable is replicated and the batch is split.
`keras.distribution.ModelParallel` needs a `LayoutMap` that says which variables to shard over the mesh's model
axis; `layout_map(model, mesh)` proposes one for any zoo model from its built variables: every kernel-like
variable (rank >= 2: Dense `(in, out)`, Conv `(kh, kw, in, out)`, depthwise `(kh, kw, C, 1)`, embeddings) of at
least `min_size` values is split along its last dimension that the model axis divides (output channels first,
as Megatron-style column parallelism does; a depthwise kernel's channels), everything else is replicated. The
layout only changes where values live: XLA's sharding propagation inserts the collectives, so the maths (and the
trained weights, up to rounding) are those of one device.

The layout map is keyed by variable path (`layer/variable`). Zoo layers have fixed names, so the paths of the
model built again inside the distribution's scope are the same; call `keras.backend.clear_session()` before
building it again so that Keras' automatic names (of the few unnamed layers) restart from the same numbers.

Example:

```python
import keras
from keras_hyper import applications
from keras_hyper.training import distribution

mesh = distribution.device_mesh(model_parallel=2)          # (devices / 2, 2): axes ("batch", "model")
with keras.device("cpu:0"):                                # read paths and shapes in host memory
    layouts = distribution.layout_map(applications.load("inceptionnext_base"), mesh)
keras.backend.clear_session()
keras.distribution.set_distribution(keras.distribution.ModelParallel(layout_map=layouts))
model = applications.load("inceptionnext_base")           # kernels sharded as proposed
```
"""

import re

import keras

BATCH_AXIS = "batch"
MODEL_AXIS = "model"
# Below this many values a sharded variable saves less memory than its collectives cost in time (64K floats =
# 256 KiB): the tiny tests pass a smaller one to shard their small kernels.
MIN_SIZE = 1 << 16


def device_mesh(model_parallel=1, *, devices=None):
    """A 2D `keras.distribution.DeviceMesh` of axes `("batch", "model")`, shape `(n / model_parallel,
    model_parallel)` over `devices` (default: `keras.distribution.list_devices()`, n of them).

    `model_parallel=1` is pure data parallelism, `model_parallel=n` pure model parallelism; in between, each group
    of `model_parallel` devices holds one sharded copy of the model and the batch is split between the groups.
    """
    devices = list(keras.distribution.list_devices() if devices is None else devices)
    if isinstance(model_parallel, bool) or not isinstance(model_parallel, int) or model_parallel < 1:
        raise ValueError(f"model_parallel must be a positive integer, got {model_parallel!r}.")
    if not devices or len(devices) % model_parallel:
        raise ValueError(
            f"model_parallel={model_parallel} must divide the number of devices, got {len(devices)} devices."
        )
    shape = (len(devices) // model_parallel, model_parallel)
    return keras.distribution.DeviceMesh(shape, [BATCH_AXIS, MODEL_AXIS], devices=devices)


def shard_axis(shape, parts, min_size=MIN_SIZE):
    """The dimension of a variable of `shape` to split into `parts` (the last one `parts` divides, scanned from
    the end), or None to replicate it: vectors (biases, norms), variables under `min_size` values, or no
    dimension divisible by `parts`."""
    size = 1
    for dim in shape:
        size *= dim
    if parts < 2 or len(shape) < 2 or size < min_size:
        return None
    for axis in reversed(range(len(shape))):
        if shape[axis] >= parts and shape[axis] % parts == 0:
            return axis
    return None


def layout_map(model, mesh, *, axis=MODEL_AXIS, min_size=MIN_SIZE):
    """Proposes a `keras.distribution.LayoutMap` for `model` (built) on `mesh`: each variable that `shard_axis`
    picks is split along that dimension over the mesh axis `axis`; the others are left out (replicated).

    Args:
        model: a built Keras model (its variables' paths and shapes are read, nothing else).
        mesh: a `keras.distribution.DeviceMesh` with an axis named `axis` (e.g. from `device_mesh`).
        axis: the mesh axis to shard over.
        min_size: variables with fewer values stay replicated.

    Returns:
        A `LayoutMap` with one entry per sharded variable, keyed by its path (regex metacharacters escaped).
    """
    if not isinstance(mesh, keras.distribution.DeviceMesh):
        raise ValueError(f"mesh must be a keras.distribution.DeviceMesh, got {type(mesh).__name__}.")
    if axis not in mesh.axis_names:
        raise ValueError(f"axis={axis!r} is not an axis of the mesh, whose axes are {list(mesh.axis_names)}.")
    if not model.weights:
        raise ValueError(f"model {model.name!r} has no variables: build it before proposing a layout.")
    parts = mesh.shape[list(mesh.axis_names).index(axis)]
    layouts = keras.distribution.LayoutMap(mesh)
    for variable in model.weights:
        dim = shard_axis(tuple(variable.shape), parts, min_size)
        if dim is not None:
            spec = [None] * len(variable.shape)
            spec[dim] = axis
            layouts[_literal(variable.path)] = tuple(spec)
    return layouts


def _literal(path):
    """`path` as a regular expression that matches only itself (LayoutMap tries every key as a pattern on the paths
    it has no exact key for), escaping only what is special outside brackets, so that zoo paths stay readable:
    `stages-0-blocks-1-mlp/fc1/kernel`, `conv\\+2/kernel`."""
    return re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", path)
