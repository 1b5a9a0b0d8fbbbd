"""What the check_*.py scripts share: a line per check, with the count of
failures kept here (checks.failed), and a safetensors file's float32
tensors by name."""
import json
import struct

failed = False


def report(ok, what, text=""):
    """Prints "ok" or "FAIL" and what was checked (and text, on failure)."""
    global failed
    failed |= not ok
    print(f"{'ok  ' if ok else 'FAIL'} {what}")
    if not ok and text:
        print(text[-3000:])


def weights(path):
    """The float32 tensors of a safetensors file, as tuples by name."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name != "__metadata__" and t["dtype"] == "F32":
            a, b = t["data_offsets"]
            out[name] = struct.unpack(f"<{(b - a) // 4}f", data[a:b])
    return out
