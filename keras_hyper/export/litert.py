"""LiteRT (``.tflite``) export restricted to builtin TFLite ops, with verification.

Conversion traces the model once into a ``tf.function`` and hands that to
``tf.lite.TFLiteConverter.from_concrete_functions``, with the op set pinned to
builtins and the quantization set up (Keras' own ``model.export(format="litert")``
goes through a SavedModel written and read back, 4x slower for the same file).
It only runs under the TensorFlow backend, so under JAX and PyTorch the model
is saved to a ``.keras`` file and converted by ``keras_hyper.export._worker``
in a TensorFlow-backend subprocess.

Full-integer (``"int8"``) models get int8 input and output tensors; the
verification quantizes the sample and dequantizes the output with the
tensors' own scale and zero point, so ``max_abs_diff`` is in float units.
"""

import json
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence

import keras
import numpy as np

from keras_hyper.export._utils import (
    atomic_target,
    check_batch_size,
    check_batches,
    input_specs,
    io_names,
    make_samples,
    max_abs_diff,
)
from keras_hyper.export._worker import convert_in_tensorflow
from keras_hyper.export.report import ExportReport

QUANTIZE_MODES = (None, "float16", "dynamic", "int8")
# The flatbuffer metadata entry that records the Keras model's input and output names in its flat order: the
# signature lists them sorted and tensor indices follow no fixed order, so a sequence of inputs could not
# otherwise be fed in the Keras model's order.
IO_ORDER = "keras_hyper_io_order"


def export_litert(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    quantize: str | None = None,
    representative_data: Iterable[np.ndarray] | np.ndarray | None = None,
    sample: np.ndarray | Sequence[np.ndarray] | None = None,
    batch_size: int | None = None,
) -> ExportReport:
    """Export a model to a LiteRT flatbuffer and verify it.

    The model is exported with only builtin TFLite ops (never Flex/``SELECT_TF_OPS``), any batch size unless
    ``batch_size`` fixes it, and its tensors named as in Keras: inputs by their ``keras.Input`` names, outputs by
    the layers that produce them (``"predictions"``) or their dict keys. The file is written atomically, with the
    permissions the umask gives new files: a failed export leaves nothing at ``path``.

    Args:
        model: A built functional or Sequential model whose input shapes are
            static apart from the batch axis; several inputs (float or
            integer) and outputs are fine. Works from any Keras backend.
        path: Destination ``.tflite`` file.
        quantize: ``None`` (float32), ``"float16"`` (float16 weights),
            ``"dynamic"`` (dynamic-range int8 weights) or ``"int8"`` (full
            integer, int8 input and output; single-input models).
        representative_data: For ``"int8"`` only: an array or iterable of
            input batches used to calibrate activation ranges.
        sample: Batch-1 input to compare the artifact with Keras on (a
            sequence of arrays, one per input in ``model.inputs`` order, for
            several inputs); defaults to seeded standard-normal arrays, which
            integer inputs cannot have: pass it for those.
        batch_size: ``None`` (default): the file takes any batch size (verified at batch 1 and 4); an integer fixes
            it (verified at that batch), which some accelerator delegates need.

    Returns:
        An ``ExportReport``; ``max_abs_diff`` is measured on ``sample`` (and a batch of 4 made from it, with a
        dynamic batch), over all outputs.

    Example:
        report = export_litert(model, "model.tflite")
        LiteRTModel(report.path)(images)  # any batch: (N, H, W, 3) -> (N, num_classes)

    Raises:
        ValueError: For an unknown ``quantize``, missing or misshaped
            ``representative_data``, a dynamic input shape without ``sample``
            (with one, the export takes the sample's shape), or (outside the
            TensorFlow backend) custom objects defined in ``__main__``.
        RuntimeError: If conversion fails, e.g. because the model needs ops
            that are not TFLite builtins (they are named in the message).
    """
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"Unsupported quantize={quantize!r}; use one of {', '.join(map(repr, QUANTIZE_MODES))}.")
    check_batch_size(batch_size)
    # Dynamic dimensions (a graph's vertex count, ...) are fixed to the sample's: LiteRT needs static shapes.
    specs = input_specs(model, static=sample is None)
    if quantize == "int8" and (len(specs) != 1 or specs[0][1] != "float32"):
        raise ValueError(
            f"quantize='int8' takes models with one float32 input; this one has inputs {specs}. Use "
            "quantize='dynamic' or 'float16'."
        )
    calibration = _calibration(representative_data, quantize, specs[0][0])
    xs = make_samples(specs, sample)
    shapes = [x.shape[1:] for x in xs]
    path = os.fspath(path)
    backend = keras.backend.backend()
    options = dict(quantize=quantize, calibration=calibration, shapes=shapes, batch_size=batch_size)
    with atomic_target(path, ".tflite") as tmp:
        if backend == "tensorflow":
            convert(model, tmp, **options)
        else:
            convert_in_tensorflow(model, tmp, "litert", options)
        with open(tmp, "rb") as f:
            content = f.read()
        ops = _builtin_ops(content)
        try:
            artifact = LiteRTModel(content=content)
        except ValueError as e:
            if batch_size is not None:
                raise
            # an op the converter lowered with the batch left as -1 in a static shape
            raise RuntimeError(
                f"The converter could not keep the batch dynamic for this model ({e}); pass batch_size=1."
            ) from e
        diff = max_abs_diff(model, check_batches(xs, batch_size), lambda xs: artifact(xs, named=True))
    return ExportReport(
        path=path,
        format="litert",
        bytes=len(content),
        max_abs_diff=diff,
        quantize=quantize,
        ops=ops,
        backend=backend,
        batch_size=batch_size,
        inputs=tuple(artifact.input_names),
        outputs=tuple(artifact.output_names),
    )


