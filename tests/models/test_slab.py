"""SLAB-DeiT: the official intermediate features of the reference fixture (the final norm through
`features_only`), the PRepBN fusion on non-trivial statistics, larger inputs, the strict converter and argument
checks; SLAB-Swin: the per-block window rule on square and non-square maps, non-square stage features against
square halves of the same weights, windowed SLA against the fixture's official attention output, the official
constructor's arguments (`from_official`) against the fixture's variants, the fusion and argument checks.
(PRepBN's schedule under `fit` is in tests/layers/test_prepbn.py; windowed, shifted SLA against a NumPy window
partition in tests/layers/test_linear_attention.py. Whole-model parity, variant counts, LiteRT export and the
reparameterisation check on the tiny model are in tests/harness.py.)"""

import json

import keras
import numpy as np
import pytest
from _slab_state import randomise
from testutil import reference_dir, to_numpy

from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.convert.reference import tolerance
from keras_hyper.layers import PRepBN, SimplifiedLinearAttention
from keras_hyper.models import slab
from keras_hyper.weights import files as weights_lib

FEATURES = {
    "patch_embed": "patch_embed-proj",
    "blocks.0.norm1": "blocks-0-norm1",
    "blocks.0.attn": "blocks-0-attn-proj",
    "blocks.0": "blocks-0-add2",
    "blocks.1": "blocks-1-add2",
}


@pytest.fixture(scope="module")
def fixture():
    folder = reference_dir("slab")
    meta = json.loads((folder / "tiny.json").read_text())
    data = np.load(folder / "tiny.npz")
    model = slab.slab_deit(
        **slab.fixture_kwargs(meta), num_classes=10, input_shape=(56, 56, 3), classifier_activation=None
    )
    state = read_checkpoint(folder / "tiny.npz", prefix="sd/")
    slab.convert_slab_deit(state, model)
    return model, data, state, meta


def test_intermediate_features_match_the_official_modules(fixture):
    model, data, _, _ = fixture
    probe = keras.Model(model.input, [model.get_layer(name).output for name in FEATURES.values()])
    outputs = probe(np.transpose(data["input"], (0, 2, 3, 1)))
    for (key, name), out in zip(FEATURES.items(), outputs):
        out = to_numpy(out)
        if key == "patch_embed":  # the official feature is taken after flattening to tokens
            out = out.reshape(out.shape[0], -1, out.shape[-1])
        ref = data[f"feat/{key}"].reshape(out.shape[0], -1, out.shape[-1])
        diff = np.max(np.abs(out.reshape(ref.shape) - ref))
        assert diff <= tolerance(ref), f"{key} ({name}): max |diff| {diff}"


def test_converted_schedule_counter_is_the_official_one(fixture):
    model, _, _, meta = fixture
    norms = [layer for layer in model.layers if isinstance(layer, PRepBN)]
    assert len(norms) == meta["prepbn_buffers"]["num_LinearNorm_modules"]
    assert all(int(to_numpy(layer.step)) == 0 for layer in norms)  # iter == total_step: no step taken


def test_fused_model_keeps_outputs_with_trained_statistics(fixture):
    model, data, _, _ = fixture
    x = np.transpose(data["input"], (0, 2, 3, 1))
    fused = slab.reparameterize(model)
    np.testing.assert_allclose(to_numpy(fused(x)), data["output"], atol=tolerance(data["output"]))
    kinds = {type(layer) for layer in fused.layers}
    assert PRepBN not in kinds and keras.layers.BatchNormalization not in kinds
    assert len(fused.layers) == len(model.layers) - 5


@pytest.mark.parametrize("attention", ["linear", "softmax"])
def test_inputs_larger_than_img_size_resize_the_tables(attention):
    model = slab.slab_deit(**{**slab.ARCH.testing.tiny, "attention": attention}, input_shape=(64, 64, 3))
    out = to_numpy(model(np.random.default_rng(1).normal(size=(1, 64, 64, 3)).astype("float32")))
    assert out.shape == (1, 10) and np.all(np.isfinite(out))
    # the stored tables keep the img_size grid, so weights move between input sizes
    assert tuple(model.get_layer("pos_embed").pos_embed.shape) == (1, 8, 8, 32)


