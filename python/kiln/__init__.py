"""kiln: train neural networks on any OpenCL device, numpy in, numpy out.

    import kiln
    m = kiln.Model.from_file("examples/fashion_mlp.ini")
    history = m.fit(X, y, epochs=3, validation_data=(Xv, yv))
    p = m.predict(X_test)          # (n, outputs) float32
    m.save("w.safetensors")        # PyTorch's state_dict names

Every failure raises kiln.KilnError with libkiln's own message.
"""
import ctypes
import os
import signal
import tempfile
import threading

import numpy as np

from . import _capi

_lib, library_path = _capi.load()

__version__ = _lib.kiln_version().decode()
__all__ = ["Model", "Device", "KilnError", "devices", "load_data", "plot", "__version__",
           "library_path"]


class KilnError(RuntimeError):
    """A failure reported by libkiln: the message names what was wrong."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _check(status, what=""):
    if status != 0:
        message = _lib.kiln_last_error().decode(errors="replace")
        if not message:
            message = _lib.kiln_status_str(status).decode()
        raise KilnError(status, f"{what}: {message}" if what and not message.startswith(what)
                        else message)


class Device:
    """One OpenCL device as kiln lists it."""

    def __init__(self, info):
        self.index = info.global_index
        self.platform = info.platform.decode(errors="replace")
        self.name = info.name.decode(errors="replace")
        self.type = _lib.kiln_device_type_str(info.type).decode()
        self.driver = info.driver_version.decode(errors="replace")
        self.compute_units = info.compute_units
        self.memory = info.global_mem_bytes

    def __repr__(self):
        return f"Device({self.index}: {self.platform} / {self.name}, {self.type})"


def devices():
    """Every OpenCL device of every platform."""
    arr = ctypes.POINTER(_capi.DeviceInfo)()
    count = ctypes.c_size_t()
    _check(_lib.kiln_devices(ctypes.byref(arr), ctypes.byref(count)), "devices")
    try:
        return [Device(arr[i]) for i in range(count.value)]
    finally:
        _lib.kiln_free(arr)


def _path(p, what, caller="load_data"):
    p = os.fsencode(p) if isinstance(p, (str, bytes, os.PathLike)) else None
    if p is None:
        raise TypeError(f"{caller}: {what} must be a path")
    return p


def load_data(path, keys=None, split="train", label=None):
    """Reads a dataset file as `kiln train` does and returns (x, y): x of
    shape (n, features) float32, y of shape (n,) (class indices or one
    target) or (n, targets) float32, or None for data without labels.

    path is a NumPy .npy features file (label: its labels .npy file), an
    .npz archive (keys: the names of its features and labels arrays, as a
    pair or "x,y"; by default x and y, else x_train and y_train, and
    x_test and y_test for split="test"), a CSV file with a header row
    (label: the label column's name or index, default "label"; "" or
    "none": no label column), an IDX images file, a dataset name or
    directory of IDX files (split "train" or "test"), or an image folder
    (one folder per class, or train/ and val/ holding them; split "test"
    reads val/): PNG and JPEG files decoded to the first image's size and
    channels (others resized and center-cropped to it), x of shape
    (n, C * H * W) in [0, 1], y the class indices in sorted folder order.
    uint8 features are scaled to [0, 1] as IDX pixels are."""
    source = _path(path, "path")
    if keys is not None and not source.endswith(b".npz"):
        raise ValueError(f"load_data: keys name the arrays of an .npz file, not of {path}")
    if keys is not None and not isinstance(keys, str):
        keys = ",".join(keys)
    d = ctypes.c_void_p()
    split_b = split.encode() if split is not None else None
    if keys is not None:
        _check(_lib.kiln_data_load_npz(source, keys.encode(), split_b, ctypes.byref(d)),
               "load_data")
    else:
        label_b = None if label is None else (
            _path(label, "label") if source.endswith(b".npy") else str(label).encode())
        _check(_lib.kiln_data_load(source, split_b, label_b, ctypes.byref(d)), "load_data")
    try:
        n, features = _lib.kiln_data_count(d), _lib.kiln_data_features(d)
        x = np.empty((n, features), dtype=np.float32)
        _check(_lib.kiln_data_copy_features(d, 0, n, _floats(x)), "load_data")
        if not _lib.kiln_data_labelled(d):
            return x, None
        targets = _lib.kiln_data_targets(d)
        y = np.empty((n, targets) if targets > 1 else (n,), dtype=np.float32)
        _check(_lib.kiln_data_copy_targets(d, 0, n, _floats(y)), "load_data")
        return x, y
    finally:
        _lib.kiln_data_free(d)


def plot(run, svg=None):
    """Draws a run's training curves (its log.csv: loss, accuracy or MAE
    and R², learning rate per epoch, the best epoch marked) as an SVG
    image, as `kiln plot` does. run is a run directory or a log.csv; svg
    defaults to curves.svg in the run directory. Returns the SVG's path."""
    run_b = _path(run, "run", "plot")
    svg_b = None if svg is None else _path(svg, "svg", "plot")
    _check(_lib.kiln_plot(run_b, svg_b), "plot")
    if svg is not None:
        return os.fsdecode(svg_b)
    base = run_b if os.path.isdir(run_b) else os.path.dirname(run_b)
    return os.fsdecode(os.path.join(base, b"curves.svg"))


