"""Reusable Keras layers, one module per family."""

from keras_hyper.layers.atconv import ATConv
from keras_hyper.layers.attention import BalancedAttention, CoordinateAttention, SqueezeExcite
from keras_hyper.layers.complex import (
    Cardioid,
    ComplexAveragePooling2D,
    ComplexBatchNormalization,
    ComplexConcatenate,
    ComplexConv1D,
    ComplexConv1DTranspose,
    ComplexConv2D,
    ComplexConv2DTranspose,
    ComplexConv3D,
    ComplexConv3DTranspose,
    ComplexDense,
    ComplexDropout,
    ComplexGlobalMaxPooling2D,
    ComplexMaxPooling2D,
    ComplexToReal,
    CReLU,
    Magnitude,
    ModReLU,
    Phase,
    RealToComplex,
    ZReLU,
)
from keras_hyper.layers.compressed import CPConv1D, CPConv2D, CPConv3D
from keras_hyper.layers.conhd import (
    CoNHDADMMLayer,
    CoNHDDiffusion,
    CoNHDGDLayer,
    SetISAB,
    SetMAB,
    SetSAB,
    SetUNP,
)
from keras_hyper.layers.contmix import ContMix
from keras_hyper.layers.conv import Conv2D, DepthwiseConv2D
from keras_hyper.layers.crossd import CrossDConv2D
from keras_hyper.layers.cswin_attention import CrossShapedWindowAttention
from keras_hyper.layers.dcls import DCLSConv2D, DCLSPositions, PositionClip
from keras_hyper.layers.deform import DeformConv2D, PartDeformConv2D
from keras_hyper.layers.glmix import SoftClusterAttention
from keras_hyper.layers.halo import BottleneckAttention, HaloAttention
from keras_hyper.layers.hyena import HyenaOperator2D
from keras_hyper.layers.hyperbolic import (
    MobiusAdd,
    PoincareBatchNormalization,
    PoincareConv2D,
    PoincareDense,
    PoincareIdentity,
)
from keras_hyper.layers.hypercomplex import PHConv1D, PHConv2D, PHConv3D, PHMDense, PrependZeroChannels
from keras_hyper.layers.hyperformer import (
    BidirectionalInteraction,
    ConvInteraction,
    EntityNeighborAggregator,
    HyperRelationalEmbedding,
    KnowformerEncoder,
    QualifierAggregator,
)
from keras_hyper.layers.hypergraph import HGNNConv, HGNNPlusConv
from keras_hyper.layers.hypernetwork import HyperNetwork
from keras_hyper.layers.hypernetwork_rnn import ChunkedHyperMLP, RNNHyperNetwork
from keras_hyper.layers.hyperzzw import (
    ContextKernel,
    GlobalContextProduct,
    HyperZZW,
    LocalHyperConv,
    LocalSlowNet,
    SlowNet,
)
from keras_hyper.layers.linear_attention import PositionEmbedding, SimplifiedLinearAttention, SoftmaxAttention
from keras_hyper.layers.mixers import InceptionDepthwiseConv2D
from keras_hyper.layers.moe import MixtureOfExperts
from keras_hyper.layers.multidilated import ComplexD2Block, ComplexD3Block
from keras_hyper.layers.multiorder import FeatureDecompose, WaveChannelAggregation
from keras_hyper.layers.norms import GlobalResponseNorm, IntegratedBatchNorm
from keras_hyper.layers.parameter_free import EffLayer, GridSelfAttention, PositionEmbedding2D
from keras_hyper.layers.polyhistor import PolyhistorAdapters
from keras_hyper.layers.prepbn import PRepBN
from keras_hyper.layers.regularization import DropBlock2D
from keras_hyper.layers.reparam import DilatedReparamConv2D
from keras_hyper.layers.residual import DropPath, LayerScale
from keras_hyper.layers.shallow import ResidualStack
from keras_hyper.layers.shared_attention import SharedConvAttention, SharedConvMLP
from keras_hyper.layers.sie import GeneratedMLP
from keras_hyper.layers.soft_hypergraph import (
    ClassTokenEmbedding,
    ClassTokenSelect,
    LocalitySelfAttention,
    PatchTokenGrid,
    ShiftedPatchTokens,
    SoftHypergraphConv,
)
from keras_hyper.layers.terminator import (
    GroupedStandardization,
    HyperChannelInteraction,
    HyperInteraction,
    InstanceStandardization,
    RecursiveGatedUnit,
    SlowNeuralLoss,
)
from keras_hyper.layers.wavemix import WaveMixBlock
from keras_hyper.layers.window_attention import PatchMerging2x2, WindowSoftmaxAttention

