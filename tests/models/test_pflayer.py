"""Parameter-free-layer networks (ResNet-50 conv/max/hybrid, ViT-max, PiT-max) against PyTorch references.

The fixture (`shared/reference/pflayer/tiny`, the official resnet50_max: output and stage features) is checked
by the harness, through `pflayer.from_official`, which is tested here. Here also:
- the ResNet blocks against torchvision's ResNet with the official spatial operations swapped in (the
  official `resnet_pf.py` is torchvision's v1.5 ResNet with renamed modules), for all three blocks;
- ViT-max and PiT-max against models assembled from timm's `PatchEmbed`, `Attention` and `Mlp`, the
  components the official `vit_pf.py` / `pit_pf.py` import, with the official state-dict layout;
- the layers' edge cases and errors.
"""

import json

import keras
import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper.convert.reference import tolerance
from keras_hyper.layers import EffLayer, GridSelfAttention, PositionEmbedding2D
from keras_hyper.models import pflayer, pflayer_vit

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
nn = torch.nn
F = torch.nn.functional


def _perturb(model):
    """Unit-scale weights and non-trivial BN statistics, so that a mapping error moves the output far."""
    torch.manual_seed(0)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key.endswith("num_batches_tracked"):
                continue
            if key.endswith("running_var"):
                value.copy_(torch.rand_like(value) + 0.5)
            elif value.ndim > 1:
                value.copy_(torch.randn_like(value) / np.sqrt(np.prod(value.shape[1:])))
            else:
                value.copy_(torch.randn_like(value) * 0.2 + (1.0 if key.endswith("weight") else 0.0))
    return model.eval()


def _compare(reference, model, convert, size, batch=2):
    x = np.random.default_rng(1).normal(size=(batch, 3, *size)).astype("float32")
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    convert({k: v.numpy() for k, v in reference.state_dict().items()}, model)
    out = to_numpy(model(np.transpose(x, (0, 2, 3, 1))))
    assert np.std(expected) > 0.05  # outputs differ across classes: the check is sensitive
    return float(np.max(np.abs(out - expected))), tolerance(expected)


# --- ResNet ---------------------------------------------------------------------------------------------------


def _torchvision_pf(block, depths):
    """torchvision's ResNet-50 layout with the official spatial operation of `block`, and the official keys."""
    from torchvision.models.resnet import Bottleneck, ResNet

    class Quarter(ResNet):  # width_mult 0.25: stage planes / 4, the stem keeps 64 channels
        def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
            return super()._make_layer(block, planes // 4, blocks, stride, dilate)

    model = Quarter(Bottleneck, list(depths))
    model.fc = nn.Linear(model.fc.in_features // 4, 7)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for b in stage:
            stride, width = b.conv2.stride[0], b.conv2.in_channels
            if block == "hybrid" and stride == 2:
                # AvgPool2d(2) then conv3x3; bn2 and the ReLU after it complete the official ConvBNReLU
                b.conv2 = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(width, width, 3, 1, 1, bias=False))
            elif block != "conv":
                # MaxPool2d(3, s, 1); the ReLU that torchvision applies after bn2 is a no-op on pooled ReLU outputs
                b.conv2, b.bn2 = nn.MaxPool2d(3, stride, 1), nn.Identity()
    return _perturb(model)


def _official_keys(state_dict, block):
    """torchvision key -> resnet_pf.py key (`conv1`->`conv1.0`, `layerX.Y.conv1`->`...reduction_block.0`, ...)."""
    renames = {
        "conv1": "reduction_block.0",
        "bn1": "reduction_block.1",
        "conv2": "conv_block.0",
        "conv2.1": "conv_block.1.0",
        "bn2": "conv_block.1.1" if block == "hybrid" else "conv_block.1",
        "conv3": "expansion_block.0",
        "bn3": "expansion_block.1",
    }
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] in ("conv1", "bn1"):
            key = ("conv1.0." if parts[0] == "conv1" else "conv1.1.") + ".".join(parts[1:])
        elif parts[0].startswith("layer") and parts[2] != "downsample":
            module = ".".join(parts[2:-1])
            key = ".".join(parts[:2] + [renames[module], parts[-1]])
        out[key] = value
    return out


