"""Tests for ``export_litert``: in-process under TensorFlow, through the worker subprocess under PyTorch. JAX takes the
worker path too, the same code (a saved `.keras` converted by a TensorFlow-backend process): not run a third time."""

import importlib.util
import os

import keras
import numpy as np
import pytest
from exportable import SHAPE, build_model
from keras import layers, ops

from keras_hyper.export import ExportReport, LiteRTModel, export_litert

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("ai_edge_litert") is None,
        reason="LiteRT export needs tensorflow and ai-edge-litert",
    ),
    pytest.mark.skipif(keras.backend.backend() == "jax", reason="the worker path is checked in the torch run"),
]


def _data(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype("float32")


def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return build_model()


@pytest.fixture(scope="module")
def scale(model) -> float:
    """Largest |output| on the default sample, the unit for tolerances."""
    return float(np.abs(keras.ops.convert_to_numpy(model(_data(1, 0), training=False))).max())


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> ExportReport:
    """One float export shared by several tests, since conversion takes seconds."""
    return export_litert(model, tmp_path_factory.mktemp("litert") / "model.tflite")


def test_float_export_matches_keras(model, scale, exported):
    assert isinstance(exported, ExportReport)
    assert exported.format == "litert"
    assert exported.quantize is None
    assert exported.backend == keras.backend.backend()
    assert exported.bytes == os.path.getsize(exported.path)
    assert exported.max_abs_diff <= 1e-4 * scale
    assert (exported.batch_size, exported.inputs, exported.outputs) == (None, ("image",), ("predictions",))
    summary = str(exported)
    assert exported.path in summary and "\n" not in summary and "batch any" in summary


@pytest.mark.parametrize("batch", [1, 4])
def test_any_batch_with_named_tensors(model, scale, exported, batch):
    """The file takes any batch under the Keras model's tensor names, rechecked with the plain interpreter
    (`resize_tensor_input` to batch 4 failed in XNNPack when the export was fixed at batch 1)."""
    x = _data(batch, 1)
    interpreter = _interpreter(exported.path)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert tuple(inp["shape_signature"]) == (-1, *SHAPE)
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(interpreter.get_tensor(out["index"]), expected, rtol=0, atol=1e-4 * scale)
    assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["image"], "outputs": ["predictions"]}}
    runner = LiteRTModel(exported.path)
    np.testing.assert_allclose(runner({"image": x}), expected, rtol=0, atol=1e-4 * scale)
    assert runner(x, named=True).keys() == {"predictions"}


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="backend-independent: checked once, in the torch run")
def test_fixed_batch_size_and_file_mode(tmp_path):
    """`batch_size=` fixes the batch (other batches are refused by name); the file is created as `open()` would,
    0o666 less the umask, not mkstemp's private 0o600."""
    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, layers.Dense(2, name="y")(inputs))
    previous = os.umask(0o022)
    try:
        report = export_litert(model, tmp_path / "model.tflite", batch_size=2)
    finally:
        os.umask(previous)
    assert os.stat(report.path).st_mode & 0o777 == 0o644
    assert report.batch_size == 2 and "batch 2" in str(report)
    runner = LiteRTModel(report.path)
    x = _data(2, 0)[:, 0, 0, :]
    np.testing.assert_allclose(runner(x), keras.ops.convert_to_numpy(model(x)), atol=1e-5)
    with pytest.raises(ValueError, match=r"input 'x' has shape \(2, 3\), got \(4, 3\)"):
        runner(np.zeros((4, 3), "float32"))
    with pytest.raises(ValueError, match="batch_size must be None .* or a positive integer, got 0"):
        export_litert(model, tmp_path / "again.tflite", batch_size=0)


def test_only_builtin_ops(exported):
    from ai_edge_litert import schema_py_generated as schema

    builtins = {name for name in vars(schema.BuiltinOperator) if not name.startswith("_")}
    assert set(exported.ops) <= builtins - {"CUSTOM", "DELEGATE"}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "GELU", "SPLIT_V", "SOFTMAX"} <= set(exported.ops)
    assert list(exported.ops) == sorted(exported.ops)


