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


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "once: backend-independent check (argument validation, files, text), run in the torch run only"
    )


def pytest_collection_modifyitems(config, items):
    # Checks whose outcome does not depend on the backend run in one run, the torch one (eager and the fastest);
    # the checks of the computation itself run in all three.
    if keras.backend.backend() != "torch":
        skip = pytest.mark.skip(reason="backend-independent: checked once, in the torch run")
        for item in items:
            if item.get_closest_marker("once"):
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's ~/.keras cache."""
    monkeypatch.setenv("KERAS_HYPER_HOME", str(tmp_path_factory.mktemp("keras_hyper_home")))


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


# Seconds per architecture module (its harness cases, by parameter id, and its tests/models file), per other test
# file and per test (to find what to share or run once), written as JSON where KERAS_HYPER_TEST_TIMES points
# (scripts/test-backends sets it per backend and prints the report with scripts/test-times: the budget is tracked
# per architecture, not guessed).
_TIMES = {}
_TESTS = {}


def _owner(nodeid):
    from keras_hyper.applications import registry

    path, _, name = nodeid.partition("::")
    parts = Path(path).parts
    if parts[-1] == "harness.py" and "[" in name:
        modules = {}
        for arch in registry.architectures():
            module = arch.builder.__module__.rsplit(".", 1)[-1]
            modules[arch.name] = module
            modules.update({v.name: module for v in arch.variants})
        for token in name[name.index("[") + 1 : -1].split("-"):
            if token in modules:
                return modules[token]
    if len(parts) >= 2 and parts[-2] == "models":
        return Path(path).stem.removeprefix("test_")
    return "/".join(parts[1:]) if parts[0] == "tests" else path


def pytest_runtest_logreport(report):
    key = _owner(report.nodeid)
    _TIMES[key] = _TIMES.get(key, 0.0) + report.duration
    _TESTS[report.nodeid] = _TESTS.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    target = os.environ.get("KERAS_HYPER_TEST_TIMES")
    if target:
        import json

        from keras_hyper import models

        Path(target).parent.mkdir(parents=True, exist_ok=True)
        report = {"times": _TIMES, "tests": _TESTS, "architectures": list(models.MODULES)}
        Path(target).write_text(json.dumps(report, indent=1))
