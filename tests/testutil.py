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
