"""The registry and `load()`: names, tags, files and every bad input, each with a clear error that leaves
no file behind in the cache."""

import dataclasses
import warnings

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper import applications, models
from keras_hyper.models import inceptionnext
from keras_hyper.weights import files as weights_lib
from keras_hyper.weights import store

TINY = dict(inceptionnext.ARCH.testing.tiny)
# the tiny network under a registered name, with the name's default head: cheap to build again and again
SMALL = {k: v for k, v in TINY.items() if k != "num_classes"}


def _cache_files():
    return sorted(p.relative_to(store.home()) for p in store.home().rglob("*") if p.is_file())


def test_list_models_and_info():
    names = applications.list_models()
    assert {"inceptionnext_atto", "inceptionnext_tiny", "inceptionnext_small", "inceptionnext_base"} <= set(names)
    assert applications.list_models("inception*_tiny") == ["inceptionnext_tiny"]
    assert "unireplknet_t" in applications.list_models("unireplknet_*")
    assert "inceptionnext_base.sail_in1k_384" in applications.list_models("inceptionnext_b*", pretrained=True)
    info = applications.model_info("inceptionnext_tiny")
    assert info.num_params == 28_055_680 and info.paper.arxiv == "2303.16900" and info.paper.number == 14
    assert "sail_in1k" in info.weight_tags
    assert applications.model_info("inceptionnext_base.sail_in1k_384").input_size == 384
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.num_params = 1


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match="Did you mean 'inceptionnext_tiny'"):
        applications.load("inception_next_tiny")
    with pytest.raises(ValueError, match="Unknown model"):
        applications.model_info("resnet50")


def test_unknown_tag_lists_the_registered_ones():
    with pytest.raises(ValueError, match="Registered tags: 'sail_in1k'"):
        applications.load("inceptionnext_tiny.in22k")


def test_contradictory_arguments():
    with pytest.raises(ValueError, match="two different weights"):
        applications.load("inceptionnext_tiny.sail_in1k", weights="other")
    with pytest.raises(ValueError, match="pooling"):
        applications.load("inceptionnext_atto", pooling="avg")
    with pytest.raises(ValueError, match="reset_head"):
        applications.load("inceptionnext_atto", reset_head=True)
    with pytest.raises(TypeError, match="no argument"):
        applications.load("inceptionnext_atto", depth=3)
    with pytest.raises(ValueError, match="contradicts input_tensor"):
        applications.load("inceptionnext_atto", input_tensor=keras.Input((64, 64, 3)), input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="num_classes"):
        applications.load("inceptionnext_atto", num_classes=0)
    with pytest.raises(ValueError, match="classifier_activation"):
        applications.load("inceptionnext_atto", classifier_activation="nonsense")


def test_input_tensor_is_the_model_input():
    tensor = keras.Input((48, 40, 3))
    model = applications.load("inceptionnext_atto", input_tensor=tensor, include_top=False, pooling="avg")
    assert model.inputs[0] is tensor and model.output_shape == (None, 320)


def test_variant_builder_is_load():
    model = applications.InceptionNeXtAtto(num_classes=3, input_shape=(32, 32, 3), include_preprocessing=True)
    assert model.name == "inceptionnext_atto" and model.output_shape == (None, 3)
    assert applications.InceptionNeXtTiny.__name__ == "InceptionNeXtTiny"


def test_preprocess_input_matches_include_preprocessing():
    pixels = np.random.default_rng(0).uniform(0, 255, size=(1, 32, 32, 3)).astype("float32")
    raw = inceptionnext.inceptionnext(**TINY, input_shape=(32, 32, 3), include_preprocessing=True)
    plain = inceptionnext.inceptionnext(**TINY, input_shape=(32, 32, 3))
    plain.set_weights(raw.get_weights())
    expected = to_numpy(plain(applications.preprocess_input(pixels, "inceptionnext_tiny")))
    np.testing.assert_allclose(to_numpy(raw(pixels)), expected, rtol=1e-5, atol=1e-6)


def test_decode_predictions_and_labels():
    labels = applications.labels("inceptionnext_tiny.sail_in1k")
    assert len(labels) == 1000 and labels[0] == "tench"
    scores = np.zeros((1, 1000))
    scores[0, 1] = 0.9
    assert applications.decode_predictions(scores, labels, top=1) == [[("goldfish", 0.9)]]
    with pytest.raises(ValueError, match="shape"):
        applications.decode_predictions(np.zeros((1, 10)), labels)


