"""InceptionNeXt against timm (the reference implementation on PyPI), converted on the fly, and the
applications-level conversion path (file -> converted cache -> model)."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper import applications
from keras_hyper.convert.reference import tolerance
from keras_hyper.models import inceptionnext
from keras_hyper.weights import files as weights_lib
from keras_hyper.weights import store

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")


def _perturbed_timm(name, **kwargs):
    """A timm model whose weights are redrawn at unit scale with non-trivial BN statistics, so that a mapping
    error moves the output far beyond the tolerance (timm's own init leaves the output nearly constant)."""
    torch.manual_seed(0)
    return _perturb(timm.create_model(name, pretrained=False, **kwargs).eval())


def _perturb(model):
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key.endswith("num_batches_tracked"):
                continue
            if key.endswith("running_var"):
                value.copy_(torch.rand_like(value) + 0.5)
            elif value.ndim > 1:
                value.copy_(torch.randn_like(value) / np.sqrt(np.prod(value.shape[1:])))
            else:
                value.copy_(torch.randn_like(value) * 0.2 + (1.0 if key.endswith(("gamma", "weight")) else 0.0))
    return model


def _timm_io(model, size, batch=2):
    x = np.random.default_rng(1).normal(size=(batch, 3, size, size)).astype("float32")
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
        features = model.forward_features(torch.from_numpy(x)).numpy()
    return np.transpose(x, (0, 2, 3, 1)), logits, np.transpose(features, (0, 2, 3, 1))


@pytest.fixture(scope="module")
def atto_checkpoint(tmp_path_factory):
    """The full-size atto variant from timm, saved as a .pth file, with its outputs at 96x96."""
    model = _perturbed_timm("inception_next_atto")
    path = tmp_path_factory.mktemp("timm") / "inception_next_atto.pth"
    torch.save(model.state_dict(), path)
    return path, _timm_io(model, 96)


def test_convert_matches_timm_atto(atto_checkpoint):
    path, (x, logits, _) = atto_checkpoint
    model = applications.load(
        "inceptionnext_atto", weights=str(path), input_shape=(96, 96, 3), classifier_activation=None
    )
    out = to_numpy(model(x))
    assert np.max(np.abs(out - logits)) <= tolerance(logits)
    assert np.std(logits) > 0.1  # the check is sensitive: outputs differ across classes


def test_converted_checkpoint_is_cached_and_reused(atto_checkpoint):
    path, (x, logits, _) = atto_checkpoint
    applications.load("inceptionnext_atto", weights=str(path), input_shape=(96, 96, 3))
    cached = list((store.home() / "converted").glob("inceptionnext-*.weights.h5"))
    assert len(cached) == 1 and cached[0].name.endswith("-c1000.weights.h5")
    stamp = cached[0].stat().st_mtime_ns
    model = applications.load(
        "inceptionnext_atto", weights=str(path), input_shape=(96, 96, 3), classifier_activation=None
    )
    assert cached[0].stat().st_mtime_ns == stamp
    assert np.max(np.abs(to_numpy(model(x)) - logits)) <= tolerance(logits)


def test_features_without_top_match_timm(atto_checkpoint):
    path, (x, _, features) = atto_checkpoint
    model = applications.load("inceptionnext_atto", weights=str(path), include_top=False, input_shape=(96, 96, 3))
    out = to_numpy(model(x))
    assert np.max(np.abs(out - features)) <= tolerance(features)


def test_reset_head_keeps_the_trunk(atto_checkpoint):
    path, (x, _, features) = atto_checkpoint
    model = applications.load(
        "inceptionnext_atto", weights=str(path), num_classes=5, reset_head=True, input_shape=(96, 96, 3)
    )
    assert model.output_shape == (None, 5)
    trunk = applications.load("inceptionnext_atto", weights=str(path), include_top=False, input_shape=(96, 96, 3))
    for layer in trunk.layers:
        for ours, theirs in zip(model.get_layer(layer.name).weights, layer.weights):
            np.testing.assert_array_equal(to_numpy(ours), to_numpy(theirs))


def test_num_classes_must_match_the_checkpoint_head(atto_checkpoint):
    path, _ = atto_checkpoint
    with pytest.raises(ValueError, match="1000-class head"):
        applications.load("inceptionnext_atto", weights=str(path), num_classes=10, input_shape=(96, 96, 3))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_drawn_official_configurations_match_timm(seed):
    """The official constructor's configuration space, drawn: stage count, depths, widths, mixer kernels and
    split, MLP ratios, input channels and classes; an odd, non-square input and batch 3. Built through
    `from_official`, converted with the strict converter, the logits and every stage compared."""
    from functools import partial

    from timm.models.inception_next import InceptionDWConv2d, MetaNeXt

    rng = np.random.default_rng(seed)
    stages = int(rng.integers(2, 5))
    mixer = dict(
        square_kernel_size=int(rng.choice([3, 5])),
        band_kernel_size=int(rng.choice([5, 7, 9, 11])),
        branch_ratio=float(rng.choice([0.125, 0.25, 1 / 3])),
    )
    kwargs = dict(
        depths=[int(d) for d in rng.integers(1, 3, stages)],
        dims=[int(8 * w) for w in rng.integers(2, 7, stages)],
        mlp_ratios=[int(r) for r in rng.integers(2, 5, stages)],
        num_classes=int(rng.integers(2, 12)),
        in_chans=int(rng.integers(1, 5)),
        token_mixers=partial(InceptionDWConv2d, **mixer),
    )
    torch.manual_seed(seed)
    reference = _perturb(MetaNeXt(**kwargs).eval())
    height = 2 ** (stages + 1) + 2 * int(rng.integers(1, 12)) + 1
    width = height + int(rng.integers(3, 9))
    x = rng.normal(size=(3, kwargs["in_chans"], height, width)).astype("float32")
    with torch.no_grad():
        logits = reference(torch.from_numpy(x)).numpy()
        stage_maps = reference.forward_intermediates(torch.from_numpy(x), intermediates_only=True)

    config = inceptionnext.from_official(kwargs)
    config["input_shape"] = (height, width, kwargs["in_chans"])
    model = inceptionnext.inceptionnext(**config, classifier_activation=None)
    inceptionnext.convert_inceptionnext({k: v.numpy() for k, v in reference.state_dict().items()}, model)
    x = np.transpose(x, (0, 2, 3, 1))
    assert np.max(np.abs(to_numpy(model(x)) - logits)) <= tolerance(logits)
    backbone = inceptionnext.inceptionnext(**config, features_only=True)
    weights_lib.transfer(model, backbone)
    for got, expected in zip(backbone(x).values(), stage_maps, strict=True):
        expected = np.transpose(expected.numpy(), (0, 2, 3, 1))
        assert np.max(np.abs(to_numpy(got) - expected)) <= tolerance(expected)


def test_from_official_refuses_what_it_cannot_build():
    from functools import partial

    from timm.models.inception_next import InceptionDWConv2d

    with pytest.raises(ValueError, match="output_stride"):
        inceptionnext.from_official(dict(output_stride=16))
    with pytest.raises(ValueError, match="differ between stages"):
        mixers = [partial(InceptionDWConv2d, band_kernel_size=k) for k in (7, 9)]
        inceptionnext.from_official(dict(depths=(1, 1), dims=(8, 16), token_mixers=mixers))
    with pytest.raises(ValueError, match="norm_layer"):
        inceptionnext.from_official(dict(norm_layer=torch.nn.LayerNorm))
    with pytest.raises(ValueError, match="no argument"):
        inceptionnext.from_official(dict(depth=(1, 1)))
    assert inceptionnext.from_official(dict(token_mixers=InceptionDWConv2d)) == {}


def test_converter_lists_missing_and_unexpected_keys():
    model = inceptionnext.inceptionnext(**inceptionnext.ARCH.testing.tiny, input_shape=(32, 32, 3))
    other = timm.create_model("resnet10t", pretrained=False, num_classes=10)
    state = {k: v.numpy() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError) as err:
        inceptionnext.convert_inceptionnext(state, model)
    message = str(err.value)
    assert "missing keys" in message and "stem.0.weight" in message
    assert "unexpected keys" in message and "layer1.0.conv1.weight" in message


def test_drop_path_schedule_matches_timm():
    """Stochastic depth rises linearly over all blocks, as in the official schedule."""
    reference = timm.create_model("inception_next_atto", drop_path_rate=0.3)
    expected = [
        float(getattr(block.drop_path, "drop_prob", 0.0)) for stage in reference.stages for block in stage.blocks
    ]
    model = applications.load("inceptionnext_atto", drop_path_rate=0.3, input_shape=(32, 32, 3))
    rates = {layer.name: layer.rate for layer in model.layers if layer.name.endswith("drop_path")}
    ours = [rates.get(f"stages-{i}-blocks-{j}-drop_path", 0.0) for i, d in enumerate((2, 2, 6, 2)) for j in range(d)]
    np.testing.assert_allclose(ours, expected, atol=1e-7)


def test_generic_builder_converts_a_checkpoint_file(atto_checkpoint):
    path, (x, logits, _) = atto_checkpoint
    atto = inceptionnext.VARIANTS[0]
    model = inceptionnext.inceptionnext(
        **atto.kwargs, weights=str(path), input_shape=(96, 96, 3), classifier_activation=None
    )
    assert np.max(np.abs(to_numpy(model(x)) - logits)) <= tolerance(logits)


def test_reparameterized_atto_still_matches_timm(atto_checkpoint):
    path, (x, logits, _) = atto_checkpoint
    model = applications.load(
        "inceptionnext_atto", weights=str(path), input_shape=(96, 96, 3), classifier_activation=None
    )
    fused = inceptionnext.reparameterize(model)
    assert np.max(np.abs(to_numpy(fused(x)) - logits)) <= tolerance(logits)
    assert len(fused.layers) < len(model.layers)


@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="the harness exports in-process under TensorFlow; JAX takes the same worker path as torch",
)
def test_litert_export_from_this_backend(tmp_path):
    """Outside TensorFlow the export goes through the TensorFlow-backend worker; the file must still match."""
    from keras_hyper.export import export_litert

    model = inceptionnext.inceptionnext(**inceptionnext.ARCH.testing.tiny, input_shape=(32, 32, 3))
    report = export_litert(model, tmp_path / "tiny.tflite")
    assert report.backend == keras.backend.backend()
    assert report.max_abs_diff <= 1e-4 and report.bytes > 0