@pytest.mark.parametrize("block", ["conv", "max", "hybrid"])
def test_resnet_blocks_match_torchvision_with_the_official_spatial_ops(block):
    depths = (1, 2, 1, 1)
    reference = _torchvision_pf(block, depths)
    model = pflayer.pflayer(
        block, depths, width_mult=0.25, num_classes=7, input_shape=(32, 32, 3), classifier_activation=None
    )

    def convert(state, m):
        pflayer.convert_pflayer(_official_keys(state, block), m)

    diff, tol = _compare(reference, model, convert, (32, 32), batch=1)
    assert diff <= tol
    if block == "max":
        return  # the harness checks the fusion of the max-pool blocks
    fused = pflayer.reparameterize(model)
    x = np.random.default_rng(2).normal(size=(1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(to_numpy(fused(x)), to_numpy(model(x)), atol=1e-4)


def test_max_pool_matches_pytorch_on_odd_and_even_sizes():
    """Stride-2 max pooling with PyTorch's symmetric padding, on even sizes (where 'same' would shift the
    windows) and odd ones: height 40 -> 20 -> 10 -> 5 -> 3 -> 2, width 72 -> 36 -> 18 -> 9 -> 5 -> 3."""
    reference = _torchvision_pf("max", (1, 1, 1, 1))
    model = pflayer.pflayer(
        "max", (1, 1, 1, 1), width_mult=0.25, num_classes=7, input_shape=(40, 72, 3), classifier_activation=None
    )
    diff, tol = _compare(
        reference, model, lambda state, m: pflayer.convert_pflayer(_official_keys(state, "max"), m), (40, 72)
    )
    assert diff <= tol


def test_hybrid_needs_sizes_divisible_by_32():
    with pytest.raises(ValueError, match="divisible by 32"):
        pflayer.pflayer("hybrid", input_shape=(72, 72, 3))
    pflayer.pflayer("hybrid", (1, 1, 1, 1), width_mult=0.25, input_shape=(None, None, 3))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(block="dw"), "block must be one of"),
        (dict(depths=(1, 1, 1)), "four positive integers"),
        (dict(width_mult=0.001), "width_mult"),
    ],
)
def test_resnet_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pflayer.pflayer(**kwargs)


def test_from_official_maps_the_factories_arguments():
    meta = json.loads((reference_dir("pflayer") / "tiny.json").read_text())
    assert pflayer.ARCH.reference.kwargs(meta) == dict(
        block="max", depths=(1, 2, 1, 1), width_mult=0.25, num_classes=10
    )
    # each official factory at its defaults is the registered variant of the same name
    variants = {v.name: v.kwargs for v in pflayer.VARIANTS}
    for factory, block in pflayer.FACTORIES.items():
        kwargs = pflayer.from_official({"num_classes": 1000, "pretrained": False}, factory)
        assert kwargs == {"block": block, "num_classes": 1000}
        expected = pflayer.ARCH.network_kwargs(variants[f"pflayer_{factory}"])
        assert pflayer.ARCH.network_kwargs({"block": block}) == expected
    unused = dict(zero_init_residual=True, replace_stride_with_dilation=[False, False, False], groups=1)
    assert pflayer.from_official(unused, "resnet50") == {"block": "conv"}
    for kwargs, match in [
        (dict(groups=32), r"resnet50_max\(groups=32\) has no equivalent"),
        (dict(replace_stride_with_dilation=[False, True, True]), "dilated stages"),
        (dict(layers=[1, 1, 1, 1]), r"takes no argument\(s\) \['layers'\]"),
    ]:
        with pytest.raises(ValueError, match=match):
            pflayer.from_official(kwargs)
    with pytest.raises(ValueError, match="factory must be one of"):
        pflayer.from_official({}, "resnet101")


def test_converter_lists_missing_and_unexpected_keys():
    model = pflayer.pflayer(**pflayer.ARCH.testing.tiny, input_shape=(64, 64, 3))
    other = torchvision.models.resnet18(num_classes=10)
    with pytest.raises(ValueError) as err:
        pflayer.convert_pflayer({k: v.numpy() for k, v in other.state_dict().items()}, model)
    message = str(err.value)
    assert "missing keys" in message and "conv1.0.weight" in message
    assert "unexpected keys" in message and "layer1.0.conv1.weight" in message


