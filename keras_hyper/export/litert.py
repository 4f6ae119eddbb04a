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
import re
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence

import keras
import numpy as np

from keras_hyper.export._utils import atomic_target, input_specs, keras_outputs, make_samples
from keras_hyper.export.report import ExportReport

QUANTIZE_MODES = (None, "float16", "dynamic", "int8")


def export_litert(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    quantize: str | None = None,
    representative_data: Iterable[np.ndarray] | np.ndarray | None = None,
    sample: np.ndarray | Sequence[np.ndarray] | None = None,
) -> ExportReport:
    """Export a model to a LiteRT flatbuffer and verify it.

    The model is exported with batch size 1 and only builtin TFLite ops
    (never Flex/``SELECT_TF_OPS``). The file is written atomically: a failed
    export leaves nothing at ``path``.

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

    Returns:
        An ``ExportReport``; ``max_abs_diff`` is measured on ``sample``, over
        all outputs.

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
    expected = keras_outputs(model, xs)
    path = os.fspath(path)
    backend = keras.backend.backend()
    with atomic_target(path, ".tflite") as tmp:
        if backend == "tensorflow":
            convert(model, tmp, quantize, calibration, shapes)
        else:
            _convert_in_worker(model, tmp, quantize, calibration, shapes)
        with open(tmp, "rb") as f:
            content = f.read()
        ops = _builtin_ops(content)
        got = LiteRTModel(content=content)(xs if len(xs) > 1 else xs[0])
        got = got if len(expected) > 1 else [got]
        if len(got) != len(expected):
            raise RuntimeError(f"The LiteRT model has {len(got)} outputs where the Keras model has {len(expected)}.")
        diff = max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected))
    return ExportReport(
        path=path,
        format="litert",
        bytes=len(content),
        max_abs_diff=diff,
        quantize=quantize,
        ops=ops,
        backend=backend,
    )


def convert(
    model: keras.Model,
    out: str,
    quantize: str | None,
    calibration: np.ndarray | None,
    shapes: Sequence[Sequence[int]] | None = None,
) -> None:
    """Convert ``model`` to a ``.tflite`` file at ``out`` (TensorFlow backend only), with batch 1 and the input
    shapes (without batch axis, one per input in flat order) given by ``shapes``, default the model's own.

    Raises:
        RuntimeError: If the converter fails; ops that are not TFLite
            builtins are named in the message.
    """
    import tensorflow as tf

    flat = keras.tree.flatten(model.input)
    shapes = [t.shape[1:] for t in flat] if shapes is None else shapes
    # The names `_ordered` reads back: TensorFlow's own for positional inputs and list outputs.
    specs = [
        tf.TensorSpec((1, *shape), t.dtype, name="args_0" + (f"_{i}" if i else ""))
        for i, (t, shape) in enumerate(zip(flat, shapes))
    ]

    @tf.function
    def serve(*args):
        y = model(keras.tree.pack_sequence_as(model.input, list(args)), training=False)
        return {f"output_{i}": t for i, t in enumerate(keras.tree.flatten(y))}

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
    pathlib.Path(out).write_bytes(content)


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


def _convert_in_worker(
    model: keras.Model, out: str, quantize: str | None, calibration: np.ndarray | None, shapes: list
) -> None:
    """Run ``convert`` in a TensorFlow-backend subprocess on a saved copy of the model."""
    modules = _custom_modules(model)
    with tempfile.TemporaryDirectory() as tmp:
        model_path = os.path.join(tmp, "model.keras")
        model.save(model_path)
        calibration_path = None
        if calibration is not None:
            calibration_path = os.path.join(tmp, "calibration.npy")
            np.save(calibration_path, calibration)
        args = {
            "model": model_path,
            "output": out,
            "quantize": quantize,
            "shapes": [[int(d) for d in shape] for shape in shapes],
            "calibration": calibration_path,
            "modules": modules,
            # Lets the worker import custom-object modules found via our path;
            # "" (the working directory) is made absolute.
            "sys_path": [os.path.abspath(p) for p in sys.path],
            "result": os.path.join(tmp, "result.json"),
        }
        args_path = os.path.join(tmp, "args.json")
        with open(args_path, "w") as f:
            json.dump(args, f)
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # `-m` needs keras_hyper importable before the worker reads sys_path,
        # but a site-packages root must not be put ahead of the stdlib.
        root = os.path.realpath(pathlib.Path(__file__).parents[2])
        sites = [*site.getsitepackages(), site.getusersitepackages()]
        if root not in map(os.path.realpath, sites):
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        proc = subprocess.run(
            [sys.executable, "-m", "keras_hyper.export._worker", args_path],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0:
            return
        try:
            with open(args["result"]) as f:
                error = json.load(f)["error"]
        except FileNotFoundError:
            # The worker died before it could report (e.g. a crash on import).
            error = f"exit code {proc.returncode}; stderr:\n{proc.stderr[-4000:]}"
        raise RuntimeError(f"LiteRT export failed in the TensorFlow-backend worker: {error}")


def _custom_modules(model: keras.Model) -> list[str]:
    """Return the modules defining the model's non-Keras objects.

    The worker imports them so that objects registered at import time (e.g.
    with ``keras.saving.register_keras_serializable``) deserialize there.

    Raises:
        ValueError: If some are defined in ``__main__``, which another
            process cannot import.
    """
    found, in_main = set(), set()
    stack: list = [keras.saving.serialize_keras_object(model)]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            module = item.get("module", "keras")
            # Keras records objects from __main__ with module None.
            if module in (None, "__main__"):
                in_main.add(item.get("registered_name") or item.get("class_name"))
            elif isinstance(module, str) and module.split(".")[0] not in ("keras", "builtins"):
                found.add(module)
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    if in_main:
        raise ValueError(
            f"{', '.join(sorted(map(str, in_main)))} defined in __main__ cannot be "
            f"loaded by the TensorFlow process that converts {keras.backend.backend()} "
            "models to LiteRT; move them into an importable module."
        )
    return sorted(found)


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
    """A `.tflite` file ready to run with ai_edge_litert: `LiteRTModel(path)(x) -> y` for batch-1 inputs.

    One input and one output: an array in, an array out. Several inputs are passed as a sequence in the Keras
    model's input order; several outputs come back as a list in `keras.tree.flatten` order of the Keras outputs
    (a dict's sorted keys). Integer (int8) quantized inputs and outputs are quantized and dequantized with the
    tensors' own scale and zero point, so callers always pass and get float arrays. The interpreter is built once
    and reused.
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
        self.input_names, self.output_names = _ordered(inputs), _ordered(outputs)
        self.inputs = [inputs[name] for name in self.input_names]
        self.outputs = [outputs[name] for name in self.output_names]

    def __call__(self, x):
        xs = [x] if len(self.inputs) == 1 and not isinstance(x, (list, tuple)) else list(x)
        if len(xs) != len(self.inputs):
            raise ValueError(f"The LiteRT model takes {len(self.inputs)} inputs, got {len(xs)}.")
        feed = {}
        for name, inp, value in zip(self.input_names, self.inputs, xs):
            value = np.asarray(value)
            if tuple(value.shape) != tuple(inp["shape"]):
                raise ValueError(
                    f"The LiteRT model's input {name!r} has shape {tuple(inp['shape'])}, got {tuple(value.shape)}."
                )
            scale, zero = inp["quantization"]
            if np.issubdtype(inp["dtype"], np.integer) and scale:
                info = np.iinfo(inp["dtype"])
                value = np.clip(np.round(value / scale + zero), info.min, info.max)
            feed[name] = value.astype(inp["dtype"])
        results = self.runner(**feed)
        ys = []
        for name, out in zip(self.output_names, self.outputs):
            y = results[name]
            scale, zero = out["quantization"]
            if np.issubdtype(out["dtype"], np.integer) and scale:
                y = (y.astype("float32") - zero) * scale
            ys.append(y)
        return ys[0] if len(ys) == 1 else ys


def _ordered(details: dict) -> list[str]:
    """Signature tensor names in the Keras model's flat order: TensorFlow names positional inputs `args_0`,
    `args_0_1`, ... and list outputs `output_0`, `output_1`, ... (numeric order, not string order); dict inputs and
    outputs keep their keys, which `keras.tree.flatten` sorts."""

    def index(name):
        found = re.fullmatch(r"(?:args_0|output)(?:_(\d+))?", name)
        return int(found.group(1) or 0) if found else None

    names = list(details)
    if all(index(name) is not None for name in names):
        return sorted(names, key=index)
    return sorted(names)


def load_litert(path: str | os.PathLike) -> LiteRTModel:
    """Opens a `.tflite` file for inference with ai_edge_litert."""
    return LiteRTModel(path)
