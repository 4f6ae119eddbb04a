"""DenseNet against its two reference implementations: keras.applications.DenseNet121 (weights moved over with
`convert_keras_densenet`, from the model and from a Keras h5 weights file) and timm's `densenet121` (its
torchvision state-dict layout, through `convert_densenet`)."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper import applications
from keras_hyper.convert.reference import tolerance
from keras_hyper.models import densenet

SIZE = 64


def _randomize(model, seed=0):
    """Unit-scale weights and non-trivial BN statistics: default inits leave outputs nearly constant, so a
    mapping error would hide under the tolerance."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                    rng.normal(0, 0.2, beta.shape).astype("float32"),
                    rng.normal(0, 0.2, mean.shape).astype("float32"),
                    rng.uniform(0.5, 1.5, var.shape).astype("float32"),
                ]
            )
        elif layer.weights:
            layer.set_weights(
                [
                    (rng.normal(size=w.shape) / np.sqrt(np.prod(w.shape[:-1]))).astype("float32")
                    for w in layer.get_weights()
                ]
            )
    return model


@pytest.fixture(scope="module")
def keras_densenet121():
    reference = keras.applications.DenseNet121(weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    _randomize(reference)
    x = np.random.default_rng(1).normal(size=(2, SIZE, SIZE, 3)).astype("float32")
    return reference, x, to_numpy(reference(x))


def _ours(**kwargs):
    # keras.applications uses BatchNormalization's epsilon 1.001e-5
    return densenet.densenet(input_shape=(SIZE, SIZE, 3), classifier_activation=None, bn_epsilon=1.001e-5, **kwargs)


def test_matches_keras_applications_densenet121(keras_densenet121):
    reference, x, expected = keras_densenet121
    model = _ours()
    densenet.convert_keras_densenet(reference, model)
    assert np.max(np.abs(to_numpy(model(x)) - expected)) <= tolerance(expected)
    assert np.std(expected) > 0.1


def _small_keras(blocks):
    # the generic builder behind keras.applications.DenseNet121/169/201 (not exported by keras.applications)
    from keras.src.applications import densenet as keras_densenet

    reference = keras_densenet.DenseNet(
        list(blocks), weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None
    )
    return _randomize(reference, seed=3)


def test_loads_a_keras_h5_weights_file(tmp_path):
    """The legacy Keras h5 layout (`save_weights('x.h5')`) that KimiaNet's Keras weights come in."""
    h5py = pytest.importorskip("h5py")
    from keras.src.legacy.saving import legacy_h5_format

    reference = _small_keras((1, 2, 1, 1))
    trunk = keras.Model(reference.input, reference.get_layer("relu").output)
    path = tmp_path / "densenet_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, trunk)
    model = _ours(blocks=(1, 2, 1, 1), include_top=False)
    densenet.convert_keras_densenet(str(path), model)
    x = np.random.default_rng(4).normal(size=(2, SIZE, SIZE, 3)).astype("float32")
    expected = to_numpy(trunk(x))
    assert np.max(np.abs(to_numpy(model(x)) - expected)) <= tolerance(expected)


def test_keras_weights_of_another_configuration_are_refused():
    with pytest.raises(ValueError, match="conv3_block2_0_bn"):
        densenet.convert_keras_densenet(_small_keras((1, 2, 1, 1)), _ours(blocks=(1, 1, 1, 1)))


def test_keras_layer_names():
    assert densenet.keras_layer_name("features-denseblock2-denselayer3-conv1") == "conv3_block3_1_conv"
    assert densenet.keras_layer_name("features-transition3-norm") == "pool4_bn"
    assert densenet.keras_layer_name("features-norm5") == "bn"
    assert densenet.keras_layer_name("features-relu5") is None


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="blocks"):
        densenet.densenet(blocks=(6, 0, 24, 16))
    with pytest.raises(ValueError, match="compression"):
        densenet.densenet(compression=0.0)
    with pytest.raises(ValueError, match="growth_rate"):
        densenet.densenet(growth_rate=-1)


torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")


def _perturbed_timm(name, **kwargs):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key.endswith("num_batches_tracked"):
                continue
            if key.endswith("running_var"):
                value.copy_(torch.rand_like(value) + 0.5)
            elif value.ndim > 1:
                value.copy_(torch.randn_like(value) / np.sqrt(np.prod(value.shape[1:])))
            else:
                value.copy_(torch.randn_like(value) * 0.2 + (1.0 if key.endswith("weight") else 0.0))
    return model


def test_convert_matches_timm_densenet121(tmp_path):
    """The full densenet121 through the applications path (.pth file -> conversion -> model): logits, the
    trunk output that `include_top=False` returns, and the stage features against timm's (its feature_info: the
    first three dense blocks' outputs and the final norm + ReLU)."""
    reference = _perturbed_timm("densenet121")
    path = tmp_path / "densenet121.pth"
    torch.save(reference.state_dict(), path)
    x = np.random.default_rng(2).normal(size=(2, 3, SIZE, SIZE)).astype("float32")
    with torch.no_grad():
        logits = reference(torch.from_numpy(x)).numpy()
        feats = np.transpose(reference.forward_features(torch.from_numpy(x)).numpy(), (0, 2, 3, 1))
        stages = reference.forward_intermediates(torch.from_numpy(x), indices=[1, 2, 3, 4], intermediates_only=True)
    model = applications.load("densenet121", weights=str(path), input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    x = np.transpose(x, (0, 2, 3, 1))
    assert np.max(np.abs(to_numpy(model(x)) - logits)) <= tolerance(logits)
    assert np.std(logits) > 0.1
    trunk = keras.Model(model.input, model.get_layer("features-relu5").output)
    assert np.max(np.abs(to_numpy(trunk(x)) - feats)) <= tolerance(feats)
    backbone = applications.load("densenet121", weights=str(path), input_shape=(SIZE, SIZE, 3), features_only=True)
    got = backbone(x)
    assert list(got) == ["P2", "P3", "P4", "P5"]
    for key, stage in zip(got, stages):
        ref = np.transpose(stage.numpy(), (0, 2, 3, 1))
        assert np.max(np.abs(to_numpy(got[key]) - ref)) <= tolerance(ref), key


def test_timm_checkpoint_of_another_configuration_is_refused():
    state = {k: v.numpy() for k, v in _perturbed_timm("densenet121", block_config=(1, 2, 1, 1)).state_dict().items()}
    model = densenet.densenet(blocks=(1, 1, 1, 1), input_shape=(SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="does not match|Shape mismatch"):
        densenet.convert_densenet(state, model)
