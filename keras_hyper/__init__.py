"""keras-hyper: a Keras 3 model zoo that runs unchanged on the TensorFlow, JAX and PyTorch backends.

import keras_hyper
model = keras_hyper.applications.load("inceptionnext_tiny.sail_in1k")
"""

from keras_hyper import applications, layers, models

__version__ = "0.1.0"

__all__ = ["applications", "layers", "models", "__version__"]
