"""keras_hyper.ops.adaptive_max_pool2d against PyTorch's F.adaptive_max_pool2d: equal bins, overlapping bins
(sizes that do not divide) and outputs larger than the input (repeated positions)."""

import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.ops.pooling import adaptive_max_pool2d

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("size,out", [((8, 6), (4, 3)), ((9, 7), (4, 3)), ((33, 17), (17, 9)), ((3, 2), (5, 4))])
def test_matches_torch(size, out):
    x = np.random.default_rng(0).normal(size=(2, 3, *size)).astype("float32")
    expected = torch.nn.functional.adaptive_max_pool2d(torch.tensor(x), out).numpy()
    got = to_numpy(adaptive_max_pool2d(np.transpose(x, (0, 2, 3, 1)), out))
    np.testing.assert_array_equal(got, np.transpose(expected, (0, 2, 3, 1)))
