"""kiln.Model: a model compiled onto a device, with its weights, optimizer
state, training settings and input normalization."""
import ctypes
import functools
import threading
import types
import warnings

import numpy as np

from . import _capi
from ._core import (INVALID_ARGUMENT, KilnError, _lib, as_float32, check, collect, Device,
                    finite, floats, path_arg, selector, whole)
from .layers import Input, Layer


def _locked(method):
    """Runs a method under the model's lock, on a model that is open."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._lock:
            self._live()
            return method(self, *args, **kwargs)
    return run


class _either:
    """A method that works on the class (a new model) and on an instance."""

    def __init__(self, on_class, on_instance):
        self.on_class, self.on_instance = on_class, on_instance
        functools.update_wrapper(self, on_class)

    def __get__(self, obj, cls):
        if obj is None:
            return types.MethodType(self.on_class, cls)
        return types.MethodType(self.on_instance, obj)


def _is_checkpoint(path):
    """A safetensors file: an 8-byte length, then a JSON header."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{"


class Scores(tuple):
    """What evaluate returns: unpacks as (loss, accuracy), and carries mae
    and r2 (per output, averaged) for mse models (NaN otherwise), and
    accuracy NaN for mse."""

    def __new__(cls, loss, accuracy, mae=float("nan"), r2=float("nan")):
        s = super().__new__(cls, (loss, accuracy))
        s.loss, s.accuracy, s.mae, s.r2 = loss, accuracy, mae, r2
        return s

    def __repr__(self):
        if self.mae == self.mae:
            return f"Scores(loss={self.loss:.6g}, mae={self.mae:.6g}, r2={self.r2:.6g})"
        return f"Scores(loss={self.loss:.6g}, accuracy={self.accuracy:.6g})"


def regression_scores(pred, y):
    """Mean absolute error and R² (per output, averaged), in float64."""
    pred = pred.astype(np.float64).reshape(len(pred), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(pred), -1)
    mae = float(np.mean(np.abs(pred - y)))
    ss_res = ((y - pred) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), np.nan)
    return mae, float(np.nanmean(r2)) if np.isfinite(r2).any() else float("nan")


