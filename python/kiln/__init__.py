"""kiln: train neural networks on any OpenCL device, numpy in, numpy out.

    import kiln
    m = kiln.Sequential([kiln.Linear(256), kiln.BatchNorm(), kiln.ReLU(),
                         kiln.Linear(10)], input_shape=784, lr=1e-3)
    history = m.fit(X, y, epochs=3, validation_data=(Xv, yv))
    p = m.predict(X_test)          # (n, outputs) float32
    m.save("w.safetensors")        # PyTorch's state_dict names, and the model itself
    m2 = kiln.Model.load("w.safetensors")

Models also come from model files: kiln.Model("examples/fashion_mlp.ini").
Every failure of libkiln raises kiln.KilnError with its message; wrong
arguments raise TypeError or ValueError naming them.
"""
from ._core import Device, KilnError, _lib, devices, library_path
from .data import load_data, plot
from .layers import (Add, AvgPool, BatchNorm, Concat, Conv2d, Dropout, Flatten, GELU, Input,
                     Layer, LayerNorm, LeakyReLU, Linear, MaxPool, ReLU, Sigmoid, Softmax, Tanh)
from .model import Model, Scores, Sequential

__version__ = _lib.kiln_version().decode()
__all__ = ["Model", "Sequential", "Scores", "Device", "KilnError", "devices", "load_data",
           "plot", "__version__", "library_path", "Layer", "Input", "Linear", "Conv2d",
           "MaxPool", "AvgPool", "Flatten", "BatchNorm", "LayerNorm", "Dropout", "ReLU",
           "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "Add", "Concat"]
