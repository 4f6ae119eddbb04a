"""ONNX export through ``tf2onnx``, with verification.

The model is traced once into a ``tf.function`` with named input specs and a dict of named outputs, and handed to
``tf2onnx`` (Keras' own ``model.export(format="onnx")`` names outputs ``output_0``, and under PyTorch traces with
TorchScript, which cannot keep the batch axis dynamic: the artifact was fixed at batch 1). Under JAX and PyTorch the
conversion runs in a TensorFlow-backend subprocess (``keras_hyper.export._worker``), as LiteRT's does, so every
backend gives the same file. One gap of ``tf2onnx`` is handled here: it has no converter for ``Erfc``, which
TensorFlow uses for exact GELU, and emits it as-is although ONNX has no such op; we rewrite it as ``1 - Erf(x)``.
"""

import contextlib
import copy
import importlib.util
import logging
import os
import warnings
from collections.abc import Iterator, Sequence

import keras
import numpy as np

from keras_hyper.export import _utils
from keras_hyper.export._worker import convert_in_tensorflow
from keras_hyper.export.report import ExportReport

_ONE = "keras_hyper_erfc_one"


def export_onnx(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    sample: np.ndarray | Sequence[np.ndarray] | None = None,
    batch_size: int | None = None,
) -> ExportReport:
    """Export a model to ONNX and verify it with onnxruntime.

    The graph takes any batch size unless ``batch_size`` fixes it, and its inputs and outputs are named as in Keras
    (inputs by their ``keras.Input`` names, outputs by the layers that produce them or their dict keys). The file is
    written atomically, with the permissions the umask gives new files: a failed export leaves nothing at ``path``.
    Works from every backend (under JAX and PyTorch through a TensorFlow-backend subprocess).

    Args:
        model: A built functional or Sequential model; several inputs (float or integer) and outputs are fine.
            Dimensions other than the batch that are ``None`` stay dynamic in the graph.
        path: Destination ``.onnx`` file.
        sample: Batch-1 input to compare the artifact with Keras on (a sequence of arrays, one per input in
            ``model.inputs`` order, for several inputs); defaults to seeded standard-normal arrays, which need
            static shapes and float inputs.
        batch_size: ``None`` (default): any batch size (verified at batch 1 and 4); an integer fixes it.

    Returns:
        An ``ExportReport``; ``max_abs_diff`` is measured on ``sample`` (and a batch of 4 made from it, with a
        dynamic batch), over all outputs.

    Raises:
        ImportError: If tensorflow or tf2onnx (the ``export`` extra) is missing.
        ValueError: For a misshaped ``sample``, or a dynamic input shape without one.
        RuntimeError: If the converter fails or the artifact contains ops that ONNX does not define.

    Example:
        report = export_onnx(model, "model.onnx")
        session = onnxruntime.InferenceSession(report.path)
        session.run(None, {"input": images})  # any batch
    """
    _utils.check_batch_size(batch_size)
    needed = ("tensorflow", "tf2onnx", "onnx", "onnxruntime")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"ONNX export needs {', '.join(missing)} (converted with tf2onnx from a TensorFlow graph): "
            'pip install "keras-hyper[export]".'
        )
    xs = _utils.make_samples(_utils.input_specs(model, static=sample is None), sample)
    path = os.fspath(path)
    backend = keras.backend.backend()
    with _utils.atomic_target(path, ".onnx") as tmp:
        import onnx

        if backend == "tensorflow":
            convert(model, tmp, batch_size=batch_size)
        else:
            convert_in_tensorflow(model, tmp, "onnx", dict(batch_size=batch_size))
        proto = onnx.load(tmp)
        ops = _checked_ops(proto)
        session = _session(proto)
        names = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]

        def run(xs):
            return dict(zip(outputs, session.run(outputs, dict(zip(names, xs)))))

        diff = _utils.max_abs_diff(model, _utils.check_batches(xs, batch_size), run)
        size = os.path.getsize(tmp)
    return ExportReport(
        path=path,
        format="onnx",
        bytes=size,
        max_abs_diff=diff,
        quantize=None,
        ops=ops,
        backend=backend,
        batch_size=batch_size,
        inputs=tuple(names),
        outputs=tuple(outputs),
    )


def convert(model: keras.Model, out: str, batch_size: int | None = None) -> None:
    """Convert ``model`` to an ONNX file at ``out`` (TensorFlow backend only): batch ``batch_size`` (None: any, the
    dimension named "batch"), tensors named by `io_names`, ``Erfc`` rewritten.

    Raises:
        RuntimeError: If tf2onnx fails.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    in_names, out_names = _utils.io_names(model)
    flat = keras.tree.flatten(model.input)
    specs = [tf.TensorSpec((batch_size, *t.shape[1:]), t.dtype, name=name) for t, name in zip(flat, in_names)]

    @tf.function
    def serve(*args):
        y = model(keras.tree.pack_sequence_as(model.input, list(args)), training=False)
        return dict(zip(out_names, keras.tree.flatten(y)))

    try:
        with _quiet_exporters():
            patch_tf2onnx()  # Keras' fix of tf2onnx for numpy 2, as its own export applies it
            tf2onnx.convert.from_function(serve, specs, output_path=out)
    except Exception as e:  # tf2onnx raises assorted types
        raise RuntimeError(f"ONNX conversion failed: {e}") from e
    proto = onnx.load(out)
    _replace_erfc(proto.graph)
    # tf2onnx lists a dict's outputs sorted by name; the graph lists them (and the inputs) in the Keras order.
    for field, names in ((proto.graph.input, in_names), (proto.graph.output, out_names)):
        by_name = {value.name: copy.deepcopy(value) for value in field}
        if set(by_name) >= set(names):
            ordered = [by_name[name] for name in names] + [v for n, v in by_name.items() if n not in names]
            del field[:]
            field.extend(ordered)
    if batch_size is None:
        # tf2onnx names unknown dimensions `unk__<n>`; the batch axis reads better as what it is.
        for value in [*proto.graph.input, *proto.graph.output]:
            dims = value.type.tensor_type.shape.dim
            if dims and not dims[0].HasField("dim_value"):
                dims[0].dim_param = "batch"
    onnx.save(proto, out)


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence exporter chatter that is either handled by us or irrelevant.

    tf2onnx logs every Erfc node as unsupported although we rewrite them
    (truly unknown ops are reported by ``_checked_ops``), and Keras' numpy-2
    patch for tf2onnx warns about ``np.object``.
    """
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*np\.object")
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


def _session(proto):
    """An onnxruntime session on the CPU provider."""
    import onnxruntime

    return onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
