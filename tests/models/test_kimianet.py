"""KimiaNet (`densenet.kimianet`) against the official feature-extraction samples (KimiaLabMayo/KimiaNet): the
PyTorch model (torchvision DenseNet features + average pool + Linear `fc_4`, saved under nn.DataParallel) through
`densenet.convert_kimianet`, and the Keras one (keras.applications DenseNet weights in an h5 file, features =
global average of the `bn` layer's output) through `densenet.load_keras_weights`. A small DenseNet configuration
keeps these fast; the full topology's parameter count is checked against torchvision's."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper import applications
from keras_hyper.convert.reference import tolerance
from keras_hyper.models import densenet

SIZE = 64
SMALL = dict(blocks=(1, 2, 1, 1), growth_rate=8, num_init_features=16)

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


class _Official(torch.nn.Module):
    """The official sample's `fully_connected` module: `model` = Sequential(DenseNet features, avg pool)."""

    def __init__(self, features, classes):
        super().__init__()
        self.model = torch.nn.Sequential(features, torch.nn.AdaptiveAvgPool2d(1))
        self.fc_4 = torch.nn.Linear(features.norm5.num_features, classes)

    def forward(self, x):
        x = torch.flatten(self.model(x), 1)
        return x, self.fc_4(x)


def _perturb(module):
    torch.manual_seed(0)
    with torch.no_grad():
        for key, value in module.state_dict().items():
            if key.endswith("num_batches_tracked"):
                continue
            if key.endswith("running_var"):
                value.copy_(torch.rand_like(value) + 0.5)
            elif value.ndim > 1:
                value.copy_(torch.randn_like(value) / np.sqrt(np.prod(value.shape[1:])))
            else:
                value.copy_(torch.randn_like(value) * 0.2 + (1.0 if key.endswith("weight") else 0.0))
    return module.eval()


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    trunk = torchvision.models.DenseNet(
        growth_rate=SMALL["growth_rate"], block_config=SMALL["blocks"], num_init_features=SMALL["num_init_features"]
    ).features
    net = _perturb(_Official(trunk, 30))
    path = tmp_path_factory.mktemp("kimianet") / "KimiaNetPyTorchWeights.pth"
    torch.save(torch.nn.DataParallel(net).state_dict(), path)  # keys 'module.model.0...', as the official file
    x = np.random.default_rng(1).normal(size=(2, 3, SIZE, SIZE)).astype("float32")
    with torch.no_grad():
        feats, logits = (t.numpy() for t in net(torch.from_numpy(x)))
    return path, np.transpose(x, (0, 2, 3, 1)), feats, logits


def test_official_pytorch_checkpoint_logits_and_features(official):
    path, x, feats, logits = official
    model = applications.load(
        "kimianet", weights=str(path), input_shape=(SIZE, SIZE, 3), classifier_activation=None, **SMALL
    )
    assert model.get_layer("fc_4").units == 30
    assert np.max(np.abs(to_numpy(model(x)) - logits)) <= tolerance(logits)
    assert np.std(logits) > 0.1
    extractor = densenet.kimianet(include_top=False, pooling="avg", input_shape=(SIZE, SIZE, 3), **SMALL)
    extractor.set_weights(model.get_weights()[: len(extractor.weights)])
    assert np.max(np.abs(to_numpy(extractor(x)) - feats)) <= tolerance(feats)
    # the backbone's last stage feature is the map KimiaNet pools (pre-ReLU features-norm5)
    backbone = applications.load(
        "kimianet", weights=str(path), input_shape=(SIZE, SIZE, 3), features_only=True, out_indices=(-1,), **SMALL
    )
    pooled = to_numpy(backbone(x)["P5"]).mean(axis=(1, 2))
    assert np.max(np.abs(pooled - feats)) <= tolerance(feats)


def test_features_are_pooled_before_the_final_relu(official):
    _, _, feats, _ = official
    assert feats.min() < 0  # a ReLU before the pool would make them all >= 0


def test_official_keras_h5_weights(tmp_path):
    h5py = pytest.importorskip("h5py")
    from keras.src.applications import densenet as keras_densenet
    from keras.src.legacy.saving import legacy_h5_format

    # keras' generic DenseNet builder fixes growth 32 and a 64-channel stem; only the depth is small here
    blocks = (1, 2, 1, 1)
    reference = keras_densenet.DenseNet(list(blocks), include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    rng = np.random.default_rng(0)
    for layer in reference.layers:
        layer.set_weights(
            [
                (rng.uniform(0.5, 1.5, w.shape) if w.ndim == 1 else rng.normal(size=w.shape) / 8).astype("float32")
                for w in layer.get_weights()
            ]
        )
    path = tmp_path / "KimiaNetKerasWeights.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    # the official extractor: global average of layers[-3] ('bn') of DenseNet121(include_top=False, pooling='avg')
    bn = reference.get_layer("bn").output
    expected_model = keras.Model(reference.input, keras.layers.GlobalAveragePooling2D()(bn))
    model = densenet.kimianet(
        blocks=blocks, include_top=False, pooling="avg", bn_epsilon=1.001e-5, input_shape=(SIZE, SIZE, 3)
    )
    densenet.load_keras_weights(model, str(path))
    x = rng.normal(size=(2, SIZE, SIZE, 3)).astype("float32")
    expected = to_numpy(expected_model(x))
    assert np.max(np.abs(to_numpy(model(x)) - expected)) <= tolerance(expected)


def test_parameter_count_is_the_official_pytorch_models():
    trunk = torchvision.models.densenet121(weights=None).features
    official = sum(p.numel() for p in _Official(trunk, 30).parameters())
    assert applications.model_info("kimianet").num_params == official


def test_a_densenet_checkpoint_without_the_kimianet_head_is_refused(official):
    path, *_ = official
    state = {k.replace("fc_4", "classifier"): v.numpy() for k, v in torch.load(path, weights_only=True).items()}
    model = densenet.kimianet(input_shape=(SIZE, SIZE, 3), **SMALL)
    assert model.output_shape == (None, 30)  # KimiaNet's 30 TCGA classes by default
    with pytest.raises(ValueError, match="fc_4"):
        densenet.convert_kimianet(state, model)
