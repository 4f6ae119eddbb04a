"""The summary every exporter returns once its artifact has been written and checked."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ExportReport:
    """What was written by an export and how closely it reproduces Keras.

    Attributes:
        path: Where the artifact was written.
        format: ``"litert"`` or ``"onnx"``.
        bytes: Size of the artifact in bytes.
        max_abs_diff: Largest absolute difference between the artifact's
            output and the Keras model's output on the verification sample.
        quantize: The quantization mode (``None`` means float32).
        ops: Sorted names of the distinct operators in the artifact.
        backend: The Keras backend the export was called from.
        batch_size: The batch size the artifact is fixed at; ``None``: any.
        inputs: The artifact's input names, in the Keras model's flat input order.
        outputs: The artifact's output names (the Keras output layers' names, or a dict output's keys).
    """

    path: str
    format: str
    bytes: int
    max_abs_diff: float
    quantize: str | None
    ops: tuple[str, ...]
    backend: str
    batch_size: int | None = None
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()

    def __str__(self) -> str:
        """Return a one-line human summary."""
        return (
            f"{self.format} ({self.quantize or 'float32'}) -> {self.path}: "
            f"{self.bytes / 1024:.1f} KiB, batch {self.batch_size or 'any'}, "
            f"inputs {', '.join(self.inputs)}, outputs {', '.join(self.outputs)}, {len(self.ops)} op types, "
            f"max |diff| vs Keras ({self.backend}) = {self.max_abs_diff:.3g}"
        )
