"""CV-CNN U-Net and its real-valued twins, the segmentation family of Chatterjee, Tummala, Speck and Nürnberger,
"Complex Network for Complex Problems: A comparative study of CNN and Complex-valued CNN" (IEEE IPAS 2022,
arXiv:2302.04584), who segment brain tumours in MRI with complex-valued U-Nets and compare them with the real
U-Net (CNN) and a real U-Net of twice its parameters (CNNx2).

The paper published no model code; this is the U-Net of Ronneberger et al. (arXiv:1505.04597) with padded
convolutions and batch norm, in complex form built from `keras_hyper.layers.complex` with the conventions of the
paper's library torchcomplex (see `keras_hyper.models.cvcnn`): the image enters as the real part (imaginary part
0), every convolution, transposed convolution, batch norm and activation is complex, skip connections
concatenate complex channels (`ComplexConcatenate`), and the per-pixel logits are the moduli of the final 1x1
complex convolution. Not registered in the image-classifier harness (its output is a segmentation map, not
class probabilities): `tests/models/test_cvcnn_unet.py` tests it.
"""

import keras

from keras_hyper.layers._args import check_positive
from keras_hyper.layers.complex import (
    Cardioid,
    ComplexBatchNormalization,
    ComplexConcatenate,
    ComplexConv2D,
    ComplexConv2DTranspose,
    ComplexMaxPooling2D,
    CReLU,
    Magnitude,
    ModReLU,
    RealToComplex,
    ZReLU,
)
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.torch_defaults import BN_MOMENTUM, batch_norm
from keras_hyper.models import _base

COMPLEX_ACTIVATIONS = {"crelu": CReLU, "modrelu": ModReLU, "zrelu": ZReLU, "cardioid": Cardioid}
COMPLEX_POOLINGS = ("split", "modulus")
# CNNx2's widths: the real twin's scaled by sqrt(2), about twice the parameters of the real U-Net of `widths`
CNNX2_SCALE = 2**0.5


def _check(widths, num_classes, complex_activation, complex_pooling):
    if len(widths) < 2 or any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in widths):
        raise ValueError(f"widths must hold at least two positive integers (levels), got {widths!r}.")
    check_positive(num_classes=num_classes)
    if complex_activation not in COMPLEX_ACTIVATIONS:
        raise ValueError(f"complex_activation must be one of {tuple(COMPLEX_ACTIVATIONS)}, got {complex_activation!r}.")
    if complex_pooling not in COMPLEX_POOLINGS:
        raise ValueError(f"complex_pooling must be one of {COMPLEX_POOLINGS}, got {complex_pooling!r}.")


def cvcnn_unet(
    widths=(16, 32, 64, 128, 256),
    complex_valued=True,
    complex_activation="crelu",
    complex_pooling="split",
    num_classes=2,
    output_activation="softmax",
    weights=None,
    input_tensor=None,
    input_shape=None,
    include_preprocessing=False,
    name="cvcnn_unet",
):
    """Builds a complex-valued U-Net (`complex_valued=True`) or its real twin (arXiv:2302.04584).

    Args:
        widths: channels of each level, the last being the bottleneck (complex channels for the CV-CNN); each of
            the `len(widths) - 1` downsamplings halves height and width, which must therefore be multiples of
            `2 ** (len(widths) - 1)`. CNNx2 is the real twin with widths scaled by `CNNX2_SCALE` (sqrt(2)).
        complex_valued: complex layers (CV-CNN) or real ones (CNN, CNNx2).
        complex_activation, complex_pooling: as `keras_hyper.models.cvcnn.cvcnn`.
        num_classes: output channels (classes, background included).
        output_activation: applied to the per-pixel logits in float32, `"softmax"` by default, None for logits.
            The CV-CNN's logits are moduli (>= 0), so a per-class softmax suits it; a sigmoid of a modulus never
            falls below 0.5.
        weights: a local weights file of the same configuration, or None.
        input_tensor, input_shape, include_preprocessing, name: as keras.applications (default input 128x128x3).

    Returns:
        A `keras.Model` mapping `(B, H, W, C)` images to `(B, H, W, num_classes)` maps.
    """
    widths = tuple(widths)
    _check(widths, num_classes, complex_activation, complex_pooling)
    if output_activation is not None:
        try:
            keras.activations.get(output_activation)
        except (ValueError, TypeError) as err:
            raise ValueError(f"Unknown output_activation {output_activation!r}.") from err
    levels = len(widths) - 1
    inputs = x = _base.image_input(input_tensor, input_shape, default_size=128, min_size=max(32, 2**levels))
    for size in inputs.shape[1:3]:
        if size is not None and size % 2**levels:
            raise ValueError(f"Input height and width must be multiples of {2**levels}, got {inputs.shape[1:3]}.")
    if include_preprocessing:
        x = _base.preprocessing(x, _base.IMAGENET_MEAN, _base.IMAGENET_STD)
    if complex_valued:
        x = RealToComplex(name="to_complex")(x)

    def conv_block(x, width, prefix):
        for index in range(2):
            if complex_valued:
                x = ComplexConv2D(width, 3, padding="same", use_bias=False, name=f"{prefix}-conv{index}")(x)
                x = ComplexBatchNormalization(momentum=BN_MOMENTUM, scale_matrix="full", name=f"{prefix}-bn{index}")(x)
                x = COMPLEX_ACTIVATIONS[complex_activation](name=f"{prefix}-act{index}")(x)
            else:
                x = Conv2D(width, 3, padding="same", use_bias=False, name=f"{prefix}-conv{index}")(x)
                x = batch_norm(f"{prefix}-bn{index}")(x)
                x = keras.layers.ReLU(name=f"{prefix}-act{index}")(x)
        return x

    skips = []
    for level, width in enumerate(widths[:-1]):
        x = conv_block(x, width, f"down-{level}")
        skips.append(x)
        if complex_valued and complex_pooling == "modulus":
            x = ComplexMaxPooling2D(2, name=f"down-{level}-pool")(x)
        else:
            x = keras.layers.MaxPooling2D(2, name=f"down-{level}-pool")(x)
    x = conv_block(x, widths[-1], "bottleneck")
    for level in reversed(range(levels)):
        width = widths[level]
        if complex_valued:
            x = ComplexConv2DTranspose(width, 2, strides=2, name=f"up-{level}-upsample")(x)
            x = ComplexConcatenate(name=f"up-{level}-concat")([skips[level], x])
        else:
            x = keras.layers.Conv2DTranspose(width, 2, strides=2, name=f"up-{level}-upsample")(x)
            x = keras.layers.Concatenate(name=f"up-{level}-concat")([skips[level], x])
        x = conv_block(x, width, f"up-{level}")
    if complex_valued:
        x = ComplexConv2D(num_classes, 1, name="head")(x)
        x = Magnitude(name="head_modulus")(x)
    else:
        x = Conv2D(num_classes, 1, name="head")(x)
    if output_activation is not None:
        x = keras.layers.Activation(output_activation, dtype="float32", name="predictions")(x)
    return _base.finish(inputs, x, name=name, weights=weights)
