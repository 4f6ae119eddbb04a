"""Shared test set-up: an isolated weights cache and a fixed seed for every test; under JAX, a persistent
compilation cache and compile-free weight initialisation (see _jax_init.py)."""

import os
from pathlib import Path

# JAX compiles one XLA program per model instance (predict/train functions) and per process; identical programs
# (the same tiny model built again, or rebuilt by the cross-backend subprocess) are read back from this cache
# instead of compiled again. Set before Keras imports JAX, and inherited by the tests' subprocesses.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(__file__).resolve().parents[1] / "build" / "jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
# The JAX run is compile-bound: tiny models, compiled once each. LLVM's -O0 halves XLA's CPU compile time (a tiny
# InceptionNeXt's fit step 28 -> 13 s) and costs little at run time, since convolutions and matmuls call into
# Eigen/oneDNN either way; HyperFormer's synthetic training test went 35 -> 21 s. Only the tests' processes.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

import keras  # noqa: E402
import pytest  # noqa: E402

if keras.backend.backend() == "jax":
    import _jax_init

    _jax_init.install()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's ~/.keras cache."""
    monkeypatch.setenv("KERAS_HYPER_HOME", str(tmp_path_factory.mktemp("keras_hyper_home")))


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
