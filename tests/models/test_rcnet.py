"""RCNet's neck (not in the image-classifier harness: it maps backbone features to a pyramid): parity with the
official RCFPN fixtures, the official parameter counts, PyTorch's resizing rules on odd sizes, serialization and
LiteRT export."""

import json

import keras
import numpy as np
import pytest
from testutil import count_params, named_outputs, reference_dir, to_numpy

from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.models import rcnet


def _neck_kwargs(kwargs):
    """`rcnet_neck` arguments of an official RCFPN configuration (variants.json / case json `kwargs`)."""
    conv_cfg = kwargs.get("out_conv_cfg", {"type": "DCNv2", "deform_groups": 2})
    norm_cfg = kwargs.get("norm_cfg")
    norm = {None: None, "BN": "batch_norm", "GN": "group_norm"}[norm_cfg and norm_cfg["type"]]
    return dict(
        in_channels=kwargs["in_channels"],
        out_channels=kwargs["out_channels"],
        num_outs=kwargs["num_outs"],
        start_level=kwargs.get("start_level", 0),
        add_extra_convs=kwargs.get("add_extra_convs", False),
        norm=norm,
        norm_groups=(norm_cfg or {}).get("num_groups", 32),
        fusion_conv={None: "conv", "Conv2d": "conv", "DCN": "dcn", "DCNv2": "dcnv2"}[conv_cfg and conv_cfg["type"]],
        deformable_groups=(conv_cfg or {}).get("deform_groups", 1),
    )


def _nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def _fixture_neck(case):
    meta = json.loads((reference_dir("rcnet") / f"{case}.json").read_text())
    shapes = [tuple(s[2:]) for s in meta["input_shapes"]]
    model = rcnet.rcnet_neck(**_neck_kwargs(meta["kwargs"]), input_names=meta["input_names"], input_shapes=shapes)
    rcnet.convert_rcnet(read_checkpoint(reference_dir("rcnet") / f"{case}.npz", prefix="sd/"), model)
    return meta, model


@pytest.mark.parametrize("case", ["small", "small_dcn"])
def test_matches_the_official_rcfpn(case):
    """Plain 3x3 fusion convolutions + BN, and the official DCNv2 (2 deformable groups); every output level within
    the project's tolerance (the RevFP intermediates too, which localise a failure to RevFP or the CSN)."""
    meta, model = _fixture_neck(case)
    data = np.load(reference_dir("rcnet") / f"{case}.npz")
    out = named_outputs(model, {name: _nhwc(data[f"input/{name}"]) for name in meta["input_names"]})
    tolerance = 1e-4 * max(1.0, max(np.abs(data[f"output/{k}"]).max() for k in meta["output_keys"]))
    for key in meta["output_keys"]:
        np.testing.assert_allclose(out[key], _nhwc(data[f"output/{key}"]), atol=tolerance, err_msg=key)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == meta["num_params"]


@pytest.mark.once
def test_official_parameter_counts():
    """retinanet_r50_rcfpn (DCNv2) 7,665,346, its plain-conv ablation 6,669,586, the GFL X101 GN config 7,665,346."""
    variants = json.loads((reference_dir("rcnet") / "variants.json").read_text())["variants"]
    assert len(variants) == 3
    for name, variant in variants.items():
        kwargs = _neck_kwargs(variant["kwargs"])
        assert count_params(lambda kwargs=kwargs: rcnet.rcnet_neck(**kwargs)) == variant["num_params"], name


