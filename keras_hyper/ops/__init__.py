"""Maths that keras.ops lacks or runs slowly, one module per topic.

Each op has a keras.ops reference implementation and, where it pays, a fast path for one backend in
`keras_hyper.ops._backend.<backend>`, chosen by `keras.config.backend()`.
"""

from keras_hyper.ops.conv import conv2d, depthwise_conv2d
from keras_hyper.ops.deform import deform_conv2d
from keras_hyper.ops.fftconv import long_conv1d, long_conv2d
from keras_hyper.ops.hypercomplex import phm_kernel
from keras_hyper.ops.wavelets import haar_dwt2d, haar_idwt2d

__all__ = [
    "conv2d",
    "deform_conv2d",
    "depthwise_conv2d",
    "haar_dwt2d",
    "haar_idwt2d",
    "long_conv1d",
    "long_conv2d",
    "phm_kernel",
]
