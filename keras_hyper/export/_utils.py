"""Helpers shared by the LiteRT and ONNX exporters."""

import contextlib
import os
import secrets
from collections.abc import Iterator

import keras
import numpy as np


def input_specs(model: keras.Model, *, static: bool) -> list[tuple[tuple[int | None, ...], str]]:
    """Return `(shape without batch axis, dtype)` of each model input, in `keras.tree.flatten(model.input)` order.

    Raises:
        ValueError: If the model has no symbolic inputs, or if ``static`` is set and a dimension is ``None``.
    """
    if not getattr(model, "inputs", None):
        raise ValueError(
            f"Export needs a functional or Sequential model; got {type(model).__name__} {getattr(model, 'name', '')!r}."
        )
    specs = [(tuple(t.shape[1:]), str(t.dtype)) for t in keras.tree.flatten(model.input)]
    for shape, _ in specs:
        if static and None in shape:
            raise ValueError(
                f"The model input shape {(None, *shape)} has dynamic dimensions, but this export needs a static "
                "shape (apart from the batch axis). Build the model with a fixed `input_shape`, e.g. "
                "`input_shape=(224, 224, 3)`."
            )
    return specs


def make_samples(specs: list, sample) -> list[np.ndarray]:
    """Return the batch-1 inputs used to compare an artifact with Keras, one per entry of `specs`.

    `sample` is one array (single-input models) or a sequence of arrays in `specs` order; without it, float inputs
    get seeded standard-normal arrays (reproducible reports), and integer inputs (ids, indices) must be given.
    """
    if sample is None:
        for shape, dtype in specs:
            if not np.issubdtype(np.dtype(dtype), np.floating):
                raise ValueError(
                    f"The model has a {dtype} input of shape {(None, *shape)}; pass `sample=` (batch-1 arrays, one "
                    "per input) to verify the export with valid values."
                )
        return [_float_sample(shape, None) for shape, _ in specs]
    samples = [sample] if len(specs) == 1 and not isinstance(sample, (list, tuple)) else list(sample)
    if len(samples) != len(specs):
        raise ValueError(f"`sample` must hold {len(specs)} arrays, one per model input; got {len(samples)}.")
    out = []
    for (shape, dtype), x in zip(specs, samples):
        x = np.asarray(x)
        if np.issubdtype(np.dtype(dtype), np.floating):
            x = _float_sample(shape, x)
        else:
            expected = (1, *shape)
            if x.ndim != len(expected) or any(w is not None and g != w for g, w in zip(x.shape, expected)):
                raise ValueError(f"`sample` inputs must have shape {expected} (batch 1); got {x.shape}.")
            x = x.astype(dtype)
        out.append(x)
    return out


