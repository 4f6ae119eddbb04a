"""Shared test set-up: an isolated weights cache and a fixed seed for every test."""

import keras
import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's ~/.keras cache."""
    monkeypatch.setenv("KERAS_HYPER_HOME", str(tmp_path_factory.mktemp("keras_hyper_home")))


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