class Model:
    """A model compiled onto a device, with its weights, optimizer state,
    training settings and input normalization.

    Parameters
    ----------
    path : str or os.PathLike
        A model file (INI) or a checkpoint that kiln wrote (.safetensors:
        the model it carries, with its weights and normalization).
    device : int, kiln.Device or str, optional
        An index into kiln.devices(), a Device, or a selector ("pocl",
        "gpu", "1:0"). None: $KILN_DEVICE, else the first GPU, else the
        first CPU.

    Other ways to make one: kiln.Sequential([...]) (layers in code),
    Model.from_string(text), Model.load(checkpoint).

    Threads: every call takes the model's lock, so calls from several
    threads are serialized (each sees the model whole; none interleave).
    Separate models run in parallel: the GIL is released inside libkiln.

    A closed model (close(), or the end of a with block) raises KilnError
    for every call.
    """

    def __init__(self, path, device=None):
        if isinstance(path, Layer) or isinstance(path, (list, tuple)):
            raise TypeError("kiln.Model(path): path is a model file or checkpoint; for layers "
                            "in code use kiln.Sequential([...])")
        source = path_arg(path, "path", "kiln.Model")
        m = ctypes.c_void_p()
        if _is_checkpoint(source):
            check(_lib.kiln_model_from_checkpoint(source, ctypes.byref(m)))
            self._setup(m, device, "kiln.Model")
            self._load_weights(source)
        else:
            check(_lib.kiln_model_load(source, ctypes.byref(m)))
            self._setup(m, device, "kiln.Model")

    def _setup(self, model_ptr, device, caller, max_batch=0):
        """Takes ownership of a kiln_model and compiles it onto device."""
        self._lock = threading.RLock()
        self._model = model_ptr
        self._ctx = ctypes.c_void_p()
        self._net = None
        self._frozen = set()
        self._warned_normalization = False
        try:
            check(_lib.kiln_model_check_train(self._model))
            sel = selector(device, caller)
            check(_lib.kiln_ctx_create(sel, ctypes.byref(self._ctx)), "device")
            self._net = self._make_net(self._ctx, max_batch)
            # what every predict asks, fixed by the model: no calls a sample
            self._sizes = (_lib.kiln_net_input_size(self._net),
                           _lib.kiln_net_output_size(self._net), _lib.kiln_model_block(model_ptr))
        except BaseException:
            self.close()
            raise

    @classmethod
    def _adopt(cls, model_ptr, device, caller):
        obj = cls.__new__(cls)
        obj._setup(model_ptr, device, caller)
        return obj

    @classmethod
    def from_file(cls, path, device=None):
        """A model file (INI) compiled onto device (see Model)."""
        m = ctypes.c_void_p()
        check(_lib.kiln_model_load(path_arg(path, "path", "Model.from_file"), ctypes.byref(m)))
        return Model._adopt(m, device, "Model.from_file")

    @classmethod
    def from_string(cls, text, device=None, name="model"):
        """Model-file text compiled onto device; name stands for the file in
        error messages."""
        if not isinstance(text, str):
            raise TypeError(f"Model.from_string: text must be a str, not {type(text).__name__}")
        m = ctypes.c_void_p()
        check(_lib.kiln_model_parse(text.encode(), str(name).encode(), ctypes.byref(m)))
        return Model._adopt(m, device, "Model.from_string")

    def _load_from(cls, path, device=None):
        """Model.load(path, device=None): the model a kiln checkpoint carries,
        with its weights and normalization (one file is the whole model).
        m.load(path): weights, buffers and normalization into this model."""
        source = path_arg(path, "path", "Model.load")
        m = ctypes.c_void_p()
        check(_lib.kiln_model_from_checkpoint(source, ctypes.byref(m)), "Model.load")
        model = Model._adopt(m, device, "Model.load")
        model._load_weights(source)
        return model

    @_locked
    def _load_into(self, path):
        """m.load(path): weights, buffers and input normalization from a
        safetensors file into this model (a file of another model is
        refused, naming every difference)."""
        self._load_weights(path_arg(path, "path", "load"))

    load = _either(_load_from, _load_into)

    # ---- lifetime ----

    def _make_net(self, ctx, max_batch):
        net = ctypes.c_void_p()
        check(_lib.kiln_net_create(ctx, self._model, max_batch, ctypes.byref(net)))
        return net

    def close(self):
        """Frees the device memory now (also done when the object goes).
        Every later call raises KilnError."""
        if _lib is None:  # interpreter shutdown
            return
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            if getattr(self, "_net", None):
                _lib.kiln_net_free(self._net)
            self._net = None
            if getattr(self, "_model", None):
                _lib.kiln_model_free(self._model)
            self._model = None
            if getattr(self, "_ctx", None):
                _lib.kiln_ctx_free(self._ctx)
            self._ctx = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _live(self):
        if not getattr(self, "_net", None):
            raise KilnError(INVALID_ARGUMENT, "this kiln.Model is closed (close() or the end "
                                              "of its with block); make a new one")
        return self._net

    # ---- what it is ----

    @property
    @_locked
    def input_size(self):
        """Floats per sample the model takes."""
        return _lib.kiln_net_input_size(self._net)

    @property
    @_locked
    def output_size(self):
        """Floats per sample the model gives."""
        return _lib.kiln_net_output_size(self._net)

    @property
    @_locked
    def device(self):
        """The kiln.Device the model runs on."""
        return Device(_lib.kiln_ctx_device(self._ctx).contents)

    @property
    @_locked
    def loss(self):
        """The [train] loss: "cross_entropy", "mse" or "bce"."""
        return self.settings["loss"]

    @property
    def vocab_size(self):
        """V of a token model ([input] tokens), else 0."""
        return _lib.kiln_model_vocab(self._model)

    @property
    def block(self):
        """T of a token model ([input] block), else 0."""
        return _lib.kiln_model_block(self._model)

    @property
    @_locked
    def vocab(self):
        """The characters of a model trained on a text (token i is vocab[i]),
        from kiln train's checkpoints; None if unknown. Settable."""
        v = _lib.kiln_net_vocab(self._live())
        return v.decode("utf-8") if v is not None else None

    @vocab.setter
    @_locked
    def vocab(self, chars):
        text = "".join(sorted(set(chars))) if chars is not None else None
        if chars is not None and len(text) != len(chars):
            raise ValueError("vocab: the characters must be distinct")
        check(_lib.kiln_net_set_vocab(self._live(), text.encode("utf-8") if text else None),
              "vocab")

    @property
    @_locked
    def settings(self):
        """Every [train] key with the value training uses (the model's,
        else the default), as a dict of strings."""
        text = collect(_lib.kiln_model_train_settings, self._model)
        return dict(line.split(" = ", 1) for line in text.splitlines())

    @property
    @_locked
    def text(self):
        """The model as model-file text, [train] as it is now
        (Model.from_string(m.text) gives the same model)."""
        return collect(_lib.kiln_model_text, self._model)

    @_locked
    def summary(self):
        """The layers (name, kind, input, output shape, parameters), the
        totals, and every [train] setting with its value (defaults
        included), as text."""
        table = collect(_lib.kiln_model_summary, self._model)
        settings = collect(_lib.kiln_model_train_settings, self._model)
        return table + "\n[train] settings in use (defaults included):\n" + "".join(
            "  " + line + "\n" for line in settings.splitlines())

    def __repr__(self):
        if not getattr(self, "_net", None):
            return "<kiln.Model (closed)>"
        return f"<kiln.Model {self.input_size} -> {self.output_size} on {self.device.name}>"

    # ---- modes ----

    @property
    @_locked
    def training(self):
        """True in training mode (predict with batch statistics and
        dropout), False in eval mode (the default)."""
        return bool(self._training_mode)

    @_locked
    def train(self, mode=True):
        """Training mode for predict (as PyTorch's module.train()); returns
        the model. train_step and fit always train in training mode, and
        evaluate always runs in eval mode."""
        if not isinstance(mode, bool):
            raise TypeError(f"train: mode must be True or False, not {mode!r}")
        check(_lib.kiln_net_set_training(self._net, int(mode)), "train")
        self._training_mode = mode
        return self

    def eval(self):
        """Eval mode for predict (running statistics, no dropout): the
        default. Returns the model."""
        return self.train(False)

    _training_mode = False

    # ---- arrays in ----

    def _inputs(self, x, what="X", check_finite=True):
        """x as the library reads it: (n, input size) float32 in C order.
        check_finite=False leaves NaN and Inf to libkiln, which refuses
        them too (the caller then names them with finite())."""
        n_in = self._sizes[0]
        if (type(x) is np.ndarray and x.dtype == np.float32 and x.ndim == 2
                and x.shape[1] == n_in and x.flags.c_contiguous):
            # already what the library reads: no copy
            return finite(x, what) if check_finite else x
        x = as_float32(x, what)
        if x.size == n_in and not (x.ndim >= 2 and int(np.prod(x.shape[1:])) == n_in):
            x = x.reshape(1, n_in)  # one sample, flat or in its input shape
        if x.ndim < 2 or int(np.prod(x.shape[1:])) != n_in:
            raise ValueError(f"{what} has shape {x.shape}; the model takes {n_in} values per "
                             f"sample: (n, {n_in}) or (n, *input shape)")
        x = np.ascontiguousarray(x.reshape(x.shape[0], n_in))
        return finite(x, what) if check_finite else x

    def _targets(self, y, n, what="y"):
        if hasattr(y, "detach"):
            y = y.detach().cpu().numpy()
        y = np.asarray(y)
        outs = _lib.kiln_net_output_size(self._net)
        loss = self.loss
        if self.block:  # a token model: (n, T) next-token ids
            if y.shape != (n, self.block):
                raise ValueError(f"{what} has shape {y.shape}; a token model takes ({n}, "
                                 f"{self.block}) next-token ids")
            return np.ascontiguousarray(as_float32(y, what)), self.block
        if loss == "cross_entropy":
            if y.ndim != 1 or y.shape[0] != n:
                raise ValueError(f"{what} has shape {y.shape}; cross_entropy takes one class "
                                 f"index per sample: ({n},)")
            if np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(finite(y, what), 1) == 0):
                raise ValueError(f"{what}: class indices must be whole numbers")
            return as_float32(y, what), 1
        y = as_float32(y, what)
        if y.ndim == 1 and outs == 1:
            y = y.reshape(n, 1)
        if y.shape != (n, outs):
            raise ValueError(f"{what} has shape {y.shape}; {loss} takes {outs} target(s) "
                             f"per sample: ({n}, {outs})")
        return finite(np.ascontiguousarray(y), what), outs

    # ---- running ----

    @_locked
    def predict(self, x):
        """Outputs for every sample of x.

        Parameters
        ----------
        x : array_like, shape (n, features) or (n, *input shape)
            Any n; other dtypes and layouts are converted.

        Returns
        -------
        ndarray of float32, shape (n, output_size)
            Probabilities for a softmax or sigmoid head, else the last
            layer's values. Eval mode unless m.train() was called.
        """
        x = self._inputs(x, check_finite=False)
        _, outs, block = self._sizes
        out = np.empty((x.shape[0], outs), dtype=np.float32)
        if x.shape[0]:
            status = _lib.kiln_net_forward(self._net, floats(x), x.shape[0], floats(out))
            if status:
                finite(x, "X")  # a NaN or Inf, which libkiln refused, by sample and feature
                check(status, "predict")
        if block:  # a token model: (n, T) ids give (n, T, V)
            return out.reshape(x.shape[0], block, outs // block)
        return out

    @_locked
    def train_step(self, x, y):
        """One optimizer step on a batch (x, y) at the current m.lr, with the
        input normalization set (m.normalization); returns the batch's
        mean loss. A model whose [train] normalize is standard or global
        warns once when no normalization is set (fit computes it from its
        data; m.normalization = m.fit_normalization(X) does it here)."""
        x = self._inputs(x)
        y, _ = self._targets(y, x.shape[0])
        if x.shape[0] == 0:
            raise ValueError("train_step: X has no samples")
        self._warn_without_normalization()
        if x.shape[0] > _lib.kiln_net_max_batch(self._net):
            self._rebuild(max_batch=x.shape[0])
        loss = ctypes.c_float()
        check(_lib.kiln_net_train_step(self._net, floats(x), floats(y), x.shape[0],
                                       ctypes.byref(loss)), "train_step")
        return float(loss.value)

    def _warn_without_normalization(self):
        if self._warned_normalization or self.block or self.normalization is not None:
            return
        kind = self.settings["normalize"]
        if kind in ("standard", "global"):
            self._warned_normalization = True
            warnings.warn(f"train_step: this model's [train] normalize is {kind}, but no input "
                          f"statistics are set, so its inputs are not normalized (fit computes "
                          f"them from its data); set m.normalization = m.fit_normalization(X), "
                          f"or normalize = none in [train] to train on raw inputs",
                          UserWarning, stacklevel=4)

    @_locked
    def evaluate(self, x, y):
        """Loss and metrics of (x, y) in eval mode, without training.

        Returns
        -------
        Scores
            Unpacks as (loss, accuracy); .mae and .r2 (per output,
            averaged) for mse, where accuracy is NaN.
        """
        x = self._inputs(x)
        yf, _ = self._targets(y, x.shape[0])
        if x.shape[0] == 0:
            raise ValueError("evaluate: X has no samples")
        loss, acc = ctypes.c_double(), ctypes.c_double()
        check(_lib.kiln_net_evaluate(self._net, floats(x), floats(yf), x.shape[0],
                                     ctypes.byref(loss), ctypes.byref(acc)), "evaluate")
        if self.loss != "mse":
            return Scores(loss.value, acc.value)
        was = self._training_mode
        if was:
            _lib.kiln_net_set_training(self._net, 0)
        try:
            pred = self.predict(x)
        finally:
            if was:
                _lib.kiln_net_set_training(self._net, 1)
        mae, r2 = regression_scores(pred, yf)
        return Scores(loss.value, float("nan"), mae, r2)

    @_locked
    def generate(self, prompt="", tokens=500, temperature=0.8, top_k=None, seed=1337,
                 stream=None):
        """Text from a token model with a vocabulary (as `kiln generate`):
        `tokens` characters after the prompt, temperature 0 greedy, top_k
        the k likeliest only; stream(text) gets each character as it comes.
        Returns the characters written (without the prompt). Each character
        is one position's work (a KV cache) until the window fills the
        block."""
        if top_k is not None and (int(top_k) != top_k or top_k < 1):
            raise ValueError(f"top_k {top_k}: expected a whole number from 1 (None: all)")
        pieces = []

        def write(_user, text):
            piece = text.decode("utf-8")
            pieces.append(piece)
            if stream:
                stream(piece)
        fn = _capi.WRITE_FN(write)
        check(_lib.kiln_net_generate(self._live(), prompt.encode("utf-8"), int(tokens),
                                     float(temperature), int(top_k or 0), int(seed), fn, None),
              "generate")
        return "".join(pieces)

    def fit(self, x, y=None, epochs=None, batch=None, validation_data=None, *, lr=None,
            callback=None, on_step=None, verbose=True, progress=None,
            restore_best_weights=True, class_weight=None, **settings):
        """Trains as the model's [train] section says.

        Parameters
        ----------
        x, y : array_like
            Training samples and targets (class indices for cross_entropy,
            (n, outputs) targets for mse and bce). Or x a path and no y:
            what ``kiln train --data`` reads, such as an image folder (one
            folder per class, or train/ and val/ holding them), decoded
            and augmented batch by batch as its [train] keys say.
        epochs, batch : int, optional
            For this call only (default: [train]'s).
        validation_data : (x, y), optional
            Scored after each epoch; without it, [train]'s val share of
            the training data is held out.
        lr : float, optional
            The learning rate (stays set, as m.lr = lr does). Without it,
            fit trains at m.lr.
        callback : callable(row) -> bool, optional
            After each epoch; row has epoch, train_loss, val_loss,
            train_acc, val_acc, lr, seconds (and val_mae, val_r2 for mse).
            Returning True stops training.
        on_step : callable(row) -> bool, optional
            After each batch; row has epoch, batch, batches, step, loss,
            accuracy, lr. Returning True stops training.
        verbose : bool, default True
            Print a line per epoch.
        progress : bool, optional
            Redraw a progress bar within each epoch (default: when stdout
            is a terminal or a Jupyter notebook, and verbose).
        restore_best_weights : bool, default True
            End on the weights of the epoch with the best validation loss
            (also without patience); False keeps the last epoch's.
        class_weight : dict, sequence or "balanced", optional
            cross_entropy only, for this call: a weight per class
            ({class: weight}, others 1; or one per class; or "balanced":
            n / (classes * count of the class)). The training loss is the
            weighted mean, as PyTorch's CrossEntropyLoss(weight=); the
            validation loss and accuracy stay unweighted, as Keras's.
        **settings
            [train] keys (optimizer="sgd", momentum=0.9, patience=3, ...);
            they stay set for later calls.

        Returns
        -------
        dict of lists
            Per epoch: train_loss, val_loss, train_acc, val_acc, lr, and
            for mse val_mae and val_r2.

        Ctrl-C stops after the current batch and raises KeyboardInterrupt;
        the model stays usable.
        """
        from ._train import fit
        with self._lock:
            self._live()
            return fit(self, x, y, epochs, batch, validation_data, lr, callback, on_step,
                       verbose, progress, restore_best_weights, class_weight, settings)

    @property
    @_locked
    def classes(self):
        """The class names of the image folder the model was trained on (or
        of the checkpoint it loaded), in class-index order; None otherwise."""
        net = self._live()
        names = []
        while (name := _lib.kiln_net_class_name(net, len(names))) is not None:
            names.append(name.decode(errors="replace"))
        return names or None

    # ---- settings ----

    @property
    @_locked
    def lr(self):
        """The learning rate of the next step. Setting it sets [train] lr
        too, so fit trains from it."""
        return _lib.kiln_net_lr(self._net)

    @lr.setter
    @_locked
    def lr(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
            raise TypeError(f"lr must be a number, not {value!r}")
        self.configure(lr=value)

    @_locked
    def configure(self, **settings):
        """Sets [train] keys (lr=0.01, optimizer="sgd", ...); each is checked
        at once. Unknown keys raise TypeError, bad values ValueError."""
        keys = set(self.settings)
        for key, value in settings.items():
            if key not in keys:
                raise TypeError(f"unknown [train] setting {key!r}; the settings are: "
                                f"{', '.join(sorted(keys))}")
            text = (str(value).lower() if isinstance(value, bool) else
                    ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else
                    str(value))
            status = _lib.kiln_net_configure(self._net, key.encode(), text.encode())
            if status:
                raise ValueError(_lib.kiln_last_error().decode(errors="replace"))
        return self

    # ---- weights ----

    def _params(self):
        info = _capi.ParamInfo()
        for i in range(_lib.kiln_net_param_count(self._net)):
            check(_lib.kiln_net_param_info(self._net, i, ctypes.byref(info)))
            yield (info.name.decode(), tuple(info.shape[d] for d in range(info.ndim)),
                   info.numel, bool(info.is_int64), bool(info.trainable))

    @_locked
    def parameters(self):
        """The names of the trainable parameters, in state_dict order."""
        return [p[0] for p in self._params() if p[4]]

    @_locked
    def state_dict(self, fold_normalization=False):
        """Every parameter and buffer by its PyTorch name, as numpy copies.

        Parameters
        ----------
        fold_normalization : bool, default False
            Fold the input normalization into the first layer (linear, or
            conv2d without padding), so that PyTorch given these weights and
            raw inputs computes what kiln computes.
        """
        out = {}
        for name, shape, numel, is_int64, _ in self._params():
            buf = np.empty(numel, dtype=np.float32)
            check(_lib.kiln_net_get(self._net, name.encode(), floats(buf), numel))
            out[name] = (np.array(int(buf[0]), dtype=np.int64) if is_int64
                         else buf.reshape(shape))
        if fold_normalization:
            from ._normalize import fold
            fold(self, out)
        return out

    @_locked
    def load_state_dict(self, state, strict=True):
        """Sets weights and buffers from name -> array (numpy or torch), as
        PyTorch's load_state_dict: with strict, missing and unexpected names
        are an error naming all of them. Nothing changes when any is
        wrong."""
        if not hasattr(state, "items"):
            raise TypeError(f"load_state_dict: state must be a mapping of names to arrays, not "
                            f"{type(state).__name__}")
        params = list(self._params())
        names = {p[0] for p in params}
        if strict:
            missing = sorted(names - set(state))
            extra = sorted(set(state) - names)
            if missing or extra:
                raise KilnError(INVALID_ARGUMENT, "load_state_dict: " + "; ".join(
                    ([f"missing: {', '.join(missing)}"] if missing else []) +
                    ([f"unexpected: {', '.join(extra)}"] if extra else [])))
        ready = []
        for name, shape, numel, is_int64, _ in params:
            if name not in state or is_int64:
                continue
            v = finite(as_float32(state[name], name), name)
            if v.shape != shape:
                raise ValueError(f"load_state_dict: {name} has shape {v.shape}; the model "
                                 f"expects {shape}")
            ready.append((name, v))
        for name, v in ready:
            check(_lib.kiln_net_set(self._net, name.encode(), floats(v), v.size))

    @_locked
    def grad(self, name):
        """The gradient of parameter name from the last training step, as
        an array of its shape (zeros for a frozen parameter)."""
        if not isinstance(name, str):
            raise TypeError(f"grad: name must be a str, not {type(name).__name__}")
        shapes = {p[0]: p[1] for p in self._params() if p[4]}
        if name not in shapes:
            raise ValueError(f"grad: {name!r} is not a parameter; the parameters are "
                             f"{', '.join(shapes)}")
        out = np.empty(shapes[name], dtype=np.float32)
        check(_lib.kiln_net_grad(self._net, name.encode(), floats(out), out.size), "grad")
        return out

    def _names(self, names, caller):
        params = self.parameters()
        if names is None:
            return params
        if isinstance(names, str):
            names = [names]
        out = []
        for n in names:
            if not isinstance(n, str):
                raise TypeError(f"{caller}: names are str, not {type(n).__name__}")
            hits = [p for p in params if p == n or p.startswith(n + ".")]
            if not hits:
                raise ValueError(f"{caller}: {n!r} names no parameter or layer; the parameters "
                                 f"are {', '.join(params)}")
            out += hits
        return out

    @_locked
    def freeze(self, names=None):
        """Freezes parameters (as requires_grad_(False)): no update, no
        weight decay, no part in gradient clipping. names: parameter names
        ("fc1.weight"), layer names ("fc1": its weight and bias), or None
        for every parameter. Returns the model."""
        for n in self._names(names, "freeze"):
            check(_lib.kiln_net_set_frozen(self._net, n.encode(), 1), "freeze")
            self._frozen.add(n)
        return self

    @_locked
    def unfreeze(self, names=None):
        """Undoes freeze for these names (None: every parameter)."""
        for n in self._names(names, "unfreeze"):
            check(_lib.kiln_net_set_frozen(self._net, n.encode(), 0), "unfreeze")
            self._frozen.discard(n)
        return self

    @property
    @_locked
    def frozen(self):
        """The names of the frozen parameters."""
        return [n for n in self.parameters() if n in self._frozen]

    # ---- normalization ----

    @property
    @_locked
    def normalization(self):
        """The input normalization (x - mean) / std that predict,
        train_step and evaluate apply: a pair (mean, std) of float32
        arrays of 1 value (every feature), one per channel of an image
        input, or one per input value; None when there is none. fit sets
        it from its data as [train] normalize says. Set a pair (numbers or
        arrays), or None to remove it."""
        count = ctypes.c_size_t()
        check(_lib.kiln_net_normalization(self._net, None, None, 0, ctypes.byref(count)))
        mean = np.empty(count.value, dtype=np.float32)
        std = np.empty(count.value, dtype=np.float32)
        check(_lib.kiln_net_normalization(self._net, floats(mean), floats(std), count.value,
                                          ctypes.byref(count)))
        if count.value == 1 and mean[0] == 0 and std[0] == 1:
            return None
        return mean, std

    @normalization.setter
    @_locked
    def normalization(self, value):
        if value is None:
            mean, std = np.zeros(1, np.float32), np.ones(1, np.float32)
        else:
            try:
                mean, std = value
            except (TypeError, ValueError):
                raise TypeError("normalization: expected a pair (mean, std) or None") from None
            mean = np.atleast_1d(as_float32(mean, "normalization mean")).ravel()
            std = np.atleast_1d(as_float32(std, "normalization std")).ravel()
            if mean.shape != std.shape:
                raise ValueError(f"normalization: mean has {mean.size} values, std {std.size}")
            mean, std = np.ascontiguousarray(mean), np.ascontiguousarray(std)
        status = _lib.kiln_net_set_normalization(self._net, floats(mean), floats(std), mean.size)
        if status:
            raise ValueError(_lib.kiln_last_error().decode(errors="replace"))

    @_locked
    def fit_normalization(self, x):
        """The normalization fit would compute from x, as [train] normalize
        says: (mean, std) per feature (per channel of images) for
        standard, one pair for global; None for scale and none. A
        deviation of 0 is taken as 1."""
        from ._normalize import statistics
        return statistics(self, self._inputs(x))

    # ---- files ----

    def _load_weights(self, source):
        check(_lib.kiln_net_load(self._live(), source), "load")

    @_locked
    def save(self, path):
        """A safetensors file with PyTorch's names, the input normalization
        and the model's own text in its metadata (written atomically):
        Model.load(path), ``kiln eval`` and ``kiln predict`` need nothing
        else."""
        check(_lib.kiln_net_save(self._net, path_arg(path, "path", "save")), "save")

    @_locked
    def export_onnx(self, path):
        """An ONNX model (opset 17, written atomically) for ONNX Runtime:
        input "input" of shape (batch, *input shape), raw as predict takes
        it (the normalization is inside); output "output" as `kiln predict`
        gives it (probabilities for a classifier, also one trained on
        logits). A layer with no ONNX form raises KilnError naming it."""
        check(_lib.kiln_net_export_onnx(self._net, path_arg(path, "path", "export_onnx")),
              "export_onnx")

    # ---- moving and copying ----

    def _snapshot(self):
        """Everything a network holds beyond the model: weights, buffers,
        optimizer state and steps, learning rate, normalization, mode and
        frozen parameters."""
        weights = {}
        for name, shape, numel, is_int64, _ in self._params():
            if not is_int64:
                buf = np.empty(numel, dtype=np.float32)
                check(_lib.kiln_net_get(self._net, name.encode(), floats(buf), numel))
                weights[name] = buf
        count = ctypes.c_size_t()
        slots = _lib.kiln_net_optimizer_slots(self._net, ctypes.byref(count))
        state = []
        for k in range(slots):
            buf = np.empty(count.value, dtype=np.float32)
            check(_lib.kiln_net_get_optimizer_state(self._net, k, floats(buf), buf.size))
            state.append(buf)
        return {"weights": weights, "optimizer": state, "steps": _lib.kiln_net_steps(self._net),
                "lr": _lib.kiln_net_lr(self._net), "normalization": self.normalization,
                "training": self._training_mode, "frozen": sorted(self._frozen),
                "vocab": _lib.kiln_net_vocab(self._net)}

    def _restore(self, snap):
        for name, buf in snap["weights"].items():
            check(_lib.kiln_net_set(self._net, name.encode(), floats(buf), buf.size))
        for k, buf in enumerate(snap["optimizer"]):
            check(_lib.kiln_net_set_optimizer_state(self._net, k, floats(buf), buf.size,
                                                    snap["steps"]))
        check(_lib.kiln_net_set_lr(self._net, snap["lr"]))
        self.normalization = snap["normalization"]
        self.train(snap["training"])
        if snap.get("vocab") is not None:
            check(_lib.kiln_net_set_vocab(self._net, snap["vocab"]), "vocab")
        self._frozen = set()
        if snap["frozen"]:
            self.freeze(snap["frozen"])

    def _rebuild(self, max_batch=None, device=None):
        """The network again, for larger batches or on another device, with
        everything _snapshot keeps."""
        snap = self._snapshot()
        batch = max_batch or _lib.kiln_net_max_batch(self._net)
        ctx = self._ctx
        if device is not None:
            ctx = ctypes.c_void_p()
            check(_lib.kiln_ctx_create(selector(device, "to"), ctypes.byref(ctx)), "device")
        try:
            net = self._make_net(ctx, batch)
        except BaseException:
            if ctx is not self._ctx:
                _lib.kiln_ctx_free(ctx)
            raise
        old_net, old_ctx = self._net, self._ctx
        self._net, self._ctx = net, ctx
        try:
            self._restore(snap)
        except BaseException:
            _lib.kiln_net_free(net)
            if ctx is not old_ctx:
                _lib.kiln_ctx_free(ctx)
            self._net, self._ctx = old_net, old_ctx
            raise
        _lib.kiln_net_free(old_net)
        if ctx is not old_ctx:
            _lib.kiln_ctx_free(old_ctx)

    @_locked
    def to(self, device):
        """Moves the model to another device (an index, a kiln.Device or a
        selector) with its weights, buffers, optimizer state, learning rate,
        normalization, mode and frozen parameters; returns the model."""
        self._rebuild(device=device)
        return self

    @_locked
    def __getstate__(self):
        """pickle and copy.deepcopy carry the model's text and everything
        _snapshot keeps; unpickling compiles onto the default device."""
        return {"text": self.text, "snapshot": self._snapshot(),
                "max_batch": _lib.kiln_net_max_batch(self._net), "device": None}

    def __setstate__(self, state):
        m = ctypes.c_void_p()
        check(_lib.kiln_model_parse(state["text"].encode(), b"pickled model", ctypes.byref(m)))
        self._setup(m, state.get("device"), "unpickling a kiln.Model", state["max_batch"])
        self._restore(state["snapshot"])

    def __deepcopy__(self, memo):
        state = self.__getstate__()
        state["device"] = self.device
        new = type(self).__new__(type(self))
        new.__setstate__(state)
        return new

    def __copy__(self):  # two models never share device memory: a copy is deep
        return self.__deepcopy__({})



class Sequential(Model):
    """A model built from layers in code (see kiln.layers).

    Parameters
    ----------
    layers : list of kiln.Layer
        In order; a first kiln.Input(shape) gives the input shape.
    input_shape : int or tuple of int, optional
        The per-sample input shape (784, or (1, 28, 28)) when layers does
        not start with kiln.Input.
    device : int, kiln.Device or str, optional
        As for kiln.Model.
    **train
        [train] settings: loss="mse", optimizer="sgd", lr=0.1, batch=64,
        epochs=10, patience=5, normalize="none", ... (summary() lists
        them all with their defaults).

    Every layer goes through kiln_model_add, which checks it as the
    model-file reader does; errors name the layer ("layer 3 [linear]").
    """

    def __init__(self, layers, input_shape=None, device=None, **train):
        if isinstance(layers, Layer) or not isinstance(layers, (list, tuple)):
            raise TypeError("Sequential: layers must be a list of kiln layers "
                            "([kiln.Linear(10), kiln.ReLU(), ...])")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is {layer!r}, not a kiln layer")
        if layers and isinstance(layers[0], Input):
            if input_shape is not None:
                raise ValueError("Sequential: the input shape is given twice (kiln.Input and "
                                 "input_shape)")
        elif input_shape is None:
            raise ValueError("Sequential: give input_shape= (784, or (1, 28, 28)) or start "
                             "the layers with kiln.Input(shape)")
        else:
            layers = [Input(input_shape)] + list(layers)
        m = ctypes.c_void_p()
        check(_lib.kiln_model_create(ctypes.byref(m)))
        try:
            for layer in layers:
                _add(m, *layer.section())
            keys = _train_keys()
            for key in train:
                if key not in keys:
                    raise TypeError(f"Sequential: unknown [train] setting {key!r}; the "
                                    f"settings are: {', '.join(sorted(keys))}")
            if train:
                _add(m, "train", [(k, _setting_text(v)) for k, v in train.items()],
                     error=ValueError)
        except BaseException:
            _lib.kiln_model_free(m)
            raise
        self._setup(m, device, "Sequential")


def _setting_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def _add(m, kind, kv, error=None):
    strings = [s.encode() for pair in kv for s in pair] + [None]
    arr = (ctypes.c_char_p * len(strings))(*strings)
    status = _lib.kiln_model_add(m, kind.encode(), arr)
    if status == 0 and kind == "train":
        status = _lib.kiln_model_check_train(m)
    if status and error is not None:
        raise error(_lib.kiln_last_error().decode(errors="replace"))
    check(status)


@functools.lru_cache(maxsize=1)
def _train_keys():
    m = ctypes.c_void_p()
    check(_lib.kiln_model_create(ctypes.byref(m)))
    try:
        text = collect(_lib.kiln_model_train_settings, m)
    finally:
        _lib.kiln_model_free(m)
    return frozenset(line.split(" = ", 1)[0] for line in text.splitlines())
