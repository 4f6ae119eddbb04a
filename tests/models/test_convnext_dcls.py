"""ConvNeXt-dcls beyond the harness: the shared positions in the converter, the inference fusion and the
builder's argument checks. (Output and per-stage feature parity on both whole-model fixtures, through
`reference.features`, are in tests/harness.py.)"""

import json

import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.convert.reference import tolerance
from keras_hyper.layers import DCLSConv2D, DCLSPositions
from keras_hyper.models import convnext_dcls

TINY = convnext_dcls.ARCH.testing.tiny


def _fixture(case):
    folder = reference_dir("convnext_dcls")
    meta = json.loads((folder / f"{case}.json").read_text())
    return meta, np.load(folder / f"{case}.npz"), read_checkpoint(folder / f"{case}.npz", prefix="sd/")


def _model():
    return convnext_dcls.convnext_dcls(**{**TINY, "input_shape": (64, 64, 3), "classifier_activation": None})


@pytest.fixture(scope="module")
def strong():
    """The tiny_strong case converted (models are built once: building is the slow part on JAX)."""
    _, data, state = _fixture("tiny_strong")
    model = _model()
    convnext_dcls.convert_convnext_dcls(state, model)
    return model, data


@pytest.fixture(scope="module")
def scratch():
    """A model for the conversions that must fail (and leave it half filled)."""
    return _model()


def test_reparameterize_keeps_the_fixture_output(strong):
    model, data = strong
    fused = convnext_dcls.reparameterize(model)
    assert not any(isinstance(layer, (DCLSConv2D, DCLSPositions)) for layer in fused.layers)
    assert type(fused.get_layer("stages-0-0-dwconv")).__name__ == "DepthwiseConv2D"
    out = to_numpy(fused(np.transpose(data["input"], (0, 2, 3, 1))))
    assert np.max(np.abs(out - data["output"])) <= tolerance(data["output"])


def test_parameter_count_counts_each_stage_positions_once(scratch):
    meta, _, _ = _fixture("tiny")
    assert meta["output_shape"][-1] == TINY["num_classes"]
    assert sum(int(np.prod(w.shape)) for w in scratch.trainable_weights) == meta["num_params"]
    holders = [layer for layer in scratch.layers if isinstance(layer, DCLSPositions)]
    assert [h.name for h in holders] == [f"stages-{i}-positions" for i in range(4)]
    assert all(layer.positions is None for layer in scratch.layers if isinstance(layer, DCLSConv2D))


def test_converter_refuses_differing_copies_of_shared_positions(scratch):
    _, _, state = _fixture("tiny")
    state = dict(state)
    state["stages.2.1.dwconv.P"] = state["stages.2.1.dwconv.P"] + 0.5
    with pytest.raises(ValueError, match="stages.2.0.dwconv.P' and 'stages.2.1.dwconv.P' differ"):
        convnext_dcls.convert_convnext_dcls(state, scratch)


def test_converter_lists_a_missing_copy(scratch):
    _, _, state = _fixture("tiny")
    state = {k: v for k, v in state.items() if k != "stages.2.1.dwconv.P"}
    with pytest.raises(ValueError, match=r"missing keys.*stages\.2\.1\.dwconv\.P"):
        convnext_dcls.convert_convnext_dcls(state, scratch)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(dcls_kernel_size=4), "odd"),
        (dict(dcls_kernel_count=0), "dcls_kernel_count"),
        (dict(depths=(1, 0, 1, 1)), "depths"),
        (dict(dims=(8, 16, 32)), "depths"),
        (dict(drop_path_rate=1.0), "drop_path_rate"),
    ],
)
def test_builder_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        convnext_dcls.convnext_dcls(**{**TINY, **kwargs})