def test_resizing_follows_pytorch_on_odd_sizes():
    """The fixtures' maps are all even; odd sizes exercise the replicate-padded pooling, ceil halving of the extra
    levels, bilinear resizing between non-multiple sizes and adaptive max pooling with overlapping bins."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 9, 7)).astype("float32")
    t = torch.tensor(x)
    pooled = F.max_pool2d(F.pad(t, [0, 1, 0, 1], "replicate"), (2, 2)).numpy()
    np.testing.assert_allclose(to_numpy(rcnet._resize(_nhwc(x), (5, 4))), _nhwc(pooled), atol=1e-6)
    up = F.interpolate(t, size=(17, 12), mode="bilinear").numpy()
    np.testing.assert_allclose(to_numpy(rcnet._resize(_nhwc(x), (17, 12))), _nhwc(up), atol=1e-5)
    # lexicographic order: (9, 7) < (10, 3), so the official node interpolates, even though 7 > 3
    odd = F.interpolate(t, size=(10, 3), mode="bilinear").numpy()
    np.testing.assert_allclose(to_numpy(rcnet._resize(_nhwc(x), (10, 3))), _nhwc(odd), atol=1e-5)
    same = _nhwc(x)
    assert rcnet._resize(same, (9, 7)) is same
    # the whole neck at odd sizes: ceil halving down the pyramid
    neck = rcnet.rcnet_neck((4, 8, 8), 16, start_level=0, fusion_conv="dcn", deformable_groups=1)
    sizes = [(19, 13), (10, 7), (5, 4)]
    maps = {
        f"C{i + 2}": rng.normal(size=(1, *s, c)).astype("float32") for i, (s, c) in enumerate(zip(sizes, (4, 8, 8)))
    }
    out = named_outputs(neck, maps)
    expected = [(19, 13), (10, 7), (5, 4), (3, 2), (2, 1)]
    assert [tuple(out[k].shape[1:3]) for k in rcnet.OUTPUT_NAMES] == expected
    assert all(np.isfinite(v).all() for v in out.values())


def test_keras_file_round_trip(tmp_path):
    neck = rcnet.rcnet_neck((8, 16), 16, start_level=0, fusion_conv="conv", norm="group_norm", norm_groups=4)
    rng = np.random.default_rng(1)
    for w in neck.weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * 0.3 + ("variance" in w.path))
    maps = {"C2": rng.normal(size=(1, 12, 10, 8)), "C3": rng.normal(size=(1, 6, 5, 16))}
    maps = {k: v.astype("float32") for k, v in maps.items()}
    neck.save(tmp_path / "rcnet.keras")
    loaded = keras.saving.load_model(tmp_path / "rcnet.keras")
    expected, got = named_outputs(neck, maps), named_outputs(loaded, maps)
    for key in rcnet.OUTPUT_NAMES:
        np.testing.assert_allclose(got[key], expected[key], atol=1e-5, err_msg=key)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="LiteRT export is checked in the TensorFlow run")
def test_exports_to_litert_with_builtin_ops(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from keras_hyper.export import export_litert

    meta, model = _fixture_neck("small_dcn")
    data = np.load(reference_dir("rcnet") / "small_dcn.npz")
    sample = [_nhwc(data[f"input/{name}"][:1]) for name in meta["input_names"]]
    report = export_litert(model, tmp_path / "rcnet.tflite", sample=sample)
    assert not any(op.startswith(("Flex", "CUSTOM", "DELEGATE")) for op in report.ops), report.ops
    assert report.max_abs_diff <= meta["tolerance"], report


@pytest.mark.once
def test_rejects_configurations_the_official_neck_cannot_run():
    with pytest.raises(ValueError, match="num_outs must be 5"):
        rcnet.rcnet_neck(num_outs=6)
    with pytest.raises(ValueError, match="num_outs \\(2\\) must be at least the 3 used backbone levels"):
        rcnet.rcnet_neck(num_outs=2)
    with pytest.raises(ValueError, match="a multiple of 16"):
        rcnet.rcnet_neck(out_channels=40)
    with pytest.raises(ValueError, match="fusion_conv must be one of"):
        rcnet.rcnet_neck(fusion_conv="dcnv3")
    with pytest.raises(ValueError, match="input_names must be 4 distinct names"):
        rcnet.rcnet_neck(input_names=("C3", "C4", "C5"))
    with pytest.raises(ValueError, match="norm_groups \\(32\\) must divide the 16 channels"):
        rcnet.rcnet_neck(out_channels=16, norm="group_norm")
    with pytest.raises(ValueError, match="static spatial sizes"):
        rcnet._resize(keras.KerasTensor((1, None, None, 4)), (4, 4))
