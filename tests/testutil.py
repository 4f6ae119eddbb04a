"""Helpers shared by the tests (importable: pytest puts tests/ on sys.path, see pyproject.toml)."""

import os
from pathlib import Path

import keras
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("KERAS_HYPER_REFERENCE", ROOT.parent / "shared" / "reference"))


def reference_dir(name):
    """The reference fixture folder of an architecture, skipping the test when it is absent."""
    folder = REFERENCE / name
    if not folder.is_dir():
        pytest.skip(
            f"reference fixtures not found at {folder} (set KERAS_HYPER_REFERENCE to the shared/reference folder)"
        )
    return folder


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def build_tiny(arch, **overrides):
    """The architecture's tiny test configuration; image models at their smallest square input."""
    if arch.example_inputs is not None:
        return arch.builder(**{**arch.testing.tiny, **overrides})
    size = arch.testing.min_input_size
    return arch.builder(**{"input_shape": (size, size, 3), **arch.testing.tiny, **overrides})


def tiny_inputs(arch, batch=2):
    """Valid inputs of `build_tiny(arch)`: the architecture's own example, or seeded normal images."""
    if arch.example_inputs is not None:
        return arch.example_inputs(batch)
    size = arch.testing.min_input_size
    return np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype("float32")


def outputs(model, x):
    """A model's outputs on `x` as a flat list of numpy arrays (one entry for a single-output model).

    Under JAX the model runs compiled (`predict_on_batch`, what `predict` and `fit` run): called eagerly, JAX
    compiles every primitive for every new shape, which made one forward of a tiny model cost 10-40 s on CI.
    """
    y = model.predict_on_batch(x) if keras.backend.backend() == "jax" else model(x)
    return [to_numpy(t) for t in keras.tree.flatten(y)]


def named_outputs(model, x):
    """A dict-output model's outputs on `x` as `{key: numpy array}`, in the model's key order."""
    y = model.predict_on_batch(x) if keras.backend.backend() == "jax" else model(x)
    return {key: to_numpy(y[key]) for key in model.output}


def count_params(build):
    """The trainable parameter count of the model `build()` returns, without allocating its weights.

    Built in a `keras.StatelessScope` that does not initialize: the variables get their shapes but no values
    (a full-size model's random initialisation was 3/4 of its build time, and HyperFormer's variants hold 3.9 GB).
    Keras queues such variables for initialisation at the next stateless scope's exit; they are taken off that
    queue here, so no later scope allocates them.
    """
    from keras.src.backend.common import global_state

    with keras.StatelessScope(initialize_variables=False):
        model = build()
    weights = model.trainable_weights
    count = sum(int(np.prod(w.shape)) for w in weights)
    built = {id(v) for v in model.weights}
    queue = global_state.get_global_attribute("uninitialized_variables", [])
    global_state.set_global_attribute("uninitialized_variables", [v for v in queue if id(v) not in built])
    return count
