"""The Python package against libkiln on the default device (PoCL on a CPU)."""
import gzip
import json
import os
import signal
import struct
import threading
import time

import numpy as np
import pytest

import kiln

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FASHION = os.environ.get("KILN_DATA_DIR", "/usr/share/datasets") + "/fashion-mnist"
MLP = """[input]
shape = 7
[linear]
out = 16
[batchnorm]
[relu]
[linear]
out = 3
[train]
optimizer = sgd
lr = 0.1
momentum = 0.9
batch = 32
seed = 3
"""


def idx(name):
    with gzip.open(os.path.join(FASHION, name)) as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def separable(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 7)).astype(np.float32)
    y = np.digitize(x[:, 0] + 0.5 * x[:, 1], [-0.4, 0.4])
    return x, y


def read_safetensors(path):
    """A tiny reader: 8-byte length, JSON header, raw little-endian data."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        begin, end = t["data_offsets"]
        dtype = {"F32": np.float32, "I64": np.int64}[t["dtype"]]
        out[name] = np.frombuffer(data[8 + n + begin:8 + n + end], dtype=dtype).reshape(t["shape"])
    return out


def test_version_and_devices():
    assert kiln.__version__.count(".") == 2
    devs = kiln.devices()
    assert devs and all(d.name and d.platform and d.type for d in devs)


def test_fashion_mnist_fit_reaches_a_sensible_accuracy():
    if not os.path.isdir(FASHION):
        pytest.skip(f"{FASHION} missing (Debian's dataset-fashion-mnist)")
    x = idx("train-images-idx3-ubyte.gz")[:6000].reshape(6000, -1) / np.float32(255)
    y = idx("train-labels-idx1-ubyte.gz")[:6000]
    xt = idx("t10k-images-idx3-ubyte.gz")[:10000] / np.float32(255)  # (n, 28, 28): reshaped
    yt = idx("t10k-labels-idx1-ubyte.gz")[:10000]
    with kiln.Model.from_file(os.path.join(SOURCE, "examples", "fashion_mlp.ini")) as m:
        h = m.fit(x, y, epochs=3, validation_data=(xt[:1000], yt[:1000]), verbose=False)
        assert len(h["train_loss"]) == 3 and h["train_loss"][-1] < h["train_loss"][0]
        p = m.predict(xt)
        assert p.shape == (10000, 10) and p.dtype == np.float32
        accuracy = float(np.mean(p.argmax(1) == yt))
        assert accuracy > 0.75, accuracy
        one = m.predict(xt[0])
        assert one.shape == (1, 10) and np.allclose(one, p[:1], atol=1e-5)


def test_arrays_are_converted_or_refused_clearly():
    x, y = separable(100)
    m = kiln.Model.from_string(MLP)
    a = m.predict(x.astype(np.float64))
    b = m.predict(np.asfortranarray(x))
    c = m.predict(np.repeat(x, 2, axis=0)[::2])  # not contiguous
    assert np.array_equal(a, b) and np.array_equal(a, c)
    with pytest.raises(ValueError, match=r"takes 7 values per sample"):
        m.predict(np.zeros((3, 6)))
    with pytest.raises(TypeError, match="expected numbers"):
        m.predict(np.array([["a"] * 7]))
    with pytest.raises(ValueError, match="one class index per sample"):
        m.train_step(x[:4], y[:3])
    with pytest.raises(kiln.KilnError, match="label of sample 1 is 5"):
        m.train_step(x[:4], np.array([0, 5, 1, 2]))
    bad = x.copy()
    bad[5, 2] = np.nan
    with pytest.raises(ValueError, match="feature 2 of sample 5 is nan"):
        m.predict(bad)
    with pytest.raises(ValueError, match="feature 2 of sample 5 is nan"):
        m.train_step(bad[:8], y[:8])
    bad[5, 2] = np.inf
    with pytest.raises(ValueError, match="is inf"):
        m.evaluate(bad, y)
    with pytest.raises(ValueError, match="is inf"):
        m.fit(bad, y, epochs=1, verbose=False)
    with pytest.raises(ValueError, match="whole numbers"):
        m.train_step(x[:2], np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="validation data y has shape"):
        m.fit(x, y, epochs=1, validation_data=(x[:10], y[:9]), verbose=False)
    for wrong in ({"epochs": 0}, {"batch": -3}, {"batch": 2.5}):
        with pytest.raises(ValueError, match="expected a whole number from 1"):
            m.fit(x, y, verbose=False, **wrong)
    with pytest.raises(ValueError, match="training data has no samples"):
        m.fit(x[:0], y[:0], epochs=1, verbose=False)
    with pytest.raises(ValueError, match="lr = -1"):
        m.fit(x, y, epochs=1, lr=-1, verbose=False)
    with pytest.raises(kiln.KilnError, match="unknown section"):
        kiln.Model.from_string(MLP.replace("[relu]", "[rleu]"))
    with pytest.raises(kiln.KilnError, match="cannot open"):
        kiln.Model.from_file(os.path.join(SOURCE, "no-such-model.ini"))
    with pytest.raises(kiln.KilnError, match="no OpenCL device matches"):
        kiln.Model.from_string(MLP, device="no-such-device")
    with pytest.raises(kiln.KilnError, match="cannot open"):
        m.load(os.path.join(SOURCE, "no-such-file.safetensors"))
    assert m.predict(x[:0]).shape == (0, 3)
    assert np.all(np.isfinite(m.state_dict()["0.weight"]))  # nothing above reached the weights
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_setting'"):
        m.fit(x, y, epochs=1, no_such_setting=3, verbose=False)
    with pytest.raises(ValueError, match="optimizer = lbfgs: expected sgd"):
        m.fit(x, y, epochs=1, optimizer="lbfgs", verbose=False)
    m.close()
    with pytest.raises(kiln.KilnError, match="closed"):
        m.predict(x)


def test_train_step_learns_and_fit_takes_a_short_last_batch():
    x, y = separable(203)  # 6 batches of 32 and one of 11
    m = kiln.Model.from_string(MLP)
    first = m.train_step(x[:32], y[:32])
    h = m.fit(x, y, epochs=15, batch=32, lr=0.05, verbose=False)
    assert m.train_step(x[:32], y[:32]) < first
    assert h["lr"][0] == pytest.approx(0.05)
    assert np.mean(m.predict(x).argmax(1) == y) > 0.9


def test_state_dict_is_pytorchs_and_round_trips(tmp_path):
    x, y = separable(64)
    m = kiln.Model.from_string(MLP)
    m.fit(x, y, epochs=2, verbose=False)
    sd = m.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                        "1.running_var", "1.num_batches_tracked", "3.weight", "3.bias"]
    assert sd["0.weight"].shape == (16, 7) and sd["1.num_batches_tracked"].dtype == np.int64
    path = tmp_path / "w.safetensors"
    m.save(path)
    on_disk = read_safetensors(path)
    assert set(on_disk) == set(sd)
    for name, v in sd.items():
        assert on_disk[name].shape == np.asarray(v).shape, name
        assert np.array_equal(on_disk[name], v), name
    other = kiln.Model.from_string(MLP.replace("seed = 3", "seed = 4"))
    assert not np.array_equal(other.predict(x), m.predict(x))
    other.load(path)
    assert np.allclose(other.predict(x), m.predict(x), atol=1e-6)
    third = kiln.Model.from_string(MLP.replace("seed = 3", "seed = 5"))
    third.load_state_dict(sd)
    third.load(path)  # and the normalization with it
    assert np.allclose(third.predict(x), m.predict(x), atol=1e-6)
    broken = dict(sd)
    del broken["3.bias"]
    broken["head.weight"] = np.zeros(3)
    with pytest.raises(kiln.KilnError, match=r"missing: 3.bias; unexpected: head.weight"):
        third.load_state_dict(broken)
    with pytest.raises(ValueError, match="has shape"):
        third.load_state_dict({**sd, "0.weight": np.zeros((7, 16))})


def test_a_larger_batch_keeps_weights_normalization_and_settings():
    x, y = separable(300)
    x = x * 5 + 2  # the normalization fit sets matters
    m = kiln.Model.from_string(MLP.replace("batch = 32", "batch = 16"))
    m.fit(x, y, epochs=3, lr=0.02, verbose=False)
    before = m.predict(x)
    m._rebuild(max_batch=100)  # what train_step and fit do for a batch above the network's
    assert np.allclose(m.predict(x), before, atol=1e-6)
    assert m.lr == pytest.approx(0.02)
    assert np.isfinite(m.train_step(x[:100], y[:100]))
    h = m.fit(x, y, epochs=2, batch=128, verbose=False)  # lr=0.02 still holds
    assert h["lr"][0] == pytest.approx(0.02)
    assert np.mean(m.predict(x).argmax(1) == y) > 0.7


def test_two_models_train_in_two_threads():
    x, y = separable(2000)

    def train(out, i):
        m = kiln.Model.from_string(MLP)
        m.fit(x, y, epochs=4, verbose=False)
        for _ in range(5):
            m.train_step(x[:32], y[:32])
        out[i] = m.state_dict()

    alone = {}
    train(alone, 0)
    together = {}
    threads = [threading.Thread(target=train, args=(together, i)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        for name, v in alone[0].items():
            assert np.array_equal(together[i][name], v), name


def test_keyboard_interrupt_stops_fit_and_the_model_stays_usable():
    x, y = separable(256)
    m = kiln.Model.from_string(MLP)

    def interrupt(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        m.fit(x, y, epochs=50, callback=interrupt, verbose=False)
    assert m.predict(x).shape == (256, 3)
    h = m.fit(x, y, epochs=1, verbose=False)
    assert len(h["train_loss"]) == 1


def test_ctrl_c_during_fit_raises_keyboard_interrupt_after_the_batch():
    """A real SIGINT, as Ctrl-C sends, while kiln_net_fit runs."""
    x, y = separable(256)
    m = kiln.Model.from_string(MLP)
    m.fit(x, y, epochs=1, verbose=False)  # kernels compiled
    # the signal comes while fit trains (a timer could fire before, on a
    # loaded machine still compiling)
    def ctrl_c(epoch):
        if epoch["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
    # Python's own handler, as in an interactive session: a process started
    # in the background by a non-interactive shell inherits SIGINT ignored
    # (POSIX), and fit rightly leaves an ignored Ctrl-C ignored
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        started = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            m.fit(x, y, epochs=100000, verbose=False, callback=ctrl_c)  # minutes, were it not stopped
        assert time.perf_counter() - started < 30
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)
    assert np.isfinite(m.train_step(x[:32], y[:32]))
    assert m.predict(x).shape == (256, 3)
