"""Architectures: one module each, with its builder, named variants and official-checkpoint converter."""

from keras_hyper.models import inceptionnext
from keras_hyper.models._fusion import reparameterize
from keras_hyper.models.inceptionnext import (
    InceptionNeXtAtto,
    InceptionNeXtBase,
    InceptionNeXtSmall,
    InceptionNeXtTiny,
)

ARCHITECTURES = (inceptionnext.ARCH,)

__all__ = [
    "ARCHITECTURES",
    "InceptionNeXtAtto",
    "InceptionNeXtBase",
    "InceptionNeXtSmall",
    "InceptionNeXtTiny",
    "reparameterize",
]