@pytest.fixture
def local_tag(tmp_path, monkeypatch):
    """Registers `inceptionnext_atto.local`, a 'convert' tag served from a file:// URL, and returns a setter
    for the file's bytes and the pinned digest."""
    torch = pytest.importorskip("torch")
    import timm

    source = tmp_path / "served" / "atto.pth"
    source.parent.mkdir()
    torch.save(timm.create_model("inception_next_atto", num_classes=4).state_dict(), source)
    good = store.sha256_file(source)

    def register(sha256=good, num_classes=4):
        entry = weights_lib.WeightsEntry(
            model="inceptionnext_atto",
            tag="local",
            kind="convert",
            url=source.as_uri(),
            format="pth",
            license="Apache-2.0",
            source="test",
            num_classes=num_classes,
            input_size=64,
            crop_pct=1.0,
            sha256=sha256,
        )
        monkeypatch.setattr(weights_lib, "manifest", lambda: {entry.name: entry})
        return entry

    return source, register


def test_convert_tag_downloads_verifies_and_converts(local_tag):
    _, register = local_tag
    register()
    model = applications.load("inceptionnext_atto.local")
    assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, 4)
    files = [str(p) for p in _cache_files()]
    assert any(f.startswith("downloads/inceptionnext_atto.local") for f in files)
    assert any(f.startswith("converted/inceptionnext-") for f in files)
    assert not any(".part" in f for f in files)


def test_hash_mismatch_leaves_nothing(local_tag):
    _, register = local_tag
    register(sha256="0" * 64)
    with pytest.raises(store.WeightsIntegrityError, match="sha256 mismatch"):
        applications.load("inceptionnext_atto.local")
    assert _cache_files() == []


def test_truncated_checkpoint_is_a_clear_error(local_tag):
    source, register = local_tag
    source.write_bytes(source.read_bytes()[:1000])
    register(sha256=store.sha256_file(source))
    with pytest.raises(ValueError, match="could not read checkpoint"):
        applications.load("inceptionnext_atto.local")
    assert not any(str(p).startswith("converted") for p in _cache_files())


@pytest.mark.once
def test_an_unpinned_tag_is_trusted_on_first_use_and_a_changed_file_refused(local_tag, tmp_path, capsys):
    """The reported hole: a random same-shape checkpoint put where the official one was cached was accepted."""
    torch = pytest.importorskip("torch")
    import timm

    source, register = local_tag
    register(sha256=None)
    applications.load("inceptionnext_atto.local")
    digest = store.sha256_file(source)
    assert f"trusted on first use: sha256 {digest}" in capsys.readouterr().err
    cached = store.home() / "downloads" / "inceptionnext_atto.local.pth"
    assert store.record_path(cached).read_text().split()[0] == digest

    torch.save(timm.create_model("inception_next_atto", num_classes=4).state_dict(), cached)
    with pytest.raises(store.WeightsIntegrityError, match=f"sha256 {digest} was recorded"):
        applications.load("inceptionnext_atto.local")


