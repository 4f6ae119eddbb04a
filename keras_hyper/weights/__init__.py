"""Data package: `manifests/<architecture>.json` (every weights tag, one file per architecture) and the
weight files keras-hyper trains and ships."""