def convert(
    model: keras.Model,
    out: str,
    quantize: str | None = None,
    calibration: np.ndarray | None = None,
    shapes: Sequence[Sequence[int]] | None = None,
    batch_size: int | None = None,
) -> None:
    """Convert ``model`` to a ``.tflite`` file at ``out`` (TensorFlow backend only), with the batch size
    ``batch_size`` (None: any) and the input shapes (without batch axis, one per input in flat order) given by
    ``shapes``, default the model's own; tensors named by `io_names`.

    Raises:
        RuntimeError: If the converter fails; ops that are not TFLite
            builtins are named in the message.
    """
    import tensorflow as tf

    flat = keras.tree.flatten(model.input)
    shapes = [t.shape[1:] for t in flat] if shapes is None else shapes
    in_names, out_names = io_names(model)
    # A spec's name becomes the signature's input name; the returned dict's keys its output names.
    specs = [tf.TensorSpec((batch_size, *shape), t.dtype, name=name) for t, shape, name in zip(flat, shapes, in_names)]

    @tf.function
    def serve(*args):
        y = model(keras.tree.pack_sequence_as(model.input, list(args)), training=False)
        return dict(zip(out_names, keras.tree.flatten(y)))

    # One trace converted directly. Keras' `model.export(format="litert")` writes a SavedModel (tracing the model
    # four times), loads it back twice and converts that: 4x slower for the same flatbuffer (OverLoCK's tiny model
    # 150 -> 39 s). The converter freezes the variables it finds through the trackable object.
    holder = tf.Module()
    holder.model_variables = [v.value for v in model.variables]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function(*specs)], holder)
    # Only builtin ops: an op that would need the Flex delegate (SELECT_TF_OPS) is a conversion error.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        # The int8-only op set makes an op without an int8 kernel an error
        # instead of a silent float fallback.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: ([calibration[i : i + 1]] for i in range(len(calibration)))
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        content = converter.convert()
    except Exception as e:  # TF's ConverterError lives in a private module.
        unsupported = sorted({err.operator.name for err in getattr(e, "errors", ()) if err.operator.name})
        if unsupported:
            raise RuntimeError(
                "LiteRT conversion needs ops that are not TFLite builtins: "
                f"{', '.join(unsupported)}. Flex (SELECT_TF_OPS) and custom "
                "ops are not allowed; replace them in the model."
            ) from e
        raise RuntimeError(f"LiteRT conversion failed: {e}") from e
    pathlib.Path(out).write_bytes(_with_io_order(content, in_names, out_names))


def _with_io_order(content: bytes, in_names: list, out_names: list) -> bytes:
    """The flatbuffer `content` with an `IO_ORDER` metadata entry (JSON `{"inputs": [...], "outputs": [...]}`)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(content, 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps({"inputs": in_names, "outputs": out_names}).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = IO_ORDER, len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _io_order(content: bytes) -> dict:
    """The `IO_ORDER` entry of a flatbuffer, or {} (a file from another exporter)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    for i in range(model.MetadataLength()):
        if model.Metadata(i).Name().decode() == IO_ORDER:
            return json.loads(model.Buffers(model.Metadata(i).Buffer()).DataAsNumpy().tobytes())
    return {}


def _calibration(
    data: Iterable[np.ndarray] | np.ndarray | None,
    quantize: str | None,
    shape: tuple[int, ...],
) -> np.ndarray | None:
    """Stack ``representative_data`` into one float32 array of samples."""
    if quantize != "int8":
        if data is not None:
            raise ValueError("`representative_data` is only used with quantize='int8'.")
        return None
    if data is None:
        raise ValueError(
            "quantize='int8' needs `representative_data`: an array or iterable "
            f"of input batches of shape (batch, {', '.join(map(str, shape))}) "
            "used to calibrate activation ranges."
        )
    batches = []
    for batch in data:
        batch = np.asarray(batch, dtype="float32")
        # Iterating an array of samples yields single samples, not batches.
        if batch.shape == shape:
            batch = batch[None]
        if batch.shape[1:] != shape:
            raise ValueError(
                f"`representative_data` batches must have shape (batch, "
                f"{', '.join(map(str, shape))}); got {batch.shape}."
            )
        batches.append(batch)
    if not batches:
        raise ValueError("`representative_data` is empty.")
    return np.concatenate(batches)


