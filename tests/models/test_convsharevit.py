"""ConvShareViT: the converter of the PyTorch-port layout, the two padding kinds, stochastic depth, the
token-grid feature and the builder's checks. (There is no official code or fixture; the harness checks the rest.)"""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper import applications
from keras_hyper.layers import DropPath, SharedConvAttention
from keras_hyper.models import _base, convsharevit

SMALL = dict(patch_size=8, embed_dim=16, depth=2, num_heads=2, kernel_size=3, mlp_ratio=2, num_classes=7)
X = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")


def _port_state(model):
    """The model's weights under the timm-like names and PyTorch layouts the converter documents."""
    state = {}
    for layer in model.layers:
        key = layer.name.replace("-", ".")
        weights = [to_numpy(w) for w in layer.weights]
        if isinstance(layer, keras.layers.Conv2D):
            state[f"{key}.weight"], state[f"{key}.bias"] = np.transpose(weights[0], (3, 2, 0, 1)), weights[1]
        elif isinstance(layer, keras.layers.Dense):
            state[f"{key}.weight"], state[f"{key}.bias"] = weights[0].T, weights[1]
        elif isinstance(layer, keras.layers.LayerNormalization):
            state[f"{key}.weight"], state[f"{key}.bias"] = weights
        elif layer.name == "embedding":
            state["cls_token"], state["pos_embed"] = weights
        elif weights:  # shared-convolution attention (qkv, proj) and MLP (fc1, fc2)
            parts = ("qkv", "proj") if isinstance(layer, SharedConvAttention) else ("fc1", "fc2")
            for i, part in enumerate(parts):
                state[f"{key}.{part}.weight"] = np.transpose(weights[2 * i], (3, 2, 0, 1))
                state[f"{key}.{part}.bias"] = weights[2 * i + 1]
    return state


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_converter_round_trip(padding):
    model = convsharevit.convsharevit(**SMALL, padding=padding)
    state = _port_state(model)
    assert state["blocks.0.attn.qkv.weight"].shape == (6, 1, 3, 3)  # nn.Conv2d(1, 3 * heads, k)
    assert state["blocks.1.mlp.fc2.weight"].shape == (1, 2, 3, 3)  # nn.Conv2d(r, 1, k)
    clone = convsharevit.convsharevit(**SMALL, padding=padding)
    convsharevit.convert_convsharevit(state, clone)
    np.testing.assert_allclose(to_numpy(clone(X)), to_numpy(model(X)), atol=1e-6)
    state["blocks.0.attn.extra"] = np.zeros(1, "float32")
    with pytest.raises(ValueError, match=r"unexpected keys.*blocks\.0\.attn\.extra"):
        convsharevit.convert_convsharevit(state, clone)


def test_padding_kinds_and_stochastic_depth():
    valid = convsharevit.convsharevit(**SMALL, drop_path_rate=0.2)
    assert valid.get_layer("blocks-0-attn").padding == "valid"
    rates = {layer.name: layer.rate for layer in valid.layers if isinstance(layer, DropPath)}
    assert rates == pytest.approx({"blocks-1-drop_path1": 0.2, "blocks-1-drop_path2": 0.2})
    same = convsharevit.convsharevit(**SMALL, padding="same")
    assert same.count_params() == valid.count_params()  # the padding changes the maps, not the kernels


def test_builder_rejects_bad_configurations():
    with pytest.raises(ValueError, match="embed_dim must be a square number"):
        convsharevit.convsharevit(**{**SMALL, "embed_dim": 24})
    with pytest.raises(ValueError, match="padding must be one of"):
        convsharevit.convsharevit(**SMALL, padding="full")
    with pytest.raises(ValueError, match="multiples of patch_size=8"):
        convsharevit.convsharevit(**SMALL, input_shape=(36, 36, 3))
    with pytest.raises(ValueError, match="smaller than the tile side"):
        convsharevit.convsharevit(**{**SMALL, "kernel_size": 5})


def test_variants_are_ours_and_have_no_weights():
    for name in ("convsharevit_valid", "convsharevit_same"):
        info = applications.model_info(name)
        assert (info.num_params, info.input_size, info.weight_tags) == (63_200, 32, ())
        assert info.features == (_base.Feature("P2", 4, 256),)  # the token grid at stride patch_size
