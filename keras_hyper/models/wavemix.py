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

Input `(B, H, W, 3)`; the stem's output size must be divisible by `2 ** level`; features `(B, H/s, W/s, D)` with
s the stem's stride (`patch_size`, or `stride ** 2`); logits `(B, num_classes)`.
"""

import keras

from keras_hyper.convert import mapping
from keras_hyper.layers import WaveMixBlock
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.wavemix import BN_EPSILON, BN_MOMENTUM, LEVELS
from keras_hyper.models import _base

STEMS = ("pachify", "strided")


def _positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _stem_size(size, initial_conv, patch_size, stride):
    """The stem's output size along one axis of `size` pixels (None stays None)."""
    if size is None:
        return None
    if initial_conv == "pachify":
        return size // patch_size
    for _ in range(2):
        size = (size - 1) // stride + 1  # 3x3, padding 1
    return size


def wavemix(
    depth=16,
    mult=2,
    ff_channel=192,
    final_dim=192,
    dropout=0.5,
    level=3,
    initial_conv="pachify",
    patch_size=4,
    stride=2,
    *,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    num_classes=1000,
    classifier_activation="softmax",
    include_preprocessing=False,
    name="wavemix",
):
    """Builds a WaveMix classifier (the official `wavemix.classification.WaveMix`).

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
        include_top, weights, input_tensor, input_shape, pooling, num_classes, classifier_activation,
        include_preprocessing, name: as in `keras.applications`; `weights` here is a local file (use
            `keras_hyper.applications.load` or the variant builders for registered tags).

    Returns:
        A functional `keras.Model`.
    """
    for arg, value in (("depth", depth), ("mult", mult), ("ff_channel", ff_channel), ("final_dim", final_dim)):
        _positive_int(arg, value)
    if final_dim % 4:
        raise ValueError(f"final_dim must be divisible by 4 (blocks reduce it to final_dim / 4), got {final_dim}.")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}.")
    if initial_conv not in STEMS:
        raise ValueError(f"initial_conv must be one of {STEMS}, got {initial_conv!r}.")
    _positive_int("patch_size", patch_size)
    _positive_int("stride", stride)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
    _base.validate_head(include_top, pooling, num_classes, classifier_activation)

    total_stride = patch_size if initial_conv == "pachify" else stride**2
    multiple = total_stride * 2**level
    # 224 where the DWT can halve the stem's output `level` times, else the next size that it can (256 for the
    # level-4 strided ImageNet model)
    default_size = -(-224 // multiple) * multiple
    inputs = x = _base.image_input(input_tensor, input_shape, default_size=default_size, min_size=max(32, multiple))
    for size in inputs.shape[1:3]:
        stem = _stem_size(size, initial_conv, patch_size, stride)
        if stem is not None and stem % 2**level:
            raise ValueError(
                f"The stem turns input_shape={tuple(inputs.shape[1:])} into a {stem}-pixel side, which a {level}-level "
                f"DWT cannot halve {level} times: the stem's output must be divisible by 2**level = {2**level}."
            )
    if include_preprocessing:
        x = _base.preprocessing(x, ARCH.mean, ARCH.std)

    half = final_dim // 2
    if initial_conv == "pachify":
        x = Conv2D(final_dim // 4, 3, padding="same", name="conv-0")(x)
        x = Conv2D(half, 3, padding="same", name="conv-1")(x)
        x = Conv2D(final_dim, patch_size, strides=patch_size, name="conv-2")(x)
        x = keras.layers.Activation("gelu", name="conv-3")(x)  # exact (erf) GELU, as nn.GELU()
        x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="conv-4")(x)
    else:
        for index, filters in enumerate((half, final_dim)):
            # PyTorch pads 1 on every side; "same" would pad only the bottom/right of an even input
            x = keras.layers.ZeroPadding2D(1, name=f"conv-{index}-pad")(x)
            x = Conv2D(filters, 3, strides=stride, name=f"conv-{index}")(x)

    for index in range(depth):
        y = WaveMixBlock(level, mult, ff_channel, dropout, name=f"layers-{index}")(x)
        x = keras.layers.Add(name=f"layers-{index}-add")([y, x])

    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="pool-0")(x)
        x = keras.layers.Dense(num_classes, name="pool-2")(x)
        x = _base.predictions(x, classifier_activation)
    else:
        x = _base.pool(x, pooling)
    return _base.finish(inputs, x, name=name, weights=weights, arch=ARCH)


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
    m = mapping.StateDictMapper(state_dict, model, ignore=(r".*\.num_batches_tracked$",))
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
    ),
    _base.Variant(
        "wavemix_lite_192_16",
        dict(_IMAGENET, ff_channel=192, final_dim=192, level=1, initial_conv="pachify", patch_size=4),
        num_params=12_494_536,
        crop_pct=1.0,
        paper_top1=71.18,
    ),
    _base.Variant(
        "wavemix_256_16",
        dict(_IMAGENET, ff_channel=256, final_dim=256, level=3, initial_conv="pachify", patch_size=4),
        num_params=49_416_808,
        crop_pct=1.0,
        paper_top1=73.03,
    ),
    _base.Variant(
        "wavemix_256_16_level4",
        dict(_IMAGENET, ff_channel=256, final_dim=256, level=4, initial_conv="strided", stride=2),
        num_params=62_764_776,
        input_size=256,
        crop_pct=1.0,
        paper_top1=70.42,
    ),
)

ARCH = _base.Architecture(
    name="wavemix",
    builder=wavemix,
    convert=convert_wavemix,
    paper=_PAPER,
    variants=VARIANTS,
    license="MIT",
    source="https://github.com/pranavphoenix/WaveMix",
    classifier="pool-2",
    classifier_key="pool.2.weight",
    # A stride-2 stem and two DWT levels: the harness' 64x72 dynamic-size input gives a 32x36 map, which halves
    # twice; the fixture's level-3, level-1 and strided-stem configurations come from fixture_kwargs.
    tiny=dict(depth=1, mult=2, ff_channel=16, final_dim=16, level=2, patch_size=2, num_classes=10),
    fixture="wavemix",
    min_input_size=32,
    interpolation="bicubic",
    fixture_kwargs=fixture_kwargs,
)

WaveMix192 = _base.variant_builder("WaveMix192", "wavemix_192_16")
WaveMixLite192 = _base.variant_builder("WaveMixLite192", "wavemix_lite_192_16")
WaveMix256 = _base.variant_builder("WaveMix256", "wavemix_256_16")
WaveMix256Level4 = _base.variant_builder("WaveMix256Level4", "wavemix_256_16_level4")
