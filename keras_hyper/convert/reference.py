"""Parity against the reference fixtures: what the authors' implementation computes, recorded in
`shared/reference/<arch>/<case>.npz` (+ `.json`), reproduced by converting the recorded state dict.

Used by the test harness and by `keras-hyper parity NAME`.
"""

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np

from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.weights import files as weights_lib


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """One fixture case: the largest absolute difference and the tolerance it must stay under."""

    case: str
    max_abs_diff: float
    tolerance: float

    @property
    def ok(self):
        return self.max_abs_diff <= self.tolerance


def tolerance(reference):
    """The project's float32 parity tolerance: `1e-4 * max(1, max|reference|)`."""
    return 1e-4 * max(1.0, float(np.max(np.abs(reference))))


def cases(arch, folder) -> list:
    """The whole-model case files of `arch` in `folder` (all `*.npz`, or those named by `arch.reference.cases`)."""
    folder = Path(folder)
    found = sorted(folder.glob("*.npz"))
    names = arch.reference.cases if arch.reference else None
    if names is not None:
        stems = {case.stem for case in found}
        missing = sorted(set(names) - stems)
        if missing:
            raise FileNotFoundError(f"Reference cases {missing} of {arch.name!r} are not in {folder}.")
        found = [case for case in found if case.stem in names]
    if not found:
        raise FileNotFoundError(f"No reference cases (*.npz) in {folder}.")
    return found


def check(arch, folder) -> list:
    """Converts every case of `folder` into the architecture's model and compares outputs (NCHW input
    transposed to channels last); returns one `CaseResult` per case.

    A case that records `output_deploy` (the official re-parameterised model's output) is also checked
    through `arch.reparameterize`, as `<case>:deploy`.
    """
    spec = arch.reference
    results = []
    for case in cases(arch, folder):
        meta = json.loads(case.with_suffix(".json").read_text())
        # the layout may carry a description after it, e.g. "NCHW (EuroSAT RGB 64x64)"
        if meta.get("layout", "NCHW").split()[0] != "NCHW":
            raise ValueError(f"{case}: unsupported input layout {meta['layout']!r}, expected NCHW.")
        data = np.load(case)
        _, channels, *spatial = meta["input_shape"]
        kwargs = spec.kwargs(meta) if spec and spec.kwargs else arch.testing.tiny
        model = arch.builder(
            **{**kwargs, "num_classes": meta["output_shape"][-1]},
            input_shape=(*spatial, channels),
            classifier_activation=None,
        )
        arch.convert(read_checkpoint(case, prefix="sd/"), model)
        x = np.transpose(data["input"], (0, 2, 3, 1))
        ref = data["output"]
        out = _run(model, x)
        results.append(CaseResult(case.stem, float(np.max(np.abs(out - ref))), tolerance(ref)))
        if spec and spec.features:
            results.extend(_features(arch, case.stem, data, model, x, {**kwargs, "input_shape": (*spatial, channels)}))
        if "output_deploy" in data.files:
            if arch.reparameterize is None:
                raise ValueError(f"{case} records output_deploy but {arch.name!r} declares no reparameterize.")
            ref = data["output_deploy"]
            out = _run(arch.reparameterize(model), x)
            results.append(CaseResult(f"{case.stem}:deploy", float(np.max(np.abs(out - ref))), tolerance(ref)))
    return results


def _run(model, x):
    """The model's output(s) on `x` as numpy. Under JAX through `predict_on_batch`, one compiled program: called
    eagerly, JAX compiles each operation for each new shape, several times slower for a single forward."""
    y = model.predict_on_batch(x) if keras.backend.backend() == "jax" else model(x)
    return keras.tree.map_structure(keras.ops.convert_to_numpy, y)


def _features(arch, stem, data, model, x, kwargs):
    """The case's recorded intermediates (`arch.reference.features`: fixture key -> feature key), computed through
    the backbone (`features_only=True`) with the converted model's weights."""
    missing = sorted(set(arch.reference.features) - set(data.files))
    if missing:
        raise KeyError(f"{stem}: {arch.name}.reference.features names {missing}, which the case does not record.")
    backbone = arch.builder(**{k: v for k, v in kwargs.items() if k != "num_classes"}, features_only=True)
    weights_lib.transfer(model, backbone)
    got = _run(backbone, x)
    results = []
    for name, key in arch.reference.features.items():
        ref = data[name]
        out = got[key]
        if ref.ndim == 4:  # NCHW maps
            ref = np.transpose(ref, (0, 2, 3, 1))
        elif ref.ndim == 3 and out.ndim == 4 and ref.shape[1] == out.shape[1] * out.shape[2]:
            ref = ref.reshape(out.shape)  # (B, N, C) tokens in row-major order, as ViT fixtures record them
        if out.shape != ref.shape:
            raise ValueError(f"{stem}: feature {key} has shape {out.shape}, the recorded {name} {ref.shape}.")
        results.append(CaseResult(f"{stem}:{name}", float(np.max(np.abs(out - ref))), tolerance(ref)))
    return results
