"""What the SLAB model tests share: random non-trivial weights, and the official state-dict entries of the layers
every SLAB backbone has (Dense, Conv2D, PRepBN's `LinearNorm` with its progress buffers)."""

import keras
import numpy as np
from testutil import to_numpy

from keras_hyper.layers import PRepBN


def randomise(model, seed=0, scale=1.0):
    """Uniform weights (variances positive) instead of the init's ones and zeros, so that a wrong map shows."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if weight.dtype == "int32":
            continue
        low = 0.5 if "variance" in weight.path else -0.5
        weight.assign((scale * rng.uniform(low, 1.5, weight.shape)).astype("float32"))


def common_state(layer, key, *, batches, iteration, total_step):
    """The official entries of `layer` under `key` if it is a Dense, Conv2D or PRepBN (the LinearNorm buffers
    `warm`/`iter`/`total_step` and BN's `num_batches_tracked` as given), else None."""
    if isinstance(layer, keras.layers.Dense):
        return {f"{key}.weight": to_numpy(layer.kernel).T, f"{key}.bias": to_numpy(layer.bias)}
    if isinstance(layer, keras.layers.Conv2D):
        return {
            f"{key}.weight": np.transpose(to_numpy(layer.kernel), (3, 2, 0, 1)),
            f"{key}.bias": to_numpy(layer.bias),
        }
    if isinstance(layer, PRepBN):
        gamma, beta, mean, var = (to_numpy(w) for w in layer.bn.weights)
        return {
            f"{key}.norm1.weight": to_numpy(layer.norm1.gamma),
            f"{key}.norm1.bias": to_numpy(layer.norm1.beta),
            f"{key}.norm2.alpha": to_numpy(layer.alpha),
            f"{key}.norm2.bn.weight": gamma,
            f"{key}.norm2.bn.bias": beta,
            f"{key}.norm2.bn.running_mean": mean,
            f"{key}.norm2.bn.running_var": var,
            f"{key}.norm2.bn.num_batches_tracked": np.array(batches),
            f"{key}.warm": np.array(0),
            f"{key}.iter": np.array(iteration),
            f"{key}.total_step": np.array(total_step),
        }
    return None