# --- ViT-max / PiT-max from timm components ---------------------------------------------------------------------


class _TorchEffLayer(nn.Module):
    """Linear(C, 3C) -> GELU -> MaxPool2d(3, 1, 1) on the square token grid -> GELU -> Linear(3C, C)."""

    def __init__(self, dim):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(3 * dim, dim)

    def forward(self, x):
        b, n, _ = x.shape
        side = int(n**0.5)
        x = F.gelu(self.qkv(x)).transpose(1, 2).reshape(b, -1, side, side)
        x = F.max_pool2d(x, 3, 1, 1).flatten(2).transpose(1, 2)
        return self.proj(F.gelu(x))


class _TorchBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, mixer):
        super().__init__()
        from timm.layers import Mlp
        from timm.models.vision_transformer import Attention

        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, qkv_bias=True) if mixer == "attn" else _TorchEffLayer(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _TorchViT(nn.Module):
    def __init__(self, img_size, patch_size, dim, depth, heads, mlp_ratio, num_classes):
        super().__init__()
        from timm.layers import PatchEmbed

        self.patch_embed = PatchEmbed(img_size, patch_size, 3, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, dim))
        self.blocks = nn.ModuleList(
            _TorchBlock(dim, heads, mlp_ratio, "attn" if i % 2 == 0 else "max") for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(1))


class _TorchPiT(nn.Module):
    def __init__(self, img_size, patch_size, stride, base_dims, depths, heads, mlp_ratio, num_classes):
        super().__init__()
        dims = [b * h for b, h in zip(base_dims, heads)]
        grid = (img_size - patch_size) // stride + 1
        self.patch_embed = nn.Module()
        self.patch_embed.conv = nn.Conv2d(3, dims[0], patch_size, stride)
        self.pos_embed = nn.Parameter(torch.zeros(1, dims[0], grid, grid))
        self.transformers, self.pools = nn.ModuleList(), nn.ModuleList()
        for s, (dim, depth, h) in enumerate(zip(dims, depths, heads)):
            stage = nn.Module()
            stage.blocks = nn.ModuleList(
                _TorchBlock(dim, h, mlp_ratio, "attn" if i % 2 == 0 else "max") for i in range(depth)
            )
            self.transformers.append(stage)
            if s < len(dims) - 1:
                pool = nn.Module()
                pool.conv = nn.Conv2d(dim, dims[s + 1], 3, 2, 1, groups=dim)
                self.pools.append(pool)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        x = self.patch_embed.conv(x)
        pos = self.pos_embed
        if x.shape[2:] != pos.shape[2:]:
            pos = F.interpolate(pos, x.shape[2:], mode="bicubic")
        x = x + pos
        for s, stage in enumerate(self.transformers):
            b, c, h, w = x.shape
            x = x.flatten(2).transpose(1, 2)
            for block in stage.blocks:
                x = block(x)
            x = x.transpose(1, 2).reshape(b, c, h, w)
            if s < len(self.pools):
                x = self.pools[s].conv(x)
        return self.head(self.norm(x.flatten(2).transpose(1, 2)).mean(1))


VIT = dict(patch_size=8, embed_dim=24, depth=2, num_heads=3, mlp_ratio=2.0, img_size=48)
PIT = dict(patch_size=8, stride=4, base_dims=(8, 8), depths=(2, 2), heads=(2, 4), mlp_ratio=2.0, img_size=48)


def test_vit_max_matches_timm_components():
    reference = _perturb(
        _TorchViT(48, VIT["patch_size"], VIT["embed_dim"], VIT["depth"], VIT["num_heads"], VIT["mlp_ratio"], 7)
    )
    model = pflayer_vit.pflayer_vit(**VIT, num_classes=7, classifier_activation=None)
    diff, tol = _compare(reference, model, pflayer_vit.convert_pflayer_vit, (48, 48))
    assert diff <= tol


@pytest.mark.parametrize("size", [48, 68])
def test_pit_max_matches_timm_components(size):
    """At the training size and at another one, where the position embedding is resized bicubically."""
    reference = _perturb(
        _TorchPiT(48, PIT["patch_size"], PIT["stride"], PIT["base_dims"], PIT["depths"], PIT["heads"], 2.0, 7)
    )
    model = pflayer_vit.pflayer_pit(**PIT, num_classes=7, input_shape=(size, size, 3), classifier_activation=None)
    diff, tol = _compare(reference, model, pflayer_vit.convert_pflayer_pit, (size, size))
    assert diff <= tol


