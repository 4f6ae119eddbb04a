"""TopLeftAveragePooling2D against torch's floor-mode average pooling (the official CIFAR heads it reproduces),
smaller maps, dynamic sizes and its config."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.layers.pooling import TopLeftAveragePooling2D

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("size", [(4, 4), (5, 7), (7, 4), (6, 6)])
def test_equals_torch_avg_pool_wherever_that_gives_one_window(size):
    x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype("float32")
    expected = torch.nn.functional.avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 4).flatten(1).numpy()
    np.testing.assert_allclose(to_numpy(TopLeftAveragePooling2D(4)(x)), expected, atol=1e-6)


def test_averages_all_of_a_smaller_map_and_any_size():
    x = np.random.default_rng(1).normal(size=(2, 3, 9, 5)).astype("float32")
    np.testing.assert_allclose(to_numpy(TopLeftAveragePooling2D(4)(x)), x[:, :, :4].mean(axis=(1, 2)), atol=1e-6)
    inputs = keras.Input((None, None, 5))
    model = keras.Model(inputs, TopLeftAveragePooling2D(4)(inputs))
    assert model.output.shape == (None, 5)
    assert to_numpy(model(x)).shape == (2, 5)


def test_config_and_arguments():
    layer = TopLeftAveragePooling2D(8, name="pool")
    assert TopLeftAveragePooling2D.from_config(layer.get_config()).window == 8
    with pytest.raises(ValueError, match="window"):
        TopLeftAveragePooling2D(0)
