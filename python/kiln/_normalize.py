"""Input normalization computed from data as fit does, and folded into
the first layer for PyTorch."""
import numpy as np


def _groups(model, standard):
    """Normalization groups: every input value (vectors), every channel
    (C x H x W images), or 1."""
    n_in = model.input_size
    if not standard:
        return 1
    shape = _input_shape(model)
    return shape[0] if len(shape) == 3 else n_in


def _input_shape(model):
    for line in model.text.splitlines():
        if line.replace(" ", "").startswith("shape="):
            return tuple(int(d) for d in line.split("=", 1)[1].strip().split("x"))
    return (model.input_size,)


def statistics(model, x):
    kind = model.settings["normalize"]
    if kind not in ("standard", "global"):
        return None
    groups = _groups(model, kind == "standard")
    v = x.astype(np.float64).reshape(len(x), groups, -1)
    mean = v.mean(axis=(0, 2))
    var = (v * v).mean(axis=(0, 2)) - mean * mean
    std = np.where(var > 1e-12, np.sqrt(np.maximum(var, 0)), 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def _sections(text):
    """[(kind, {key: value})] of model-file text, in order."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            out.append((line[1:-1].strip(), {}))
        elif "=" in line and out:
            k, v = line.split("=", 1)
            out[-1][1][k.strip()] = v.strip()
    return out


def fold(model, state):
    """Folds (x - mean) / std into the first layer's weight and bias in
    state, in place: W' = W / std, b' = b - W' mean."""
    norm = model.normalization
    if norm is None:
        return
    sections = [s for s in _sections(model.text) if s[0] not in ("input", "train")]
    kind, keys = sections[0]
    name = keys.get("name", "0")
    if kind not in ("linear", "conv2d") or "from" in keys:
        raise ValueError(f"state_dict(fold_normalization=True): the first layer is {kind}; "
                         f"the normalization folds into a first linear or conv2d layer only")
    if keys.get("bias") in ("false", "0"):
        raise ValueError("state_dict(fold_normalization=True): the first layer has no bias to "
                         "fold the mean into")
    mean, std = (a.astype(np.float64) for a in norm)
    w = state[name + ".weight"].astype(np.float64)
    b = state[name + ".bias"].astype(np.float64)
    if kind == "linear":
        per = model.input_size // mean.size
        mean, std = np.repeat(mean, per), np.repeat(std, per)
        w = w / std[None, :]
        b = b - w @ mean
    else:
        channels = w.shape[1]
        if mean.size not in (1, channels):
            raise ValueError("state_dict(fold_normalization=True): a conv2d first layer folds "
                             "one normalization per channel, not per value")
        if int(keys.get("pad", "0")) and np.any(mean != 0):
            raise ValueError("state_dict(fold_normalization=True): the first conv2d pads its "
                             "input, where padding with zeros after normalization is not "
                             "zeros before it; fold into a layer without pad, or normalize "
                             "the inputs for PyTorch yourself")
        mean = np.broadcast_to(mean, (channels,))
        std = np.broadcast_to(std, (channels,))
        w = w / std[None, :, None, None]
        b = b - (w * mean[None, :, None, None]).sum(axis=(1, 2, 3))
    state[name + ".weight"] = w.astype(np.float32)
    state[name + ".bias"] = b.astype(np.float32)
