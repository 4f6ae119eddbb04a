"""Run by harness.py under another backend: rebuilds each tiny model, loads the weights the first backend
saved and checks that the outputs agree. Usage: _cross_backend.py FOLDER '["arch", ...]'."""

import json
import sys
from pathlib import Path

import keras
import numpy as np

from keras_hyper.applications import registry

folder, names = Path(sys.argv[1]), json.loads(sys.argv[2])
archs = {a.name: a for a in registry.architectures()}
failures = []
for name in names:
    arch = archs[name]
    size = arch.min_input_size
    model = arch.builder(**{"input_shape": (size, size, 3), **arch.tiny})
    model.load_weights(folder / f"{name}.weights.h5")
    x, y = np.load(folder / f"{name}.x.npy"), np.load(folder / f"{name}.y.npy")
    err = float(np.max(np.abs(keras.ops.convert_to_numpy(model(x)) - y)))
    if err > 1e-5:
        failures.append(f"{name}: max abs diff {err:.3g} after loading weights saved under another backend")
if failures:
    sys.exit("\n".join(failures))
print(f"{keras.backend.backend()}: {len(names)} architecture(s) reproduced")
