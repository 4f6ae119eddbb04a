"""HaloNet: the fixture's stem output, small timm ByobNets with the features the fixtures lack (SE, ECA, grouped
convs, a stem without pool, `downsample=''`, `bottle_in`/`linear_out`, a final conv, odd blocks with the
average-pool stride) converted from their state dicts, the variant configurations and backbone features against
timm's, and the builder's argument checks. (Whole-model parity and the per-stage features on the fixture cases,
through `features_only`, parameter counts and LiteRT export are in tests/harness.py.)"""

import dataclasses
import json

import keras
import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper import applications
from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.convert.reference import tolerance
from keras_hyper.models import halonet


def test_stem_matches_timm():
    """The stem's max pool, the one recorded intermediate that is not a backbone feature."""
    folder = reference_dir("halonet")
    meta = json.loads((folder / "tiny_strong.json").read_text())
    data = np.load(folder / "tiny_strong.npz")
    model = halonet.halonet(
        **halonet.fixture_kwargs(meta), num_classes=10, input_shape=(128, 128, 3), classifier_activation=None
    )
    halonet.convert_halonet(read_checkpoint(folder / "tiny_strong.npz", prefix="sd/"), model)
    probe = keras.Model(model.input, model.get_layer("stem-pool").output)
    out = to_numpy(probe(np.transpose(data["input"], (0, 2, 3, 1))))
    ref = np.transpose(data["feat/stem"], (0, 2, 3, 1))
    assert np.max(np.abs(out - ref)) <= tolerance(ref)


def _timm_cfg(byobnet, **kwargs):
    B = byobnet.ByoBlockCfg
    base = dict(
        blocks=(
            B(type="bottle", d=1, c=32, s=1, gs=8, br=0.5),
            byobnet.interleave_blocks(("bottle", "self_attn"), d=2, c=48, s=2, gs=8, br=0.5),
            B(type="self_attn", d=1, c=64, s=2, br=0.5, self_attn_kwargs=dict(block_size=2, halo_size=1, num_heads=2)),
        ),
        stem_chs=16,
        stem_type="tiered",
        stem_pool="",
        act_layer="silu",
        attn_layer="eca",
        self_attn_layer="halo",
        self_attn_kwargs=dict(block_size=4, halo_size=2, dim_head=8, num_heads=2),
    )
    return byobnet.ByoModelCfg(**{**base, **kwargs})


CONFIGS = {
    # eca_halonext26ts-like: tiered stem striding in its last conv, ECA, grouped convs, SiLU, dim_head
    "eca_next": dict(),
    # haloregnetz_b-like: one 3x3 stem conv, SE (rd_ratio), no shortcut where the shape changes, bottle_in,
    # linear_out, a final conv, 3x3 blocks (odd: full-resolution attention, then the 2x2 average pool)
    "regnetz": dict(
        stem_type="3x3",
        downsample="",
        num_features=96,
        attn_layer="se",
        attn_kwargs=dict(rd_ratio=0.25),
        block_kwargs=dict(bottle_in=True, linear_out=True),
        self_attn_kwargs=dict(block_size=3, halo_size=1, qk_ratio=0.33, num_heads=2),
    ),
    # halonet_h1-like 7x7 stem with its max pool; halo2botnet-like global bottleneck attention (stride 2: pool)
    "h1_bot": dict(stem_type="7x7", stem_pool="maxpool", attn_layer=None, act_layer="relu"),
}
SIZES = {"eca_next": 64, "regnetz": 48, "h1_bot": 64}


