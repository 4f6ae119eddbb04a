"""ConvFirst: the block's algebra, the converter's grouped-kernel layout against a PyTorch model written from the
same description (there is no official implementation), fusion, and error messages."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.convert.reference import tolerance
from keras_hyper.models import convfirst

TINY = dict(depths=(1, 1, 2, 1), dims=(16, 32, 48, 64))


def test_block_is_identity_when_the_mlp_output_is_zero():
    inputs = keras.Input((8, 8, 16))
    model = keras.Model(inputs, convfirst.convfirst_block(inputs, "b", group_width=4))
    layer = model.get_layer("b-mlp-fc2")
    layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype("float32")
    np.testing.assert_array_equal(to_numpy(model(x)), x)
    conv = model.get_layer("b-conv")
    assert conv.groups == 4 and tuple(conv.kernel.shape) == (3, 3, 4, 16)


def test_group_width_must_divide_the_channels():
    with pytest.raises(ValueError, match="group_width"):
        convfirst.convfirst(dims=(96, 192, 384, 764))
    inputs = keras.Input((8, 8, 12))
    with pytest.raises(ValueError, match="multiple of group_width=8"):
        convfirst.convfirst_block(inputs, "b")
    with pytest.raises(ValueError, match="kernel_size"):
        convfirst.convfirst(kernel_size=4)


torch = pytest.importorskip("torch")


class _Block(torch.nn.Module):
    def __init__(self, dim, group_width):
        super().__init__()
        self.conv = torch.nn.Conv2d(dim, dim, 3, padding=1, groups=dim // group_width, bias=False)
        self.norm = torch.nn.BatchNorm2d(dim)
        self.mlp = torch.nn.Module()
        self.mlp.fc1 = torch.nn.Conv2d(dim, 4 * dim, 1)
        self.mlp.fc2 = torch.nn.Conv2d(4 * dim, dim, 1)

    def forward(self, x):
        y = self.norm(self.conv(x))
        return x + self.mlp.fc2(torch.nn.functional.gelu(self.mlp.fc1(y)))


class _ConvFirst(torch.nn.Module):
    """The network as convfirst.py describes it, in PyTorch, for the converter's layout."""

    def __init__(self, depths, dims, num_classes, group_width=8):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, dims[0], 4, stride=4), torch.nn.BatchNorm2d(dims[0]))
        self.stages = torch.nn.ModuleList()
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            stage = torch.nn.Module()
            if i > 0:
                stage.downsample = torch.nn.Sequential(
                    torch.nn.BatchNorm2d(dims[i - 1]), torch.nn.Conv2d(dims[i - 1], dim, 2, stride=2)
                )
            stage.blocks = torch.nn.Sequential(*[_Block(dim, group_width) for _ in range(depth)])
            self.stages.append(stage)
        self.head = torch.nn.Module()
        self.head.norm = torch.nn.BatchNorm1d(dims[-1])
        self.head.fc = torch.nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            if hasattr(stage, "downsample"):
                x = stage.downsample(x)
            x = stage.blocks(x)
        return self.head.fc(self.head.norm(x.mean((2, 3))))


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    model = _ConvFirst(TINY["depths"], TINY["dims"], 10).eval()
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
    x = np.random.default_rng(1).normal(size=(2, 3, 64, 64)).astype("float32")
    with torch.no_grad():
        out = model(torch.from_numpy(x)).numpy()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    return state, np.transpose(x, (0, 2, 3, 1)), out


def test_converter_matches_a_pytorch_model_of_the_same_description(reference):
    state, x, expected = reference
    model = convfirst.convfirst(**TINY, num_classes=10, input_shape=(64, 64, 3), classifier_activation=None)
    convfirst.convert_convfirst(state, model)
    assert np.max(np.abs(to_numpy(model(x)) - expected)) <= tolerance(expected)
    assert np.std(expected) > 0.1
    fused = convfirst.reparameterize(model)
    assert np.max(np.abs(to_numpy(fused(x)) - expected)) <= tolerance(expected)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in fused.layers)


def test_converter_refuses_another_group_width(reference):
    state, _, _ = reference
    model = convfirst.convfirst(**TINY, group_width=4, num_classes=10, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="stages.0.blocks.0.conv.weight"):
        convfirst.convert_convfirst(state, model)
