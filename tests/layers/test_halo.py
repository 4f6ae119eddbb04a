"""HaloAttention against timm's HaloAttn (weights copied) for several block/halo sizes, strides and head
layouts; the PyTorch-style padded max pool; argument and input-size validation."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.convert.mapping import conv_kernel
from keras_hyper.layers import HaloAttention
from keras_hyper.layers.halo import BottleneckAttention, PaddedMaxPool2D

torch = pytest.importorskip("torch")
halo_attn = pytest.importorskip("timm.layers.halo_attn")

# (channels, height, width, HaloAttn kwargs): the fixture-like case, a stride-2 query, the odd-block stride
# (full-resolution attention + average pool, haloregnetz_b), a halo wider than the block, a non-square map,
# explicit dim_head / dim_out, qkv biases and the scaled position term
CASES = [
    (16, 8, 12, dict(num_heads=2, block_size=4, halo_size=1)),
    (16, 8, 8, dict(num_heads=4, block_size=4, halo_size=2, stride=2)),
    (24, 14, 7, dict(num_heads=8, block_size=7, halo_size=2, stride=2, qk_ratio=0.33)),
    (16, 4, 8, dict(num_heads=2, block_size=2, halo_size=3, dim_head=8)),
    (16, 8, 8, dict(num_heads=2, block_size=4, halo_size=0, dim_out=32, qkv_bias=True)),
    (16, 8, 8, dict(num_heads=2, block_size=4, halo_size=2, stride=2, avg_down=True, scale_pos_embed=True)),
]


@pytest.mark.parametrize("channels,height,width,kwargs", CASES, ids=[str(i) for i in range(len(CASES))])
def test_matches_timm_halo_attn(channels, height, width, kwargs):
    torch.manual_seed(0)
    ref = halo_attn.HaloAttn(channels, **kwargs).eval()
    with torch.no_grad():
        for p in ref.parameters():  # N(0, 1): a layout error cannot hide behind small weights
            p.normal_()
    x = np.random.default_rng(0).normal(size=(2, height, width, channels)).astype("float32")
    with torch.no_grad():
        expected = ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)

    layer = HaloAttention(**kwargs)
    layer.build(x.shape)
    layer.q.kernel.assign(conv_kernel(ref.q.weight.detach().numpy()))
    layer.kv.kernel.assign(conv_kernel(ref.kv.weight.detach().numpy()))
    if kwargs.get("qkv_bias"):
        layer.q.bias.assign(ref.q.bias.detach().numpy())
        layer.kv.bias.assign(ref.kv.bias.detach().numpy())
    layer.height_rel.assign(ref.pos_embed.height_rel.detach().numpy())
    layer.width_rel.assign(ref.pos_embed.width_rel.detach().numpy())
    out = to_numpy(layer(x))
    assert out.shape == expected.shape == tuple(layer.compute_output_shape(x.shape))
    np.testing.assert_allclose(out, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize(
    "height,width,kwargs",
    [(4, 6, dict(num_heads=2)), (4, 4, dict(num_heads=4, stride=2, dim_head=8, scale_pos_embed=True))],
    ids=["non_square", "stride2"],
)
def test_bottleneck_attention_matches_timm(height, width, kwargs):
    bottleneck_attn = pytest.importorskip("timm.layers.bottleneck_attn")
    torch.manual_seed(0)
    ref = bottleneck_attn.BottleneckAttn(16, feat_size=(height, width), **kwargs).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_()
    x = np.random.default_rng(0).normal(size=(2, height, width, 16)).astype("float32")
    with torch.no_grad():
        expected = ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    layer = BottleneckAttention(**kwargs)
    layer.build(x.shape)
    layer.qkv.kernel.assign(conv_kernel(ref.qkv.weight.detach().numpy()))
    layer.height_rel.assign(ref.pos_embed.height_rel.detach().numpy())
    layer.width_rel.assign(ref.pos_embed.width_rel.detach().numpy())
    np.testing.assert_allclose(to_numpy(layer(x)), expected, atol=1e-4 * max(1.0, np.abs(expected).max()))
    with pytest.raises(ValueError, match="static"):
        BottleneckAttention().build((None, None, 8, 16))


def test_config_round_trip_and_weight_shapes():
    layer = HaloAttention(num_heads=2, block_size=4, halo_size=1, stride=2, name="halo")
    x = np.random.default_rng(1).normal(size=(1, 8, 8, 16)).astype("float32")
    y = to_numpy(layer(x))
    assert tuple(layer.height_rel.shape) == (11, 8) and tuple(layer.kv.kernel.shape) == (1, 1, 16, 32)
    clone = HaloAttention.from_config(layer.get_config())
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(clone(x)), y, atol=1e-6)


def test_rejects_bad_arguments_and_sizes():
    with pytest.raises(ValueError, match="stride"):
        HaloAttention(stride=3)
    with pytest.raises(ValueError, match="num_heads"):
        HaloAttention(dim_out=10, num_heads=4)
    with pytest.raises(ValueError, match="block_size"):
        HaloAttention(block_size=0)
    with pytest.raises(ValueError, match="multiples of block_size=4"):
        HaloAttention(num_heads=2, block_size=4).build((None, 8, 10, 16))
    with pytest.raises(ValueError, match="multiple of num_heads"):
        HaloAttention(num_heads=3).build((None, 8, 8, 16))


def test_padded_max_pool_matches_torch_on_negative_inputs():
    x = np.random.default_rng(2).normal(size=(2, 9, 8, 3)).astype("float32") - 3.0
    expected = torch.nn.MaxPool2d(3, 2, 1)(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    layer = PaddedMaxPool2D(3, 2, 1)
    np.testing.assert_array_equal(to_numpy(layer(x)), expected)
    assert tuple(layer.compute_output_shape(x.shape)) == expected.shape
    assert isinstance(keras.layers.deserialize(keras.layers.serialize(layer)), PaddedMaxPool2D)
    with pytest.raises(ValueError, match="padding"):
        PaddedMaxPool2D(3, 2, 2)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="LiteRT export is checked in the TensorFlow run")
def test_bottleneck_attention_exports_to_litert_with_builtin_ops(tmp_path):
    """The harness exports HaloAttention (in the tiny model); the global attention of halo2botnet is not in
    any tiny model (it needs a static size), so it is exported here."""
    pytest.importorskip("ai_edge_litert")
    from keras_hyper.export import export_litert

    inputs = keras.Input((4, 6, 16))
    model = keras.Model(inputs, BottleneckAttention(num_heads=2, stride=2)(inputs))
    sample = np.random.default_rng(3).normal(size=(1, 4, 6, 16)).astype("float32")
    report = export_litert(model, tmp_path / "bot.tflite", sample=sample)
    assert not any(op.startswith(("FlexDelegate", "Flex", "CUSTOM")) for op in report.ops), report.ops
    assert report.max_abs_diff <= 1e-4, report