def _floats(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def _as_float32(a, what):
    a = np.asarray(a)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise TypeError(f"{what}: expected numbers, got an array of {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32)


def _finite(a, what):
    """libkiln checks inputs for NaN and Inf only in kiln_data_from_arrays
    (kiln_net_forward and kiln_net_train_step take them silently, and one
    such training step turns weights into NaN), so every array is checked
    here, which costs a few microseconds per thousand values."""
    if a.size and not np.isfinite(a).all():
        where = np.argwhere(~np.isfinite(a.reshape(a.shape[0], -1) if a.ndim > 1 else a))[0]
        value = a.reshape(a.shape[0], -1)[tuple(where)] if a.ndim > 1 else a[where[0]]
        place = (f"feature {where[1]} of sample {where[0]}" if a.ndim > 1
                 else f"sample {where[0]}")
        raise ValueError(f"{what}: {place} is {value}; kiln takes finite values only")
    return a


class Model:
    """A model file (or text) compiled onto a device, with its weights,
    optimizer state and training settings. Use from one thread at a time;
    separate models train in separate threads (the GIL is released)."""

    def __init__(self, model_ptr, device=None, max_batch=None):
        self._ctx = ctypes.c_void_p()
        self._model = model_ptr
        self._net = ctypes.c_void_p()
        self._settings = {}  # [train] keys set through fit, replayed on a grown network
        status = _lib.kiln_ctx_create(device.encode() if device else None,
                                      ctypes.byref(self._ctx))
        if status:
            _lib.kiln_model_free(self._model)
            self._model = None
            _check(status, "device")
        self._make_net(max_batch or 0)

    @classmethod
    def from_file(cls, path, device=None):
        m = ctypes.c_void_p()
        _check(_lib.kiln_model_load(str(path).encode(), ctypes.byref(m)))
        return cls(m, device)

    @classmethod
    def from_string(cls, text, device=None, name="model"):
        m = ctypes.c_void_p()
        _check(_lib.kiln_model_parse(text.encode(), name.encode(), ctypes.byref(m)))
        return cls(m, device)

    # ---- lifetime ----

    def _make_net(self, max_batch):
        net = ctypes.c_void_p()
        _check(_lib.kiln_net_create(self._ctx, self._model, max_batch, ctypes.byref(net)))
        self._net = net

    def close(self):
        """Frees the device memory now (also done when the object goes):
        the network, then the model, then the context."""
        if _lib is None:  # interpreter shutdown
            return
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
        if not self._net:
            raise KilnError(1, "the model is closed")
        return self._net

    # ---- shapes ----

    @property
    def input_size(self):
        return _lib.kiln_net_input_size(self._live())

    @property
    def output_size(self):
        return _lib.kiln_net_output_size(self._live())

    @property
    def device(self):
        return Device(_lib.kiln_ctx_device(self._ctx).contents)

    @property
    def loss(self):
        v = _lib.kiln_model_train_setting(self._model, b"loss")
        return v.decode() if v else "cross_entropy"

    def _inputs(self, x, what="X"):
        x = _as_float32(x, what)
        n_in = self.input_size
        if x.size == n_in and not (x.ndim >= 2 and int(np.prod(x.shape[1:])) == n_in):
            x = x.reshape(1, n_in)  # one sample, flat or in its input shape
        if x.ndim < 2 or int(np.prod(x.shape[1:])) != n_in:
            raise ValueError(f"{what} has shape {x.shape}; the model takes {n_in} values per "
                             f"sample: (n, {n_in}) or (n, *input shape)")
        return _finite(np.ascontiguousarray(x.reshape(x.shape[0], n_in)), what)

    @property
    def vocab_size(self):
        """V of a token model ([input] tokens), else 0."""
        return _lib.kiln_model_vocab(self._model)

    @property
    def block(self):
        """T of a token model ([input] block), else 0."""
        return _lib.kiln_model_block(self._model)

    @property
    def vocab(self):
        """The characters of a model trained on a text (token i is vocab[i]),
        from kiln train's checkpoints; None if unknown. Settable."""
        v = _lib.kiln_net_vocab(self._live())
        return v.decode("utf-8") if v is not None else None

    @vocab.setter
    def vocab(self, chars):
        text = "".join(sorted(set(chars))) if chars is not None else None
        if chars is not None and len(text) != len(chars):
            raise ValueError("vocab: the characters must be distinct")
        _check(_lib.kiln_net_set_vocab(self._live(), text.encode("utf-8") if text else None),
               "vocab")

    def generate(self, prompt="", tokens=500, temperature=0.8, top_k=None, seed=1337,
                 stream=None):
        """Text from a token model with a vocabulary (as `kiln generate`):
        `tokens` characters after the prompt, temperature 0 greedy, top_k
        the k likeliest only; stream(text) gets each character as it comes.
        Returns the characters written (without the prompt). A KV cache
        makes each character one position's work until the window fills
        the block."""
        if top_k is not None and (int(top_k) != top_k or top_k < 1):
            raise ValueError(f"top_k {top_k}: expected a whole number from 1 (None: all)")
        pieces = []

        def write(_user, text):
            piece = text.decode("utf-8")
            pieces.append(piece)
            if stream:
                stream(piece)
        fn = _capi.WRITE_FN(write)
        _check(_lib.kiln_net_generate(self._live(), prompt.encode("utf-8"), int(tokens),
                                      float(temperature), int(top_k or 0), int(seed), fn, None),
               "generate")
        return "".join(pieces)

    def _targets(self, y, n, what="y"):
        y = np.asarray(y)
        outs = self.output_size
        if self.block:  # a token model: (n, T) next-token ids
            if y.shape != (n, self.block):
                raise ValueError(f"{what} has shape {y.shape}; a token model takes ({n}, "
                                 f"{self.block}) next-token ids")
            return np.ascontiguousarray(_as_float32(y, what)), self.block
        if self.loss == "cross_entropy":
            if y.ndim != 1 or y.shape[0] != n:
                raise ValueError(f"{what} has shape {y.shape}; cross_entropy takes one class "
                                 f"index per sample: ({n},)")
            if np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(_finite(y, what), 1) == 0):
                raise ValueError(f"{what}: class indices must be whole numbers")
            return _as_float32(y, what), 1
        y = _as_float32(y, what)
        if y.ndim == 1 and outs == 1:
            y = y.reshape(n, 1)
        if y.shape != (n, outs):
            raise ValueError(f"{what} has shape {y.shape}; {self.loss} takes {outs} target(s) "
                             f"per sample: ({n}, {outs})")
        return _finite(np.ascontiguousarray(y), what), outs

    # ---- running ----

    def predict(self, x):
        """Outputs for every sample: (n, output_size) float32 (probabilities
        for a softmax or sigmoid head)."""
        x = self._inputs(x)
        out = np.empty((x.shape[0], self.output_size), dtype=np.float32)
        if x.shape[0]:
            _check(_lib.kiln_net_forward(self._live(), _floats(x), x.shape[0], _floats(out)),
                   "predict")
        if self.block:  # a token model: (n, T) ids give (n, T, V)
            return out.reshape(x.shape[0], self.block, self.output_size // self.block)
        return out

    def train_step(self, x, y):
        """One optimizer step on a batch; returns its loss."""
        x = self._inputs(x)
        y, _ = self._targets(y, x.shape[0])
        if x.shape[0] > _lib.kiln_net_max_batch(self._live()):
            self._grow(x.shape[0])
        loss = ctypes.c_float()
        _check(_lib.kiln_net_train_step(self._live(), _floats(x), _floats(y), x.shape[0],
                                        ctypes.byref(loss)), "train_step")
        return float(loss.value)

    def evaluate(self, x, y):
        """(loss, accuracy) without training; accuracy is nan for mse."""
        x = self._inputs(x)
        y, _ = self._targets(y, x.shape[0])
        loss, acc = ctypes.c_double(), ctypes.c_double()
        _check(_lib.kiln_net_evaluate(self._live(), _floats(x), _floats(y), x.shape[0],
                                      ctypes.byref(loss), ctypes.byref(acc)), "evaluate")
        return loss.value, acc.value

    def _grow(self, batch):
        """A network for larger batches with the same weights, buffers,
        input normalization, [train] settings and learning rate (the
        optimizer's state starts anew)."""
        lr = _lib.kiln_net_lr(self._live())
        with tempfile.TemporaryDirectory(prefix="kiln-") as tmp:
            path = os.path.join(tmp, "grow.safetensors").encode()
            _check(_lib.kiln_net_save(self._net, path), "resizing the network")
            old, self._net = self._net, None
            try:
                self._make_net(batch)
            except BaseException:
                self._net = old
                raise
            _lib.kiln_net_free(old)
            _check(_lib.kiln_net_load(self._net, path), "resizing the network")
        for key, value in self._settings.items():
            _check(_lib.kiln_net_configure(self._net, key, value), "resizing the network")
        _check(_lib.kiln_net_set_lr(self._net, lr), "resizing the network")

    def _dataset(self, x, y, what):
        x = self._inputs(x, what + " X")
        y, targets = self._targets(y, x.shape[0], what + " y")
        d = ctypes.c_void_p()
        _check(_lib.kiln_data_from_arrays(_floats(x), _floats(y), x.shape[0], x.shape[1],
                                          targets, ctypes.byref(d)), what)
        return d

    def fit(self, x, y=None, epochs=None, batch=None, validation_data=None, callback=None,
            verbose=True, **settings):
        """Trains as the model's [train] section says, on arrays x and y or,
        with x a path and no y, on what `kiln train --data` reads (an image
        folder: one folder per class, or train/ and val/ holding them,
        decoded and augmented batch by batch). Keyword arguments
        override its keys (lr=0.01, optimizer="sgd", momentum=0.9, ...) and
        stay set for later calls, as kiln_net_configure does; epochs and
        batch hold for this call only.
        Returns the history: lists per epoch of train_loss, val_loss,
        train_acc, val_acc and lr. callback(epoch_dict) may return True to
        stop. Ctrl-C stops after the current batch and raises
        KeyboardInterrupt; the model stays usable."""
        net = self._live()
        for name, v in (("epochs", epochs), ("batch", batch)):
            if v is not None and (isinstance(v, bool) or int(v) != v or v < 1):
                raise ValueError(f"fit: {name} = {v!r}; expected a whole number from 1")
        if batch and batch > _lib.kiln_net_max_batch(net):
            self._grow(int(batch))
            net = self._live()
        for key, value in settings.items():
            text = str(value).lower() if isinstance(value, bool) else (
                ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value))
            _check(_lib.kiln_net_configure(net, key.encode(), text.encode()), "fit")
            self._settings[key.encode()] = text.encode()
        path = None
        if y is None and isinstance(x, (str, bytes, os.PathLike)):
            path = _path(x, "x", "fit")
            datasets = []
        else:
            datasets = [self._dataset(x, y, "training data")]
        if validation_data is not None and path is not None:
            raise ValueError("fit: validation_data goes with arrays; a folder holds its own "
                             "(val/, else the [train] val share)")
        if validation_data is not None:
            try:
                xv, yv = validation_data
                datasets.append(self._dataset(xv, yv, "validation data"))
            except BaseException:
                _lib.kiln_data_free(datasets[0])
                raise
        history = {"train_loss": [], "val_loss": [], "train_acc": [], "val_acc": [], "lr": []}
        interrupted = []
        stop = ctypes.c_int(0)  # sig_atomic_t

        # Ctrl-C: Python runs its SIGINT handler at the next bytecode, which
        # is the start of a callback from libkiln; a KeyboardInterrupt
        # raised there, before any try, would be printed and lost by
        # ctypes. So during fit the handler only records it and asks kiln
        # to stop after the batch; fit raises it once kiln_net_fit returns.
        def on_sigint(signum, frame):
            try:
                if previous is signal.default_int_handler:
                    raise KeyboardInterrupt
                previous(signum, frame)
            except BaseException as exc:
                interrupted.append(exc)
                stop.value = 1

        previous = None
        if threading.current_thread() is threading.main_thread():
            handler = signal.getsignal(signal.SIGINT)
            if callable(handler):
                previous = handler

        def on_epoch(_user, p):
            try:
                e = p.contents
                row = {"epoch": e.epoch, "train_loss": e.loss, "val_loss": e.val_loss,
                       "train_acc": e.accuracy, "val_acc": e.val_accuracy, "lr": e.lr,
                       "seconds": e.seconds}
                for k in history:
                    history[k].append(row[k])
                return 1 if callback is not None and callback(row) else 0
            except BaseException as exc:  # KeyboardInterrupt lands in whichever callback runs
                interrupted.append(exc)
                return 1

        def on_step(_user, _p):
            try:
                return 1 if interrupted else 0
            except BaseException as exc:
                interrupted.append(exc)
                return 1

        def log(_user, text):
            try:
                print(text.decode(errors="replace"), end="", flush=True)
            except BaseException as exc:
                interrupted.append(exc)

        o = _capi.TrainOptions()
        _lib.kiln_train_options_init(ctypes.byref(o))
        o.data = path
        o.train_data = datasets[0] if datasets else None
        o.val_data = datasets[1] if len(datasets) > 1 else None
        o.epochs = int(epochs or 0)
        o.batch = int(batch or 0)
        keep = [_capi.PROGRESS_FN(on_epoch), _capi.PROGRESS_FN(on_step), _capi.WRITE_FN(log)]
        o.on_epoch, o.on_step = keep[0], keep[1]
        o.stop = ctypes.pointer(stop)
        if verbose:
            o.log = keep[2]
        report = _capi.TrainReport()
        try:
            if previous is not None:
                signal.signal(signal.SIGINT, on_sigint)
            status = _lib.kiln_net_fit(net, ctypes.byref(o), ctypes.byref(report))
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            for d in datasets:
                _lib.kiln_data_free(d)
        if interrupted:
            raise interrupted[0]
        _check(status, "fit")
        return history

    @property
    def classes(self):
        """The class names of an image folder the model was trained on (or
        of the checkpoint it loaded), in class-index order; None otherwise."""
        net = self._live()
        names = []
        while (name := _lib.kiln_net_class_name(net, len(names))) is not None:
            names.append(name.decode(errors="replace"))
        return names or None

    # ---- weights ----

    def _params(self):
        net = self._live()
        info = _capi.ParamInfo()
        for i in range(_lib.kiln_net_param_count(net)):
            _check(_lib.kiln_net_param_info(net, i, ctypes.byref(info)))
            yield (info.name.decode(), tuple(info.shape[d] for d in range(info.ndim)),
                   info.numel, bool(info.is_int64))

    def state_dict(self):
        """Every parameter and buffer by its PyTorch name (copies)."""
        out = {}
        for name, shape, numel, is_int64 in self._params():
            buf = np.empty(numel, dtype=np.float32)
            _check(_lib.kiln_net_get(self._net, name.encode(), _floats(buf), numel))
            out[name] = (np.array(int(buf[0]), dtype=np.int64) if is_int64
                         else buf.reshape(shape))
        return out

    def load_state_dict(self, state, strict=True):
        """Sets weights and buffers from name -> array, as PyTorch's
        load_state_dict: with strict, missing and unexpected names are an
        error naming all of them."""
        params = list(self._params())
        names = {p[0] for p in params}
        if strict:
            missing = sorted(names - set(state))
            extra = sorted(set(state) - names)
            if missing or extra:
                raise KilnError(1, "load_state_dict: " + "; ".join(
                    ([f"missing: {', '.join(missing)}"] if missing else []) +
                    ([f"unexpected: {', '.join(extra)}"] if extra else [])))
        for name, shape, numel, is_int64 in params:
            if name not in state or is_int64:
                continue
            v = np.asarray(state[name])
            if hasattr(state[name], "detach"):  # a torch tensor
                v = state[name].detach().cpu().numpy()
            v = _as_float32(v, name)
            if v.shape != shape:
                raise ValueError(f"load_state_dict: {name} has shape {v.shape}; the model "
                                 f"expects {shape}")
            _check(_lib.kiln_net_set(self._net, name.encode(), _floats(v), numel))

    def save(self, path):
        """A safetensors file with PyTorch's names (written atomically)."""
        _check(_lib.kiln_net_save(self._live(), str(path).encode()), "save")

    def load(self, path):
        """Weights, buffers and input normalization from a safetensors file."""
        _check(_lib.kiln_net_load(self._live(), str(path).encode()), "load")

    def export_onnx(self, path):
        """An ONNX model (opset 17, written atomically) for ONNX Runtime:
        input "input" of shape (batch, *input shape), raw as predict takes
        it (the normalization is inside); output "output" as `kiln predict`
        gives it (probabilities for a classifier, also one trained on
        logits). A layer with no ONNX form raises KilnError naming it."""
        _check(_lib.kiln_net_export_onnx(self._live(), os.fsencode(path)), "export_onnx")

    @property
    def lr(self):
        return _lib.kiln_net_lr(self._live())

    @lr.setter
    def lr(self, value):
        _check(_lib.kiln_net_set_lr(self._live(), float(value)))

    def summary(self):
        """The layers, their output shapes and parameters, as text."""
        parts = []
        fn = _capi.WRITE_FN(lambda _u, text: parts.append(text.decode()))
        _check(_lib.kiln_model_summary(self._model, fn, None))
        return "".join(parts)

    def __repr__(self):
        return f"<kiln.Model {self.input_size} -> {self.output_size} on {self.device.name}>"
