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


def check(arch, folder) -> list:
    """Converts every case of `folder` into `arch.builder(**arch.tiny)` and compares outputs (NCHW input
    transposed to channels last); returns one `CaseResult` per case."""
    folder = Path(folder)
    cases = sorted(folder.glob("*.npz"))
    if not cases:
        raise FileNotFoundError(f"No reference cases (*.npz) in {folder}.")
    results = []
    for case in cases:
        meta = json.loads(case.with_suffix(".json").read_text())
        if meta.get("layout", "NCHW") != "NCHW":
            raise ValueError(f"{case}: unsupported input layout {meta['layout']!r}.")
        data = np.load(case)
        _, channels, *spatial = meta["input_shape"]
        model = arch.builder(
            **{**arch.tiny, "num_classes": meta["output_shape"][-1]},
            input_shape=(*spatial, channels),
            classifier_activation=None,
        )
        arch.convert(read_checkpoint(case, prefix="sd/"), model)
        out = keras.ops.convert_to_numpy(model(np.transpose(data["input"], (0, 2, 3, 1))))
        ref = data["output"]
        results.append(CaseResult(case.stem, float(np.max(np.abs(out - ref))), tolerance(ref)))
    return results
