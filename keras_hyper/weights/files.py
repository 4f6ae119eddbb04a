"""Weights tags and weight files: the manifest, loading files of every supported format into a model, the
conversion cache, and moving weights between models that differ only in their head.

A tag is `model.tag` in `keras_hyper/weights/manifests/<architecture>.json`:
`{model, tag, kind: "native" | "convert", url, sha256, bytes, format, license, source, num_classes,
input_size, crop_pct, labels, metrics}`. A `native` tag is a `.weights.h5` file of a keras-hyper model (a
relative `url` is a file shipped in the package); a `convert` tag is an official checkpoint that is converted
on first use and cached as `.weights.h5` under `home()/converted/`, keyed by the source file's sha256.
"""

import dataclasses
import functools
import hashlib
import importlib.resources
import json
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Optional

import h5py
import keras
import numpy as np
from tqdm.auto import tqdm

from keras_hyper.convert import checkpoint
from keras_hyper.weights import store

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".npz")
WEIGHT_SUFFIXES = (".weights.h5", ".keras") + TORCH_SUFFIXES


@dataclasses.dataclass(frozen=True)
class WeightsEntry:
    """One weights tag of the manifest."""

    model: str
    tag: str
    kind: str
    url: str
    format: str
    license: str
    source: str
    num_classes: int
    input_size: int
    crop_pct: float
    sha256: Optional[str] = None
    bytes: Optional[int] = None
    labels: object = None
    metrics: dict = dataclasses.field(default_factory=dict)
    recipe: Optional[str] = None

    @property
    def name(self):
        return f"{self.model}.{self.tag}"


@functools.lru_cache(maxsize=None)
def manifest() -> dict:
    """Every registered weights tag, `{"model.tag": WeightsEntry}`."""
    entries = {}
    folder = importlib.resources.files("keras_hyper.weights").joinpath("manifests")
    for part in sorted(folder.iterdir(), key=lambda p: p.name):
        if not part.name.endswith(".json"):
            continue
        for key, fields in json.loads(part.read_text()).items():
            entry = WeightsEntry(**fields)
            if key != entry.name or entry.kind not in ("native", "convert"):
                raise ValueError(f"Malformed manifest entry {key!r} in {part.name}: {fields}")
            if key in entries:
                raise ValueError(f"Weights tag {key!r} is declared twice (again in {part.name}).")
            entries[key] = entry
    return entries


def tags(model: str) -> tuple:
    """The weights tags of a model, in manifest order."""
    return tuple(e.tag for e in manifest().values() if e.model == model)


def entry(model: str, tag: str) -> WeightsEntry:
    """The manifest entry of `model.tag`; unknown tags raise with the model's tags listed."""
    found = manifest().get(f"{model}.{tag}")
    if found is None:
        known = ", ".join(map(repr, tags(model))) or "none"
        raise ValueError(f"Unknown weights tag {tag!r} for model {model!r}. Registered tags: {known}.")
    return found


def shipped_path(relative: str) -> Path:
    """The path of a weight file shipped inside the package."""
    return Path(str(importlib.resources.files("keras_hyper.weights").joinpath(relative)))


def resolve(entry_: WeightsEntry, progress: bool = True) -> Path:
    """A local, verified copy of a tag's file (downloaded into the cache if needed)."""
    if "://" not in entry_.url:
        return store.fetch(str(shipped_path(entry_.url)), sha256=entry_.sha256)
    return store.fetch(entry_.url, sha256=entry_.sha256, filename=f"{entry_.name}.{entry_.format}", progress=progress)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in WEIGHT_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise ValueError(
        f"Cannot load weights from '{path}': expected a file ending in one of {', '.join(WEIGHT_SUFFIXES)}."
    )


def load_file(model, path, *, arch=None) -> None:
    """Loads a weight file into `model`, which must have the file's structure (same head included).

    `.weights.h5` and `.keras` files come from keras-hyper models; PyTorch checkpoints (`.pth/.pt/.bin`,
    read with `weights_only=True`), `.safetensors` and `.npz` state dicts go through `arch.convert`. A file
    that cannot be read at all (truncated, not HDF5 / not a zip archive) raises a ValueError that says so.
    """
    path = Path(path).expanduser()
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file '{path}' does not exist.")
    if suffix == ".weights.h5":
        h5_shapes(path)  # an unreadable file is reported as such, not as one that does not fit
        try:
            # Keras only warns when it skips part of a file and leaves those variables as initialised; here
            # that is an error, since a half-loaded model looks loaded.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model.load_weights(str(path))
            skipped = [str(w.message) for w in caught if "Skipping" in str(w.message)]
            if skipped:
                raise ValueError("; ".join(skipped))
        except OSError as err:  # h5py failing to read a dataset the file's index announces
            raise _corrupt(path, err) from err
        except Exception as err:  # keras raises several types for a structure mismatch
            raise ValueError(
                f"Weights file '{path}' does not fit model '{model.name}': {err}. A .weights.h5 file loads only "
                "into a model built with the same arguments; use keras_hyper.applications.load(...) to drop or "
                "re-initialise the head."
            ) from err
    elif suffix == ".keras":
        transfer(read_keras(path), model)
    else:
        if arch is None:
            raise ValueError(f"Converting '{path}' needs the architecture's converter; none was given.")
        arch.convert(checkpoint.read_checkpoint(path), model)


def _corrupt(path, err) -> ValueError:
    return ValueError(f"Weights file '{path}' is corrupt or truncated: {err}. Save or download it again.")


