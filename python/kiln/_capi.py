"""ctypes declarations of libkiln's C API (include/kiln.h), in one place.

The library is looked for in this order: $KILN_LIBRARY, the copy that
`pip install` bundled into the package (kiln/_lib/libkiln.so, built by
meson-python), build/ of the kiln source tree when the package is
imported from one (python/kiln), then the system's libkiln
(ctypes.util.find_library).
"""
import ctypes
import ctypes.util
import os

c_size = ctypes.c_size_t
c_status = ctypes.c_int
MAX_DIMS = 4


class DeviceInfo(ctypes.Structure):
    _fields_ = [("platform_index", ctypes.c_uint), ("device_index", ctypes.c_uint),
                ("global_index", ctypes.c_uint), ("platform", ctypes.c_char * 128),
                ("platform_version", ctypes.c_char * 128), ("name", ctypes.c_char * 128),
                ("vendor", ctypes.c_char * 128), ("driver_version", ctypes.c_char * 128),
                ("device_version", ctypes.c_char * 128),
                ("opencl_c_version", ctypes.c_char * 64), ("type", ctypes.c_int),
                ("compute_units", ctypes.c_uint), ("global_mem_bytes", ctypes.c_uint64),
                ("local_mem_bytes", ctypes.c_uint64), ("max_alloc_bytes", ctypes.c_uint64),
                ("max_work_group_size", c_size), ("mem_base_align_bits", ctypes.c_uint),
                ("fp64", ctypes.c_int), ("fp16", ctypes.c_int)]


class Progress(ctypes.Structure):
    _fields_ = [("epoch", ctypes.c_int), ("epochs", ctypes.c_int), ("batch", c_size),
                ("batches", c_size), ("step", ctypes.c_uint64), ("loss", ctypes.c_double),
                ("accuracy", ctypes.c_double), ("val_loss", ctypes.c_double),
                ("val_accuracy", ctypes.c_double), ("lr", ctypes.c_double),
                ("seconds", ctypes.c_double), ("best", ctypes.c_int),
                ("val_mae", ctypes.c_double), ("val_r2", ctypes.c_double)]


WRITE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)
PROGRESS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(Progress))


class TrainOptions(ctypes.Structure):
    _fields_ = [("size", c_size), ("data", ctypes.c_char_p), ("label", ctypes.c_char_p),
                ("train_data", ctypes.c_void_p), ("val_data", ctypes.c_void_p),
                ("test_data", ctypes.c_void_p), ("out_dir", ctypes.c_char_p),
                ("resume", ctypes.c_char_p), ("epochs", ctypes.c_int), ("batch", ctypes.c_int),
                ("lr", ctypes.c_double), ("limit", c_size), ("stop_after", c_size),
                ("detect_anomaly", ctypes.c_int), ("profile", ctypes.c_char_p),
                ("progress", ctypes.c_int), ("log", WRITE_FN), ("log_user", ctypes.c_void_p),
                ("on_step", PROGRESS_FN), ("on_epoch", PROGRESS_FN), ("user", ctypes.c_void_p),
                ("stop", ctypes.POINTER(ctypes.c_int)), ("npz_keys", ctypes.c_char_p),
                ("keep_last", ctypes.c_int), ("steps", ctypes.c_int)]


class TrainReport(ctypes.Structure):
    _fields_ = [("epochs_run", ctypes.c_int), ("best_epoch", ctypes.c_int),
                ("stopped_early", ctypes.c_int), ("interrupted", ctypes.c_int),
                ("best_val_loss", ctypes.c_double), ("test_loss", ctypes.c_double),
                ("test_accuracy", ctypes.c_double), ("seconds", ctypes.c_double),
                ("samples_per_second", ctypes.c_double), ("steps_run", ctypes.c_uint64),
                ("best_step", ctypes.c_uint64), ("tokens_per_second", ctypes.c_double)]


class ParamInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("ndim", ctypes.c_int), ("shape", c_size * MAX_DIMS),
                ("numel", c_size), ("trainable", ctypes.c_int), ("is_int64", ctypes.c_int)]


P = ctypes.c_void_p
# a float32 array's address (_core.floats): an int passes in 1-2 us, where
# ctypes.POINTER(c_float) from ndarray.ctypes.data_as took 6-8 us a call
# (a forward of one sample from Python paid it twice)
F = ctypes.c_void_p

