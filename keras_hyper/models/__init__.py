"""Architectures: one module each, with its network (or builder), named variants and official-checkpoint converter.

Adding an architecture is one line in `MODULES`: everything else (the registry, the public variant builders in
`keras_hyper.applications`, their docstrings, `__all__`, the README models table) is generated from each
module's `ARCH` (or `ARCHITECTURES`, for a module that defines several).
"""

import importlib

from keras_hyper.models._fusion import reparameterize

MODULES = (
    "inceptionnext",
    "unireplknet",
    "overlock",
    "attnet",
    "spartan",
    "convnext_dcls",
    "pflayer",
    "pflayer_vit",
    "eurosat_balanced",
    "densenet",
    "convfirst",
    "slab",
    "slab_pvt",
    "slab_cswin",
    "shallow",
    "wavemix",
    "hyena_vit",
    "crossd_resnet",
    "d3net_aec",
    "poincare_resnet",
    "phc_resnet",
    "phc_vgg",
    "halonet",
    "glnet",
    "softhgnn",
    "cvcnn",
    "convsharevit",
    "lighthgnn",
    "conhd",
    "sie",
    "polyhistor",
    "mip",
    "hyperformer",
    "terminator",
)


def _declared(module):
    return tuple(getattr(module, "ARCHITECTURES", None) or (module.ARCH,))


ARCHITECTURES = tuple(
    arch for name in MODULES for arch in _declared(importlib.import_module(f"keras_hyper.models.{name}"))
)

__all__ = ["ARCHITECTURES", "MODULES", "reparameterize", *MODULES]
