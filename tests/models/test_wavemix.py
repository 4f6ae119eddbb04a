"""WaveMix: the official intermediate features of the fixtures, a direct comparison with the PyPI `wavemix`
package (its state dict through our converter), the strict converter and the builder's argument checks.
(Whole-model parity, variant counts, LiteRT export and the rest are in tests/harness.py.)"""

import json
import sys
import types

import keras
import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper import applications
from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.convert.reference import tolerance
from keras_hyper.models import wavemix


def _fixture(case):
    folder = reference_dir("wavemix")
    meta = json.loads((folder / f"{case}.json").read_text())
    data = np.load(folder / f"{case}.npz")
    _, channels, height, width = meta["input_shape"]
    model = wavemix.wavemix(
        **wavemix.fixture_kwargs(meta),
        num_classes=meta["output_shape"][-1],
        input_shape=(height, width, channels),
        classifier_activation=None,
    )
    wavemix.convert_wavemix(read_checkpoint(folder / f"{case}.npz", prefix="sd/"), model)
    return model, data


@pytest.mark.parametrize("case", ["tiny", "tiny_level2"])
def test_stem_and_block_branches_match_the_official_modules(case):
    model, data = _fixture(case)
    blocks = [layer.name for layer in model.layers if isinstance(layer, wavemix.WaveMixBlock)]
    stem = "conv-4" if case == "tiny" else "conv-1"
    probe = keras.Model(model.input, [model.get_layer(name).output for name in (stem, *blocks)])
    outputs = probe(np.transpose(data["input"], (0, 2, 3, 1)))
    keys = ["feat/stem"] + [f"feat/block{i}_branch" for i in range(len(blocks))]
    for key, out in zip(keys, outputs):
        ref = np.transpose(data[key], (0, 2, 3, 1))
        assert np.max(np.abs(to_numpy(out) - ref)) <= tolerance(ref), key


def _pypi_wavemix():
    torch = pytest.importorskip("torch")
    if "numpy.lib.function_base" not in sys.modules:
        # wavemix imports numpy.lib.function_base.hamming (unused), a module numpy 2 removed
        sys.modules["numpy.lib.function_base"] = types.SimpleNamespace(hamming=np.hamming)
    classification = pytest.importorskip("wavemix.classification")
    return torch, classification.WaveMix


def test_matches_the_pypi_package_with_a_strided_level4_model():
    torch, reference_class = _pypi_wavemix()
    kwargs = dict(depth=1, mult=2, ff_channel=8, final_dim=16, dropout=0.5, level=4, initial_conv="strided", stride=2)
    torch.manual_seed(0)
    reference = reference_class(num_classes=3, **kwargs).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that a wrong mapping shows
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype("float32")
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    model = wavemix.wavemix(**kwargs, num_classes=3, input_shape=(64, 64, 3), classifier_activation=None)
    wavemix.convert_wavemix({k: v.numpy() for k, v in reference.state_dict().items()}, model)
    out = to_numpy(model(np.transpose(x, (0, 2, 3, 1))))
    assert np.max(np.abs(out - expected)) <= tolerance(expected)


def test_converter_is_strict_and_reads_the_timm_head_name():
    model, data = _fixture("tiny_level1")
    state = dict(read_checkpoint(reference_dir("wavemix") / "tiny_level1.npz", prefix="sd/"))
    renamed = {("head" + k[6:] if k.startswith("pool.2.") else k): v for k, v in state.items()}
    wavemix.convert_wavemix(renamed, model)
    assert np.max(np.abs(to_numpy(model(np.transpose(data["input"], (0, 2, 3, 1)))) - data["output"])) < 1e-4
    state.pop("layers.1.feedforward.4.weight")
    state["layers.1.extra"] = np.zeros(3, "float32")
    with pytest.raises(ValueError, match=r"missing keys.*layers\.1\.feedforward\.4\.weight") as err:
        wavemix.convert_wavemix(state, model)
    assert "layers.1.extra" in str(err.value)


def test_builder_rejects_bad_configurations():
    with pytest.raises(ValueError, match="final_dim must be divisible by 4"):
        wavemix.wavemix(final_dim=18)
    with pytest.raises(ValueError, match="level must be one of"):
        wavemix.wavemix(level=5)
    with pytest.raises(ValueError, match="initial_conv must be one of"):
        wavemix.wavemix(initial_conv="patchify")
    with pytest.raises(ValueError, match="divisible by 2\\*\\*level = 8"):
        wavemix.wavemix(depth=1, final_dim=16, ff_channel=8, input_shape=(48, 48, 3))
    with pytest.raises(ValueError, match="at least 64"):
        wavemix.wavemix(level=4, initial_conv="strided", input_shape=(32, 32, 3))


def test_default_size_is_one_the_dwt_can_halve():
    # the level-4 strided model cannot run at 224 (a 56-pixel stem output): its default and registered size is 256
    info = applications.model_info("wavemix_256_16_level4")
    assert info.input_size == 256
    model = wavemix.wavemix(depth=1, final_dim=16, ff_channel=8, level=4, initial_conv="strided", include_top=False)
    assert model.input_shape == (None, 256, 256, 3)
    assert [(f.key, f.stride, f.channels) for f in info.features] == [("P2", 4, 256)]


def test_a_stem_stride_that_is_no_power_of_two_keys_its_feature_by_stride():
    model = wavemix.wavemix(depth=1, final_dim=16, ff_channel=8, level=1, patch_size=3, features_only=True)
    assert model.input_shape == (None, 228, 228, 3)  # 224 rounded up to a multiple of 3 * 2
    assert {key: tuple(tensor.shape[1:]) for key, tensor in model.output.items()} == {"S3": (76, 76, 16)}
    assert applications.model_info("wavemix_192_16").weight_tags == ("in1k",)
