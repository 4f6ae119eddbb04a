"""SEPC's neck (not in the image-classifier harness: it maps an FPN pyramid to per-level head features): parity with
the official fixtures (plain PConv + iBN, and full SEPC with DCNv1), the README variants' parameter counts, the
integrated BatchNorm's pooled training statistics, serialization and argument checks."""

import json

import keras
import numpy as np
import pytest
from testutil import count_params, named_outputs, reference_dir, to_numpy

from keras_hyper.convert.checkpoint import read_checkpoint
from keras_hyper.layers import IntegratedBatchNorm
from keras_hyper.models import sepc


def _nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


@pytest.mark.parametrize("case", ["small", "small_dcn"])
def test_matches_the_official_sepc(case):
    """Every (cls, loc) output level and the pyramid after the last PConv (`feat/pconv_out_P*`, which localises a
    failure to the PConvs or the head) within the project's tolerance; one compiled program per case."""
    folder = reference_dir("sepc")
    meta = json.loads((folder / f"{case}.json").read_text())
    shapes = [tuple(s[2:]) for s in meta["input_shapes"]]
    neck = sepc.sepc_neck(**sepc.neck_kwargs(meta["kwargs"]), input_names=meta["input_names"], input_shapes=shapes)
    sepc.convert_sepc(read_checkpoint(folder / f"{case}.npz", prefix="sd/"), neck)
    assert sum(int(np.prod(w.shape)) for w in neck.trainable_weights) == meta["num_params"]
    pconv_out = neck.get_layer(f"Pconvs-{meta['kwargs']['Pconv_num'] - 1}").output
    feats = {f"feat/pconv_out_{name}": x for name, x in zip(meta["input_names"], pconv_out)}
    model = keras.Model(neck.inputs, {**neck.output, **feats})
    data = np.load(folder / f"{case}.npz")
    out = named_outputs(model, {name: _nhwc(data[f"input/{name}"]) for name in meta["input_names"]})
    tolerance = 1e-4 * max(1.0, max(np.abs(data[f"output/{k}"]).max() for k in meta["output_keys"]))
    for key in meta["output_keys"]:
        np.testing.assert_allclose(out[key], _nhwc(data[f"output/{key}"]), atol=tolerance, err_msg=key)
    for key in meta["feat_keys"]:
        expected = _nhwc(data[key])
        np.testing.assert_allclose(out[key], expected, atol=1e-4 * max(1.0, np.abs(expected).max()), err_msg=key)


@pytest.mark.once
def test_official_parameter_counts():
    """PConv 8,261,120, iBN + PConv 8,264,192, SEPC-lite 8,347,172, SEPC 8,845,052 (variants.json), built from the
    variants table without allocating; the official kwargs give the same model."""
    variants = json.loads((reference_dir("sepc") / "variants.json").read_text())["variants"]
    assert set(variants) == set(sepc.VARIANTS)
    for name, variant in variants.items():
        assert count_params(lambda name=name: sepc.sepc_variant(name)) == variant["num_params"], name
        kwargs = sepc.neck_kwargs(variant["kwargs"])
        assert {k: kwargs[k] for k in sepc.VARIANTS[name]} == sepc.VARIANTS[name], name
        assert count_params(lambda kwargs=kwargs: sepc.sepc_neck(**kwargs)) == variant["num_params"], name


def test_integrated_bn_pools_every_level_in_training():
    """Training statistics are those of all positions of all levels and samples together (not one per level), the
    moving statistics follow PyTorch (momentum 0.1, unbiased variance); inference uses the moving statistics."""
    rng = np.random.default_rng(0)
    # levels of different means and scales: a per-level BN would centre each one
    levels = [(rng.normal(size=(2, s, s, 4)) * (1 + i) + 2 * i).astype("float32") for i, s in enumerate((6, 3, 2))]
    bn = IntegratedBatchNorm()
    bn.build([x.shape for x in levels])
    gamma, beta = rng.uniform(0.5, 1.5, 4).astype("float32"), rng.normal(size=4).astype("float32")
    bn.gamma.assign(gamma)
    bn.beta.assign(beta)
    out = [to_numpy(y) for y in bn(levels, training=True)]
    pooled = np.concatenate([x.reshape(-1, 4) for x in levels]).astype("float64")
    mean, var = pooled.mean(0), pooled.var(0)
    for x, y in zip(levels, out):
        np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * gamma + beta, atol=1e-5)
    assert abs(out[2].mean() - beta.mean()) > 0.5  # the coarsest level is not centred on its own
    n = len(pooled)
    np.testing.assert_allclose(to_numpy(bn.moving_mean), 0.1 * mean, atol=1e-5)
    np.testing.assert_allclose(to_numpy(bn.moving_variance), 0.9 + 0.1 * var * n / (n - 1), atol=1e-5)
    inference = [to_numpy(y) for y in bn(levels)]
    moving_mean, moving_var = to_numpy(bn.moving_mean), to_numpy(bn.moving_variance)
    for x, y in zip(levels, inference):
        np.testing.assert_allclose(y, (x - moving_mean) / np.sqrt(moving_var + 1e-5) * gamma + beta, atol=1e-5)
    # inside the neck, training reaches every integrated BN (the PConvs' nested ones too)
    neck = sepc.sepc_variant("iBN_PConv", out_channels=4, pconv_num=1, num_outs=2)
    neck({"P3": levels[0], "P4": levels[1]}, training=True)
    for name in ("Pconvs-0", "cbn", "lbn"):
        layer = neck.get_layer(name)
        bn = layer.bn if name == "Pconvs-0" else layer
        assert np.abs(to_numpy(bn.moving_mean)).max() > 0, name


