"""Tests for ``export_onnx``; they skip where the backend cannot export ONNX here."""

import importlib.util
import os

import keras
import numpy as np
import pytest
from exportable import SHAPE, build_model
from keras import layers, ops

from keras_hyper.export import ExportReport, export_onnx

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="ONNX export needs onnx and onnxruntime",
)


def _export(model: keras.Model, path, **kwargs) -> ExportReport:
    """Export, skipping the test with the exporter's reason where unsupported."""
    try:
        return export_onnx(model, path, **kwargs)
    except NotImplementedError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module", autouse=True)
def supported(tmp_path_factory) -> None:
    """Skip the module early where the backend cannot export: the test model builds slowly."""
    inputs = keras.Input((3,))
    path = tmp_path_factory.mktemp("probe") / "model.onnx"
    _export(keras.Model(inputs, layers.Dense(2)(inputs)), path)


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return build_model()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> ExportReport:
    return _export(model, tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_export_matches_keras(model, exported):
    x = np.random.default_rng(0).standard_normal((1, *SHAPE)).astype("float32")
    scale = np.abs(keras.ops.convert_to_numpy(model(x, training=False))).max()
    assert isinstance(exported, ExportReport)
    assert exported.format == "onnx"
    assert exported.quantize is None
    assert exported.backend == keras.backend.backend()
    assert exported.bytes == os.path.getsize(exported.path)
    assert exported.max_abs_diff <= 1e-4 * scale
    # Recheck on other data without relying on the exporter's own numbers.
    import onnxruntime

    session = onnxruntime.InferenceSession(exported.path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((1, *SHAPE)).astype("float32")
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale)
    summary = str(exported)
    assert exported.path in summary and "\n" not in summary


def test_ops_are_standard_onnx(exported):
    assert "Conv" in exported.ops
    # tf2onnx emits exact GELU as Erfc, which ONNX lacks; it must be rewritten.
    assert "Erfc" not in exported.ops
    assert list(exported.ops) == sorted(exported.ops)


def test_unsupported_op_fails_and_leaves_no_file(tmp_path):
    # Neither tf2onnx nor torch.onnx can express Erfinv.
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, ops.erfinv(ops.tanh(layers.Dense(3)(inputs))))
    path = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError, match="(?i)erfinv"):
        _export(model, path)
    assert list(tmp_path.iterdir()) == []


def test_sample_shape_is_checked(model, tmp_path):
    with pytest.raises(ValueError, match=r"`sample` must have shape \(1, 32, 32, 3\)"):
        _export(model, tmp_path / "model.onnx", sample=np.zeros((2, *SHAPE)))
