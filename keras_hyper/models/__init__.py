"""Architectures: one module each, with its builder, named variants and official-checkpoint converter."""

from keras_hyper.models import (
    attnet,
    convfirst,
    convnext_dcls,
    densenet,
    eurosat_balanced,
    inceptionnext,
    kimianet,
    overlock,
    pflayer,
    pflayer_vit,
    spartan,
    unireplknet,
)
from keras_hyper.models._fusion import reparameterize
from keras_hyper.models.attnet import AttNetS, AttNetT1, AttNetT2, AttNetT3, AttNetT4, AttNetXS, AttNetXXS
from keras_hyper.models.convfirst import ConvFirstSmall, ConvFirstTiny
from keras_hyper.models.convnext_dcls import ConvNeXtDCLSBase, ConvNeXtDCLSSmall, ConvNeXtDCLSTiny
from keras_hyper.models.densenet import DenseNet121, DenseNet169, DenseNet201
from keras_hyper.models.eurosat_balanced import EuroSATBalanced12
from keras_hyper.models.inceptionnext import (
    InceptionNeXtAtto,
    InceptionNeXtBase,
    InceptionNeXtSmall,
    InceptionNeXtTiny,
)
from keras_hyper.models.kimianet import KimiaNet
from keras_hyper.models.overlock import OverLoCKB, OverLoCKS, OverLoCKT, OverLoCKXT
from keras_hyper.models.pflayer import PfResNet50, PfResNet50Hybrid, PfResNet50Max
from keras_hyper.models.pflayer_vit import PfPiTBMax, PfPiTSMax, PfPiTTiMax, PfViTBMax, PfViTSMax, PfViTTiMax
from keras_hyper.models.spartan import SpaRTANT
from keras_hyper.models.unireplknet import (
    UniRepLKNetA,
    UniRepLKNetB,
    UniRepLKNetF,
    UniRepLKNetL,
    UniRepLKNetN,
    UniRepLKNetP,
    UniRepLKNetS,
    UniRepLKNetT,
    UniRepLKNetXL,
)

ARCHITECTURES = (
    inceptionnext.ARCH,
    unireplknet.ARCH,
    overlock.ARCH,
    attnet.ARCH,
    spartan.ARCH,
    convnext_dcls.ARCH,
    pflayer.ARCH,
    pflayer_vit.VIT_ARCH,
    pflayer_vit.PIT_ARCH,
    eurosat_balanced.ARCH,
    densenet.ARCH,
    kimianet.ARCH,
    convfirst.ARCH,
)

__all__ = [
    "ARCHITECTURES",
    "AttNetS",
    "AttNetT1",
    "AttNetT2",
    "AttNetT3",
    "AttNetT4",
    "AttNetXS",
    "AttNetXXS",
    "ConvFirstSmall",
    "ConvFirstTiny",
    "ConvNeXtDCLSBase",
    "ConvNeXtDCLSSmall",
    "ConvNeXtDCLSTiny",
    "DenseNet121",
    "DenseNet169",
    "DenseNet201",
    "EuroSATBalanced12",
    "InceptionNeXtAtto",
    "InceptionNeXtBase",
    "InceptionNeXtSmall",
    "InceptionNeXtTiny",
    "KimiaNet",
    "OverLoCKB",
    "OverLoCKS",
    "OverLoCKT",
    "OverLoCKXT",
    "PfPiTBMax",
    "PfPiTSMax",
    "PfPiTTiMax",
    "PfResNet50",
    "PfResNet50Hybrid",
    "PfResNet50Max",
    "PfViTBMax",
    "PfViTSMax",
    "PfViTTiMax",
    "SpaRTANT",
    "UniRepLKNetA",
    "UniRepLKNetB",
    "UniRepLKNetF",
    "UniRepLKNetL",
    "UniRepLKNetN",
    "UniRepLKNetP",
    "UniRepLKNetS",
    "UniRepLKNetT",
    "UniRepLKNetXL",
    "reparameterize",
]
