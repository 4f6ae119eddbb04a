"""ONNX export through Keras' own ``model.export(format="onnx")``, with verification.

Keras 3.15 exports ONNX with ``tf2onnx`` under TensorFlow, ``jax2onnx`` under
JAX and ``torch.onnx`` under PyTorch. Two gaps are handled here:

* ``tf2onnx`` has no converter for ``Erfc``, which TensorFlow uses for exact
  GELU, and emits it as-is although ONNX has no such op; we rewrite it as
  ``1 - Erf(x)``.
* Under PyTorch, Keras cannot trace dynamic shapes, so the artifact has a
  fixed batch size of 1; elsewhere the batch axis stays dynamic.
"""

import contextlib
import copy
import importlib.util
import logging
import os
import warnings
from collections.abc import Iterator

import keras
import numpy as np

from keras_hyper.export._utils import atomic_target, input_shape, keras_output, make_sample
from keras_hyper.export.report import ExportReport

_ONE = "keras_hyper_erfc_one"


def export_onnx(model: keras.Model, path: str | os.PathLike, *, sample: np.ndarray | None = None) -> ExportReport:
    """Export a single-input model to ONNX and verify it with onnxruntime.

    The file is written atomically: a failed export leaves nothing at ``path``.

    Args:
        model: A built functional or Sequential model with float32 input.
        path: Destination ``.onnx`` file.
        sample: Batch-1 input to compare the artifact with Keras on; defaults
            to a seeded standard-normal array (which needs a static shape).

    Returns:
        An ``ExportReport``; ``max_abs_diff`` is measured on ``sample``.

    Raises:
        NotImplementedError: If the current backend cannot export ONNX here.
        ValueError: For a misshaped ``sample``, or a dynamic input shape
            where it cannot be handled.
        RuntimeError: If the backend's exporter fails or the artifact
            contains ops that ONNX does not define.
    """
    backend = keras.backend.backend()
    _check_backend(backend)
    # Keras traces PyTorch models with fixed shapes only.
    fixed = backend == "torch"
    shape = input_shape(model, static=fixed)
    x = make_sample(shape, sample)
    expected = keras_output(model, x)
    path = os.fspath(path)
    with atomic_target(path, ".onnx") as tmp:
        import onnx

        spec = keras.InputSpec(shape=(1 if fixed else None, *shape), dtype="float32")
        try:
            with _quiet_exporters():
                model.export(tmp, format="onnx", verbose=False, input_signature=[spec])
        except Exception as e:  # Each backend's converter raises its own types.
            raise RuntimeError(f"ONNX export under the {backend} backend failed: {e}") from e
        proto = onnx.load(tmp)
        if _replace_erfc(proto.graph):
            onnx.save(proto, tmp)
        ops = _checked_ops(proto)
        diff = float(np.max(np.abs(_run(proto, x) - expected)))
        size = os.path.getsize(tmp)
    return ExportReport(
        path=path,
        format="onnx",
        bytes=size,
        max_abs_diff=diff,
        quantize=None,
        ops=ops,
        backend=backend,
    )


def _check_backend(backend: str) -> None:
    """Raise ``NotImplementedError`` where Keras cannot export ONNX here."""
    if backend == "jax" and importlib.util.find_spec("jax2onnx") is None:
        raise NotImplementedError(
            "ONNX export under the JAX backend needs the `jax2onnx` package, "
            "which Keras 3.15 uses for it and which is not installed; install "
            "it or export under the TensorFlow or PyTorch backend."
        )
    if backend not in ("tensorflow", "jax", "torch"):
        raise NotImplementedError(
            f"Keras 3.15 cannot export ONNX under the {backend!r} backend; use TensorFlow, JAX or PyTorch."
        )


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence exporter chatter that is either handled by us or irrelevant.

    tf2onnx logs every Erfc node as unsupported although we rewrite them
    (truly unknown ops are reported by ``_checked_ops``); Keras' numpy-2 patch
    for tf2onnx warns about ``np.object``; and torch's tracer warns about
    Python control flow on static shapes, which Keras' own filters do not
    cover because they end before the export call.
    """
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*np\.object")
            warnings.filterwarnings("ignore", message=r".*might cause the trace to be incorrect")
            yield
    finally:
        logger.setLevel(level)


def _replace_erfc(graph) -> bool:
    """Rewrite ``Erfc(x)`` nodes as ``1 - Erf(x)``; return whether any were found.

    The constant is float32, the only dtype policy Keras exports ONNX with.
    """
    from onnx import helper, numpy_helper

    nodes, found = [], False
    for node in graph.node:
        if node.op_type != "Erfc" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        found = True
        erf = f"{node.output[0]}/erf"
        nodes += [
            helper.make_node("Erf", [node.input[0]], [erf], name=f"{node.name}/erf"),
            helper.make_node("Sub", [_ONE, erf], list(node.output), name=node.name),
        ]
    if found:
        graph.initializer.append(numpy_helper.from_array(np.array(1.0, "float32"), _ONE))
        # Copies first: kept nodes still belong to the field being cleared.
        nodes = [copy.deepcopy(node) for node in nodes]
        del graph.node[:]
        graph.node.extend(nodes)
    return found


def _checked_ops(proto) -> tuple[str, ...]:
    """Return the sorted op names of a model, failing on ops ONNX does not define."""
    import onnx

    default, nodes = ("", "ai.onnx"), proto.graph.node
    unknown = {n.op_type for n in nodes if n.domain in default and not onnx.defs.has(n.op_type)}
    if unknown:
        raise RuntimeError(f"The ONNX model contains ops that ONNX does not define: {', '.join(sorted(unknown))}.")
    return tuple(sorted({n.op_type if n.domain in default else f"{n.domain}.{n.op_type}" for n in nodes}))


def _run(proto, x: np.ndarray) -> np.ndarray:
    """Run a single-input model on ``x`` with onnxruntime's CPU provider."""
    import onnxruntime

    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]
