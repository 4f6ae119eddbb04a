"""UniRepLKNet against the official implementation's fixture (the downsampling outputs, and the deploy form),
the deploy-form builder, the official kernel-size defaults, and argument errors.

The whole-model output, `output_deploy` and the stage outputs (as the backbone's features) are checked by the
harness (`reference.check`); here the downsampling outputs localise a mismatch, and the deploy-form checkpoint
loads into `deploy=True`.
"""

import json

import keras
import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.convert.reference import tolerance
from keras_hyper.layers import DilatedReparamConv2D, GlobalResponseNorm, LayerScale
from keras_hyper.models import unireplknet as U


@pytest.fixture(scope="module")
def fixture():
    folder = reference_dir("unireplknet")
    meta = json.loads((folder / "tiny.json").read_text())
    data = np.load(folder / "tiny.npz")
    return folder / "tiny.npz", meta, data, U.ARCH.reference.kwargs(meta)


def _build(kwargs, **overrides):
    return U.unireplknet(**{**kwargs, **overrides}, input_shape=(64, 64, 3), classifier_activation=None)


def _nchw_to_nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def test_downsampling_outputs_match_the_official(fixture):
    """The stem's and transitions' outputs (the stage outputs are the backbone's features, compared by the
    harness' reference parity through `reference.features`)."""
    path, _, data, kwargs = fixture
    model = _build(kwargs)
    U.convert_unireplknet(read_checkpoint(path, prefix="sd/"), model)
    names = {f"feat/downsample{i}": f"downsample_layers-{i}-{4 if i == 0 else 1}" for i in range(4)}
    probe = keras.Model(model.input, [model.get_layer(name).output for name in names.values()])
    outs = probe.predict(_nchw_to_nhwc(data["input"]), verbose=0)  # compiled once: quicker than eager on JAX
    for key, out in zip(names, outs):
        ref = _nchw_to_nhwc(data[key])
        assert np.max(np.abs(to_numpy(out) - ref)) <= tolerance(ref), key


def test_deploy_checkpoint_loads_into_the_deploy_builder(fixture):
    path, meta, data, kwargs = fixture
    model = _build(kwargs, deploy=True)
    U.convert_unireplknet(read_checkpoint(path, prefix="sd_deploy/"), model)
    ref = data["output_deploy"]
    assert np.max(np.abs(to_numpy(model(_nchw_to_nhwc(data["input"]))) - ref)) <= tolerance(ref)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == meta["num_params_deploy"]


def test_reparameterize_gives_the_deploy_structure_and_weights(fixture):
    """Our fusion reproduces the official `reparameterize_unireplknet()` tensor by tensor."""
    path, _, _, kwargs = fixture
    model = _build(kwargs)
    U.convert_unireplknet(read_checkpoint(path, prefix="sd/"), model)
    fused = U.reparameterize(model)
    deploy = _build(kwargs, deploy=True)
    U.convert_unireplknet(read_checkpoint(path, prefix="sd_deploy/"), deploy)
    assert [layer.name for layer in fused.layers] == [layer.name for layer in deploy.layers]
    assert not any(isinstance(layer, (DilatedReparamConv2D, LayerScale)) for layer in fused.layers)
    assert not any(layer.use_bias for layer in fused.layers if isinstance(layer, GlobalResponseNorm))
    for ours, theirs in zip(fused.weights, deploy.weights):
        assert ours.path == theirs.path
        np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), atol=2e-6, err_msg=ours.path)


def test_default_kernel_sizes_are_the_officials():
    variants = json.loads((reference_dir("unireplknet") / "variants.json").read_text())["variants"]
    for variant in U.VARIANTS:
        official = variants[variant.name.removeprefix("unireplknet_").upper()]
        assert variant.kwargs["depths"] == tuple(official["kwargs"]["depths"])
        assert variant.kwargs["dims"] == tuple(official["kwargs"]["dims"])
        expected = tuple(tuple(stage) for stage in official["default_kernel_sizes"])
        assert U.DEFAULT_KERNEL_SIZES[variant.kwargs["depths"]] == expected
        assert variant.num_params == official["num_params"]


def test_kernel_size_kinds_build_the_official_layers():
    model = U.unireplknet(
        depths=(1, 1, 1, 4), dims=(8, 16, 24, 32), kernel_sizes=((0,), (1,), (3,), (5, 7, 11, 17)), num_classes=3
    )
    assert "stages-0-0-dwconv" not in {layer.name for layer in model.layers}  # kernel 0: no dwconv, no norm
    assert "stages-0-0-norm" not in {layer.name for layer in model.layers}
    assert isinstance(model.get_layer("stages-1-0-dwconv"), keras.layers.Dense)
    assert model.get_layer("stages-2-0-dwconv").kernel_size == (3, 3)
    assert model.get_layer("stages-3-1-dwconv").branches == ((5, 1), (3, 2), (3, 3))
    assert model.get_layer("stages-3-3-dwconv").kernel_size == 17


def test_drop_path_rises_linearly_over_all_blocks():
    model = U.unireplknet(**U.ARCH.testing.tiny, drop_path_rate=0.5)
    rates = [layer.rate for layer in model.layers if layer.name.endswith("drop_path")]
    np.testing.assert_allclose(rates, np.linspace(0.0, 0.5, 6)[1:], atol=1e-7)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(depths=(1, 1, 1, 1)), "kernel_sizes=None"),
        (dict(depths=(1, 1, 1), dims=(8, 16, 24)), "four stages"),
        (dict(depths=(1, 1, 1, 1), kernel_sizes=((3,), (3,), (3,), (3, 3))), "one size per block"),
        (dict(depths=(1, 1, 1, 1), kernel_sizes=((3,), (3,), (3,), (19,))), "19"),
        (dict(depths=(1, 1, 1, 1), kernel_sizes=((3,),) * 4, drop_path_rate=1.0), "drop_path_rate"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        U.unireplknet(**{"dims": (8, 16, 24, 32), **kwargs})


def test_converter_lists_missing_and_unexpected_keys(fixture):
    path, _, _, kwargs = fixture
    model = _build(kwargs, deploy=True)
    with pytest.raises(ValueError) as err:  # a training-form checkpoint does not fit the deploy structure
        U.convert_unireplknet(read_checkpoint(path, prefix="sd/"), model)
    message = str(err.value)
    assert "missing keys" in message and "stages.0.0.dwconv.bias" in message
    assert "unexpected keys" in message and "stages.1.0.dwconv.dil_conv_k5_1.weight" in message