__all__ = [
    "ATConv",
    "BalancedAttention",
    "BidirectionalInteraction",
    "CPConv1D",
    "CPConv2D",
    "CPConv3D",
    "BottleneckAttention",
    "CReLU",
    "Cardioid",
    "ChunkedHyperMLP",
    "ClassTokenEmbedding",
    "ClassTokenSelect",
    "CoNHDADMMLayer",
    "CoNHDDiffusion",
    "CoNHDGDLayer",
    "ComplexAveragePooling2D",
    "ComplexBatchNormalization",
    "ComplexConcatenate",
    "ComplexConv1D",
    "ComplexConv1DTranspose",
    "ComplexConv2D",
    "ComplexConv2DTranspose",
    "ComplexConv3D",
    "ComplexConv3DTranspose",
    "ComplexD2Block",
    "ComplexD3Block",
    "ComplexDense",
    "ComplexDropout",
    "ComplexGlobalMaxPooling2D",
    "ComplexMaxPooling2D",
    "ComplexToReal",
    "ContMix",
    "ContextKernel",
    "ConvInteraction",
    "CoordinateAttention",
    "CrossDConv2D",
    "Conv2D",
    "CrossShapedWindowAttention",
    "DCLSConv2D",
    "DCLSPositions",
    "DeformConv2D",
    "PartDeformConv2D",
    "DepthwiseConv2D",
    "DilatedReparamConv2D",
    "DropBlock2D",
    "DropPath",
    "EffLayer",
    "EntityNeighborAggregator",
    "FeatureDecompose",
    "GeneratedMLP",
    "GlobalContextProduct",
    "GlobalResponseNorm",
    "IntegratedBatchNorm",
    "GridSelfAttention",
    "GroupedStandardization",
    "HGNNConv",
    "HGNNPlusConv",
    "HyenaOperator2D",
    "HyperChannelInteraction",
    "HyperInteraction",
    "HyperNetwork",
    "HyperRelationalEmbedding",
    "HyperZZW",
    "HaloAttention",
    "InceptionDepthwiseConv2D",
    "InstanceStandardization",
    "KnowformerEncoder",
    "LayerScale",
    "LocalHyperConv",
    "LocalSlowNet",
    "LocalitySelfAttention",
    "Magnitude",
    "MixtureOfExperts",
    "MobiusAdd",
    "ModReLU",
    "PHConv1D",
    "PHConv2D",
    "PHConv3D",
    "PHMDense",
    "PRepBN",
    "PatchMerging2x2",
    "PatchTokenGrid",
    "Phase",
    "PoincareBatchNormalization",
    "PoincareConv2D",
    "PoincareDense",
    "PoincareIdentity",
    "PolyhistorAdapters",
    "PositionClip",
    "PositionEmbedding",
    "PositionEmbedding2D",
    "PrependZeroChannels",
    "QualifierAggregator",
    "RNNHyperNetwork",
    "RealToComplex",
    "RecursiveGatedUnit",
    "ResidualStack",
    "SetISAB",
    "SetMAB",
    "SetSAB",
    "SetUNP",
    "SharedConvAttention",
    "SharedConvMLP",
    "ShiftedPatchTokens",
    "SimplifiedLinearAttention",
    "SlowNet",
    "SlowNeuralLoss",
    "SoftClusterAttention",
    "SoftHypergraphConv",
    "SoftmaxAttention",
    "SqueezeExcite",
    "WaveChannelAggregation",
    "WaveMixBlock",
    "WindowSoftmaxAttention",
    "ZReLU",
]
