"""Datasets from files, as `kiln train` reads them, and training curves."""
import ctypes
import os

import numpy as np

from ._core import _lib, check, floats, path_arg


def load_data(path, keys=None, split="train", label=None):
    """Reads a dataset file as ``kiln train`` does.

    Parameters
    ----------
    path : str or os.PathLike
        A NumPy ``.npy`` features file, an ``.npz`` archive, a CSV file with
        a header row, an IDX images file, a dataset name or directory of
        IDX files ("fashion-mnist"), or an image folder (one folder per
        class, or train/ and val/ holding them; split "test" reads val/):
        PNG and JPEG files decoded to the first image's size and channels
        (others resized and center-cropped to it), x in [0, 1], y the class
        indices in sorted folder order.
    keys : str or pair of str, optional
        ``.npz`` only: the features and labels arrays ("x,y" or ("x", "y")).
        Default: x and y, else x_train and y_train (x_test and y_test for
        split="test").
    split : {"train", "test"}, default "train"
        Which split of an IDX directory or ``.npz`` archive.
    label : str or int, optional
        CSV: the label column's name or index (default "label"; "" or
        "none": no label column). ``.npy``: the labels ``.npy`` file.

    Returns
    -------
    x : ndarray of float32, shape (n, features)
        uint8 features are scaled to [0, 1] as IDX pixels are.
    y : ndarray or None
        Class labels as int64 of shape (n,); other targets as float32 of
        shape (n,) or (n, targets); None for data without labels.
    """
    source = path_arg(path, "path", "load_data")
    if split not in ("train", "test"):
        raise ValueError(f"load_data: split = {split!r}; expected 'train' or 'test'")
    if keys is not None and not source.endswith(b".npz"):
        raise ValueError(f"load_data: keys name the arrays of an .npz file, not of {path}")
    if keys is not None and not isinstance(keys, str):
        keys = ",".join(keys)
    d = ctypes.c_void_p()
    if keys is not None:
        check(_lib.kiln_data_load_npz(source, keys.encode(), split.encode(), ctypes.byref(d)),
              "load_data")
    else:
        label_b = None if label is None else (
            path_arg(label, "label", "load_data") if source.endswith(b".npy")
            else str(label).encode())
        check(_lib.kiln_data_load(source, split.encode(), label_b, ctypes.byref(d)),
              "load_data")
    try:
        n, features = _lib.kiln_data_count(d), _lib.kiln_data_features(d)
        x = np.empty((n, features), dtype=np.float32)
        check(_lib.kiln_data_copy_features(d, 0, n, floats(x)), "load_data")
        if not _lib.kiln_data_labelled(d):
            return x, None
        targets = _lib.kiln_data_targets(d)
        y = np.empty((n, targets) if targets > 1 else (n,), dtype=np.float32)
        check(_lib.kiln_data_copy_targets(d, 0, n, floats(y)), "load_data")
        if _lib.kiln_data_classes(d):  # class indices: whole numbers from 0
            y = y.astype(np.int64)
        return x, y
    finally:
        _lib.kiln_data_free(d)


def plot(run, svg=None):
    """Draws a run's training curves as an SVG image, as ``kiln plot`` does.

    Parameters
    ----------
    run : str or os.PathLike
        A run directory (holding log.csv) or a log.csv file.
    svg : str or os.PathLike, optional
        Where to write; default curves.svg in the run directory.

    Returns
    -------
    str
        The SVG's path. Loss, accuracy (or MAE and R² for mse) and learning
        rate per epoch, with the best epoch marked.
    """
    run_b = path_arg(run, "run", "plot")
    svg_b = None if svg is None else path_arg(svg, "svg", "plot")
    check(_lib.kiln_plot(run_b, svg_b), "plot")
    if svg is not None:
        return os.fsdecode(svg_b)
    base = run_b if os.path.isdir(run_b) else os.path.dirname(run_b)
    return os.fsdecode(os.path.join(base, b"curves.svg"))
