"""Tests for ``export_onnx``; they skip where the backend cannot export ONNX here."""

import importlib.util
import os

import keras
import numpy as np
import pytest
from keras import layers, ops

from keras_hyper.export import ExportReport, export_onnx

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="ONNX export needs onnx and onnxruntime",
)

SHAPE = (32, 32, 3)


@keras.saving.register_keras_serializable(package="test_onnx")
class Scale(layers.Layer):
    """Per-channel learnable scale (layer scale)."""

    def build(self, input_shape: tuple) -> None:
        self.gamma = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.gamma


def _block(x, dim: int, ratio: int):
    """InceptionNeXt-style block: split depthwise mixer, BN, exact-GELU MLP, scale."""
    g = dim // 4
    identity, square, wide, tall = ops.split(x, [dim - 3 * g, dim - 2 * g, dim - g], axis=-1)
    square = layers.DepthwiseConv2D(3, padding="same")(square)
    wide = layers.DepthwiseConv2D((1, 7), padding="same")(wide)
    tall = layers.DepthwiseConv2D((7, 1), padding="same")(tall)
    y = layers.Concatenate()([identity, square, wide, tall])
    y = layers.BatchNormalization()(y)
    y = layers.Conv2D(dim * ratio, 1)(y)
    y = layers.Activation("gelu")(y)  # Keras' "gelu" is the exact (erf) form.
    y = layers.Conv2D(dim, 1)(y)
    return layers.Add()([x, Scale()(y)])


def build_model(input_shape: tuple = SHAPE) -> keras.Model:
    """Build a ~10k-parameter classifier with random weights and BN statistics."""
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(16, 4, strides=4)(inputs)
    x = layers.BatchNormalization()(x)
    x = _block(x, 16, 4)
    x = layers.LayerNormalization()(x)
    x = layers.Conv2D(32, 2, strides=2)(x)
    x = _block(x, 32, 2)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.LayerNormalization()(x)
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(x))
    rng = np.random.default_rng(0)
    for w in model.weights:
        # Non-trivial moving statistics make BatchNorm folding matter.
        if w.path.endswith("moving_variance"):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        else:
            w.assign(rng.normal(0.0, 0.3, w.shape).astype("float32"))
    return model


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
