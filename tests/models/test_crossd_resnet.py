"""Cross-D ResNet: the plain (`cross_d=False`) skeleton against torchvision's ResNet-18 through the converter, the
2-D -> Cross-D weight transfer with the 1x1 Cross-D projections, and the strict converter. (The Cross-D layer's own
parity is in tests/layers/test_crossd.py; the variant counts, stage features and training in the harness.)"""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.layers import CrossDConv2D
from keras_hyper.models import crossd_resnet

TINY = dict(depths=(1, 1), widths=(8, 16), stem_width=8, num_classes=5, input_shape=(32, 32, 3))


def _zero_rotations(model):
    for layer in model.layers:
        if isinstance(layer, CrossDConv2D):
            kernel, bias = layer.rotation_conv2.get_weights()
            kernel[:, 3], bias[3] = 0.0, 0.0
            layer.rotation_conv2.set_weights([kernel, bias])


def test_plain_skeleton_matches_torchvision_resnet18():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=7).eval()
    with torch.no_grad():
        for module in reference.modules():  # non-trivial statistics, so that a wrong BN mapping shows
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype("float32")
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    model = crossd_resnet.crossd_resnet(
        cross_d=False, num_classes=7, input_shape=(32, 32, 3), classifier_activation=None
    )
    assert model.count_params() - sum(int(np.prod(v.shape)) for v in model.non_trainable_weights) == sum(
        p.numel() for p in reference.parameters()
    )
    crossd_resnet.convert_crossd_resnet({k: v.numpy() for k, v in reference.state_dict().items()}, model)
    got = to_numpy(model.predict_on_batch(np.transpose(x, (0, 2, 3, 1))))
    assert np.max(np.abs(got - expected)) <= 1e-4 * max(1.0, np.abs(expected).max())


def test_transferred_2d_weights_give_the_2d_model_at_zero_rotation():
    plain = crossd_resnet.crossd_resnet(cross_d=False, classifier_activation=None, **TINY)
    rng = np.random.default_rng(1)
    for layer in plain.layers:  # non-trivial BN statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.uniform(-0.5, 0.5, layer.moving_mean.shape).astype("float32"))
    crossd = crossd_resnet.crossd_resnet(classifier_activation=None, **TINY)
    assert any(isinstance(layer, CrossDConv2D) and layer.kernel_size == 1 for layer in crossd.layers)
    crossd_resnet.transfer_2d_weights(plain, crossd)
    _zero_rotations(crossd)
    x = rng.normal(size=(2, 32, 32, 3)).astype("float32")
    expected = to_numpy(plain.predict_on_batch(x))
    np.testing.assert_allclose(
        to_numpy(crossd.predict_on_batch(x)), expected, atol=1e-4 * max(1, np.abs(expected).max())
    )


def test_converter_is_strict_and_reads_crossd_layers():
    model = crossd_resnet.crossd_resnet(**TINY)
    state = {}
    for layer in model.layers:
        key = layer.name.replace("-", ".")
        if isinstance(layer, CrossDConv2D):
            state[f"{key}.weights_3d"] = np.transpose(to_numpy(layer.kernel), (4, 3, 0, 1, 2))
            for index, dense in ((0, layer.rotation_conv1), (3, layer.rotation_conv2)):
                state[f"{key}.rotation_params.{index}.weight"] = to_numpy(dense.kernel).T[:, :, None, None]
                state[f"{key}.rotation_params.{index}.bias"] = to_numpy(dense.bias)
            bn = layer.rotation_norm
            for name, var in (("weight", bn.gamma), ("bias", bn.beta), ("running_mean", bn.moving_mean)):
                state[f"{key}.rotation_params.1.{name}"] = to_numpy(var)
            state[f"{key}.rotation_params.1.running_var"] = to_numpy(bn.moving_variance)
        elif isinstance(layer, keras.layers.BatchNormalization):
            for name, var in (("weight", layer.gamma), ("bias", layer.beta), ("running_mean", layer.moving_mean)):
                state[f"{key}.{name}"] = to_numpy(var)
            state[f"{key}.running_var"] = to_numpy(layer.moving_variance)
        elif isinstance(layer, keras.layers.Dense):
            state[f"{key}.weight"], state[f"{key}.bias"] = to_numpy(layer.kernel).T, to_numpy(layer.bias)
    clone = crossd_resnet.crossd_resnet(**TINY)
    crossd_resnet.convert_crossd_resnet(state, clone)
    for a, b in zip(model.weights, clone.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    del state["layer2.0.downsample.0.weights_3d"]
    with pytest.raises(ValueError, match="layer2.0.downsample.0.weights_3d"):
        crossd_resnet.convert_crossd_resnet(state, clone)


def test_transfer_refuses_a_model_of_another_layout():
    crossd = crossd_resnet.crossd_resnet(**TINY)
    other = crossd_resnet.crossd_resnet(cross_d=False, **{**TINY, "depths": (1,), "widths": (8,)})
    with pytest.raises(ValueError, match="no layer"):
        crossd_resnet.transfer_2d_weights(other, crossd)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(depths=()), "depths"),
        (dict(depths=(1, 1), widths=(8,)), "widths"),
        (dict(cross_d="yes"), "cross_d"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        crossd_resnet.crossd_resnet(input_shape=(32, 32, 3), **kwargs)
