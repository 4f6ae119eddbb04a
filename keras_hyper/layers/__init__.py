"""Reusable Keras layers, one module per family."""

from keras_hyper.layers.conv import DepthwiseConv2D
from keras_hyper.layers.mixers import InceptionDepthwiseConv2D
from keras_hyper.layers.residual import DropPath, LayerScale

__all__ = ["DepthwiseConv2D", "DropPath", "InceptionDepthwiseConv2D", "LayerScale"]
