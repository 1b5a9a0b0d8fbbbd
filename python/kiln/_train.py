"""Model.fit: kiln_net_fit on arrays, with Python callbacks, Ctrl-C, and a
progress bar within each epoch."""
import ctypes
import os
import signal
import sys
import threading

import numpy as np

from . import _capi
from ._core import _lib, check, floats, path_arg, whole

FIT_ARGS = ("x", "y", "epochs", "batch", "validation_data", "lr", "callback", "on_step",
            "verbose", "progress", "restore_best_weights", "class_weight")


def _interactive():
    """A terminal or a Jupyter notebook: where a redrawn line shows."""
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _dataset(model, x, y, what):
    x = model._inputs(x, what + " X")
    y, targets = model._targets(y, x.shape[0], what + " y")
    if x.shape[0] == 0:
        raise ValueError(f"fit: {what} has no samples")
    d = ctypes.c_void_p()
    check(_lib.kiln_data_from_arrays(floats(x), floats(y), x.shape[0], x.shape[1], targets,
                                     ctypes.byref(d)), what)
    return d


def _check_args(model, epochs, batch, validation_data, lr, callback, on_step, settings):
    epochs = whole(epochs, "epochs", "fit")
    batch = whole(batch, "batch", "fit")
    for name, fn in (("callback", callback), ("on_step", on_step)):
        if fn is not None and not callable(fn):
            raise TypeError(f"fit: {name} must be callable, not {type(fn).__name__}")
    if validation_data is not None and (not isinstance(validation_data, (tuple, list)) or
                                        len(validation_data) != 2):
        raise TypeError("fit: validation_data must be a pair (X, y)")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or
                           not 0 < lr <= 100):
        raise ValueError(f"fit: lr = {lr!r}; a learning rate is above 0 and at most 100")
    keys = set(model.settings)
    for key in settings:
        if key not in keys:
            raise TypeError(f"fit() got an unexpected keyword argument {key!r}; fit takes "
                            f"{', '.join(FIT_ARGS)} and the [train] settings: "
                            f"{', '.join(sorted(keys))}")
    return epochs, batch


