"""Reading checkpoint files into flat `{name: numpy array}` mappings.

Supported formats, chosen by the file's suffix:

- `.safetensors`: read with `safetensors.numpy`; files holding dtypes numpy lacks (bfloat16, float8) go
  through `safetensors.torch` instead and those tensors become float32.
- `.pth`, `.pt`, `.bin`: PyTorch pickles, read ONLY with `torch.load(..., weights_only=True)`. keras-hyper
  never unpickles arbitrary Python objects, so a checkpoint that stores anything but tensors and plain
  containers (a model object, an `argparse.Namespace` of training arguments, ...) is refused.
- `.npz`: numpy archives, read with `allow_pickle=False`.

torch and safetensors are imported only when a file needs them (`pip install "keras-hyper[convert]"`).
"""

import contextlib
import importlib
import os
import pickle
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz")

# Training scripts wrap the state dict as e.g. `{"model": sd, "epoch": 3}`. When several wrappers are present
# the first one listed wins: the raw weights before their EMA copy, so that EMA weights are never picked
# silently; "module" (DeepSpeed) last.
WRAPPER_KEYS = ("model", "state_dict", "model_ema", "state_dict_ema", "module")

# Dtype names from the safetensors header that numpy can hold as they are.
_NUMPY_DTYPES = {"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "F16", "F32", "F64"}

# Messages of torch's weights-only unpickler when it meets something other than tensors and plain containers,
# as opposed to bytes it cannot parse at all (a corrupt file).
_REFUSED = re.compile(
    r"Unsupported global|is blocked|Can only create new object|reduce for unrecognized function|Can only build"
)


def read_checkpoint(path: str | os.PathLike, *, prefix: str | None = None) -> dict[str, np.ndarray]:
    """Read a checkpoint file into an ordered `{name: array}` dict.

    Args:
        path: a `.safetensors`, `.pth`, `.pt`, `.bin` or `.npz` file.
        prefix: if given, keep only the names that start with it and strip it (our reference fixtures store
            state dicts as `sd/<name>` inside npz files).

    For PyTorch pickles the state dict is unwrapped from the first of `WRAPPER_KEYS` that holds a dict when
    the top level holds no tensors itself (the other top-level entries, e.g. `epoch`, are dropped), and a
    `module.` prefix carried by every name (DataParallel) is stripped. Inside the state dict every value
    must be a tensor.

    Keys keep the file's order (storage order for safetensors). Floating dtypes numpy lacks become float32;
    every other dtype, float16 included, is kept.

    Raises:
        FileNotFoundError: `path` is not a file.
        ValueError: unsupported suffix, unreadable or corrupt file, a pickle holding non-tensor Python
            objects, a state dict holding a non-tensor value, or no name starting with `prefix`.
        ImportError: torch or safetensors is needed and not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: '{path}'")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        weights = _read_safetensors(path)
    elif suffix == ".npz":
        weights = _read_npz(path)
    elif suffix in (".pth", ".pt", ".bin"):
        weights = _read_torch(path)
    else:
        raise ValueError(
            f"unsupported checkpoint suffix {suffix!r} of '{path}'; supported suffixes: {', '.join(SUFFIXES)}"
        )
    if prefix is None:
        return weights
    selected = {name[len(prefix) :]: value for name, value in weights.items() if name.startswith(prefix)}
    if not selected:
        raise ValueError(f"no tensor in checkpoint '{path}' has a name starting with '{prefix}'")
    return selected


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Read a safetensors file, through torch only when it holds dtypes numpy lacks."""
    safetensors = _require("safetensors", path)
    with _reading(path, "safetensors"):
        with safetensors.safe_open(path, framework="np") as handle:
            exotic = any(handle.get_slice(name).get_dtype() not in _NUMPY_DTYPES for name in handle.keys())
    if not exotic:
        load = _require("safetensors.numpy", path).load_file
        with _reading(path, "safetensors"):
            return load(path)
    load = _require("safetensors.torch", path).load_file
    with _reading(path, "safetensors"):
        return {name: _to_numpy(tensor) for name, tensor in load(path).items()}


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array of an npz archive, refusing pickled (object) arrays."""
    with _reading(path, "npz"):
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("not a zip archive of arrays (a single .npy array?)")
        with archive:
            return {name: archive[name] for name in archive.files}


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    """Read a PyTorch pickle with the weights-only unpickler and flatten its state dict."""
    torch = _require("torch", path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if _REFUSED.search(str(error)):
            found = re.search(r"GLOBAL (\S+) was not an allowed", str(error))
            raise ValueError(
                f"checkpoint '{path}' contains non-tensor Python objects"
                f"{f' ({found.group(1)})' if found else ''}; keras-hyper never unpickles them. In an "
                "environment you trust, re-save only the state dict, e.g. as a .safetensors file."
            ) from None
        raise _corrupt(path, "a PyTorch pickle", error) from None
    except OSError:
        raise
    except Exception as error:  # torch reports truncation as RuntimeError or EOFError
        raise _corrupt(path, "a PyTorch pickle", error) from error

    state = loaded
    while isinstance(state, Mapping) and not any(torch.is_tensor(v) for v in state.values()):
        key = next((k for k in WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
        if key is None:
            break
        state = state[key]
    if not isinstance(state, Mapping) or not any(torch.is_tensor(v) for v in state.values()):
        found = f"keys {list(loaded)[:10]}" if isinstance(loaded, Mapping) else type(loaded).__name__
        raise ValueError(f"checkpoint '{path}' holds no state dict of tensors (found {found})")

    weights = {}
    for name, value in state.items():
        if not torch.is_tensor(value):
            raise ValueError(
                f"checkpoint '{path}': state dict entry '{name}' is of type {type(value).__name__}, not a tensor"
            )
        weights[str(name)] = _to_numpy(value)
    if all(name.startswith("module.") for name in weights):
        weights = {name[len("module.") :]: value for name, value in weights.items()}
    return weights


def _to_numpy(tensor: Any) -> np.ndarray:
    """Convert a torch tensor to numpy; floating dtypes numpy lacks (bfloat16, float8) become float32."""
    import torch

    tensor = tensor.detach().cpu()
    if tensor.is_floating_point() and tensor.dtype not in (torch.float16, torch.float32, torch.float64):
        tensor = tensor.float()
    return tensor.numpy()


def _require(module: str, path: Path) -> Any:
    """Import an optional dependency, telling the user how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        missing = error.name or module.split(".")[0]
        raise ImportError(
            f"reading '{path}' needs {missing}, which is not installed: pip install \"keras-hyper[convert]\""
        ) from error


@contextlib.contextmanager
def _reading(path: Path, fmt: str) -> Iterator[None]:
    """Turn a parser's failure into a ValueError naming the file; I/O errors pass through unchanged."""
    try:
        yield
    except OSError:
        raise
    except Exception as error:  # parsers raise anything from EOFError to SafetensorError
        raise _corrupt(path, fmt, error) from error


def _corrupt(path: Path, fmt: str, error: BaseException) -> ValueError:
    """Build the error for a file that exists but cannot be parsed."""
    text = str(error) or type(error).__name__
    # torch buries the parser's own message after a long paragraph about weights_only
    text = text.split("WeightsUnpickler error:")[-1].strip()
    reason = text.splitlines()[0] if text else type(error).__name__
    return ValueError(f"could not read checkpoint '{path}' as {fmt}: {reason}")