# name: (result type, argument types)
SIGNATURES = {
    "kiln_version": (ctypes.c_char_p, []),
    "kiln_last_error": (ctypes.c_char_p, []),
    "kiln_status_str": (ctypes.c_char_p, [c_status]),
    "kiln_devices": (c_status, [ctypes.POINTER(ctypes.POINTER(DeviceInfo)), ctypes.POINTER(c_size)]),
    "kiln_device_type_str": (ctypes.c_char_p, [ctypes.c_int]),
    "kiln_free": (None, [P]),
    "kiln_ctx_create": (c_status, [ctypes.c_char_p, ctypes.POINTER(P)]),
    "kiln_ctx_free": (None, [P]),
    "kiln_ctx_device": (ctypes.POINTER(DeviceInfo), [P]),
    "kiln_model_load": (c_status, [ctypes.c_char_p, ctypes.POINTER(P)]),
    "kiln_model_parse": (c_status, [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(P)]),
    "kiln_model_free": (None, [P]),
    "kiln_model_create": (c_status, [ctypes.POINTER(P)]),
    "kiln_model_add": (c_status, [P, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]),
    "kiln_model_text": (c_status, [P, WRITE_FN, P]),
    "kiln_model_from_checkpoint": (c_status, [ctypes.c_char_p, ctypes.POINTER(P)]),
    "kiln_model_train_settings": (c_status, [P, WRITE_FN, P]),
    "kiln_model_check_train": (c_status, [P]),
    "kiln_model_train_setting": (ctypes.c_char_p, [P, ctypes.c_char_p]),
    "kiln_model_set_train": (c_status, [P, ctypes.c_char_p, ctypes.c_char_p]),
    "kiln_model_summary": (c_status, [P, WRITE_FN, P]),
    "kiln_model_vocab": (c_size, [P]),
    "kiln_model_block": (c_size, [P]),
    "kiln_net_vocab": (ctypes.c_char_p, [P]),
    "kiln_net_set_vocab": (c_status, [P, ctypes.c_char_p]),
    "kiln_net_generate": (c_status, [P, ctypes.c_char_p, c_size, ctypes.c_double, c_size,
                                     ctypes.c_uint64, WRITE_FN, P]),
    "kiln_net_create": (c_status, [P, P, c_size, ctypes.POINTER(P)]),
    "kiln_net_free": (None, [P]),
    "kiln_net_input_size": (c_size, [P]),
    "kiln_net_output_size": (c_size, [P]),
    "kiln_net_max_batch": (c_size, [P]),
    "kiln_net_class_name": (ctypes.c_char_p, [P, c_size]),
    "kiln_net_head": (ctypes.c_int, [P]),
    "kiln_net_set_training": (c_status, [P, ctypes.c_int]),
    "kiln_net_forward": (c_status, [P, F, c_size, F]),
    "kiln_net_train_step": (c_status, [P, F, F, c_size, F]),
    "kiln_net_evaluate": (c_status, [P, F, F, c_size, ctypes.POINTER(ctypes.c_double),
                                     ctypes.POINTER(ctypes.c_double)]),
    "kiln_net_save": (c_status, [P, ctypes.c_char_p]),
    "kiln_net_load": (c_status, [P, ctypes.c_char_p]),
    "kiln_net_export_onnx": (c_status, [P, ctypes.c_char_p]),
    "kiln_net_param_count": (c_size, [P]),
    "kiln_net_param_info": (c_status, [P, c_size, ctypes.POINTER(ParamInfo)]),
    "kiln_net_get": (c_status, [P, ctypes.c_char_p, F, c_size]),
    "kiln_net_set": (c_status, [P, ctypes.c_char_p, F, c_size]),
    "kiln_net_configure": (c_status, [P, ctypes.c_char_p, ctypes.c_char_p]),
    "kiln_net_lr": (ctypes.c_double, [P]),
    "kiln_net_set_lr": (c_status, [P, ctypes.c_double]),
    "kiln_net_steps": (ctypes.c_uint64, [P]),
    "kiln_net_grad": (c_status, [P, ctypes.c_char_p, F, c_size]),
    "kiln_net_set_frozen": (c_status, [P, ctypes.c_char_p, ctypes.c_int]),
    "kiln_net_frozen": (ctypes.c_int, [P, ctypes.c_char_p]),
    "kiln_net_set_normalization": (c_status, [P, F, F, c_size]),
    "kiln_net_normalization": (c_status, [P, F, F, c_size, ctypes.POINTER(c_size)]),
    "kiln_net_optimizer_slots": (c_size, [P, ctypes.POINTER(c_size)]),
    "kiln_net_get_optimizer_state": (c_status, [P, ctypes.c_int, F, c_size]),
    "kiln_net_set_optimizer_state": (c_status, [P, ctypes.c_int, F, c_size, ctypes.c_uint64]),
    "kiln_net_fit": (c_status, [P, ctypes.POINTER(TrainOptions), ctypes.POINTER(TrainReport)]),
    "kiln_data_from_arrays": (c_status, [F, F, c_size, c_size, c_size, ctypes.POINTER(P)]),
    "kiln_data_free": (None, [P]),
    "kiln_data_load": (c_status, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                  ctypes.POINTER(P)]),
    "kiln_data_load_npz": (c_status, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                      ctypes.POINTER(P)]),
    "kiln_data_count": (c_size, [P]),
    "kiln_data_classes": (c_size, [P]),
    "kiln_data_features": (c_size, [P]),
    "kiln_data_targets": (c_size, [P]),
    "kiln_data_labelled": (ctypes.c_int, [P]),
    "kiln_data_copy_features": (c_status, [P, c_size, c_size, F]),
    "kiln_data_copy_targets": (c_status, [P, c_size, c_size, F]),
    "kiln_train_options_init": (None, [ctypes.POINTER(TrainOptions)]),
    "kiln_plot": (c_status, [ctypes.c_char_p, ctypes.c_char_p]),
}


