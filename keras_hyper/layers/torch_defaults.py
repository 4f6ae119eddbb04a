"""PyTorch's defaults, written once for every port.

A port has to compute what the official PyTorch code computes (its converter loads the official weights and the
reference tests compare outputs), and start training from the distributions the official code draws from. Keras'
defaults differ from PyTorch's in a few places that nearly every model meets; they are spelled out here, once:

- BatchNorm: PyTorch's `eps=1e-5` (Keras' default is 1e-3) and `momentum=0.1`, the weight PyTorch gives the new
  batch statistics. Keras' `momentum` is the weight of the old moving average, so PyTorch's 0.1 is Keras' 0.9
  (`BN_MOMENTUM`). A model whose official code sets another epsilon passes it (`batch_norm(name, epsilon=1e-6)`).
- Initialisation: timm and most official vision code draw Linear and convolution weights with
  `trunc_normal_(std=.02)` (`trunc_normal()`); torchvision's ResNets and many CNNs draw convolutions with
  `kaiming_normal_(mode="fan_out", nonlinearity="relu")`, N(0, 2 / fan_out) (`kaiming_fan_out()`); timm's
  ResNet-style `_init_weights` divides that fan-out by the groups (`conv_fan_out_normal`). Keras'
  `TruncatedNormal` redraws values beyond two standard deviations, timm's `trunc_normal_` beyond +-2 in absolute
  value (100 standard deviations at std .02); the ports keep Keras' (the draws only affect training from scratch).
- Padding: PyTorch's `padding=p` pads p pixels on both sides. Keras' "same" equals it for an odd kernel at stride
  1, but at stride s > 1 it pads `(k - s) // 2` before and the rest after an even input, one pixel less before than
  PyTorch: the windows shift and every output differs. A strided convolution therefore pads explicitly and runs
  "valid" (`torch_padding`).

Layer names are the ports' own (converters map the official state-dict keys onto them), so these helpers take the
name and never make one up.
"""

import math

import keras

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1 weighs the new batch; Keras' momentum weighs the old moving average


def batch_norm(name, *, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, **kwargs):
    """PyTorch's `nn.BatchNorm2d(C)` (eps 1e-5, momentum 0.1) as a Keras BatchNormalization named `name`; `kwargs`
    (axis, dtype, ...) pass through."""
    return keras.layers.BatchNormalization(epsilon=epsilon, momentum=momentum, name=name, **kwargs)


def trunc_normal(stddev=0.02):
    """timm's `trunc_normal_(std=stddev)` initialiser (Keras' TruncatedNormal; see the module docstring)."""
    return keras.initializers.TruncatedNormal(stddev=stddev)


def kaiming_normal(mode="fan_in", seed=None):
    """PyTorch's `kaiming_normal_(mode=mode, nonlinearity="relu")`: N(0, 2 / fan), the fan computed from the
    kernel's shape (equal to PyTorch's for Dense and Conv kernels, not for a DepthwiseConv2D's, whose Keras layout
    `(k, k, C, 1)` has a fan-out of k * k: use `conv_fan_out_normal` there)."""
    return keras.initializers.VarianceScaling(2.0, mode, "untruncated_normal", seed=seed)


def kaiming_fan_out(seed=None):
    """`kaiming_normal_(mode="fan_out", nonlinearity="relu")`, the convolution init of torchvision's ResNets and of
    the official CNNs that copy it."""
    return kaiming_normal("fan_out", seed=seed)


def conv_fan_out_normal(kernel, filters, groups=1):
    """N(0, 2 / fan_out) with `fan_out = kernel * kernel * filters / groups`: timm's ResNet-style `_init_weights`
    (and the official code that copies it) of a k x k convolution with `filters` outputs in `groups` groups, which
    divides the fan-out by the groups where PyTorch's `kaiming_normal_` does not. A 1x1 convolution run as a Dense
    layer takes `kernel=1`. It does not depend on the Keras kernel layout (depthwise kernels included)."""
    return keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / (kernel * kernel * filters // groups)))


def torch_padding(x, kernel, strides, name):
    """Pads `x` for a convolution or pooling with PyTorch's padding `(kernel - 1) // 2` on both sides (none for a
    patchifying `kernel <= strides`), and returns `(x, padding)`, the Keras `padding` argument of that layer.

    At stride 1 (odd kernel) that is Keras' "same", with no extra layer. At stride > 1 the padding is an explicit
    `ZeroPadding2D(..., name=name)` and the layer runs "valid": "same" would pad one pixel less before than after
    an even input. Zeros are PyTorch's padding for convolutions; for a max pool, whose PyTorch padding is -inf, they
    are only exact on a non-negative (post-ReLU) input.
    """
    if strides == 1:
        return x, "same"
    if kernel > strides:
        x = keras.layers.ZeroPadding2D((kernel - 1) // 2, name=name)(x)
    return x, "valid"
