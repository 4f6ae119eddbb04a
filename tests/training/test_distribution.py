"""Distributed training (docs/distributed.md, keras_hyper.training.distribution): the page's recipe run under JAX
with 2 virtual CPU devices, where data-parallel and model-parallel training must give the loss and weights of
one device; and the layout proposal's rules and argument checks.

The device count is fixed when JAX starts (`--xla_force_host_platform_device_count`), so the recipe runs in a
subprocess, whatever this process's backend; it and the backend-independent checks run once, in the torch run
(which keeps them off the compile-bound JAX run's clock).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_hyper.training import distribution

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "distributed.md"
once = pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="backend-independent: checked once, in the torch run"
)

# Runs the page's blocks marked as run by this file, then reports what the test checks. The tests' eager weight
# initialisation (tests/_jax_init.py, as in the JAX test run) spares the XLA compiles of the initializers.
_RUNNER = """
import json, re, sys
sys.path.insert(0, sys.argv[2])
import _jax_init

_jax_init.install()
page = open(sys.argv[1]).read()
namespace = {"__name__": "docs.distributed"}
for number, code in enumerate(re.findall(r"^```python\\n(.*?)^```", page, re.S | re.M), 1):
    if code.startswith("# not run:") and "test_distribution.py" in code.splitlines()[0]:
        exec(compile(code, f"distributed.md (block {number})", "exec"), namespace)

import jax
import numpy as np

single = namespace["single"].get_weights()


def report(model):
    return {
        "weight_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(single, model.get_weights())),
        "devices": sorted({len(v.value.sharding.device_set) for v in model.weights}),
        "sharded": sorted(v.path for v in model.weights if "model" in str(v.value.sharding.spec)),
    }


result = {
    "devices": len(jax.devices()),
    "loss": {run: namespace[run + "_loss"] for run in ("single", "data_parallel", "model_parallel")},
    "data_parallel": report(namespace["data_parallel"]),
    "model_parallel": report(namespace["model_parallel"]),
    "proposed": sorted(re.sub(r"\\\\(.)", r"\\1", key) for key in namespace["layouts"]),
}
print("RESULT " + json.dumps(result))
"""


@once
def test_data_and_model_parallel_training_equal_one_device():
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(PAGE), str(ROOT / "tests")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"the recipe failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["devices"] == 2
    single = result["loss"]["single"]
    assert len(single) == 1 and np.isfinite(single).all()
    for run in ("data_parallel", "model_parallel"):
        np.testing.assert_allclose(result["loss"][run], single, rtol=1e-5, err_msg=run)
        # measured 2.4e-7 (weights of order 0.1-1); per-replica batch statistics would be percent-level
        assert result[run]["weight_difference"] < 1e-4, (run, result[run]["weight_difference"])
        assert result[run]["devices"] == [2], run  # every variable lives on both devices
    assert result["data_parallel"]["sharded"] == []
    # the proposed kernels, and only they, are split: the layout map reached the model built in the scope
    assert result["proposed"] and result["model_parallel"]["sharded"] == result["proposed"]


def _mesh(shape=(1, 2)):
    return keras.distribution.DeviceMesh(shape, ["batch", "model"], devices=[f"cpu:{i}" for i in range(2)])


@once
@pytest.mark.parametrize(
    "shape,parts,min_size,expected",
    [
        ((3, 3, 16, 32), 2, 1, 3),  # a convolution kernel: output channels
        ((3, 3, 16, 1), 2, 1, 2),  # a depthwise kernel: its channels
        ((64, 10), 4, 1, 0),  # a head of 10 classes over 4 devices: the input features
        ((64, 10), 3, 1, None),  # nothing divisible
        ((64, 32), 2, 4096, None),  # too small to be worth the collectives
        ((64,), 2, 1, None),  # vectors are replicated
        ((64, 32), 1, 1, None),  # a mesh axis of one device
    ],
)
def test_shard_axis(shape, parts, min_size, expected):
    assert distribution.shard_axis(shape, parts, min_size) == expected


@once
def test_layout_map_shards_large_kernels_and_replicates_the_rest():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="norm")(x)
    x = keras.layers.Conv2D(32, 3, name="conv+2")(x)  # a regex metacharacter (torch refuses dots)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(5, name="head")(x))  # functional, as the zoo's: no path prefix
    layouts = distribution.layout_map(model, _mesh(), min_size=400)
    # stem/kernel (432 values) and conv+2/kernel (4608) are split on their output channels; head/kernel (160) is
    # under min_size, biases and norms are vectors
    assert {key: layouts[key].axes for key in layouts} == {
        "stem/kernel": (None, None, None, "model"),
        r"conv\+2/kernel": (None, None, None, "model"),
    }
    assert layouts["conv+2/kernel"].axes == (None, None, None, "model")
    assert layouts["convv2/kernel"] is None  # escaped: the plus matches only itself
    assert all(layouts[key].device_mesh is not None for key in layouts)


@once
def test_device_mesh_shape():
    mesh = distribution.device_mesh(2, devices=["cpu:0", "cpu:1", "cpu:2", "cpu:3"])
    assert mesh.shape == (2, 2) and list(mesh.axis_names) == ["batch", "model"]


@once
@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: distribution.device_mesh(3, devices=["cpu:0", "cpu:1"]), "must divide the number of devices"),
        (lambda: distribution.device_mesh(0, devices=["cpu:0"]), "positive integer, got 0"),
        (lambda: distribution.device_mesh(True, devices=["cpu:0"]), "positive integer, got True"),
        (lambda: distribution.layout_map(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]), "mesh"), "str"),
        (
            lambda: distribution.layout_map(
                keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]), _mesh(), axis="tensor"
            ),
            re.escape("axis='tensor' is not an axis of the mesh, whose axes are ['batch', 'model']"),
        ),
        (lambda: distribution.layout_map(keras.Sequential(name="empty"), _mesh()), "'empty' has no variables"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
