"""The library handle, errors, argument checks and devices, shared by the
package's modules."""
import ctypes
import os

import numpy as np

from . import _capi

_lib, library_path = _capi.load()

INVALID_ARGUMENT = 1


class KilnError(RuntimeError):
    """A failure reported by libkiln: the message names what was wrong.

    Attributes
    ----------
    status : int
        libkiln's kiln_status code (1: invalid argument, 10: file error,
        11: invalid model, ...).
    """

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def check(status, what=""):
    """Raises KilnError with libkiln's message when status is not 0."""
    if status != 0:
        message = _lib.kiln_last_error().decode(errors="replace")
        if not message:
            message = _lib.kiln_status_str(status).decode()
        raise KilnError(status, f"{what}: {message}" if what and not message.startswith(what)
                        else message)


def collect(call, *args, what=""):
    """The text a libkiln call writes through a kiln_write_fn."""
    parts = []
    fn = _capi.WRITE_FN(lambda _u, text: parts.append(text.decode(errors="replace")))
    check(call(*args, fn, None), what)
    return "".join(parts)


class Device:
    """One OpenCL device as kiln lists it (kiln.devices()).

    Attributes
    ----------
    index : int
        Position among all devices: what ``device=index`` and the
        ``KILN_DEVICE`` selector take.
    platform : str
        The OpenCL platform (driver family): "Portable Computing Language",
        "rusticl", "NVIDIA CUDA", ...
    name : str
        The device's name as the driver reports it.
    vendor : str
        The device's vendor.
    type : str
        "CPU", "GPU", "accelerator" or "other".
    driver : str
        The driver's version.
    version : str
        The OpenCL version the device supports ("OpenCL 3.0 PoCL ...").
    compute_units : int
        Parallel compute units (cores on a CPU, SMs or CUs on a GPU).
    memory : int
        Global memory in bytes.
    max_alloc : int
        The largest single buffer in bytes.
    fp64, fp16 : bool
        Whether the device computes in double and half precision.

    Pass a Device (or its index, or a selector string such as "pocl",
    "gpu" or "1:0") as ``device=`` to any call that takes one.
    """

    def __init__(self, info):
        self.index = info.global_index
        self.platform = info.platform.decode(errors="replace")
        self.name = info.name.decode(errors="replace")
        self.vendor = info.vendor.decode(errors="replace")
        self.type = _lib.kiln_device_type_str(info.type).decode()
        self.driver = info.driver_version.decode(errors="replace")
        self.version = info.device_version.decode(errors="replace")
        self.compute_units = info.compute_units
        self.memory = info.global_mem_bytes
        self.max_alloc = info.max_alloc_bytes
        self.fp64 = bool(info.fp64)
        self.fp16 = bool(info.fp16)

    def __repr__(self):
        return f"Device({self.index}: {self.platform} / {self.name}, {self.type})"

    def __eq__(self, other):
        return isinstance(other, Device) and (self.index, self.platform, self.name) == (
            other.index, other.platform, other.name)

    def __hash__(self):
        return hash((self.index, self.platform, self.name))


def devices():
    """Every OpenCL device of every platform, as a list of Device."""
    arr = ctypes.POINTER(_capi.DeviceInfo)()
    count = ctypes.c_size_t()
    check(_lib.kiln_devices(ctypes.byref(arr), ctypes.byref(count)), "devices")
    try:
        return [Device(arr[i]) for i in range(count.value)]
    finally:
        _lib.kiln_free(arr)


def selector(device, caller):
    """A device argument as libkiln's selector: None (KILN_DEVICE, else the
    first GPU, else the first CPU), an int index, a Device, or a selector
    string ("pocl", "gpu", "1", "1:0")."""
    if device is None:
        return None
    if isinstance(device, Device):
        return str(device.index).encode()
    if isinstance(device, bool) or not isinstance(device, (int, str, np.integer)):
        raise TypeError(f"{caller}: device must be an int index, a kiln.Device or a selector "
                        f"string such as 'pocl' or 'gpu', not {type(device).__name__}")
    if isinstance(device, (int, np.integer)):
        count = len(devices())
        if not 0 <= device < count:
            raise ValueError(f"{caller}: device={device}; there are {count} devices "
                             f"(0 to {count - 1}; kiln.devices() lists them)")
        return str(int(device)).encode()
    if not device.strip():
        raise ValueError(f"{caller}: device is an empty string; give None for the default")
    return device.encode()


def path_arg(p, what, caller):
    """A file argument as bytes, or TypeError naming it."""
    if not isinstance(p, (str, bytes, os.PathLike)):
        raise TypeError(f"{caller}: {what} must be a path (str or os.PathLike), not "
                        f"{type(p).__name__}")
    return os.fsencode(p)


def floats(a):
    """The address of a float32 array in C order, for an argument declared
    _capi.F; the caller keeps a reference to it for the call. Through the
    buffer protocol where the array is writable: 0.3 us, against 0.8-0.9
    for a.ctypes.data or a.__array_interface__ (a forward of one sample
    from Python takes two)."""
    if a.flags.writeable and a.size:
        return ctypes.addressof(ctypes.c_char.from_buffer(a))
    return a.__array_interface__["data"][0]


def as_float32(a, what):
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise TypeError(f"{what}: expected numbers, got an array of {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32)


def finite(a, what):
    """libkiln checks inputs for NaN and Inf as well; checking here names
    the sample and feature by the caller's own indices."""
    if a.size and not np.isfinite(a).all():
        where = np.argwhere(~np.isfinite(a.reshape(a.shape[0], -1) if a.ndim > 1 else a))[0]
        value = a.reshape(a.shape[0], -1)[tuple(where)] if a.ndim > 1 else a[where[0]]
        place = (f"feature {where[1]} of sample {where[0]}" if a.ndim > 1
                 else f"sample {where[0]}")
        raise ValueError(f"{what}: {place} is {value}; kiln takes finite values only")
    return a


def whole(value, name, caller, low=1, allow_none=True):
    """A whole-number argument, or TypeError/ValueError naming it."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        elif isinstance(value, (float, np.floating)):
            raise ValueError(f"{caller}: {name} = {value!r}; expected a whole number from {low}")
        else:
            raise TypeError(f"{caller}: {name} must be a whole number, not {value!r}")
    if value < low:
        raise ValueError(f"{caller}: {name} = {value}; expected a whole number from {low}")
    return int(value)
