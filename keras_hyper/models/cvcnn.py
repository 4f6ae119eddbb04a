"""CV-CNN and its real-valued twins CNN and CNNx2, the classifier family of Chatterjee, Tummala, Speck and
Nürnberger, "Complex Network for Complex Problems: A comparative study of CNN and Complex-valued CNN" (IEEE IPAS
2022, arXiv:2302.04584).

The paper compares, on brain-tumour MRI, a complex-valued CNN against the same network with real weights (CNN,
half the real parameters) and a real network with twice CNN's parameters (CNNx2, as many real parameters as the
CV-CNN). The authors published their complex layers (`pytorch-complex`/`torchcomplex`) but not the models, so
the network here is a plain VGG-style classifier in the paper's terms: stages of [3x3 convolution, batch
normalisation, activation] ending in 2x2 max pooling, global average pooling and a linear head.

- `complex_valued=True` (CV-CNN): the image enters as the real part of a complex tensor (imaginary part 0,
  `RealToComplex`), and every layer is its complex counterpart as the paper's library, torchcomplex, defines it
  (`keras_hyper.layers.complex`): complex convolution, whitening batch norm with a full 2x2 scale matrix, CReLU,
  max pooling of the real and imaginary parts (`complex_pooling="split"`; `"modulus"` takes the value of largest
  modulus instead); the logits are the moduli of the complex head's outputs (torchcomplex's `Softmax` is the
  softmax of the moduli).
- `complex_valued=False` with the same widths (CNN), or with widths scaled by about sqrt(2) (CNNx2, twice CNN's
  parameters to 0.1 %, see `VARIANTS`): the real twin.
"""

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers.complex import (
    Cardioid,
    ComplexBatchNormalization,
    ComplexConv2D,
    ComplexDense,
    ComplexGlobalMaxPooling2D,
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


def _check_config(depths, widths, complex_activation, complex_pooling):
    depths, widths = tuple(depths), tuple(widths)
    if not depths or len(depths) != len(widths):
        raise ValueError(f"depths and widths must be non-empty and of equal length, got {depths!r} and {widths!r}.")
    for value, what in ((depths, "depths"), (widths, "widths")):
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in value):
            raise ValueError(f"{what} must hold positive integers, got {value!r}.")
    if complex_activation not in COMPLEX_ACTIVATIONS:
        raise ValueError(f"complex_activation must be one of {tuple(COMPLEX_ACTIVATIONS)}, got {complex_activation!r}.")
    if complex_pooling not in COMPLEX_POOLINGS:
        raise ValueError(f"complex_pooling must be one of {COMPLEX_POOLINGS}, got {complex_pooling!r}.")
    return depths, widths