# The converter and the builder's wiring are backend-independent, and building three more models costs JAX
# (one compiled initializer per weight shape) most of this file's time budget: these run on TensorFlow and
# torch; the per-backend maths of every layer is covered by the fixture parity and tests/layers/test_halo.py.
@pytest.mark.skipif(keras.backend.backend() == "jax", reason="backend-independent; checked in the TF/torch runs")
@pytest.mark.parametrize("name", list(CONFIGS))
def test_small_timm_byobnet_converts_and_matches(name):
    torch = pytest.importorskip("torch")
    byobnet = pytest.importorskip("timm.models.byobnet")
    cfg = _timm_cfg(byobnet, **CONFIGS[name])
    if name == "regnetz":  # a 3x3 block at stride 8 and at stride 16: inputs are multiples of 48
        cfg = dataclasses.replace(
            cfg,
            blocks=(
                byobnet.ByoBlockCfg(type="bottle", d=1, c=24, s=2, gs=8, br=1.0),
                byobnet.interleave_blocks(("bottle", "self_attn"), d=2, c=32, s=2, gs=8, br=1.0),
                byobnet.ByoBlockCfg(type="self_attn", d=2, c=48, s=2, gs=8, br=1.0),
            ),
        )
    if name == "h1_bot":
        bot = dict(self_attn_layer="bottleneck", self_attn_kwargs=dict(num_heads=2))
        last = byobnet.ByoBlockCfg("self_attn", 1, 64, 2, br=0.5, **bot)
        cfg = dataclasses.replace(cfg, blocks=(*cfg.blocks[:2], last))
    size = SIZES[name]
    torch.manual_seed(0)
    ref = byobnet.ByobNet(cfg=cfg, num_classes=5, img_size=size).eval()
    with torch.no_grad():
        for key, value in ref.state_dict().items():
            if value.dtype.is_floating_point:
                if key.endswith("running_var"):
                    value.uniform_(0.5, 1.5)
                elif key.endswith(("bn.weight", "post_attn.weight")):
                    value.uniform_(-0.5, 1.5)
                else:
                    value.normal_(0.0, 0.3)
    x = np.random.default_rng(0).normal(size=(2, 3, size, size)).astype("float32")
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)).numpy()

    meta = {"kwargs": {"cfg": dataclasses.asdict(cfg)}}
    model = halonet.halonet(
        **halonet.fixture_kwargs(meta), num_classes=5, input_shape=(size, size, 3), classifier_activation=None
    )
    state = {k: v.numpy() for k, v in ref.state_dict().items()}
    halonet.convert_halonet(state, model)
    out = to_numpy(model(np.transpose(x, (0, 2, 3, 1))))
    np.testing.assert_allclose(out, expected, atol=tolerance(expected))

    del state[next(k for k in state if "self_attn.pos_embed" in k)]
    with pytest.raises(ValueError, match="missing keys"):
        halonet.convert_halonet(state, model)


@pytest.mark.parametrize("variant", halonet.VARIANTS, ids=[v.name for v in halonet.VARIANTS])
def test_variant_configurations_are_timms(variant):
    """Every registered configuration reads back from timm's own `model_cfgs` (no model is built)."""
    byoanet = pytest.importorskip("timm.models.byoanet")
    cfg = byoanet.model_cfgs[variant.timm_name.removesuffix("_256")]  # timm registers "<cfg>_256" for 256 px
    expected = halonet.ARCH.network_kwargs(halonet.fixture_kwargs({"kwargs": {"cfg": dataclasses.asdict(cfg)}}))
    ours = halonet.ARCH.network_kwargs({k: v for k, v in variant.kwargs.items() if k != "num_classes"})
    assert halonet._plan(**ours) == halonet._plan(**expected)
    for key in ("stem_chs", "stem_type", "stem_pool", "downsample", "num_features", "act", "width_factor"):
        assert ours[key] == expected[key], key


@pytest.mark.parametrize("variant", halonet.VARIANTS, ids=[v.name for v in halonet.VARIANTS])
def test_variant_features_are_timms(variant):
    """The declared backbone features are timm's `feature_info` past the stem (stride, channels), which ends in
    `final_conv`: the last stage's output, or the final 1x1 conv where there is one."""
    timm = pytest.importorskip("timm")
    info = timm.create_model(variant.timm_name, pretrained=False).feature_info
    assert info[0]["module"].startswith("stem") and info[-1]["module"] == "final_conv"
    features = applications.model_info(variant.name).features
    assert [(f.stride, f.channels) for f in features] == [(f["reduction"], f["num_chs"]) for f in info[1:]]
    assert [f.key for f in features] == ["P2", "P3", "P4", "P5"]


def test_builder_rejects_bad_arguments():
    tiny = {**halonet.ARCH.testing.tiny}
    with pytest.raises(ValueError, match="multiples of 8"):
        halonet.halonet(**tiny, input_shape=(36, 36, 3))
    with pytest.raises(ValueError, match="stem_type"):
        halonet.halonet(**{**tiny, "stem_type": "quad"}, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="Block type"):
        halonet.halonet(**{**tiny, "blocks": (dict(type="dark", d=1, c=8),)}, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="halo"):
        halonet.halonet(
            **{**tiny, "blocks": (dict(type="self_attn", d=1, c=8, self_attn_layer="lambda"),)},
            input_shape=(32, 32, 3),
        )
    with pytest.raises(ValueError, match="static input"):
        halonet.halonet(
            **{**tiny, "blocks": (dict(type="self_attn", d=1, c=8, self_attn_layer="bottleneck"),)},
            input_shape=(None, None, 3),
        )
    with pytest.raises(ValueError, match="attn_layer"):
        halonet.halonet(**{**tiny, "attn_layer": "cbam"}, input_shape=(32, 32, 3))