@pytest.mark.once
def test_random_weights_are_a_visible_choice(sequence_arch):
    """Leaving weights out of a model that has pretrained ones warns; weights=None chooses random weights."""
    message = r"built inceptionnext_atto with random weights, although pretrained weights exist \(tags 'sail_in1k', "
    message += r"'digits'\).*weights=None"
    with pytest.warns(UserWarning, match=message):
        applications.load("inceptionnext_atto", **SMALL, input_shape=(32, 32, 3))
    with pytest.warns(UserWarning, match=message):
        applications.InceptionNeXtAtto(**SMALL, input_shape=(32, 32, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        applications.load("inceptionnext_atto", **SMALL, weights=None, input_shape=(32, 32, 3))
        applications.load("toy_sequence")  # no pretrained weights to point to


def test_tag_head_must_match_num_classes(local_tag):
    _, register = local_tag
    register()
    with pytest.raises(ValueError, match="4-class head"):
        applications.load("inceptionnext_atto.local", num_classes=10)
    assert applications.load("inceptionnext_atto.local", num_classes=10, reset_head=True).output_shape == (None, 10)


def test_pretrained_weights_need_rgb_input(local_tag):
    _, register = local_tag
    register()
    with pytest.raises(ValueError, match="3-channel"):
        applications.load("inceptionnext_atto.local", input_shape=(64, 64, 1))


def test_too_small_input_for_the_network():
    with pytest.raises(ValueError, match="at least 32"):
        applications.load("inceptionnext_atto", input_shape=(16, 16, 3))


def test_checkpoint_of_another_architecture(tmp_path):
    torch = pytest.importorskip("torch")
    import timm

    path = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet10t", num_classes=10).state_dict(), path)
    with pytest.raises(ValueError, match="head.fc2.weight"):
        applications.load("inceptionnext_atto", weights=str(path))
    assert _cache_files() == []


def _small(**kwargs):
    """The tiny network under a registered name, at 32 px: `load` with its arguments."""
    return applications.load("inceptionnext_atto", **SMALL, input_shape=(32, 32, 3), **kwargs)


def test_local_files(tmp_path):
    model = _small(weights=None, num_classes=3)
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype("float32")
    h5, keras_file = str(tmp_path / "m.weights.h5"), str(tmp_path / "m.keras")
    model.save_weights(h5)
    model.save(keras_file)
    # the file's head sets the default number of classes, for .weights.h5 files as for .keras and .pth ones
    again = _small(weights=h5)
    assert again.output_shape == (None, 3)
    np.testing.assert_array_equal(to_numpy(again(x)), to_numpy(model(x)))
    assert _small(weights=keras_file).output_shape == (None, 3)
    assert _small(weights=keras_file, include_top=False).output_shape == (None, 1, 1, 64)
    for path in (h5, keras_file):  # an explicit other number is refused
        with pytest.raises(ValueError, match=f"num_classes=5 does not match the 3-class head of '{path}'"):
            _small(weights=path, num_classes=5)
    with pytest.raises(ValueError, match="does not fit"):  # a file of another configuration
        applications.load("inceptionnext_atto", **{**SMALL, "dims": (16, 32, 48, 80)}, weights=h5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        applications.load("inceptionnext_atto", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="expected a file ending"):
        weights_lib.load_file(model, tmp_path / "m.onnx")


@pytest.mark.once
def test_weights_h5_files_drop_or_reset_the_head_as_checkpoints_do(tmp_path):
    model = _small(weights=None, num_classes=3)
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    trunk = _small(weights=path, include_top=False)
    assert trunk.output_shape == (None, 1, 1, 64)
    assert list(_small(weights=path, features_only=True).output) == ["P2", "P3", "P4", "P5"]
    fresh = _small(weights=path, num_classes=7, reset_head=True)
    assert fresh.output_shape == (None, 7)
    # the trunk and the head's MLP come from the file; only the final classifier is new
    for name in ("stem-0", "head-fc1"):
        for ours, theirs in zip(fresh.get_layer(name).get_weights(), model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)

    # a file saved without the head loads into a model without one, and says so to a model with one
    headless = str(tmp_path / "trunk.weights.h5")
    trunk.save_weights(headless)
    assert _small(weights=headless, include_top=False).output_shape == (None, 1, 1, 64)
    with pytest.raises(ValueError, match="holds no classification head"):
        _small(weights=headless)


@pytest.mark.once
def test_a_corrupt_weights_file_is_named_as_corrupt(tmp_path):
    model = _small(weights=None, num_classes=3)
    model.save_weights(tmp_path / "m.weights.h5")
    model.save(tmp_path / "m.keras")
    h5, archive = (tmp_path / "m.weights.h5").read_bytes(), (tmp_path / "m.keras").read_bytes()
    flipped = bytearray(archive)
    flipped[len(flipped) // 2] ^= 0xFF  # the archive's index intact, a member failing its checksum
    damaged = {
        "truncated.weights.h5": h5[: len(h5) // 2],
        "junk.weights.h5": b"not HDF5 at all" * 100,
        "truncated.keras": archive[: len(archive) // 2],
        "flipped.keras": bytes(flipped),
    }
    for name, body in damaged.items():
        path = tmp_path / name
        path.write_bytes(body)
        with pytest.raises(ValueError, match=f"Weights file '{path}' is corrupt or truncated"):
            _small(weights=str(path))
        with pytest.raises(ValueError, match="corrupt or truncated"):
            weights_lib.load_file(model, path)


@pytest.mark.once
def test_channels_first_input_with_pretrained_weights_is_refused():
    with pytest.raises(ValueError, match=r"\(3, 32, 32\) looks channels-first.*channels_last.*Pass \(32, 32, 3\)"):
        applications.load("inceptionnext_atto.digits", input_shape=(3, 32, 32))
    with pytest.raises(ValueError, match="channels_last"):
        applications.load("inceptionnext_atto.digits", input_tensor=keras.Input((3, 32, 32)))


def _sequence_model(units=4, name="toy_sequence"):
    inputs = keras.Input((6, 3), name="tokens")
    return keras.Model(inputs, keras.layers.Dense(units, name="proj")(inputs), name=name)


def _convert_sequence(state_dict, model):
    model.get_layer("proj").set_weights([state_dict["proj.weight"].T, state_dict["proj.bias"]])


@pytest.fixture
def sequence_arch(monkeypatch):
    """A registered non-image architecture (no classifier; `example_inputs` instead)."""
    arch = models._base.Architecture(
        name="toy_sequence",
        builder=_sequence_model,
        convert=_convert_sequence,
        paper=models._base.Paper("toy", "0000.00000", 0),
        variants=(models._base.Variant("toy_sequence", {}, num_params=16),),
        license="MIT",
        source="tests",
        testing=models._base.Testing(tiny={}),
        example_inputs=lambda batch: np.zeros((batch, 6, 3), "float32"),
        kind="sequence",
    )
    monkeypatch.setitem(applications.registry._MODELS, "toy_sequence", (arch, arch.variants[0]))
    return arch


def test_non_image_architecture_loads_its_weights_as_built(sequence_arch, tmp_path):
    model = applications.load("toy_sequence", units=4)
    path = tmp_path / "toy.weights.h5"
    model.save_weights(path)
    loaded = applications.load("toy_sequence", weights=str(path))
    x = np.random.default_rng(0).normal(size=(2, 6, 3)).astype("float32")
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(model(x)))

    state = {"proj.weight": np.full((4, 3), 0.5, "float32"), "proj.bias": np.arange(4, dtype="float32")}
    np.savez(tmp_path / "toy.npz", **state)
    converted = applications.load("toy_sequence", weights=str(tmp_path / "toy.npz"))
    np.testing.assert_allclose(to_numpy(converted(x)), x.sum(-1, keepdims=True) * 0.5 + np.arange(4), rtol=1e-6)

    with pytest.raises(ValueError, match="no classification head"):
        applications.load("toy_sequence", weights=str(path), reset_head=True)


def test_an_architecture_is_an_image_classifier_or_declares_its_inputs():
    with pytest.raises(ValueError, match="example_inputs"):
        models._base.Architecture(
            name="neither",
            builder=_sequence_model,
            convert=_convert_sequence,
            paper=models._base.Paper("toy", "0000.00000", 0),
            variants=(),
            license="MIT",
            source="tests",
            testing=models._base.Testing(tiny={}),
        )


def test_features_only_loads_pretrained_weights_without_the_head():
    backbone = applications.load("inceptionnext_atto.digits", features_only=True, input_shape=(32, 32, 3))
    trunk = applications.load("inceptionnext_atto.digits", include_top=False, input_shape=(32, 32, 3))
    assert [f.key for f in applications.model_info("inceptionnext_atto").features] == list(backbone.output)
    assert not any(layer.name.startswith("head") for layer in backbone.layers)
    x = np.random.default_rng(0).uniform(0, 255, size=(1, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(to_numpy(backbone(x)["P5"]), to_numpy(trunk(x)))


def test_features_only_arguments_are_checked_before_building():
    with pytest.raises(ValueError, match=r"index 4 is out of range for the 4 stages \['P2', 'P3', 'P4', 'P5'\]"):
        applications.load("inceptionnext_atto", features_only=True, out_indices=(0, 4))
    with pytest.raises(ValueError, match="at most once"):
        applications.load("inceptionnext_atto", features_only=True, out_indices=(1, -3))
    with pytest.raises(ValueError, match="sequence of stage indices"):
        applications.load("inceptionnext_atto", features_only=True, out_indices=2)
    with pytest.raises(ValueError, match="only with features_only=True"):
        applications.load("inceptionnext_atto", out_indices=(0,))
    with pytest.raises(ValueError, match="does not apply to features_only"):
        applications.load("inceptionnext_atto", features_only=True, pooling="avg")
    with pytest.raises(ValueError, match="features_only must be True or False"):
        applications.load("inceptionnext_atto", features_only="yes")
    with pytest.raises(TypeError, match="not an image backbone"):
        applications.load("hgnn_cora", features_only=True)
    info = applications.model_info("hgnn_cora")
    assert info.features == () and info.kind == "hypergraph"
