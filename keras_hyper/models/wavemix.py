"""WaveMix (Jeevan, Viswanathan, Anandu, Sethi, "WaveMix: A Resource-efficient Neural Network for Image Analysis",
arXiv:2205.14375; paper 50 in PAPERS.md).

A convolutional stem, `depth` residual WaveMix blocks (`x + WaveMixBlock(x)`: channel reduction, multi-level
Haar DWT, feed-forwards with transposed-convolution upsampling; see `keras_hyper.layers.WaveMixBlock`) at the
stem's resolution, and a global-average-pool + Linear head. Two stems, as the official `initial_conv`:

- 'pachify': 3x3 conv to D/4, 3x3 conv to D/2 (both stride 1, no activation), a `patch_size` x `patch_size`
  stride-`patch_size` conv to D, exact GELU, BatchNorm;
- 'strided': two 3x3 convs of stride `stride` (to D/2, then D), nothing between or after.

Layer names follow the official state dict with '-' for '.' (`conv-2` for `conv.2`, `layers-3` for
`layers.3`, `pool-2` for the head's Linear), so the converter is a direct map.

Input `(B, H, W, 3)`; the stem's output size must be divisible by `2 ** level`; one feature, `P<log2 s>` (`S<s>`
where s is no power of two):
`(B, H/s, W/s, D)` with s the stem's stride (`patch_size`, or `stride ** 2`); logits `(B, num_classes)`.
"""

import keras

from keras_hyper.convert import mapping
from keras_hyper.layers import WaveMixBlock
from keras_hyper.layers._args import check_positive, check_rate
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.torch_defaults import batch_norm
from keras_hyper.layers.wavemix import LEVELS
from keras_hyper.models import _base

STEMS = ("pachify", "strided")


def _stem_size(size, initial_conv, patch_size, stride):
    """The stem's output size along one axis of `size` pixels (None stays None)."""
    if size is None:
        return None
    if initial_conv == "pachify":
        return size // patch_size
    for _ in range(2):
        size = (size - 1) // stride + 1  # 3x3, padding 1
    return size


def _stem_stride(depth, mult, ff_channel, final_dim, dropout, level, initial_conv, patch_size, stride):
    """Validates the configuration; returns the stem's stride (the stride of every feature map after it)."""
    check_positive(depth=depth, mult=mult, ff_channel=ff_channel, final_dim=final_dim)
    if final_dim % 4:
        raise ValueError(f"final_dim must be divisible by 4 (blocks reduce it to final_dim / 4), got {final_dim}.")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}.")
    if initial_conv not in STEMS:
        raise ValueError(f"initial_conv must be one of {STEMS}, got {initial_conv!r}.")
    check_positive(patch_size=patch_size, stride=stride)
    check_rate(dropout=dropout)
    return patch_size if initial_conv == "pachify" else stride**2


def _multiple(**kwargs):
    """What the input size must be a multiple of for the stem's output to halve `level` times."""
    return _stem_stride(**kwargs) * 2 ** kwargs["level"]