def test_upsampling_is_pytorchs_align_corners_bilinear_on_non_square_sizes():
    """The fixtures' levels are square; F.upsample_bilinear (align_corners=True) on odd, non-square sizes."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).normal(size=(2, 3, 5, 3)).astype("float32")
    for size in ((9, 6), (10, 5), (5, 3)):
        expected = torch.nn.functional.interpolate(torch.tensor(x), size, mode="bilinear", align_corners=True).numpy()
        got = to_numpy(sepc.upsample_align_corners(_nhwc(x), size))
        np.testing.assert_allclose(got, _nhwc(expected), atol=1e-6, err_msg=str(size))


@pytest.mark.once
def test_keras_file_round_trip(tmp_path):
    neck = sepc.sepc_variant("SEPC", out_channels=8, pconv_num=1, input_shapes=[(12, 12), (6, 6), (3, 3)], num_outs=3)
    rng = np.random.default_rng(1)
    for w in neck.weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * 0.3 + ("variance" in w.path))
    maps = {f"P{3 + i}": rng.normal(size=(1, s, s, 8)).astype("float32") for i, s in enumerate((12, 6, 3))}
    neck.save(tmp_path / "sepc.keras")
    loaded = keras.saving.load_model(tmp_path / "sepc.keras")
    expected, got = named_outputs(neck, maps), named_outputs(loaded, maps)
    assert list(expected) == ["P3_cls", "P3_loc", "P4_cls", "P4_loc", "P5_cls", "P5_loc"]
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, atol=1e-5, err_msg=key)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="LiteRT export is checked in the TensorFlow run")
def test_exports_to_litert_with_builtin_ops(tmp_path):
    """Full SEPC (DCNv1, the align-corners upsampling matrices, integrated BN), kept small: one PConv, three levels,
    exported for any batch size."""
    pytest.importorskip("ai_edge_litert")
    from keras_hyper.export import export_litert

    neck = sepc.sepc_variant("SEPC", out_channels=8, pconv_num=1, num_outs=3, input_shapes=[(11, 10), (6, 5), (3, 3)])
    rng = np.random.default_rng(2)
    for w in neck.weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * (0.1 if "offset" in w.path else 0.3) + ("var" in w.path))
    sample = [rng.normal(size=(1, h, w, 8)).astype("float32") for h, w in ((11, 10), (6, 5), (3, 3))]
    report = export_litert(neck, tmp_path / "sepc.tflite", sample=sample)
    assert not any(op.startswith(("Flex", "CUSTOM", "DELEGATE")) for op in report.ops), report.ops
    scale = max(1.0, max(float(np.abs(v).max()) for v in named_outputs(neck, dict(zip(neck.input, sample))).values()))
    assert report.max_abs_diff <= 1e-4 * scale, report


@pytest.mark.once
def test_rejects_configurations_the_official_neck_cannot_run():
    with pytest.raises(ValueError, match="in_channels must hold one width per level \\(5, num_outs\\), got 4"):
        sepc.sepc_neck(in_channels=(256,) * 4)
    with pytest.raises(ValueError, match="every in_channels entry must equal out_channels \\(64\\)"):
        sepc.sepc_neck(out_channels=64)
    with pytest.raises(ValueError, match="pconv_num must be an integer in \\[0, 5\\] .*got 6"):
        sepc.sepc_neck(pconv_num=6)
    with pytest.raises(ValueError, match="input_names must be 5 distinct names"):
        sepc.sepc_neck(input_names=("P3", "P3", "P4", "P5", "P6"))
    with pytest.raises(ValueError, match="at least 3x3"):
        sepc.sepc_neck(input_shapes=[(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)])
    with pytest.raises(ValueError, match="variant must be one of"):
        sepc.sepc_variant("SEPC_full")
    with pytest.raises(ValueError, match="level 1 is \\(5, 5\\), expected \\(4, 4\\)"):
        sepc.sepc_neck((8, 8), 8, 2, pconv_num=1, input_shapes=[(8, 8), (5, 5)])
    with pytest.raises(ValueError, match="static spatial sizes"):
        sepc.upsample_align_corners(keras.KerasTensor((1, None, None, 4)), (4, 4))
    with pytest.raises(ValueError, match="unknown official SEPC arguments \\['norm_cfg'\\]"):
        sepc.neck_kwargs({"out_channels": 256, "norm_cfg": None})
    with pytest.raises(ValueError, match="got type 'FPN'"):
        sepc.neck_kwargs({"type": "FPN", "out_channels": 256})
    with pytest.raises(ValueError, match="momentum must be in \\[0, 1\\], got 1.5"):
        IntegratedBatchNorm(momentum=1.5)
    # a plain-conv checkpoint lacks the offset convolutions of full SEPC: one error names them
    small = read_checkpoint(reference_dir("sepc") / "small.npz", prefix="sd/")
    with pytest.raises(ValueError, match="missing keys.*Pconvs.0.Pconv.0.conv_offset.weight"):
        sepc.convert_sepc(small, sepc.sepc_variant("SEPC", out_channels=16))
    with pytest.raises(ValueError, match="Shape mismatch: checkpoint tensor 'Pconvs.0.Pconv.0.weight'"):
        sepc.convert_sepc(small, sepc.sepc_variant("iBN_PConv", out_channels=8))