def test_converter_is_strict(fixture):
    _, _, state, meta = fixture
    model = slab.slab_deit(**slab.fixture_kwargs(meta), num_classes=10, input_shape=(56, 56, 3))
    broken = {k: v for k, v in state.items() if k != "blocks.1.attn.positional_encoding"}
    with pytest.raises(ValueError, match="missing keys"):
        slab.convert_slab_deit(broken, model)
    with pytest.raises(ValueError, match="unexpected keys"):
        slab.convert_slab_deit({**state, "extra.weight": np.zeros(1)}, model)
    other = slab.slab_deit(**slab.fixture_kwargs(meta), num_classes=10, input_shape=(56, 56, 3), prepbn_steps=10)
    with pytest.raises(ValueError, match="schedule mismatch"):
        slab.convert_slab_deit(state, other)
    without = slab.slab_deit(**slab.fixture_kwargs(meta), num_classes=10, input_shape=(56, 56, 3), cls_token=False)
    slab.convert_slab_deit(state, without)  # cls_token is then deliberately ignored


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(attention="flash"), "attention"),
        (dict(norm="batchnorm"), "norm"),
        (dict(num_heads=3), "num_heads"),
        (dict(img_size=30), "img_size"),
        (dict(prepbn_r0=2.0), "r0"),
        (dict(drop_path_rate=1.0), "drop_path_rate"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        slab.slab_deit(**{**slab.ARCH.testing.tiny, **kwargs})


SWIN_56 = dict(img_size=56, patch_size=2, embed_dim=16, depths=(2, 2, 2), num_heads=(1, 2, 4), window_size=28)


def _windows(model):
    cores = [layer for layer in model.layers if layer.name.endswith("-attn")]
    return [(type(c).__name__[:6], c.window_size, c.shift_size) for c in cores]


def test_swin_windows_follow_the_official_rule():
    """LSS at 28/14/7 tokens with window 28: global SLA, then 7x7 softmax windows shifted by 3 in odd blocks,
    then one global window (the map is no larger than 7)."""
    model = slab.slab_swin(**SWIN_56, attn_type="LSS", num_classes=10)
    assert model.get_layer("layers-0-blocks-1-attn").grid_size == (28, 28)
    assert _windows(model) == [
        ("Simpli", None, 0),
        ("Simpli", None, 0),
        ("Window", 7, 0),
        ("Window", 7, 3),
        ("Window", None, 0),
        ("Window", None, 0),
    ]


def test_swin_windows_come_from_the_actual_non_square_map():
    """At 56x112 the maps are 28x56, 14x28, 7x14: the smaller side caps each window (28, 7, 7), unshifted where
    it does, and the map becomes a row of square windows instead of one global non-square one; an integer
    img_size build given that input gets the same windows (the tables it stores have the same shapes)."""
    expected = [
        ("Simpli", 28, 0),
        ("Simpli", 28, 0),
        ("Window", 7, 0),
        ("Window", 7, 3),
        ("Window", 7, 0),
        ("Window", 7, 0),
    ]
    for img_size in ((56, 112), 56):
        model = slab.slab_swin(**{**SWIN_56, "img_size": img_size}, attn_type="LSS", input_shape=(56, 112, 3))
        assert _windows(model) == expected
        assert model.get_layer("layers-0-blocks-0-attn").grid_size == (28, 28)
    assert slab.swin_window((7, 14), 7) == (7, False) and slab.swin_window((14, 28), 7) == (7, True)


# windows clamped to the smaller side everywhere at 32x64 (8x16, 4x8, 2x4 maps: windows 8, 4, 2, none shifted)
HALVES = dict(patch_size=4, embed_dim=8, depths=(2, 2, 2), num_heads=(1, 2, 4), window_size=8, attn_type="LSS")


@pytest.mark.parametrize("img_size", [(32, 64), 32])
def test_swin_non_square_stage_features_are_square_halves(img_size):
    """Independent computation of every stage feature of a 32x64 input: with the official windows of side
    min(H, W), never shifted there, each stage's two windows never mix, so the features are those of the two
    32x32 halves run through the square model (global attention in every stage) with the same weights. The old
    layout (one global H x W attention) fails this by orders of magnitude more than the tolerance."""
    wide = slab.slab_swin(**HALVES, img_size=img_size, input_shape=(32, 64, 3), features_only=True)
    square = slab.slab_swin(**HALVES, img_size=32, input_shape=(32, 32, 3), features_only=True)
    randomise(wide, scale=0.5)
    weights_lib.transfer(wide, square)
    assert [c[1:] for c in _windows(wide)] == [(8, 0), (8, 0), (4, 0), (4, 0), (2, 0), (2, 0)]
    assert all(c[1:] == (None, 0) for c in _windows(square))
    x = np.random.default_rng(3).normal(size=(2, 32, 64, 3)).astype("float32")
    got = {k: to_numpy(v) for k, v in wide(x).items()}
    left, right = ({k: to_numpy(v) for k, v in square(half).items()} for half in (x[:, :, :32], x[:, :, 32:]))
    assert list(got) == ["P2", "P3", "P4"]
    for key, value in got.items():
        ref = np.concatenate([left[key], right[key]], axis=2)
        assert value.shape == ref.shape
        np.testing.assert_allclose(value, ref, atol=tolerance(ref))


def test_windowed_sla_reproduces_the_official_attention_in_each_window(fixture):
    """The fixture's official block-0 attention (global SLA on its 14x14 grid) on a 14x28 map made of two copies
    of its input: with 14x14 windows each window's output is the official one; one global attention over the
    14x28 map (what the integer-size build did on non-square inputs) is not."""
    model, data, _, _ = fixture
    grid = data["feat/blocks.0.norm1"].reshape(1, 14, 14, 32)
    x = np.concatenate([grid, grid], axis=2)
    ref = data["feat/blocks.0.attn"].reshape(1, 14, 14, 32)
    qkv, proj = model.get_layer("blocks-0-attn-qkv"), model.get_layer("blocks-0-attn-proj")
    official = model.get_layer("blocks-0-attn")
    outs = []
    for window in (14, None):
        core = SimplifiedLinearAttention(2, grid_size=(14, 14), kernel_size=5, window_size=window)
        core.build((None, 14, 28, 96))
        core.set_weights(official.get_weights())
        outs.append(to_numpy(proj(core(qkv(x)))))
    windowed, global_ = outs
    for half in (windowed[:, :, :14], windowed[:, :, 14:]):
        assert np.max(np.abs(half - ref)) <= tolerance(ref)
    assert np.max(np.abs(global_[:, :, :14] - ref)) > 100 * tolerance(ref)


def _official_variants():
    return json.loads((reference_dir("slab") / "variants.json").read_text())


def test_from_official_gives_the_registered_variants():
    """The fixture's official SlabSwinTransformer kwargs (variants.json) map to the registered variants (whose
    parameter counts, the official ones recorded there, the harness checks)."""
    official = _official_variants()
    for variant in slab.SWIN_VARIANTS:
        kwargs = slab.from_official(official[variant.name]["kwargs"])
        assert kwargs.pop("input_shape") == (224, 224, 3) and kwargs.pop("num_classes") == 1000
        assert slab.SWIN_ARCH.network_kwargs(kwargs) == slab.SWIN_ARCH.network_kwargs(variant.kwargs)
        assert official[variant.name]["num_params"] == variant.num_params


def test_from_official_builds_the_official_non_square_model():
    """The official constructor's own defaults fill what is left out (window 7, "LLLL"); a (H, W) img_size
    fixes that input; num_classes=0 is the official identity head (the pooled final norm)."""
    kwargs = dict(_official_variants()["slab_swin_t"]["kwargs"])
    del kwargs["window_size"], kwargs["attn_type"]
    defaults = slab.from_official(kwargs)
    assert defaults["window_size"] == 7 and defaults["attn_type"] == "LLLL"
    kwargs.update(img_size=[32, 64], embed_dim=8, depths=[1, 1], num_heads=[1, 2], num_classes=0)
    model = slab.slab_swin(**slab.from_official(dict(kwargs, window_size=8, attn_type="LS")))
    assert model.input_shape == (None, 32, 64, 3) and model.output_shape == (None, 16)
    assert [c[1:] for c in _windows(model)] == [(8, 0), (4, 0)]  # 8x16 and 4x8 maps: windows of their height


def test_from_official_refuses_what_is_not_implemented():
    with pytest.raises(TypeError, match="no argument"):
        slab.from_official(dict(windowsize=7))
    for bad, match in (
        (dict(drop_rate=0.1), "drop_rate"),
        (dict(ape=True), "ape"),
        (dict(patch_norm=False), "patch_norm"),
        (dict(attn_type="LLM2"), "'M'"),
        (dict(norm_layer="nn.LayerNorm"), "LinearNorm"),
    ):
        with pytest.raises(ValueError, match=match):
            slab.from_official(bad)
    assert slab.from_official(dict(norm_layer="partial(LinearNorm, step=1000)"))["prepbn_steps"] == 1000


def test_swin_fusion_keeps_outputs_with_trained_statistics():
    model = slab.slab_swin(**slab.SWIN_ARCH.testing.tiny, input_shape=(32, 32, 3), classifier_activation=None)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, PRepBN):
            channels = layer.bn.gamma.shape[0]
            layer.bn.set_weights([rng.uniform(0.5, 1.5, channels).astype("float32") for _ in range(4)])
            layer.alpha.assign(rng.uniform(0.5, 1.5, 1).astype("float32"))
    x = rng.normal(size=(1, 32, 32, 3)).astype("float32")
    fused = slab.reparameterize(model)
    np.testing.assert_allclose(to_numpy(fused(x)), to_numpy(model(x)), atol=1e-4)
    assert not any(isinstance(layer, (PRepBN, keras.layers.BatchNormalization)) for layer in fused.layers)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(attn_type="LX"), "attn_type"),
        (dict(num_heads=(1,)), "num_heads"),
        (dict(img_size=36), "img_size"),
        (dict(img_size=(32, 36)), "img_size"),
        (dict(img_size=(32, 32, 32)), "img_size"),
        # 64x72: maps 32x36 / 16x18 / 8x9; the last stage's official window (4: smaller than 8) does not tile 8x9
        (dict(input_shape=(64, 72, 3)), "whole number"),
        # 64x64 on a 16-px layout: stage 1's softmax windows would be 8x8 (shifted), its tables are for 4x4
        (dict(img_size=16, softmax_window=8, input_shape=(64, 64, 3)), "laid out"),
    ],
)
def test_swin_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        slab.slab_swin(**{**slab.SWIN_ARCH.testing.tiny, **kwargs})