def _builtin_ops(content: bytes) -> tuple[str, ...]:
    """Return the sorted op names of a flatbuffer, failing on custom/Flex ops."""
    from ai_edge_litert import schema_py_generated as schema

    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    model = schema.Model.GetRootAs(content, 0)
    builtin, custom = set(), set()
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            code = model.OperatorCodes(subgraph.Operators(o).OpcodeIndex())
            # Codes above 127 only fit the newer field; the old one saturates.
            op = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if op == schema.BuiltinOperator.CUSTOM:
                custom.add(code.CustomCode().decode())
            else:
                builtin.add(names[op])
    if custom:
        raise RuntimeError(f"The LiteRT model contains non-builtin ops: {', '.join(sorted(custom))}.")
    return tuple(sorted(builtin))


class LiteRTModel:
    """A `.tflite` file ready to run with ai_edge_litert: `LiteRTModel(path)(x) -> y`.

    Inputs: an array (one input), a sequence in the Keras model's input order, or a dict by input name
    (`input_names`); any batch size where the file was exported with a dynamic batch (the default), else its own.
    Outputs: an array (one output) or a dict by output name (`output_names`, the Keras output layers' names).
    Integer (int8) quantized inputs and outputs are quantized and dequantized with the tensors' own scale and zero
    point, so callers always pass and get float arrays. The interpreter is built once and reused.

    Example:
        runner = LiteRTModel("model.tflite")
        probs = runner(images)  # (N, H, W, 3) -> (N, num_classes)
    """

    def __init__(self, path: str | os.PathLike | None = None, *, content: bytes | None = None):
        from ai_edge_litert.interpreter import Interpreter

        if (path is None) == (content is None):
            raise ValueError("LiteRTModel takes exactly one of a path or the flatbuffer content.")
        if content is None:
            content = pathlib.Path(path).read_bytes()
        self.interpreter = Interpreter(model_content=content)
        (key,) = self.interpreter.get_signature_list()
        self.runner = self.interpreter.get_signature_runner(key)
        inputs, outputs = self.runner.get_input_details(), self.runner.get_output_details()
        # The Keras order where export_litert recorded it, else the signature's (sorted names).
        order = _io_order(content)
        self.input_names = order.get("inputs", sorted(inputs))
        self.output_names = order.get("outputs", sorted(outputs))
        self.inputs = [inputs[name] for name in self.input_names]
        self.outputs = [outputs[name] for name in self.output_names]

    def __call__(self, x, *, named: bool = False):
        """Run the model; `named=True` returns a dict by output name even for a single output."""
        if isinstance(x, Mapping):
            unknown = sorted(set(x) - set(self.input_names))
            missing = sorted(set(self.input_names) - set(x))
            if unknown or missing:
                raise ValueError(
                    f"The LiteRT model's inputs are {self.input_names}; got unknown {unknown}, missing {missing}."
                )
            xs = [x[name] for name in self.input_names]
        else:
            xs = [x] if len(self.inputs) == 1 and not isinstance(x, (list, tuple)) else list(x)
        if len(xs) != len(self.inputs):
            raise ValueError(f"The LiteRT model takes {len(self.inputs)} inputs ({self.input_names}), got {len(xs)}.")
        feed = {}
        for name, inp, value in zip(self.input_names, self.inputs, xs):
            value = np.asarray(value)
            # -1 in the signature: any size (the batch axis, unless the export fixed it).
            want = tuple(int(d) for d in inp.get("shape_signature", inp["shape"]))
            if value.ndim != len(want) or any(w != -1 and g != w for g, w in zip(value.shape, want)):
                shown = tuple(None if w == -1 else w for w in want)
                raise ValueError(f"The LiteRT model's input {name!r} has shape {shown}, got {tuple(value.shape)}.")
            scale, zero = inp["quantization"]
            if np.issubdtype(inp["dtype"], np.integer) and scale:
                info = np.iinfo(inp["dtype"])
                value = np.clip(np.round(value / scale + zero), info.min, info.max)
            feed[name] = value.astype(inp["dtype"])
        results = self.runner(**feed)
        ys = {}
        for name, out in zip(self.output_names, self.outputs):
            y = results[name]
            scale, zero = out["quantization"]
            if np.issubdtype(out["dtype"], np.integer) and scale:
                y = (y.astype("float32") - zero) * scale
            ys[name] = y
        return ys if named or len(ys) > 1 else next(iter(ys.values()))


def load_litert(path: str | os.PathLike) -> LiteRTModel:
    """Opens a `.tflite` file for inference with ai_edge_litert."""
    return LiteRTModel(path)