def test_pit_builder_reads_a_deit_style_checkpoint_file(tmp_path):
    """The official transformers are trained with DeiT's script, which saves `{"model": state_dict, ...}`."""
    reference = _perturb(_TorchPiT(48, 8, 4, PIT["base_dims"], PIT["depths"], PIT["heads"], 2.0, 7))
    path = tmp_path / "pit_max.pth"
    torch.save({"model": reference.state_dict(), "epoch": 299}, path)
    model = pflayer_vit.pflayer_pit(**PIT, num_classes=7, weights=str(path), classifier_activation=None)
    x = np.random.default_rng(3).normal(size=(1, 3, 48, 48)).astype("float32")
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(to_numpy(model(np.transpose(x, (0, 2, 3, 1)))) - expected)) <= tolerance(expected)


# --- layers ---------------------------------------------------------------------------------------------------


def test_position_embedding_resize_is_pytorch_bicubic():
    layer = PositionEmbedding2D((5, 6))
    x = np.zeros((1, 9, 4, 3), "float32")
    layer.build(x.shape)
    pos = np.random.default_rng(0).normal(size=(5, 6, 3)).astype("float32")
    layer.embedding.assign(pos)
    expected = F.interpolate(torch.from_numpy(pos).permute(2, 0, 1)[None], (9, 4), mode="bicubic")
    np.testing.assert_allclose(to_numpy(layer(x))[0], expected[0].permute(1, 2, 0).numpy(), atol=1e-5)
    np.testing.assert_array_equal(to_numpy(layer(np.zeros((1, 5, 6, 3), "float32")))[0], pos)


def test_eff_layer_pools_with_minus_infinity_padding():
    """A border token takes the maximum of its in-grid neighbours only, even when they are all negative."""
    layer = EffLayer(expansion=1)
    layer.build((None, 3, 3, 1))
    for w in layer.weights:
        w.assign(np.ones(w.shape, "float32") if "kernel" in w.path else np.zeros(w.shape, "float32"))
    x = -0.05 * np.arange(1, 10, dtype="float32").reshape(1, 3, 3, 1)  # gelu increases on x > -0.75
    y = to_numpy(layer(x))
    gelu = to_numpy(keras.ops.gelu(keras.ops.gelu(np.float32(-0.05), approximate=False), approximate=False))
    np.testing.assert_allclose(y[0, 0, 0, 0], gelu, rtol=1e-6)


def test_grid_attention_equals_sequence_attention():
    """Attention over a grid is attention over its flattened tokens: timm's Attention with our weights."""
    from timm.models.vision_transformer import Attention

    reference = _perturb(Attention(12, 3, qkv_bias=True))
    layer = GridSelfAttention(3)
    layer.build((None, 3, 5, 12))
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    layer.qkv_kernel.assign(state["qkv.weight"].T)
    layer.qkv_bias.assign(state["qkv.bias"])
    layer.proj_kernel.assign(state["proj.weight"].T)
    layer.proj_bias.assign(state["proj.bias"])
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 12)).astype("float32")
    with torch.no_grad():
        expected = reference(torch.from_numpy(x.reshape(2, 15, 12))).numpy().reshape(2, 3, 5, 12)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, atol=1e-5)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: EffLayer(pool_size=2), "positive odd"),
        (lambda: EffLayer(expansion=0), "positive integer"),
        (lambda: GridSelfAttention(0), "positive integer"),
        (lambda: PositionEmbedding2D((2, 0)), "grid_size"),
        (lambda: pflayer_vit.pflayer_vit(attn_type="mean"), "attn_type"),
        (lambda: pflayer_vit.pflayer_pit(base_dims=(8, 8), depths=(1, 1), heads=(3, 4)), "multiple"),
        (lambda: pflayer_vit.pflayer_pit(depths=(1, 1)), "one entry per stage"),
    ],
)
def test_bad_arguments_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_attention_needs_divisible_channels():
    with pytest.raises(ValueError, match="divisible by num_heads=5"):
        GridSelfAttention(5)(np.zeros((1, 2, 2, 12), "float32"))
