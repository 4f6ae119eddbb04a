"""Weights: the manifests (`manifests/<architecture>.json`, every weights tag), the weight files keras-hyper
trains and ships, and the code that reads them: `files` (tags, loading any supported file into a model, the
conversion cache, moving weights between models by layer name) and `store` (the cache folder, verified atomic
downloads). It sits below `models`, which load weight files, and `applications`, which resolves tags."""
