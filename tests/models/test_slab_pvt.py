"""SLAB-PVT: the converter on an official-layout state dict (key names and layouts of slab_pvt.py: separate `q`
and `kv`, `(1, N, C)` tables, `LinearNorm` buffers), its strictness, the stage layout and argument checks.
(Counts, LiteRT, the fusion and the round trips are in tests/harness.py; the one-off comparison with the
official module is described in zoo/slab_pvt.md.)"""

import numpy as np
import pytest
from _slab_state import common_state, randomise
from testutil import to_numpy

from keras_hyper.layers import PositionEmbedding, PRepBN, SimplifiedLinearAttention
from keras_hyper.models import slab_pvt

SMALL = dict(
    img_size=32, patch_size=4, embed_dims=(8, 16), num_heads=(1, 2), mlp_ratios=(2, 2), depths=(1, 2), num_classes=5
)


def _official_state(model):
    """The state dict the official PyramidVisionTransformer would hold for `model`'s weights."""
    state = {}
    for layer in model.layers:
        key = layer.name.replace("-", ".")
        common = common_state(layer, key, batches=7, iteration=299990, total_step=300000)
        if layer.name.endswith("-attn-qkv"):
            kernel, bias = (to_numpy(w) for w in layer.weights)
            dim = kernel.shape[0]
            base = key[: -len(".qkv")]
            state.update({f"{base}.q.weight": kernel[:, :dim].T, f"{base}.kv.weight": kernel[:, dim:].T})
            state.update({f"{base}.q.bias": bias[:dim], f"{base}.kv.bias": bias[dim:]})
        elif common is not None:
            state.update(common)
        elif isinstance(layer, PositionEmbedding):
            table = to_numpy(layer.pos_embed)
            state[key] = table.reshape(1, -1, table.shape[-1])
        elif isinstance(layer, SimplifiedLinearAttention):
            table = to_numpy(layer.positional_encoding)
            state[f"{key}.positional_encoding"] = table.reshape(1, -1, table.shape[-1])
            state[f"{key}.dwc.weight"] = np.transpose(to_numpy(layer.dwc.kernel), (2, 3, 0, 1))
            state[f"{key}.dwc.bias"] = to_numpy(layer.dwc.bias)
    return state


@pytest.fixture(scope="module")
def models():
    source = slab_pvt.slab_pvt(**SMALL, classifier_activation=None)
    randomise(source)
    return source, slab_pvt.slab_pvt(**SMALL, classifier_activation=None)


def test_official_layout_converts_back_to_the_same_model(models):
    source, target = models
    state = _official_state(source)
    assert "block2.1.attn.kv.weight" in state and state["pos_embed2"].shape == (1, 16, 16)
    slab_pvt.convert_slab_pvt(state, target)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(to_numpy(target(x)), to_numpy(source(x)), rtol=1e-6, atol=1e-6)
    steps = {int(to_numpy(layer.step)) for layer in target.layers if isinstance(layer, PRepBN)}
    assert steps == {10}  # iter 299990 of 300000: ten steps done


def test_converter_is_strict(models):
    source, target = models
    state = _official_state(source)
    with pytest.raises(ValueError, match="missing keys"):
        slab_pvt.convert_slab_pvt({k: v for k, v in state.items() if k != "block1.0.attn.q.bias"}, target)
    sr = {"block1.0.attn.sr.weight": np.zeros((8, 8, 8, 8)), "block1.0.attn.sr.bias": np.zeros(8)}
    with pytest.raises(ValueError, match="unexpected keys"):
        slab_pvt.convert_slab_pvt({**state, **sr}, target)
    shorter = {k: np.array(60000) if k.endswith(".total_step") else v for k, v in state.items()}
    with pytest.raises(ValueError, match="schedule mismatch"):
        slab_pvt.convert_slab_pvt(shorter, target)


def test_stage_layout():
    model = slab_pvt.slab_pvt(**SMALL, include_top=False)
    assert model.output_shape == (None, 4, 4, 16)
    assert model.get_layer("block2-1-attn").grid_size == (4, 4)
    assert tuple(model.get_layer("pos_embed1").pos_embed.shape) == (1, 8, 8, 8)
    assert model.get_layer("block1-0-norm1").ln_epsilon == 1e-6


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_heads=(3, 2)), "num_heads"),
        (dict(mlp_ratios=(2,)), "mlp_ratios"),
        (dict(img_size=36), "img_size"),
        (dict(depths=(1, 0)), "depths"),
        (dict(prepbn_r0=2.0), "r0"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        slab_pvt.slab_pvt(**{**SMALL, **kwargs})