def h5_shapes(path) -> dict:
    """`{dataset path: shape}` of a `.weights.h5` file; a file that HDF5 cannot read raises a ValueError that
    names it as corrupt or truncated."""
    shapes = {}
    try:
        with h5py.File(path, "r") as file:
            file.visititems(lambda key, item: shapes.update({key: item.shape}) if hasattr(item, "shape") else None)
    except Exception as err:  # h5py raises OSError for most damage, and other types for some
        raise _corrupt(path, err) from err
    return shapes


def _snake_case(name):
    # keras/src/utils/naming.py to_snake_case, which names a layer's group in a weights file
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def h5_groups(model) -> dict:
    """`{layer name: its group in model.save_weights' file}`. Keras addresses a functional model's layers by
    their class and their rank among the model's layers of that class (`layers/dense_3`), not by their names
    (keras/src/saving/saving_lib.py, `_save_container_state`)."""
    used, groups = {}, {}
    for layer in model.layers:
        base = _snake_case(type(layer).__name__)
        rank = used[base] = used.get(base, -1) + 1
        groups[layer.name] = f"layers/{base}_{rank}" if rank else f"layers/{base}"
    return groups


def saved_classes(path, model, classifier) -> Optional[int]:
    """The class count of the head stored in a `.weights.h5` file: the last axis of the kernel of `classifier`
    (a layer of `model`, which has the file's structure up to the head's size); None when the file holds no
    such layer (a model saved without its head). A kernel of other input axes there means another model."""
    group = f"{h5_groups(model)[classifier]}/vars/0"
    stored = h5_shapes(path).get(group)
    if stored is None:
        return None
    ours = tuple(model.get_layer(classifier).weights[0].shape)
    if tuple(stored[:-1]) != ours[:-1]:
        raise ValueError(
            f"Weights file '{path}' does not fit model '{model.name}': where Keras stores its classifier "
            f"'{classifier}' (kernel {ours}, '{group}'), the file holds a {tuple(stored)} kernel. It was saved from "
            "another architecture or configuration; build the model with the arguments it was saved with."
        )
    return int(stored[-1])


def read_keras(path):
    """The model of a `.keras` file; a damaged archive raises a ValueError that names it as corrupt."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # reads every member and checks its CRC
        if bad is not None:
            raise zipfile.BadZipFile(f"member {bad!r} fails its CRC check")
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise _corrupt(path, err) from err
    return keras.saving.load_model(str(path), compile=False)


def transfer(source, target, *, skip=()) -> None:
    """Copies weights layer by layer (by name) from `source` into `target`.

    Every target layer with weights must find a same-named source layer of the same shapes, except the
    layers named in `skip` (left as initialised); source layers absent from the target (a dropped head) are
    not copied.
    """
    errors = []
    for layer in target.layers:
        if not layer.weights or layer.name in skip:
            continue
        try:
            donor = source.get_layer(layer.name)
        except ValueError:
            errors.append(f"layer '{layer.name}' is absent from the weights")
            continue
        ours = [tuple(w.shape) for w in layer.weights]
        theirs = [tuple(w.shape) for w in donor.weights]
        if ours != theirs:
            errors.append(f"layer '{layer.name}' has weight shapes {ours}, the weights have {theirs}")
            continue
        layer.set_weights(donor.get_weights())
    if errors:
        raise ValueError(
            f"The weights do not fit model '{target.name}':\n  "
            + "\n  ".join(errors[:20])
            + (f"\n  ... ({len(errors) - 20} more)" if len(errors) > 20 else "")
        )


def converted(path, arch, build, arch_kwargs: dict, progress: bool = True):
    """Converts an official checkpoint into a full model, through a cache of converted `.weights.h5` files.

    `build(num_classes)` builds the full model to convert into. The cache key covers the source file's
    sha256, the architecture and its configuration, so one cached file never serves another configuration;
    its name ends with the head's class count so that a cache hit needs no read of the source.
    """
    digest = store.sha256_file(path)
    config = json.dumps({"arch": arch.name, "kwargs": arch_kwargs, "source": digest}, sort_keys=True, default=list)
    stem = f"{arch.name}-{digest[:16]}-{hashlib.sha256(config.encode()).hexdigest()[:16]}"
    folder = store.home() / "converted"
    for cached in folder.glob(f"{stem}-c*.weights.h5"):
        full = build(int(cached.name[len(stem) + 2 : -len(".weights.h5")]))
        load_file(full, cached)
        return full
    with tqdm(total=3, desc=f"converting {Path(path).name}", disable=not progress) as bar:
        state = checkpoint.read_checkpoint(path)
        if arch.classifier_key not in state:
            raise ValueError(
                f"Checkpoint '{path}' has no '{arch.classifier_key}' tensor: it is not a full {arch.name} checkpoint."
            )
        bar.update()
        full = build(int(np.asarray(state[arch.classifier_key]).shape[0]))
        arch.convert(state, full)
        bar.update()
        with store.atomic_path(folder / f"{stem}-c{full.get_layer(arch.classifier).units}.weights.h5") as temp:
            full.save_weights(str(temp))
        bar.update()
    return full


def is_path(weights) -> bool:
    """Whether a `weights=` argument names a file rather than a tag."""
    if isinstance(weights, os.PathLike):
        return True
    return isinstance(weights, str) and (os.sep in weights or weights.lower().endswith(WEIGHT_SUFFIXES))
