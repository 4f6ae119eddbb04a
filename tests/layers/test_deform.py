"""DeformConv2D against mmcv's ModulatedDeformConv2dPack / DeformConv2dPack forward, written with torchvision
(offset convolution, chunking, sigmoid of the mask part, torchvision.ops.deform_conv2d)."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.layers import DeformConv2D, PartDeformConv2D

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
F = torch.nn.functional


def _mmcv_pack(x, sd, strides, padding, dilation, groups, dg, modulated):
    """mmcv's `*DeformConv2dPack.forward` on NCHW tensors (state-dict names and layouts as mmcv's)."""
    out = F.conv2d(x, sd["conv_offset.weight"], sd["conv_offset.bias"], strides, padding, dilation)
    if modulated:
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        offset, mask = torch.cat((o1, o2), dim=1), torch.sigmoid(mask)
    else:
        offset, mask = out, None
    del groups, dg  # both read off the weight and offset shapes by torchvision
    return torchvision.ops.deform_conv2d(x, offset, sd["weight"], sd.get("bias"), strides, padding, dilation, mask)


def _randomise(layer, rng):
    """Offsets of a few pixels (the zero init would make it an ordinary convolution)."""
    for v in layer.weights:
        scale = 0.3 if "offset" in v.path else 1.0 / np.sqrt(np.prod(v.shape[:-1]) or 1)
        v.assign((rng.normal(size=v.shape) * scale).astype("float32"))


def _torch_state(layer):
    sd = {
        "weight": np.transpose(to_numpy(layer.kernel), (3, 2, 0, 1)),
        "conv_offset.weight": np.transpose(to_numpy(layer.offset_kernel), (3, 2, 0, 1)),
        "conv_offset.bias": to_numpy(layer.offset_bias),
    }
    if layer.use_bias:
        sd["bias"] = to_numpy(layer.bias)
    return {k: torch.tensor(np.ascontiguousarray(v)) for k, v in sd.items()}


@pytest.mark.parametrize(
    "kwargs,size",
    [
        (dict(filters=6, kernel_size=3, padding=1, deformable_groups=2), (7, 9)),
        (dict(filters=4, kernel_size=3, strides=2, padding=(1, 2), dilation=(1, 2), groups=2, modulated=False), (9, 8)),
        (dict(filters=4, kernel_size=(1, 3), padding=(0, 1), deformable_groups=4, use_bias=False), (5, 6)),
    ],
)
def test_matches_mmcv_pack(kwargs, size):
    rng = np.random.default_rng(0)
    layer = DeformConv2D(**kwargs)
    x = rng.normal(size=(2, *size, 8)).astype("float32")
    layer.build(x.shape)
    _randomise(layer, rng)
    out = to_numpy(layer(x))
    with torch.no_grad():
        ref = _mmcv_pack(
            torch.tensor(np.transpose(x, (0, 3, 1, 2))),
            _torch_state(layer),
            layer.strides,
            layer.padding,
            layer.dilation,
            layer.groups,
            layer.deformable_groups,
            layer.modulated,
        ).numpy()
    ref = np.transpose(ref, (0, 2, 3, 1))
    assert out.shape == ref.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(out, ref, atol=1e-5 * max(1.0, np.abs(ref).max()))


def test_starts_as_an_ordinary_convolution_and_learns_offsets():
    """The offset convolution is zero-initialised (offsets 0, masks sigmoid(0) = 0.5), and its kernel still gets a
    gradient: a training step moves the offsets."""
    rng = np.random.default_rng(1)
    layer = DeformConv2D(4, 3, padding=1)
    x = rng.normal(size=(2, 6, 5, 4)).astype("float32")
    out = to_numpy(layer(x))
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    plain = to_numpy(keras.ops.conv(padded, layer.kernel)) * 0.5 + to_numpy(layer.bias)
    np.testing.assert_allclose(out, plain, atol=1e-5)
    inputs = keras.Input((6, 5, 4))
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(x, rng.normal(size=(2, 6, 5, 4)).astype("float32"), epochs=1, verbose=0)
    assert np.abs(to_numpy(layer.offset_kernel)).max() > 0


def test_keras_file_round_trip_and_mixed_precision(tmp_path):
    rng = np.random.default_rng(2)
    inputs = keras.Input((6, 7, 4))
    layer = DeformConv2D(6, 3, padding=1, deformable_groups=2, groups=2, modulated=False, name="dcn")
    model = keras.Model(inputs, layer(inputs))
    _randomise(layer, rng)
    x = rng.normal(size=(1, 6, 7, 4)).astype("float32")
    model.save(tmp_path / "dcn.keras")
    loaded = keras.saving.load_model(tmp_path / "dcn.keras")
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), atol=1e-6)
    assert loaded.get_layer("dcn").get_config() == layer.get_config()
    half = DeformConv2D.from_config({**layer.get_config(), "dtype": "mixed_float16"})
    half.build(x.shape)
    half.set_weights(layer.get_weights())
    out = half(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    reference = to_numpy(layer(x))
    np.testing.assert_allclose(to_numpy(out).astype("float32"), reference, atol=1e-2 * np.abs(reference).max())


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="LiteRT export is checked in the TensorFlow run")
def test_exports_to_litert_with_builtin_ops(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from keras_hyper.export import export_litert

    rng = np.random.default_rng(3)
    inputs = keras.Input((9, 7, 8))
    layer = DeformConv2D(8, 3, strides=2, padding=1, deformable_groups=2)
    model = keras.Model(inputs, layer(inputs))
    _randomise(layer, rng)
    sample = rng.normal(size=(1, 9, 7, 8)).astype("float32")
    report = export_litert(model, tmp_path / "dcn.tflite", sample=sample)
    assert not any(op.startswith(("Flex", "CUSTOM", "DELEGATE")) for op in report.ops), report.ops
    assert "GATHER" in report.ops
    scale = max(1.0, float(np.abs(to_numpy(model(sample))).max()))
    assert report.max_abs_diff <= 1e-4 * scale, report


def test_part_deform_conv_shares_its_kernel_between_plain_and_deformable_calls():
    """SEPC's sepc_conv: `deform=False` is `F.conv2d` with the same kernel and bias (stride 2, padding 1 here), the
    deformable call is DeformConv2D (DCNv1) with those weights; `deformable=False` builds no offset convolution."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 9, 7, 4)).astype("float32")
    layer = PartDeformConv2D(6, 3, strides=2, padding=1)
    layer.build(x.shape)
    _randomise(layer, rng)
    t = torch.tensor(np.transpose(x, (0, 3, 1, 2)))
    kernel = torch.tensor(np.transpose(to_numpy(layer.kernel), (3, 2, 0, 1)))
    plain = F.conv2d(t, kernel, torch.tensor(to_numpy(layer.bias)), 2, 1).numpy()
    np.testing.assert_allclose(to_numpy(layer(x, deform=False)), np.transpose(plain, (0, 2, 3, 1)), atol=1e-5)
    reference = DeformConv2D(6, 3, strides=2, padding=1, modulated=False)
    reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    deformed = to_numpy(layer(x))
    np.testing.assert_allclose(deformed, to_numpy(reference(x)), atol=1e-6)
    assert np.abs(deformed - to_numpy(layer(x, deform=False))).max() > 1e-2  # the offsets do move the samples
    fixed = PartDeformConv2D(6, 3, deformable=False)
    fixed.build(x.shape)
    assert [w.name for w in fixed.weights] == ["kernel", "bias"]
    assert PartDeformConv2D.from_config(layer.get_config()).get_config() == layer.get_config()


@pytest.mark.once
def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="filters \\(6\\) must be a multiple of groups \\(4\\)"):
        DeformConv2D(6, 3, groups=4)
    with pytest.raises(ValueError, match="padding must be a non-negative integer"):
        DeformConv2D(6, 3, padding=-1)
    with pytest.raises(ValueError, match="kernel_size must be a positive integer or 2"):
        DeformConv2D(6, (3, 3, 3))
    with pytest.raises(ValueError, match="deformable_groups must be a positive integer"):
        DeformConv2D(6, 3, deformable_groups=0)
    with pytest.raises(ValueError, match="deformable_groups \\(3\\) must divide the 8 input channels"):
        DeformConv2D(6, 3, deformable_groups=3).build((1, 5, 5, 8))
    with pytest.raises(ValueError, match="batch, height, width, channels"):
        DeformConv2D(6, 3).build((1, 5, 8))
    with pytest.raises(ValueError, match="PartDeformConv2D supports groups=1 only, got groups=2"):
        PartDeformConv2D(6, 3, groups=2)