def _candidates():
    """(path or None, what it is), in the order they are tried."""
    yield os.environ.get("KILN_LIBRARY") or None, "$KILN_LIBRARY"
    here = os.path.dirname(os.path.abspath(__file__))
    bundled = os.path.join(here, "_lib")
    names = sorted(n for n in os.listdir(bundled) if n.startswith("libkiln.so")) if \
        os.path.isdir(bundled) else []
    yield (os.path.join(bundled, names[0]) if names else None), f"the bundled {bundled}/libkiln.so*"
    tree = os.path.dirname(os.path.dirname(here))  # python/kiln -> a kiln source tree?
    if os.path.exists(os.path.join(tree, "meson.build")) and os.path.exists(
            os.path.join(tree, "include", "kiln.h")):
        for build in ("build",):  # tools/setup.sh's
            path = os.path.join(tree, build, "libkiln.so")
            yield (path if os.path.exists(path) else None), path
    yield ctypes.util.find_library("kiln"), 'ctypes.util.find_library("kiln")'


def load():
    tried = []
    for path, what in _candidates():
        if path is None:
            tried.append(f"{what} (not there)")
            continue
        try:
            lib = ctypes.CDLL(path)  # CDLL releases the GIL during every call
            for name, (res, args) in SIGNATURES.items():
                fn = getattr(lib, name)
                fn.restype, fn.argtypes = res, args
            check_layout(lib)
        except (OSError, AttributeError, ImportError) as e:
            if what == "$KILN_LIBRARY":  # asked for by name: no other library instead
                raise ImportError(f"kiln: KILN_LIBRARY={path} cannot be used: {e}") from None
            tried.append(f"{what} = {path} ({e})")
            continue
        return lib, path
    raise ImportError("kiln: no usable libkiln; tried " + "; ".join(tried) +
                      ". Install the package with pip install ./python from a kiln clone "
                      "(which builds and bundles libkiln), set KILN_LIBRARY to a libkiln.so, "
                      "or install libkiln (meson install)")


def check_layout(lib):
    """The options struct must be the library's: kiln_train_options_init
    writes sizeof(kiln_train_options) into its first field."""
    buf = (ctypes.c_char * 4096)()
    lib.kiln_train_options_init(ctypes.cast(buf, ctypes.POINTER(TrainOptions)))
    size = c_size.from_buffer(buf).value
    if size != ctypes.sizeof(TrainOptions):
        raise ImportError(f"kiln: this libkiln's kiln_train_options has {size} bytes, the "
                          f"bindings expect {ctypes.sizeof(TrainOptions)}; versions differ")