def cvcnn(
    x,
    depths=(2, 2, 2, 2),
    widths=(32, 64, 128, 256),
    complex_valued=True,
    complex_activation="crelu",
    complex_pooling="split",
):
    """Builds a CV-CNN (`complex_valued=True`) or its real twin (Chatterjee, Tummala, Speck, Nürnberger, "Complex
    Network for Complex Problems: A comparative study of CNN and Complex-valued CNN", IEEE IPAS 2022,
    arXiv:2302.04584). The public builder `keras_hyper.models.cvcnn.cvcnn` takes these arguments and the
    keras.applications ones (default input 224x224x3).

    Args:
        depths: convolutions per stage; each stage ends in a 2x2 stride-2 max pooling.
        widths: channels per stage (complex channels for the CV-CNN, real ones for the twins).
        complex_valued: complex layers (CV-CNN) or real ones (CNN, CNNx2).
        complex_activation: the CV-CNN's activation, `"crelu"` (the paper's library default), `"modrelu"`,
            `"zrelu"` or `"cardioid"`; the real twins use ReLU.
        complex_pooling: the CV-CNN's 2x2 max pooling: `"split"` (real and imaginary parts pooled apart, as
            torchcomplex) or `"modulus"` (the value of largest modulus, `ComplexMaxPooling2D`).

    Features: `P1`..`P<len(depths)>`, the output of each stage's pooling (strides 2, 4, ...). The CV-CNN's are
    complex, `(B, H, W, 2*C)` [real | imaginary] (2 * `widths` channels); without the head, `pooling="avg"`
    gives their complex mean and `pooling="max"` the entry of largest modulus per channel, each `(B, 2*C)`.
    Example:

        model = cvcnn(depths=(2, 2), widths=(16, 32), num_classes=3, input_shape=(64, 64, 1))
        pyramid = cvcnn(features_only=True)                 # {"P1": (B, H/2, W/2, 64), ..., "P4": (B, H/16, ...)}
    """
    depths, widths = _check_config(depths, widths, complex_activation, complex_pooling)
    if complex_valued:
        x = RealToComplex(name="to_complex")(x)
    features = {}
    for stage, (depth, width) in enumerate(zip(depths, widths)):
        for index in range(depth):
            prefix = f"stages-{stage}-{index}"
            if complex_valued:
                x = ComplexConv2D(width, 3, padding="same", use_bias=False, name=f"{prefix}-conv")(x)
                x = ComplexBatchNormalization(momentum=BN_MOMENTUM, scale_matrix="full", name=f"{prefix}-bn")(x)
                x = COMPLEX_ACTIVATIONS[complex_activation](name=f"{prefix}-act")(x)
            else:
                x = Conv2D(width, 3, padding="same", use_bias=False, name=f"{prefix}-conv")(x)
                x = batch_norm(f"{prefix}-bn")(x)
                x = keras.layers.ReLU(name=f"{prefix}-act")(x)
        pool = ComplexMaxPooling2D if complex_valued and complex_pooling == "modulus" else keras.layers.MaxPooling2D
        x = pool(2, name=f"stages-{stage}-pool")(x)
        features[f"P{stage + 1}"] = x

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        if not complex_valued:
            return keras.layers.Dense(num_classes, name="head")(x)
        x = ComplexDense(num_classes, name="head")(x)
        return Magnitude(name="head_modulus")(x)

    def pool(x, pooling):
        # a complex map's maximum is the entry of largest modulus, not the largest real and imaginary parts apart
        if complex_valued and pooling == "max":
            return ComplexGlobalMaxPooling2D(name="max_pool")(x)
        return _base.pool(x, pooling)

    return _base.Network(features, head, pool)


def _features(depths, widths, complex_valued, complex_activation, complex_pooling):
    depths, widths = _check_config(depths, widths, complex_activation, complex_pooling)
    parts = 2 if complex_valued else 1
    return _base.pyramid([parts * w for w in widths], [2 ** (i + 1) for i in range(len(widths))])


def _assign(m, variable, value, key):
    """Assigns a value computed from checkpoint tensors (`None`: a missing tensor, which `m` has recorded and
    `m.finish()` reports)."""
    if value is None:
        return
    if tuple(value.shape) != tuple(variable.shape):
        raise ValueError(
            f"Shape mismatch: checkpoint tensor '{key}' gives shape {tuple(value.shape)} in Keras layout, but "
            f"variable '{variable.path}' has shape {tuple(variable.shape)}."
        )
    variable.assign(np.asarray(value).astype(variable.dtype))
    m.assigned.add(id(variable))


def _map(value, transform):
    return None if value is None else transform(value)


def _complex_linear(m, layer, key, kernel):
    """A torchcomplex `Conv2d`/`Linear` with complex weights: `weight` complex, `bias` complex `br + i bi`, which
    torchcomplex adds as `(br - bi) + i (br + bi)` (it convolves each input part with the bias of the kernel part
    it uses)."""
    weight = m.take(f"{key}.weight")
    _assign(m, layer.kernel_real, _map(weight, lambda w: kernel(w.real)), f"{key}.weight")
    _assign(m, layer.kernel_imag, _map(weight, lambda w: kernel(w.imag)), f"{key}.weight")
    if layer.use_bias:
        bias = _map(m.take(f"{key}.bias"), lambda b: np.concatenate([b.real - b.imag, b.real + b.imag]))
        _assign(m, layer.bias, bias, f"{key}.bias")