@pytest.mark.parametrize("quantize", ["float16", "dynamic"])
def test_weight_quantization(model, scale, exported, tmp_path, quantize):
    report = export_litert(model, tmp_path / "model.tflite", quantize=quantize)
    assert report.quantize == quantize
    assert report.max_abs_diff <= 5e-2 * scale
    assert report.bytes < exported.bytes


def test_int8_full_integer(model, scale, tmp_path):
    report = export_litert(model, tmp_path / "model.tflite", quantize="int8", representative_data=_data(8, 2))
    assert report.quantize == "int8"
    # Softmax outputs of a random network: only a loose bound is meaningful.
    assert report.max_abs_diff <= 0.25 * scale
    (inp,) = _interpreter(report.path).get_input_details()
    assert inp["dtype"] == np.int8


def test_invalid_quantize(model, tmp_path):
    with pytest.raises(ValueError, match=r"quantize='int4'.*'float16', 'dynamic', 'int8'"):
        export_litert(model, tmp_path / "model.tflite", quantize="int4")


def test_int8_needs_representative_data(model, tmp_path):
    with pytest.raises(ValueError, match="needs `representative_data`"):
        export_litert(model, tmp_path / "model.tflite", quantize="int8")


def test_dynamic_spatial_dims(tmp_path):
    inputs = keras.Input((None, None, 3))
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, layers.Dense(2)(x))
    with pytest.raises(ValueError, match="fixed `input_shape`"):
        export_litert(model, tmp_path / "model.tflite")


def test_dynamic_dims_take_the_sample_shape(tmp_path):
    inputs = keras.Input((None, 3))  # a set of any size, as graph models take
    model = keras.Model(inputs, layers.Dense(2)(inputs))
    sample = _data(1, 0)[:, :5, 0, :]
    report = export_litert(model, tmp_path / "model.tflite", sample=sample)
    assert report.max_abs_diff <= 1e-5
    assert tuple(LiteRTModel(report.path).inputs[0]["shape_signature"]) == (-1, 5, 3)


def test_several_inputs_and_outputs(tmp_path):
    """Float and integer inputs, dict outputs: named by the inputs' names and the outputs' keys, fed in Keras'
    flat order (more than ten inputs, so that `f10` must not sort before `f2`)."""
    features = [keras.Input((4,), name=f"f{i}") for i in range(11)]
    ids = keras.Input((3,), dtype="int32", name="ids")
    embedded = ops.sum(layers.Embedding(10, 4)(ids), axis=1)
    total = layers.Add()([layers.Dense(4, name=f"d{i}")(f) for i, f in enumerate(features)])
    model = keras.Model([*features, ids], {"sum": total + embedded, "head": layers.Dense(2)(total)})
    rng = np.random.default_rng(0)
    sample = [rng.standard_normal((1, 4)).astype("float32") for _ in features] + [np.array([[1, 7, 3]])]
    report = export_litert(model, tmp_path / "model.tflite", sample=sample)
    assert report.max_abs_diff <= 1e-5
    assert report.inputs == (*(f"f{i}" for i in range(11)), "ids") and report.outputs == ("head", "sum")
    got = LiteRTModel(report.path)(sample)
    expected = model([*sample[:-1], sample[-1]])
    np.testing.assert_allclose(got["head"], keras.ops.convert_to_numpy(expected["head"]), atol=1e-5)
    np.testing.assert_allclose(got["sum"], keras.ops.convert_to_numpy(expected["sum"]), atol=1e-5)
    with pytest.raises(ValueError, match="int32 input"):
        export_litert(model, tmp_path / "again.tflite")
    with pytest.raises(ValueError, match="one float32 input"):
        export_litert(model, tmp_path / "again.tflite", quantize="int8", sample=sample)


def test_flex_op_fails_and_leaves_no_file(tmp_path):
    # Erfinv has no TFLite builtin kernel; only the Flex delegate could run it.
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, ops.erfinv(ops.tanh(layers.Dense(3)(inputs))))
    path = tmp_path / "model.tflite"
    with pytest.raises(RuntimeError, match="not TFLite builtins: tf.Erfinv"):
        export_litert(model, path)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []
