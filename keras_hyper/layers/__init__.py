"""Reusable Keras layers, one module per family."""

from keras_hyper.layers.atconv import ATConv
from keras_hyper.layers.attention import BalancedAttention, CoordinateAttention, SqueezeExcite
from keras_hyper.layers.contmix import ContMix, ResizeLike
from keras_hyper.layers.conv import DepthwiseConv2D
from keras_hyper.layers.dcls import DCLSConv2D, DCLSPositions, PositionClip
from keras_hyper.layers.mixers import InceptionDepthwiseConv2D
from keras_hyper.layers.multiorder import FeatureDecompose, WaveChannelAggregation
from keras_hyper.layers.norms import GlobalResponseNorm
from keras_hyper.layers.parameter_free import EffLayer, GridSelfAttention, PositionEmbedding2D
from keras_hyper.layers.regularization import DropBlock2D
from keras_hyper.layers.reparam import DilatedReparamConv2D
from keras_hyper.layers.residual import DropPath, LayerScale

__all__ = [
    "ATConv",
    "BalancedAttention",
    "ContMix",
    "CoordinateAttention",
    "DCLSConv2D",
    "DCLSPositions",
    "DepthwiseConv2D",
    "DilatedReparamConv2D",
    "DropBlock2D",
    "DropPath",
    "EffLayer",
    "FeatureDecompose",
    "GlobalResponseNorm",
    "GridSelfAttention",
    "InceptionDepthwiseConv2D",
    "LayerScale",
    "PositionClip",
    "PositionEmbedding2D",
    "ResizeLike",
    "SqueezeExcite",
    "WaveChannelAggregation",
]
