"""Tests for ``export_onnx``: in-process under TensorFlow, through the TensorFlow-backend worker under PyTorch. JAX
takes the worker path too, the same code (a saved `.keras` converted by a TensorFlow-backend process): not run a
third time."""

import importlib.util
import os

import keras
import numpy as np
import pytest
from exportable import SHAPE, build_model
from keras import layers, ops

from keras_hyper.export import ExportReport, export_onnx

pytestmark = [
    pytest.mark.skipif(
        any(importlib.util.find_spec(name) is None for name in ("onnx", "onnxruntime", "tensorflow", "tf2onnx")),
        reason="ONNX export needs onnx, onnxruntime, tensorflow and tf2onnx",
    ),
    pytest.mark.skipif(keras.backend.backend() == "jax", reason="the worker path is checked in the torch run"),
]


# The conversion is the same TensorFlow code under every backend (in a worker process under torch), so beyond one
# export through the worker, the cases run in the TensorFlow run only.
in_process = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="one worker export is checked under torch; the rest in-process"
)


def _session(path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return build_model()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> ExportReport:
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_export_matches_keras(model, exported):
    x = np.random.default_rng(0).standard_normal((1, *SHAPE)).astype("float32")
    scale = np.abs(keras.ops.convert_to_numpy(model(x, training=False))).max()
    assert isinstance(exported, ExportReport)
    assert exported.format == "onnx"
    assert exported.quantize is None
    assert exported.backend == keras.backend.backend()
    assert exported.bytes == os.path.getsize(exported.path)
    assert exported.max_abs_diff <= 1e-4 * scale
    assert (exported.batch_size, exported.inputs, exported.outputs) == (None, ("image",), ("predictions",))
    summary = str(exported)
    assert exported.path in summary and "\n" not in summary


@pytest.mark.parametrize("batch", [1, 4])
def test_any_batch_with_named_tensors(model, exported, batch):
    """Rechecked without the exporter's own numbers: the graph's input is `image` of shape (batch, 32, 32, 3) and
    its output `predictions` (they were `[1, 32, 32, 3]` and a number such as '1759' under torch)."""
    session = _session(exported.path)
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape, out.name, out.shape) == ("image", ["batch", *SHAPE], "predictions", ["batch", 10])
    x = np.random.default_rng(1).standard_normal((batch, *SHAPE)).astype("float32")
    (got,) = session.run(None, {"image": x})
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_ops_are_standard_onnx(exported):
    assert "Conv" in exported.ops
    # tf2onnx emits exact GELU as Erfc, which ONNX lacks; it must be rewritten.
    assert "Erfc" not in exported.ops
    assert list(exported.ops) == sorted(exported.ops)


@in_process
def test_several_inputs_fixed_batch(tmp_path):
    """Float and integer inputs, list outputs named by their layers, a fixed batch of 2."""
    features = keras.Input((4,), name="features")
    ids = keras.Input((3,), dtype="int32", name="ids")
    total = layers.Dense(4, name="mix")(features + ops.sum(layers.Embedding(10, 4)(ids), axis=1))
    model = keras.Model([features, ids], [total, layers.Dense(2, name="head")(total)])
    sample = [np.random.default_rng(0).standard_normal((1, 4)).astype("float32"), np.array([[1, 7, 3]], "int32")]
    report = export_onnx(model, tmp_path / "model.onnx", sample=sample, batch_size=2)
    assert report.max_abs_diff <= 1e-5
    assert (report.batch_size, report.inputs, report.outputs) == (2, ("features", "ids"), ("mix", "head"))
    session = _session(report.path)
    assert [i.shape for i in session.get_inputs()] == [[2, 4], [2, 3]]
    x = [np.concatenate([sample[0], -sample[0]]), np.array([[1, 7, 3], [0, 2, 9]], "int32")]
    got = session.run(["mix", "head"], {"features": x[0], "ids": x[1]})
    for g, e in zip(got, model(x)):
        np.testing.assert_allclose(g, keras.ops.convert_to_numpy(e), atol=1e-5)


@in_process
def test_unsupported_op_fails_and_leaves_no_file(tmp_path):
    # tf2onnx cannot express Erfinv.
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, ops.erfinv(ops.tanh(layers.Dense(3)(inputs))))
    path = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError, match="(?i)erfinv"):
        export_onnx(model, path)
    assert list(tmp_path.iterdir()) == []


def test_sample_shape_is_checked(model, tmp_path):
    with pytest.raises(ValueError, match=r"`sample` must have shape \(1, 32, 32, 3\)"):
        export_onnx(model, tmp_path / "model.onnx", sample=np.zeros((2, *SHAPE)))
