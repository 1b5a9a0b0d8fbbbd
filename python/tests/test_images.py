"""Image folders from Python: kiln.load_data(DIR) and Model.fit(DIR) on a
small folder of PNGs written here with zlib, class names kept."""
import struct
import zlib

import numpy as np
import pytest

import kiln

CNN = """[input]
shape = 1x8x8
[conv2d]
out = 4
size = 3
pad = 1
[relu]
[flatten]
[linear]
out = 3
[train]
optimizer = adam
lr = 0.01
batch = 8
epochs = 2
val = 0.25
seed = 5
flip = horizontal
random_crop = 8, 1
workers = 2
"""


def png_gray(width, height, pixels):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + bytes(pixels[y * width:(y + 1) * width]) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def make_folder(root, classes=("circle", "bar", "dots"), count=6):
    """Class c's images are bright in a place of their own."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for k in range(count):
            px = [(200 if (i // 8 + i % 8 + c * 3) % 9 < 3 else 20) + k for i in range(64)]
            (root / name / f"{k}.png").write_bytes(png_gray(8, 8, px))
    return root


def test_load_data_reads_classes_in_sorted_order(tmp_path):
    root = make_folder(tmp_path / "f")
    x, y = kiln.load_data(root)
    assert x.shape == (18, 64) and x.dtype == np.float32
    np.testing.assert_array_equal(y, np.repeat([0, 1, 2], 6))  # bar, circle, dots
    # bar (written second, c = 1): pixels 0 and 1 are dark, (0 + 3) % 9 and (1 + 3) % 9 >= 3
    assert abs(x[0, 0] - 20 / 255) < 1e-6 and abs(x[0, 1] - 20 / 255) < 1e-6
    assert abs(x[6, 0] - 200 / 255) < 1e-6  # circle (written first, c = 0): (0 + 0) % 9 < 3
    assert x.min() >= 0 and x.max() <= 1


def test_fit_on_a_folder_keeps_the_class_names(tmp_path):
    root = make_folder(tmp_path / "f")
    m = kiln.Model.from_string(CNN)
    history = m.fit(str(root), verbose=False)
    assert len(history["train_loss"]) == 2
    assert m.classes == ["bar", "circle", "dots"]
    m.save(str(tmp_path / "w.safetensors"))
    again = kiln.Model.from_string(CNN)
    again.load(str(tmp_path / "w.safetensors"))
    assert again.classes == ["bar", "circle", "dots"]


def test_bad_folders_raise_naming_them(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(kiln.KilnError, match="empty folder .no class folders"):
        kiln.load_data(tmp_path / "empty")
    root = make_folder(tmp_path / "f")
    (root / "bar" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(kiln.KilnError, match="broken.png"):
        kiln.load_data(root)
