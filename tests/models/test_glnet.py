"""GLNet: the official intermediate outputs of the reference fixture that are not backbone features, the
layouts the fixture does not cover (non-overlapped downsampling, learned slots, token labeling), the strict
converter and the builder's argument checks. (Whole-model and feature parity, the variants' parameter counts and
LiteRT export are in tests/harness.py.)"""

import json

import keras
import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper import applications
from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.convert.reference import tolerance
from keras_hyper.layers import SoftClusterAttention
from keras_hyper.models import glnet

# official module -> our layer whose output it is; stages.0-2 and norm are the backbone's features P2..P5, which
# the harness' reference parity compares (`reference.features`)
FEATURES = {
    "downsample_layers.0": "downsample_layers-0-5",
    "downsample_layers.1": "downsample_layers-1-1",
    "downsample_layers.2": "downsample_layers-2-1",
    "downsample_layers.3": "downsample_layers-3-1",
    "stages.3": "stages-3-blocks-0-add2",
}


@pytest.fixture(scope="module")
def fixture():
    folder = reference_dir("glnet")
    meta = json.loads((folder / "tiny.json").read_text())
    model = glnet.glnet(
        **glnet.fixture_kwargs(meta), num_classes=10, input_shape=(64, 64, 3), classifier_activation=None
    )
    glnet.convert_glnet(read_checkpoint(folder / "tiny.npz", prefix="sd/"), model)
    return model, np.load(folder / "tiny.npz")


def test_intermediate_features_match_the_official_modules(fixture):
    model, data = fixture
    probe = keras.Model(model.input, [model.get_layer(name).output for name in FEATURES.values()])
    for (key, name), out in zip(FEATURES.items(), probe(np.transpose(data["input"], (0, 2, 3, 1)))):
        ref = np.transpose(data[f"feat/{key}"], (0, 2, 3, 1))
        diff = np.max(np.abs(to_numpy(out) - ref))
        assert diff <= tolerance(ref), f"{key} ({name}): max |diff| {diff}"


def test_converter_is_strict(fixture):
    model, _ = fixture
    state = dict(read_checkpoint(reference_dir("glnet") / "tiny.npz", prefix="sd/"))
    state.pop("stages.0.blocks.0.slot_scale")
    state["stages.0.blocks.0.extra"] = np.zeros(3, "float32")
    with pytest.raises(ValueError, match=r"missing keys.*stages\.0\.blocks\.0\.slot_scale") as err:
        glnet.convert_glnet(state, model)
    assert "stages.0.blocks.0.extra" in str(err.value)


SMALL_STL = dict(
    depth=(1, 1, 1, 1),
    embed_dim=(16, 16, 32, 32),
    head_dim=16,
    mlp_ratios=(2, 2, 2, 2),
    mixing_modes=("glmix", "glmix", "glmix", "mha"),
    num_slots=4,
    downsample_style="non_ovlp",
    transition_layout="norm.proj",
    num_classes=5,
)


def _round_trip(model):
    """The model's weights as an official-layout state dict (names and layouts of the official GLNet)."""
    state = {}
    for layer in model.layers:
        key = layer.name.replace("-", ".")
        if isinstance(layer, keras.layers.BatchNormalization):
            for name, w in zip(("weight", "bias", "running_mean", "running_var"), layer.get_weights()):
                state[f"{key}.{name}"] = w
        elif isinstance(layer, keras.layers.LayerNormalization):
            state[f"{key}.weight"], state[f"{key}.bias"] = layer.get_weights()
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            state[f"{key}.weight"] = np.transpose(to_numpy(layer.kernel), (2, 3, 0, 1))
            state[f"{key}.bias"] = to_numpy(layer.bias)
        elif isinstance(layer, keras.layers.Conv2D):
            state[f"{key}.weight"] = np.transpose(to_numpy(layer.kernel), (3, 2, 0, 1))
            state[f"{key}.bias"] = to_numpy(layer.bias)
        elif isinstance(layer, keras.layers.Dense):
            state[f"{key}.weight"] = to_numpy(layer.kernel).T
            state[f"{key}.bias"] = to_numpy(layer.bias)
        elif isinstance(layer, SoftClusterAttention):
            block = key.rsplit(".", 1)[0]
            state[f"{block}.slot_scale"] = to_numpy(layer.slot_scale)
            if layer.slot_init == "param":
                state[f"{block}.init_slots"] = to_numpy(layer.init_slots)
            qkv, qkv_b, out, out_b = (to_numpy(w) for w in layer.attention.weights)
            state.update(
                {
                    f"{block}.relation_mha.in_proj_weight": qkv.T,
                    f"{block}.relation_mha.in_proj_bias": qkv_b,
                    f"{block}.relation_mha.out_proj.weight": out.T,
                    f"{block}.relation_mha.out_proj.bias": out_b,
                }
            )
        elif layer.weights and "mha_op" in key:
            qkv, qkv_b, out, out_b = (to_numpy(w) for w in layer.weights)
            state.update(
                {
                    f"{key}.in_proj_weight": qkv.T,
                    f"{key}.in_proj_bias": qkv_b,
                    f"{key}.out_proj.weight": out.T,
                    f"{key}.out_proj.bias": out_b,
                }
            )
    return state


