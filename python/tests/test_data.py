"""kiln.load_data on files NumPy itself writes: .npy of every dtype kiln
reads in every format version, .npz from np.savez and np.savez_compressed,
the errors for what kiln refuses, and CSV files without labels."""
import numpy as np
import pytest

import kiln

MLP = """[input]
shape = 7
[linear]
out = 3
[train]
optimizer = sgd
lr = 0.1
batch = 16
seed = 3
"""


def save(path, a, version=None):
    with open(path, "wb") as f:
        np.lib.format.write_array(f, a, version=version)
    return str(path)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("dtype", ["<f4", "<f8", "|u1", "<i8", "<i4"])
def test_npy_of_every_dtype_and_version(tmp_path, dtype, version):
    a = (np.arange(13 * 2 * 3) % 250).reshape(13, 2, 3).astype(dtype)
    x, y = kiln.load_data(save(tmp_path / "x.npy", a, version))
    want = a.reshape(13, 6).astype(np.float64) / (255 if dtype == "|u1" else 1)
    assert y is None
    assert x.dtype == np.float32 and x.shape == (13, 6)
    np.testing.assert_allclose(x, want, rtol=1e-7)


def test_npy_labels_give_classes_or_targets(tmp_path):
    x = np.random.default_rng(1).standard_normal((11, 7)).astype(np.float32)
    xp = save(tmp_path / "x.npy", x)
    classes = np.arange(11) % 3
    got_x, got_y = kiln.load_data(xp, label=save(tmp_path / "y.npy", classes.astype(np.int64)))
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, classes)
    targets = np.linspace(-1, 1, 22).reshape(11, 2)
    _, got_y = kiln.load_data(xp, label=save(tmp_path / "t.npy", targets))
    assert got_y.shape == (11, 2)
    np.testing.assert_allclose(got_y, targets, rtol=1e-6)


@pytest.mark.parametrize("writer", [np.savez, np.savez_compressed])
def test_npz_from_savez_and_savez_compressed(tmp_path, writer):
    rng = np.random.default_rng(2)
    x, xt = rng.standard_normal((17, 7)), rng.standard_normal((5, 7)).astype(np.float32)
    y, yt = np.arange(17) % 3, np.arange(5) % 3
    path = tmp_path / "d.npz"
    writer(path, x_train=x, y_train=y.astype(np.uint8), x_test=xt, y_test=yt)
    got_x, got_y = kiln.load_data(path)
    np.testing.assert_allclose(got_x, x.astype(np.float32))
    np.testing.assert_array_equal(got_y, y)
    got_x, got_y = kiln.load_data(path, split="test")
    np.testing.assert_array_equal(got_x, xt)
    np.testing.assert_array_equal(got_y, yt)
    got_x, got_y = kiln.load_data(path, keys=("x_test", "y_test"))
    assert got_x.shape == (5, 7)
    got_x, got_y = kiln.load_data(path, keys="x_test")
    assert got_y is None
    m = kiln.Model.from_string(MLP)
    history = m.fit(*kiln.load_data(path), epochs=2, verbose=False)
    assert len(history["train_loss"]) == 2 and np.isfinite(history["train_loss"]).all()


def test_npz_missing_arrays_are_listed(tmp_path):
    path = tmp_path / "named.npz"
    np.savez(path, images=np.zeros((3, 2), np.float32), labels=np.zeros(3, np.int64))
    x, y = kiln.load_data(path, keys="images,labels")
    assert x.shape == (3, 2) and y.shape == (3,)
    with pytest.raises(kiln.KilnError, match="named.npz: no array 'x' or 'x_train'; the file "
                                             "has: images, labels"):
        kiln.load_data(path)
    with pytest.raises(kiln.KilnError, match="no array 'y'; the file has: images, labels"):
        kiln.load_data(path, keys=("images", "y"))
    with pytest.raises(kiln.KilnError, match="named.npz: no test split"):
        kiln.load_data(path, keys=("images", "labels"), split="test")
    with pytest.raises(ValueError, match="keys name the arrays of an .npz file"):
        kiln.load_data(tmp_path / "x.npy", keys="x,y")


def test_what_kiln_refuses_names_the_file(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    cases = {
        "big.npy": (a.astype(">f4"), "big.npy: dtype '>f4' is big-endian"),
        "fortran.npy": (np.asfortranarray(a), "fortran.npy: fortran_order is True"),
        "complex.npy": (a.astype(np.complex64),
                        "complex.npy: dtype '<c8' is not supported; expected float32"),
        "half.npy": (a.astype(np.float16), "half.npy: dtype '<f2' is not supported"),
    }
    for name, (array, message) in cases.items():
        with pytest.raises(kiln.KilnError, match=message.replace("(", r"\(")):
            kiln.load_data(save(tmp_path / name, array))
    path = save(tmp_path / "cut.npy", a)
    with open(path, "r+b") as f:
        f.truncate(len(f.read()) - 4)
    with pytest.raises(kiln.KilnError, match=r"cut.npy: shape \(2, 3\) of '<f4' needs 24 bytes"):
        kiln.load_data(path)


def test_csv_without_labels(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n")
    x, y = kiln.load_data(path, label="none")
    assert y is None
    np.testing.assert_array_equal(x, [[1, 2, 3], [4, 5, 6]])
    x, y = kiln.load_data(path, label="")
    assert x.shape == (2, 3) and y is None
    x, y = kiln.load_data(path, label="c")
    np.testing.assert_array_equal(y, [3, 6])
    assert x.shape == (2, 2)


def test_plot_draws_a_run_and_names_a_bad_log(tmp_path):
    import xml.etree.ElementTree as ET
    log = tmp_path / "log.csv"
    log.write_text("epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy\n"
                   "1,0.1,1.0,0.5,0.9,0.55\n2,0.1,0.7,0.7,0.6,0.72\n3,0.05,0.5,0.8,0.65,0.7\n")
    out = kiln.plot(tmp_path)
    assert out == str(tmp_path / "curves.svg")
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    assert "best epoch 2" in "".join(root.itertext())
    other = kiln.plot(log, tmp_path / "other.svg")
    assert ET.parse(other).getroot().tag.endswith("svg")
    log.write_text("epoch,lr,train_loss\n1,0.1,lots\n")
    with pytest.raises(kiln.KilnError, match="log.csv:2"):
        kiln.plot(tmp_path)
    with pytest.raises(TypeError, match="plot"):
        kiln.plot(3)