def keras_outputs(model: keras.Model, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Run the model in inference mode on `xs` (flat, one per input) and return its outputs, flattened (the order
    of `io_names`)."""
    inputs = keras.tree.pack_sequence_as(model.input, xs)
    return [keras.ops.convert_to_numpy(y) for y in keras.tree.flatten(model(inputs, training=False))]


def _float_sample(shape: tuple[int | None, ...], sample: np.ndarray | None) -> np.ndarray:
    """Return the batch-1 float32 input used to compare an artifact with Keras.

    Without ``sample``, a seeded standard-normal array keeps reports
    reproducible between runs and backends.
    """
    if sample is None:
        if None in shape:
            raise ValueError(
                f"The model input shape {(None, *shape)} has dynamic "
                "dimensions; pass `sample=` (a batch-1 array) to verify the "
                "export with."
            )
        return np.random.default_rng(0).standard_normal((1, *shape)).astype("float32")
    sample = np.asarray(sample, dtype="float32")
    expected = (1, *shape)
    if sample.ndim != len(expected) or any(
        want is not None and got != want for got, want in zip(sample.shape, expected)
    ):
        raise ValueError(f"`sample` must have shape {expected} (batch 1); got {sample.shape}.")
    return sample


@contextlib.contextmanager
def atomic_target(path: str, suffix: str) -> Iterator[str]:
    """Yield a temporary file next to ``path``, moved onto it only on success.

    The temporary file lives in the same directory so that ``os.replace`` is atomic; if the block raises, it is
    deleted and ``path`` is left untouched. It is created with mode 0o666 less the umask, as `open()` creates
    files (`tempfile.mkstemp`'s private 0o600 made every export unreadable to the user's group), and the exporters
    write into it, so the final file has the mode any other file the user writes would have.
    """
    directory = os.path.dirname(os.path.abspath(path))
    while True:
        tmp = os.path.join(directory, f".tmp-{secrets.token_hex(8)}{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def io_names(model: keras.Model) -> tuple[list[str], list[str]]:
    """`(input names, output names)` of a model in `keras.tree.flatten` order, the names its exported tensors get.

    A dict input or output is named by its keys; otherwise an input by its `keras.Input(name=...)` and an output by
    the layer that produces it (`model.output_names`: "predictions" for a zoo classifier). A name used twice (two
    outputs of one layer, an output named like an input) gets a `_<index>` suffix, so every name is unique.
    """
    inputs, outputs = keras.tree.flatten(model.input), keras.tree.flatten(model.output)
    in_names = sorted(model.input) if isinstance(model.input, dict) else [t.name for t in inputs]
    if isinstance(model.output, dict):
        out_names = sorted(model.output)
    else:
        out_names = list(getattr(model, "output_names", None) or [])
        if len(out_names) != len(outputs):
            out_names = [f"output_{i}" for i in range(len(outputs))]
    names, seen = [], set()
    for i, name in enumerate([*in_names, *out_names]):
        name = str(name) if name and name not in seen else f"{name or 'tensor'}_{i}"
        seen.add(name)
        names.append(name)
    return names[: len(in_names)], names[len(in_names) :]


def check_batch_size(batch_size: int | None) -> None:
    """Reject a `batch_size` that is neither None (any batch) nor a positive integer."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None (any batch size) or a positive integer, got {batch_size!r}.")


def check_batches(xs: list[np.ndarray], batch_size: int | None) -> list[list[np.ndarray]]:
    """The input batches an export is verified on: the batch-1 sample and a batch of 4 made from it for a dynamic
    batch (a layer that mixes the batch with another axis, or an artifact fixed at batch 1, shows there), or one
    batch of `batch_size` rows for a fixed one.

    Row k of a float input is the sample scaled by 2**-k (valid wherever the sample is, e.g. a 0/1 incidence
    matrix, yet different per row); integer inputs (ids, indices) repeat the sample, the only valid values known.
    """

    def rows(n):
        scaled = [[x * np.asarray(2.0**-k, x.dtype) for k in range(n)] for x in xs]
        return [np.concatenate(s if np.issubdtype(x.dtype, np.floating) else [x] * n) for x, s in zip(xs, scaled)]

    if batch_size is None:
        return [xs, rows(4)]
    return [xs] if batch_size == 1 else [rows(batch_size)]


def max_abs_diff(model: keras.Model, batches: list[list[np.ndarray]], run) -> float:
    """Largest |artifact - Keras| over `batches` (flat input lists), where `run(xs)` returns the artifact's outputs
    as `{name: array}` with the names of `io_names(model)`.

    Raises:
        RuntimeError: If the artifact's outputs are not the model's (other names, count or shapes).
    """
    _, names = io_names(model)
    diffs = []
    for xs in batches:
        got, expected = run(xs), keras_outputs(model, xs)
        if sorted(got) != sorted(names):
            raise RuntimeError(f"The exported model's outputs are {sorted(got)}, the Keras model's {sorted(names)}.")
        for name, want in zip(names, expected):
            if got[name].shape != want.shape:
                raise RuntimeError(
                    f"The exported model's output {name!r} has shape {got[name].shape} where Keras gives {want.shape}."
                )
            diffs.append(np.max(np.abs(got[name] - want)))
    return float(np.max(diffs))  # NaN, where an artifact gives one, stays visible
