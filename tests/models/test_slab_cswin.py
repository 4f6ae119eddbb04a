"""SLAB-CSwin: the converter on an official-layout state dict (key names and layouts of slab_cswin.py:
`stage1_conv_embed.{0,2}`, `attns.{0,1}` with `get_v`/`dwc`/`positional_encoding`/`scale`, `merge{i}`,
`LinearNorm` buffers), the official stripe rule per stage, the PRepBN fusion on non-trivial statistics and
argument checks. (Counts, LiteRT and the harness round trips are in tests/harness.py; the stripe attention
against NumPy in tests/layers/test_cswin_attention.py; the one-off comparison with the official module is
described in zoo/slab_cswin.md.)"""

import keras
import numpy as np
import pytest
from _slab_state import common_state, randomise
from testutil import to_numpy

from keras_hyper.layers import CrossShapedWindowAttention, PRepBN
from keras_hyper.models import slab_cswin

# 32 px: SLA in 4-wide vertical and horizontal stripes (8x8), softmax in 2-wide stripes (4x4), a global softmax
# stage (2x2); the harness' tiny configuration has a global SLA stage
SMALL = dict(
    img_size=32,
    embed_dim=8,
    depths=(1, 1, 1),
    num_heads=(2, 2, 4),
    split_sizes=(1, 2, 1),
    la_split_sizes=(4, 2, 1),
    attn_type="LSS",
    mlp_ratio=2.0,
    num_classes=5,
)


def _official_state(model):
    """The state dict the official CSWinTransformer would hold for `model`'s weights."""
    state = {}
    for layer in model.layers:
        key = layer.name.replace("-", ".")
        common = common_state(layer, key, batches=3, iteration=120000, total_step=120000)
        if common is not None:
            state.update(common)
        elif isinstance(layer, CrossShapedWindowAttention):
            for b, (core, lepe) in enumerate(zip(layer.cores, layer.lepe)):
                state[f"{key}.{b}.get_v.weight"] = np.transpose(to_numpy(lepe.kernel), (2, 3, 0, 1))
                state[f"{key}.{b}.get_v.bias"] = to_numpy(lepe.bias)
                if layer.attention == "linear":
                    table = to_numpy(core.positional_encoding)
                    state[f"{key}.{b}.positional_encoding"] = table.reshape(1, -1, table.shape[-1])
                    state[f"{key}.{b}.dwc.weight"] = np.transpose(to_numpy(core.dwc.kernel), (2, 3, 0, 1))
                    state[f"{key}.{b}.dwc.bias"] = to_numpy(core.dwc.bias)
                    state[f"{key}.{b}.scale"] = np.zeros((1, 1, core.positional_encoding.shape[-1]), "float32")
    return state


@pytest.fixture(scope="module")
def models():
    source = slab_cswin.slab_cswin(**SMALL, unused_scale=False, classifier_activation=None)
    randomise(source, scale=0.5)
    return source, slab_cswin.slab_cswin(**SMALL, classifier_activation=None)


def test_stripes_follow_the_official_rule(models):
    source, _ = models
    cores = [source.get_layer(f"stage{i}-0-attns") for i in (1, 2, 3)]
    assert [(c.attention, c.split_size) for c in cores] == [("linear", 4), ("softmax", 2), ("softmax", None)]
    assert [tuple(core.positional_encoding.shape) for core in cores[0].cores] == [(1, 8, 4, 4), (1, 4, 8, 4)]
    assert source.get_layer("norm").ln_epsilon == 1e-5  # nn.LayerNorm's default, as the official LinearNorm


def test_official_layout_converts_back_to_the_same_model(models):
    source, target = models  # target keeps the official unused `scale`s, source does not
    state = _official_state(source)
    assert "stage1.0.attns.1.positional_encoding" in state and "merge2.conv.weight" in state
    slab_cswin.convert_slab_cswin(state, target)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(to_numpy(target(x)), to_numpy(source(x)), rtol=1e-6, atol=1e-6)
    slab_cswin.convert_slab_cswin(state, source)  # with unused_scale=False the `scale`s are deliberately ignored
    with pytest.raises(ValueError, match="missing keys"):
        slab_cswin.convert_slab_cswin({k: v for k, v in state.items() if k != "stage1.0.attns.0.scale"}, target)
    with pytest.raises(ValueError, match="unexpected keys"):
        slab_cswin.convert_slab_cswin({**state, "stage1.0.attns.0.sr.weight": np.zeros(1)}, source)


def test_fused_model_keeps_outputs_with_trained_statistics(models):
    source, _ = models
    fused = slab_cswin.reparameterize(source)
    x = np.random.default_rng(2).normal(size=(1, 32, 32, 3)).astype("float32")
    expected = to_numpy(source(x))
    np.testing.assert_allclose(to_numpy(fused(x)), expected, atol=1e-4 * max(1.0, np.abs(expected).max()))
    assert not any(isinstance(layer, (PRepBN, keras.layers.BatchNormalization)) for layer in fused.layers)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(attn_type="LSX"), "attn_type"),
        (dict(num_heads=(2, 2)), "num_heads"),
        (dict(num_heads=(2, 3, 4)), "num_heads"),
        (dict(la_split_sizes=(3, 2, 1)), "stripes"),
        (dict(img_size=40), "img_size"),
        (dict(prepbn_steps=0), "total_steps"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        slab_cswin.slab_cswin(**{**SMALL, **kwargs})
