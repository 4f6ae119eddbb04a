"""Export Keras models to deployment formats and check them against Keras.

Heavy dependencies (TensorFlow, ai_edge_litert, onnx, onnxruntime) are only
imported when an export runs, so importing this package stays cheap and does
not load TensorFlow under the JAX or PyTorch backends.
"""

from keras_hyper.export.litert import LiteRTModel, export_litert, load_litert
from keras_hyper.export.onnx import export_onnx
from keras_hyper.export.report import ExportReport

__all__ = ["ExportReport", "LiteRTModel", "export_litert", "export_onnx", "load_litert"]
