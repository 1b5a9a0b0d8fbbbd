"""Models in code: layers as objects, in the order a model file lists them.

    model = kiln.Sequential([
        kiln.Linear(256), kiln.BatchNorm(), kiln.ReLU(), kiln.Dropout(0.3),
        kiln.Linear(10),
    ], input_shape=784, loss="cross_entropy", optimizer="adam", lr=1e-3)

Every layer takes ``name=`` (its name in the state_dict and for other
layers' ``inputs``) and ``inputs=`` (the layer or layers it reads, by name;
default: the layer before). Residual graphs name their layers:

    kiln.Linear(64, name="skip"), kiln.ReLU(), kiln.Linear(64),
    kiln.Add(inputs=["skip", "2"]),

Each layer becomes one section of a model file, through kiln_model_add,
which checks it as the model-file reader does (kiln.Model.text shows it).
"""

_UNSET = object()


def _text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return str(value)


class Layer:
    """One layer of a model. kind is its model-file section name."""

    kind = None

    def __init__(self, *, name=None, inputs=None, **keys):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a str, not "
                            f"{type(name).__name__}")
        if inputs is not None and not isinstance(inputs, (str, list, tuple)):
            raise TypeError(f"{type(self).__name__}: inputs must be a layer name or a list of "
                            f"names, not {type(inputs).__name__}")
        self.name = name
        self.inputs = [inputs] if isinstance(inputs, str) else (
            list(inputs) if inputs is not None else None)
        self.keys = {k: v for k, v in keys.items() if v is not _UNSET}

    def section(self):
        """(kind, [(key, value), ...]) as kiln_model_add takes them."""
        kv = [(k, _text(v)) for k, v in self.keys.items()]
        if self.name is not None:
            kv.append(("name", self.name))
        if self.inputs is not None:
            kv.append(("from", _text(self.inputs)))
        return self.kind, kv

    def __repr__(self):
        args = [f"{k}={v!r}" for k, v in self.keys.items()]
        if self.name is not None:
            args.append(f"name={self.name!r}")
        if self.inputs is not None:
            args.append(f"inputs={self.inputs!r}")
        return f"kiln.{type(self).__name__}({', '.join(args)})"


def _given(value, default):
    return _UNSET if value == default else value


class Input(Layer):
    """The per-sample input shape: 784, or (1, 28, 28) for C x H x W."""
    kind = "input"

    def __init__(self, shape):
        if isinstance(shape, int):
            text = str(shape)
        elif isinstance(shape, (tuple, list)) and all(isinstance(d, int) for d in shape):
            text = "x".join(str(d) for d in shape)
        else:
            raise TypeError(f"Input: shape must be an int or a tuple of ints, not {shape!r}")
        super().__init__(shape=text)


class Linear(Layer):
    """y = x W^T + b (nn.Linear) with out features.

    init: "default" (kaiming_normal, or xavier_uniform before sigmoid or
    tanh), "kaiming_normal", "kaiming_uniform", "xavier_normal",
    "xavier_uniform", "zeros" or "pytorch" (nn.Linear's own)."""
    kind = "linear"

    def __init__(self, out, bias=True, init="default", *, name=None, inputs=None):
        super().__init__(out=out, bias=_given(bias, True), init=_given(init, "default"),
                         name=name, inputs=inputs)


class Conv2d(Layer):
    """A 2-d convolution (nn.Conv2d) with out channels and a size x size
    kernel; init as Linear's."""
    kind = "conv2d"

    def __init__(self, out, size, stride=1, pad=0, dilation=1, bias=True, init="default", *,
                 name=None, inputs=None):
        super().__init__(out=out, size=size, stride=_given(stride, 1), pad=_given(pad, 0),
                         dilation=_given(dilation, 1), bias=_given(bias, True),
                         init=_given(init, "default"), name=name, inputs=inputs)


class MaxPool(Layer):
    """Max pooling over size x size windows (stride None: size)."""
    kind = "maxpool"

    def __init__(self, size, stride=None, pad=0, *, name=None, inputs=None):
        super().__init__(size=size, stride=_given(stride, None), pad=_given(pad, 0), name=name,
                         inputs=inputs)


class AvgPool(MaxPool):
    """Average pooling over size x size windows (stride None: size)."""
    kind = "avgpool"


class Flatten(Layer):
    """(C, H, W) -> C*H*W per sample."""
    kind = "flatten"

    def __init__(self, *, name=None, inputs=None):
        super().__init__(name=name, inputs=inputs)


class BatchNorm(Layer):
    """Batch normalization, 1-d or 2-d by the input's rank (PyTorch's
    momentum and eps)."""
    kind = "batchnorm"

    def __init__(self, momentum=0.1, eps=1e-5, *, name=None, inputs=None):
        super().__init__(momentum=_given(momentum, 0.1), eps=_given(eps, 1e-5), name=name,
                         inputs=inputs)


class LayerNorm(Layer):
    """Layer normalization over the last dims (1, 2 or 3) dimensions."""
    kind = "layernorm"

    def __init__(self, eps=1e-5, dims=1, *, name=None, inputs=None):
        super().__init__(eps=_given(eps, 1e-5), dims=_given(dims, 1), name=name, inputs=inputs)


class Dropout(Layer):
    """Zeroes each value with probability p while training."""
    kind = "dropout"

    def __init__(self, p=0.5, *, name=None, inputs=None):
        super().__init__(p=_given(p, 0.5), name=name, inputs=inputs)


class ReLU(Layer):
    """max(x, 0)."""
    kind = "relu"

    def __init__(self, *, name=None, inputs=None):
        super().__init__(name=name, inputs=inputs)


class LeakyReLU(Layer):
    """x for x > 0, slope * x otherwise."""
    kind = "leaky_relu"

    def __init__(self, slope=0.01, *, name=None, inputs=None):
        super().__init__(slope=_given(slope, 0.01), name=name, inputs=inputs)


class Sigmoid(ReLU):
    """1 / (1 + exp(-x)); as the last layer with bce, a probability head."""
    kind = "sigmoid"


class Tanh(ReLU):
    """tanh(x)."""
    kind = "tanh"


class GELU(Layer):
    """GELU with erf (approx="none") or its tanh approximation."""
    kind = "gelu"

    def __init__(self, approx="none", *, name=None, inputs=None):
        super().__init__(approx=_given(approx, "none"), name=name, inputs=inputs)


class Softmax(Layer):
    """Softmax over dim (None: the last); as the last layer with
    cross_entropy, predict gives class probabilities."""
    kind = "softmax"

    def __init__(self, dim=None, *, name=None, inputs=None):
        super().__init__(dim=_given(dim, None), name=name, inputs=inputs)


class Add(Layer):
    """The sum of two layers' outputs of the same shape (a residual
    connection): inputs names both."""
    kind = "add"

    def __init__(self, inputs, *, name=None):
        super().__init__(name=name, inputs=inputs)


class Concat(Layer):
    """Two layers' outputs side by side (channels of images, features of
    vectors): inputs names both."""
    kind = "concat"

    def __init__(self, inputs, *, name=None):
        super().__init__(name=name, inputs=inputs)


__all__ = ["Layer", "Input", "Linear", "Conv2d", "MaxPool", "AvgPool", "Flatten", "BatchNorm",
           "LayerNorm", "Dropout", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax",
           "Add", "Concat"]
