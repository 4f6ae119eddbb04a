"""Conversion in a TensorFlow-backend subprocess, for models built under JAX or PyTorch.

The TFLite converter and tf2onnx need a TensorFlow graph, so ``convert_in_tensorflow`` saves the model to a
``.keras`` file and runs ``python -m keras_hyper.export._worker ARGS.json`` with ``KERAS_BACKEND=tensorflow``.
ARGS.json holds the paths of the model, output, calibration data and result file, the format (``"litert"`` or
``"onnx"``) and its options (quantization, input shapes, batch size), and the modules and ``sys.path`` entries
needed to deserialize custom objects. On failure the error is written to the result file for the parent to raise.
"""

import importlib
import json
import os
import pathlib
import site
import subprocess
import sys
import tempfile
import traceback


def convert_in_tensorflow(model, out: str, fmt: str, options: dict) -> None:
    """Run ``keras_hyper.export.<fmt>.convert(model, out, **options)`` in a TensorFlow-backend subprocess on a
    saved copy of ``model``; ``options["calibration"]``, an array or None, travels as a ``.npy`` file.

    Raises:
        RuntimeError: With the worker's error where the conversion fails.
        ValueError: If the model uses custom objects defined in ``__main__``.
    """
    import numpy as np

    modules = _custom_modules(model)
    options = dict(options)
    calibration = options.pop("calibration", None)
    with tempfile.TemporaryDirectory() as tmp:
        model_path = os.path.join(tmp, "model.keras")
        model.save(model_path)
        calibration_path = None
        if calibration is not None:
            calibration_path = os.path.join(tmp, "calibration.npy")
            np.save(calibration_path, calibration)
        if options.get("shapes") is not None:
            options["shapes"] = [[int(d) for d in shape] for shape in options["shapes"]]
        args = {
            "model": model_path,
            "output": out,
            "format": fmt,
            "options": options,
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
        name = {"litert": "LiteRT", "onnx": "ONNX"}[fmt]
        raise RuntimeError(f"{name} export failed in the TensorFlow-backend worker: {error}")


def _custom_modules(model) -> list:
    """Return the modules defining the model's non-Keras objects.

    The worker imports them so that objects registered at import time (e.g.
    with ``keras.saving.register_keras_serializable``) deserialize there.

    Raises:
        ValueError: If some are defined in ``__main__``, which another
            process cannot import.
    """
    import keras

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
            "models for export; move them into an importable module."
        )
    return sorted(found)


def main(args_path: str) -> int:
    """Load the model described by ``args_path``, convert it, return an exit code."""
    with open(args_path) as f:
        args = json.load(f)
    try:
        # Appended, not prepended, so the worker's own packages win.
        sys.path.extend(p for p in args["sys_path"] if p not in sys.path)
        import keras_hyper  # noqa: F401  (registers our custom objects)

        for module in args["modules"]:
            importlib.import_module(module)

        import keras
        import numpy as np

        convert = importlib.import_module(f"keras_hyper.export.{args['format']}").convert
        model = keras.saving.load_model(args["model"], compile=False)
        options = dict(args["options"])
        if args["calibration"]:
            options["calibration"] = np.load(args["calibration"])
        convert(model, args["output"], **options)
    except Exception as e:
        traceback.print_exc()
        with open(args["result"], "w") as f:
            json.dump({"error": f"{type(e).__name__}: {e}"}, f)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