def _class_weights(model, class_weight, y):
    """[train] class_weight as text from a dict {class: weight}, a sequence
    of one weight per class, or "balanced" (n / (classes * count), as
    scikit-learn's)."""
    classes = model.output_size
    if model.loss != "cross_entropy":
        raise ValueError(f"fit: class_weight weighs the classes of cross_entropy; this model's "
                         f"loss is {model.loss}")
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"fit: class_weight = {class_weight!r}; expected 'balanced', a "
                             f"dict {{class: weight}} or one weight per class")
        counts = np.bincount(np.asarray(y).astype(np.int64).ravel(), minlength=classes)
        w = np.where(counts > 0, len(np.asarray(y)) / (classes * np.maximum(counts, 1)), 0)
    elif isinstance(class_weight, dict):
        w = np.ones(classes)
        for k, v in class_weight.items():
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < classes:
                raise ValueError(f"fit: class_weight names class {k!r}; the model's classes are "
                                 f"0 to {classes - 1}")
            w[k] = v
    elif isinstance(class_weight, (list, tuple, np.ndarray)):
        w = np.asarray(class_weight, dtype=np.float64)
        if w.shape != (classes,):
            raise ValueError(f"fit: class_weight has {w.size} values; the model has {classes} "
                             f"classes")
    else:
        raise TypeError(f"fit: class_weight must be 'balanced', a dict or a sequence, not "
                        f"{type(class_weight).__name__}")
    w = np.asarray(w, dtype=np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ValueError("fit: class weights are numbers from 0, not all 0")
    return ",".join(f"{v:.4g}" for v in w)


def fit(model, x, y, epochs, batch, validation_data, lr, callback, on_step, verbose, progress,
        restore_best_weights, class_weight, settings):
    epochs, batch = _check_args(model, epochs, batch, validation_data, lr, callback, on_step,
                                settings)
    if "class_weight" in settings:
        raise TypeError("fit: give class_weight as fit's own argument (for this call), not "
                        "as a [train] setting")
    weights = None if class_weight is None else _class_weights(model, class_weight, y)
    if settings:
        model.configure(**settings)
    before = model.settings["class_weight"]
    if weights is not None:
        model.configure(class_weight=weights)
    try:
        return _fit(model, x, y, epochs, batch, validation_data, lr, callback, on_step,
                    verbose, progress, restore_best_weights)
    finally:
        if weights is not None:
            model.configure(class_weight=before)


def _fit(model, x, y, epochs, batch, validation_data, lr, callback, on_step, verbose, progress,
         restore_best_weights):
    if lr is not None:
        model.configure(lr=lr)
    want = batch or int(model.settings["batch"])  # never a smaller batch than asked for
    if want > _lib.kiln_net_max_batch(model._net):
        model._rebuild(max_batch=want)
    mse = model.loss == "mse"
    path = None
    if y is None and isinstance(x, (str, bytes, os.PathLike)):  # kiln train --data's source
        path = path_arg(x, "x", "fit")
        if validation_data is not None:
            raise ValueError("fit: validation_data goes with arrays; a folder holds its own "
                             "(val/, else the [train] val share)")
        datasets = []
    else:
        datasets = [_dataset(model, x, y, "training data")]
    try:
        if validation_data is not None:
            datasets.append(_dataset(model, *validation_data, "validation data"))
        return _run(model, datasets, epochs, batch, callback, on_step, verbose,
                    _interactive() if progress is None else bool(progress), mse,
                    restore_best_weights, path)
    finally:
        for d in datasets:
            _lib.kiln_data_free(d)


def _run(model, datasets, epochs, batch, callback, on_step, verbose, progress, mse,
         restore_best, path=None):
    history = {"train_loss": [], "val_loss": [], "train_acc": [], "val_acc": [], "lr": []}
    if mse:
        history.update(val_mae=[], val_r2=[])
    interrupted = []
    stop = ctypes.c_int(0)  # sig_atomic_t

    # Ctrl-C: Python runs its SIGINT handler at the next bytecode, which is
    # the start of a callback from libkiln; a KeyboardInterrupt raised
    # there, before any try, would be printed and lost by ctypes. So during
    # fit the handler only records it and asks kiln to stop after the
    # batch; fit raises it once kiln_net_fit returns.
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

    def epoch_done(_user, p):
        try:
            e = p.contents
            row = {"epoch": e.epoch, "train_loss": e.loss, "val_loss": e.val_loss,
                   "train_acc": e.accuracy, "val_acc": e.val_accuracy, "lr": e.lr,
                   "seconds": e.seconds}
            if mse:
                row.update(val_mae=e.val_mae, val_r2=e.val_r2)
            for k in history:
                history[k].append(row[k])
            return 1 if callback is not None and callback(row) else 0
        except BaseException as exc:  # KeyboardInterrupt lands in whichever callback runs
            interrupted.append(exc)
            return 1

    def step_done(_user, p):
        try:
            if interrupted:
                return 1
            if on_step is None:
                return 0
            e = p.contents
            row = {"epoch": e.epoch, "batch": e.batch, "batches": e.batches, "step": e.step,
                   "loss": e.loss, "accuracy": e.accuracy, "lr": e.lr}
            return 1 if on_step(row) else 0
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
    o.epochs = epochs or 0
    o.batch = batch or 0
    o.keep_last = 0 if restore_best else 1
    keep = [_capi.PROGRESS_FN(epoch_done), _capi.PROGRESS_FN(step_done), _capi.WRITE_FN(log)]
    o.on_epoch, o.on_step = keep[0], keep[1]
    o.stop = ctypes.pointer(stop)
    if verbose:
        o.log = keep[2]
        o.progress = 1 if progress else 0
    report = _capi.TrainReport()
    try:
        if previous is not None:
            signal.signal(signal.SIGINT, on_sigint)
        status = _lib.kiln_net_fit(model._net, ctypes.byref(o), ctypes.byref(report))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if interrupted:
        raise interrupted[0]
    check(status, "fit")
    return history


