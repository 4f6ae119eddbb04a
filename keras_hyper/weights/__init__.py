"""Data package: `manifest.json` (every weights tag) and the weight files keras-hyper trains and ships."""