def test_non_overlapped_layout_with_learned_slots_has_the_official_names():
    model = glnet.glnet(**SMALL_STL, slot_init="param", input_shape=(64, 64, 3))
    names = {layer.name for layer in model.layers}
    # stem: conv 4x4/4 then BN; transitions ('norm.proj'): BN then conv 2x2/2
    assert {"downsample_layers-0-0", "downsample_layers-0-1", "downsample_layers-1-0", "downsample_layers-1-1"} <= names
    assert isinstance(model.get_layer("downsample_layers-1-0"), keras.layers.BatchNormalization)
    assert model.get_layer("downsample_layers-0-0").kernel_size == (4, 4)
    assert model.get_layer("downsample_layers-3-1").output.shape == (None, 2, 2, 32)
    # no cpe, no mlp_dw, no layer scale in the stl layout
    assert not any(n.endswith(("pos_conv", "ls1", "mlp-1")) for n in names if not n.startswith("stages-3"))
    assert model.get_layer("stages-0-blocks-0-glmix").init_slots.shape == (1, 4, 16)
    clone = glnet.glnet(**SMALL_STL, slot_init="param", input_shape=(64, 64, 3))
    glnet.convert_glnet(_round_trip(model), clone)
    x = np.random.default_rng(1).normal(size=(1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(to_numpy(clone(x)), to_numpy(model(x)), atol=1e-6)


def test_token_labeling_adds_half_the_max_of_the_auxiliary_head():
    model = glnet.glnet(**SMALL_STL, token_labeling=True, classifier_activation=None, input_shape=(64, 64, 3))
    x = np.random.default_rng(2).normal(size=(2, 64, 64, 3)).astype("float32")
    features = to_numpy(keras.Model(model.input, model.get_layer("norm").output)(x))
    head, aux = model.get_layer("head"), model.get_layer("tklb_aux_head")
    tokens = features.reshape(2, -1, features.shape[-1])
    ref = tokens.mean(1) @ to_numpy(head.kernel) + to_numpy(head.bias)
    ref += 0.5 * (tokens @ to_numpy(aux.kernel) + to_numpy(aux.bias)).max(1)
    np.testing.assert_allclose(to_numpy(model(x)), ref, atol=1e-5)


def test_builder_rejects_bad_configurations():
    with pytest.raises(ValueError, match="mixing_modes must be 4 entries"):
        glnet.glnet(mixing_modes=("glmix", "glmix", "glmix", "sgmha"))
    with pytest.raises(ValueError, match="depth must have 4 entries"):
        glnet.glnet(depth=(1, 1, 1))
    with pytest.raises(ValueError, match="head_dim must be a positive integer dividing"):
        glnet.glnet(head_dim=40)
    with pytest.raises(ValueError, match="num_slots must be square"):
        glnet.glnet(**{**SMALL_STL, "num_slots": 8})
    with pytest.raises(ValueError, match="downsample_style must be one of"):
        glnet.glnet(downsample_style="overlapped")
    with pytest.raises(ValueError, match="transition_layout must be one of"):
        glnet.glnet(transition_layout="proj")
    with pytest.raises(ValueError, match="cpe_ks must be 0 or an odd"):
        glnet.glnet(cpe_ks=2)


def test_variants_are_registered_without_weight_tags():
    info = applications.model_info("glnet_16g")
    assert info.num_params == 106_055_161 and info.weight_tags == ()
    assert applications.model_info("glnet_9g_tklb").num_params == 60_779_617