def _default_size(**kwargs):
    # 224 where the DWT can halve the stem's output `level` times, else the next size that it can (256 for the
    # level-4 strided ImageNet model)
    multiple = _multiple(**kwargs)
    return -(-224 // multiple) * multiple


def _features(**kwargs):
    return _base.pyramid([kwargs["final_dim"]], [_stem_stride(**kwargs)])


def wavemix(
    x,
    depth=16,
    mult=2,
    ff_channel=192,
    final_dim=192,
    dropout=0.5,
    level=3,
    initial_conv="pachify",
    patch_size=4,
    stride=2,
):
    """Builds a WaveMix classifier (Jeevan et al., "WaveMix: A Resource-efficient Neural Network for Image
    Analysis", arXiv:2205.14375; the official `wavemix.classification.WaveMix`).

    Args:
        depth: number of WaveMix blocks.
        mult: expansion of the feed-forwards' first 1x1 convolution.
        ff_channel: channels entering each feed-forward's transposed convolution.
        final_dim: the model width D (divisible by 4: a block reduces it to D/4 before the DWT).
        dropout: dropout rate inside the feed-forwards.
        level: DWT levels per block, 1 to 4.
        initial_conv: 'pachify' or 'strided' (see the module docstring).
        patch_size: stride of the 'pachify' stem.
        stride: stride of each of the two 'strided' stem convolutions.

    The input's side must be a multiple of the stem's stride times `2 ** level`; the default input is 224 where
    that allows, else the next such size (256 for the level-4 strided model).

    Features: one, the last block's output, at the stem's stride s (`patch_size`, or `stride ** 2`): key
    `P<log2 s>` (`S<s>` where s is no power of two), `final_dim` channels. Example:

        model = wavemix(depth=16, final_dim=192, ff_channel=192, level=3, num_classes=10)
        grid = wavemix(features_only=True)                 # {"P2": (B, 56, 56, 192)}
    """
    total = _stem_stride(depth, mult, ff_channel, final_dim, dropout, level, initial_conv, patch_size, stride)
    for size in x.shape[1:3]:
        stem = _stem_size(size, initial_conv, patch_size, stride)
        if stem is not None and stem % 2**level:
            raise ValueError(
                f"The stem turns input_shape={tuple(x.shape[1:])} into a {stem}-pixel side, which a {level}-level "
                f"DWT cannot halve {level} times: the stem's output must be divisible by 2**level = {2**level}."
            )

    half = final_dim // 2
    if initial_conv == "pachify":
        x = Conv2D(final_dim // 4, 3, padding="same", name="conv-0")(x)
        x = Conv2D(half, 3, padding="same", name="conv-1")(x)
        x = Conv2D(final_dim, patch_size, strides=patch_size, name="conv-2")(x)
        x = keras.layers.Activation("gelu", name="conv-3")(x)  # exact (erf) GELU, as nn.GELU()
        x = batch_norm("conv-4")(x)
    else:
        for index, filters in enumerate((half, final_dim)):
            # PyTorch pads 1 on every side; "same" would pad only the bottom/right of an even input
            x = keras.layers.ZeroPadding2D(1, name=f"conv-{index}-pad")(x)
            x = Conv2D(filters, 3, strides=stride, name=f"conv-{index}")(x)

    for index in range(depth):
        y = WaveMixBlock(level, mult, ff_channel, dropout, name=f"layers-{index}")(x)
        x = keras.layers.Add(name=f"layers-{index}-add")([y, x])

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="pool-0")(x)
        return keras.layers.Dense(num_classes, name="pool-2")(x)

    return _base.Network({_base.feature_key(total): x}, head)


def _transposed_kernel(w):
    """PyTorch ConvTranspose2d `(in, out, kh, kw)` -> Keras Conv2DTranspose `(kh, kw, out, in)`."""
    return w.transpose(2, 3, 1, 0)


def convert_wavemix(state_dict, model):
    """Fills `model` (built with `include_top=True`) from an official WaveMix state dict.

    Strict: every tensor is consumed (BatchNorm's `num_batches_tracked` is a training counter and is ignored)
    and every model variable is assigned; shapes are checked against both names. The `timm.py` copy of the
    official code names the head `head` instead of `pool.2`: such checkpoints are read too.
    """
    state_dict = {("pool.2" + k[4:] if k.startswith("head.") else k): v for k, v in state_dict.items()}
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if isinstance(layer, WaveMixBlock):
            m.conv2d(layer.reduction, f"{key}.reduction")
            for sub in (s for ff in layer.feedforwards for s in ff if s.weights):
                sub_key = f"{key}.{mapping.torch_prefix(sub.name)}"
                if isinstance(sub, keras.layers.Conv2DTranspose):
                    m.assign(sub.kernel, f"{sub_key}.weight", _transposed_kernel)
                    m.assign(sub.bias, f"{sub_key}.bias")
                else:
                    m.standard(sub, sub_key)
        else:
            m.standard(layer, key)
    m.finish()


def fixture_kwargs(meta):
    """Builder kwargs of a fixture case from the official constructor's kwargs."""
    kwargs = dict(meta["kwargs"])
    kwargs.pop("num_classes", None)
    return kwargs


_PAPER = _base.Paper("WaveMix: A Resource-efficient Neural Network for Image Analysis", "2205.14375", 50)

_IMAGENET = dict(depth=16, mult=2, dropout=0.5)

VARIANTS = (
    _base.Variant(
        "wavemix_192_16",
        dict(_IMAGENET, ff_channel=192, final_dim=192, level=3, initial_conv="pachify", patch_size=4),
        num_params=27_857_608,
        crop_pct=1.0,
        paper_top1=75.06,
        builder_name="WaveMix192",
    ),
    _base.Variant(
        "wavemix_lite_192_16",
        dict(_IMAGENET, ff_channel=192, final_dim=192, level=1, initial_conv="pachify", patch_size=4),
        num_params=12_494_536,
        crop_pct=1.0,
        paper_top1=71.18,
        builder_name="WaveMixLite192",
    ),
    _base.Variant(
        "wavemix_256_16",
        dict(_IMAGENET, ff_channel=256, final_dim=256, level=3, initial_conv="pachify", patch_size=4),
        num_params=49_416_808,
        crop_pct=1.0,
        paper_top1=73.03,
        builder_name="WaveMix256",
    ),
    _base.Variant(
        "wavemix_256_16_level4",
        dict(_IMAGENET, ff_channel=256, final_dim=256, level=4, initial_conv="strided", stride=2),
        num_params=62_764_776,
        input_size=256,
        crop_pct=1.0,
        paper_top1=70.42,
        builder_name="WaveMix256Level4",
    ),
)

ARCH = _base.Architecture(
    name="wavemix",
    network=wavemix,
    features=_features,
    input_size=_default_size,
    min_size=lambda **kwargs: max(32, _multiple(**kwargs)),
    convert=convert_wavemix,
    paper=_PAPER,
    variants=VARIANTS,
    license="MIT",
    source="https://github.com/pranavphoenix/WaveMix",
    classifier="pool-2",
    classifier_key="pool.2.weight",
    testing=_base.Testing(
        # A stride-2 stem and two DWT levels: the harness' 64x72 dynamic-size input gives a 32x36 map, which halves
        # twice; the fixture's level-3, level-1 and strided-stem configurations come from fixture_kwargs.
        tiny=dict(depth=1, mult=2, ff_channel=16, final_dim=16, level=2, patch_size=2, num_classes=10),
        min_input_size=32,
    ),
    reference=_base.Reference("wavemix", kwargs=fixture_kwargs),
    interpolation="bicubic",
)

wavemix = ARCH.builder