def _complex_batch_norm(m, layer, key):
    """torchcomplex's `BatchNorm2d` (cplxmodule's): `weight` `(2, 2, C)` = [[rr, ri], [ir, ii]], `bias` `(2, C)`,
    `running_mean` `(2, C)`, `running_var` `(2, 2, C)`. Its running covariance includes epsilon (added to the batch
    covariance before the average) and its inference adds none; this layer adds epsilon at use, so it is taken
    off the diagonal here."""
    weight = m.take(f"{key}.weight")
    for (row, column), variable in (
        ((0, 0), layer.gamma_rr),
        ((0, 1), layer.gamma_ri),
        ((1, 0), layer.gamma_ir),
        ((1, 1), layer.gamma_ii),
    ):
        _assign(m, variable, _map(weight, lambda w, r=row, c=column: w[r, c]), f"{key}.weight")
    _assign(m, layer.beta, _map(m.take(f"{key}.bias"), np.ravel), f"{key}.bias")
    _assign(m, layer.moving_mean, _map(m.take(f"{key}.running_mean"), np.ravel), f"{key}.running_mean")
    cov = m.take(f"{key}.running_var")
    _assign(m, layer.moving_vrr, _map(cov, lambda v: v[0, 0] - layer.epsilon), f"{key}.running_var")
    _assign(m, layer.moving_vri, _map(cov, lambda v: v[0, 1]), f"{key}.running_var")
    _assign(m, layer.moving_vii, _map(cov, lambda v: v[1, 1] - layer.epsilon), f"{key}.running_var")


def convert_cvcnn(state_dict, model):
    """Fills `model` (built with `include_top=True`) from a PyTorch state dict of the same network.

    The paper published no models or checkpoints. The layout read is the builder transcribed into PyTorch with
    module paths equal to the layer names (`.` for `-`): torch.nn modules for the real twins; for the CV-CNN, the
    modules of the paper's library torchcomplex (`pytorch-complex` >= 0.1, complex weights): `Conv2d` and
    `Linear` with complex `weight`/`bias`, `BatchNorm2d` with its 2x2 `weight`, `(2, C)` `bias` and running
    statistics. Strict: every tensor consumed (`num_batches_tracked` is a training counter and is ignored),
    every variable assigned.
    """
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        key = mapping.torch_prefix(layer.name)
        if m.standard(layer, key):
            continue
        if isinstance(layer, ComplexConv2D):
            _complex_linear(m, layer, key, mapping.conv_kernel)
        elif isinstance(layer, ComplexDense):
            _complex_linear(m, layer, key, mapping.dense_kernel)
        elif isinstance(layer, ComplexBatchNormalization):
            _complex_batch_norm(m, layer, key)
    m.finish()


_PAPER = _base.Paper(
    "Complex Network for Complex Problems: A comparative study of CNN and Complex-valued CNN", "2302.04584", 3
)

_DEPTHS = (2, 2, 2, 2)
_WIDTHS = (32, 64, 128, 256)
# CNNx2: the CNN's widths scaled by the one factor (1.456, about sqrt(2)) whose rounded widths come closest to
# twice the CNN's parameters (2,858,735 against 2 x 1,430,216 = 2,860,432; the CV-CNN has 2,862,352).
_WIDTHS_X2 = (47, 93, 186, 373)


def _variant(name, widths, complex_valued, num_params, builder_name):
    return _base.Variant(
        name,
        dict(depths=_DEPTHS, widths=widths, complex_valued=complex_valued),
        num_params=num_params,
        builder_name=builder_name,
    )


VARIANTS = (
    _variant("cvcnn_cv", _WIDTHS, True, 2_862_352, "CVCNN"),
    _variant("cvcnn_cnn", _WIDTHS, False, 1_430_216, "CVCNNRealCNN"),
    _variant("cvcnn_cnnx2", _WIDTHS_X2, False, 2_858_735, "CVCNNRealCNNx2"),
)

ARCH = _base.Architecture(
    name="cvcnn",
    network=cvcnn,
    features=_features,
    min_size=lambda depths, **_: max(32, 2 ** len(depths)),
    convert=convert_cvcnn,
    paper=_PAPER,
    variants=VARIANTS,
    license="MIT",
    source="https://github.com/soumickmj/pytorch-complex",
    classifier="head",
    classifier_key="head.weight",
    testing=_base.Testing(tiny=dict(depths=(1, 1), widths=(8, 16), num_classes=10), min_input_size=32),
)

cvcnn = ARCH.builder
