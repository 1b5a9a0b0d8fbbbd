"""The Python API as a PyTorch or scikit-learn user meets it: models in
code, one-file checkpoints, normalization, training feedback, devices,
modes, gradients, frozen parameters, threads and wrong arguments."""
import copy
import json
import os
import pickle
import struct
import subprocess
import threading
import warnings

import numpy as np
import pytest

import kiln

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MLP = """[input]
shape = 6
[linear]
name = fc1
out = 12
[batchnorm]
[relu]
[dropout]
p = 0.2
[linear]
name = head
out = 3
[train]
optimizer = adam
lr = 0.01
batch = 32
seed = 4
"""


def blobs(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 6)).astype(np.float32)
    y = np.digitize(x[:, 0] - 0.7 * x[:, 1], [-0.5, 0.5])
    return x * 3 + 10, y  # statistics that matter


def regression(n, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 5)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.3).astype(np.float32)
    return x, y


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


# ---- construction and arguments ----

def test_the_constructor_takes_a_path_or_raises_type_error():
    m = kiln.Model(os.path.join(SOURCE, "examples", "fashion_mlp.ini"))
    assert m.input_size == 784 and m.output_size == 10
    for wrong in (12345, 3.5, None, [kiln.Linear(3)], m._net):
        with pytest.raises(TypeError, match="kiln.Model"):
            kiln.Model(wrong)
    with pytest.raises(kiln.KilnError, match="cannot open"):
        kiln.Model(os.path.join(SOURCE, "no-such.ini"))
    assert "path : str or os.PathLike" in kiln.Model.__doc__


def test_wrong_arguments_name_themselves():
    m = kiln.Model.from_string(MLP)
    x, y = blobs(64)
    with pytest.raises(TypeError, match="device must be an int index"):
        kiln.Model.from_string(MLP, device=1.5)
    with pytest.raises(ValueError, match="device=99; there are"):
        kiln.Model.from_string(MLP, device=99)
    with pytest.raises(TypeError, match="callback must be callable"):
        m.fit(x, y, epochs=1, callback=3, verbose=False)
    with pytest.raises(TypeError, match="validation_data must be a pair"):
        m.fit(x, y, epochs=1, validation_data=x, verbose=False)
    with pytest.raises(TypeError, match="epochs must be a whole number"):
        m.fit(x, y, epochs="2", verbose=False)
    with pytest.raises(TypeError, match="lr must be a number"):
        m.lr = "fast"
    with pytest.raises(ValueError, match="lr = 0"):
        m.lr = 0
    with pytest.raises(TypeError, match="unknown \\[train\\] setting 'learning_rate'"):
        m.configure(learning_rate=0.1)
    with pytest.raises(TypeError, match="path must be a path"):
        m.save(3)
    with pytest.raises(ValueError, match="split = 'val'"):
        kiln.load_data("x.csv", split="val")


def test_a_closed_model_raises_one_clear_error_for_every_call():
    m = kiln.Model.from_string(MLP)
    m.close()
    x, y = blobs(8)
    calls = [lambda: m.predict(x), lambda: m.train_step(x, y), lambda: m.evaluate(x, y),
             lambda: m.fit(x, y, verbose=False), lambda: m.state_dict(),
             lambda: m.load_state_dict({}), lambda: m.save("x.safetensors"),
             lambda: m.load("x.safetensors"), lambda: m.summary(), lambda: m.lr,
             lambda: m.loss, lambda: m.device, lambda: m.input_size, lambda: m.normalization,
             lambda: m.grad("head.weight"), lambda: m.freeze(), lambda: m.train(),
             lambda: m.to(0), lambda: pickle.dumps(m), lambda: copy.deepcopy(m),
             lambda: m.text]
    for call in calls:
        with pytest.raises(kiln.KilnError, match="this kiln.Model is closed"):
            call()
    m.close()  # twice is fine
    assert "closed" in repr(m)


def test_threads_share_a_model_and_predict_as_one_thread_does():
    m = kiln.Model.from_string(MLP)
    x, y = blobs(400)
    m.fit(x, y, epochs=2, verbose=False)
    inputs = [np.ascontiguousarray(x[i * 37:(i + 1) * 37] + 0.01 * i) for i in range(10)]
    alone = [m.predict(a) for a in inputs]
    results = [[None] * 10 for _ in range(3)]

    def work(t):
        for _ in range(4):
            for i in range(10):
                results[t][i] = m.predict(inputs[i])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for t in range(3):
        for i in range(10):
            assert np.array_equal(results[t][i], alone[i])


# ---- models in code ----

def test_sequential_builds_the_model_a_file_describes():
    layers = [kiln.Linear(12, name="fc1"), kiln.BatchNorm(), kiln.ReLU(), kiln.Dropout(0.2),
              kiln.Linear(3, name="head")]
    m = kiln.Sequential(layers, input_shape=6, optimizer="adam", lr=0.01, batch=32, seed=4)
    f = kiln.Model.from_string(MLP)
    a, b = m.state_dict(), f.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert np.array_equal(a[k], b[k]), k  # same seed, same initial weights
    x, y = blobs(300)
    ha = m.fit(x, y, epochs=2, verbose=False)
    hb = f.fit(x, y, epochs=2, verbose=False)
    assert ha["train_loss"] == hb["train_loss"]
    assert "[train] settings in use" in m.summary()
    for line in ("optimizer = adam", "lr = 0.01", "patience = 0", "normalize = standard",
                 "weight_decay = 0"):
        assert line in m.summary(), line
    assert kiln.Model.from_string(m.text).state_dict().keys() == a.keys()


def test_residual_graphs_by_name_and_errors_like_model_files():
    m = kiln.Sequential([kiln.Input(8), kiln.Linear(16, name="stem"), kiln.ReLU(name="a"),
                         kiln.Linear(16, name="branch"), kiln.ReLU(),
                         kiln.Add(inputs=["a", "3"], name="sum"), kiln.Linear(2)],
                        loss="mse", normalize="none")
    assert m.predict(np.ones((3, 8))).shape == (3, 2)
    assert "sum" in m.summary()
    with pytest.raises(kiln.KilnError, match=r"layer \d+ \[add\].*nope"):
        kiln.Sequential([kiln.Linear(4), kiln.Add(inputs=["nope", "0"])], input_shape=3)
    with pytest.raises(kiln.KilnError, match=r"\[conv2d\]"):
        kiln.Sequential([kiln.Conv2d(4, size=3)], input_shape=10)
    with pytest.raises(TypeError, match="unknown \\[train\\] setting 'optimiser'"):
        kiln.Sequential([kiln.Linear(2)], input_shape=3, optimiser="sgd")
    with pytest.raises(ValueError, match="optimizer = lbfgs"):
        kiln.Sequential([kiln.Linear(2)], input_shape=3, optimizer="lbfgs")
    with pytest.raises(ValueError, match="input_shape"):
        kiln.Sequential([kiln.Linear(2)])
    with pytest.raises(TypeError, match="item 1"):
        kiln.Sequential([kiln.Linear(2), "relu"], input_shape=3)
    with pytest.raises(TypeError, match="inputs must be"):
        kiln.Linear(2, inputs=3)


# ---- one-file checkpoints ----

def test_a_checkpoint_is_the_whole_model(tmp_path):
    x, y = blobs(300)
    m = kiln.Sequential([kiln.Linear(12, name="fc1"), kiln.ReLU(), kiln.Linear(3)],
                        input_shape=6, lr=0.02)
    m.fit(x, y, epochs=2, verbose=False)
    path = tmp_path / "whole.safetensors"
    m.save(path)
    meta = header(path)["__metadata__"]
    assert "[linear]" in meta["model"]
    assert len(json.loads(meta["normalize_mean"])) == 6  # a JSON array
    for back in (kiln.Model.load(path), kiln.Model(path)):
        assert np.allclose(back.predict(x), m.predict(x), atol=1e-6)
        assert np.allclose(back.normalization[0], m.normalization[0])
    fresh = kiln.Sequential([kiln.Linear(12, name="fc1"), kiln.ReLU(), kiln.Linear(3)],
                            input_shape=6)
    fresh.load(path)  # on an instance: the weights into it
    assert np.allclose(fresh.predict(x), m.predict(x), atol=1e-6)
    exe = os.path.join(os.path.dirname(kiln.library_path), "kiln")
    if not os.path.exists(exe):
        return  # an installed package has no kiln command beside it
    data = tmp_path / "d.csv"
    np.savetxt(data, np.column_stack([x[:20], y[:20]]), delimiter=",",
               header=",".join([f"f{i}" for i in range(6)] + ["label"]), comments="")
    out = subprocess.run([exe, "eval", str(path), "--data", str(data)], capture_output=True,
                         text=True, timeout=120)
    acc = np.mean(m.predict(x[:20]).argmax(1) == y[:20])
    assert out.returncode == 0 and f"accuracy {100 * acc:.2f}%" in out.stdout, out
    out = subprocess.run([exe, "predict", str(path), str(data), "--format", "csv"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and len(out.stdout.strip().splitlines()) == 21, out


def test_old_comma_separated_statistics_still_load(tmp_path):
    m = kiln.Model.from_string(MLP)
    m.normalization = (np.arange(6), np.full(6, 2.0))
    path = tmp_path / "new.safetensors"
    m.save(path)
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    head = json.loads(data[8:8 + n])
    head["__metadata__"]["normalize_mean"] = "0,1,2,3,4,5"
    head["__metadata__"]["normalize_std"] = "2,2,2,2,2,2"
    text = json.dumps(head).encode()
    text += b" " * (-len(text) % 8)
    old = tmp_path / "old.safetensors"
    old.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])
    back = kiln.Model.load(old)
    assert np.array_equal(back.normalization[0], np.arange(6, dtype=np.float32))


def test_pickle_and_deepcopy_carry_the_whole_state():
    x, y = blobs(200)
    m = kiln.Model.from_string(MLP)
    m.fit(x, y, epochs=1, verbose=False)
    m.freeze("fc1")
    m.lr = 0.003
    for other in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m), copy.copy(m)):
        assert np.array_equal(other.predict(x), m.predict(x))
        assert other.lr == pytest.approx(0.003) and other.frozen == ["fc1.weight", "fc1.bias"]
        assert other.train_step(x[:32], y[:32]) == pytest.approx(
            copy.deepcopy(m).train_step(x[:32], y[:32]), abs=1e-6)  # same optimizer state
    twin = copy.deepcopy(m)
    twin.train_step(x[:32], y[:32])
    assert not np.array_equal(twin.predict(x), m.predict(x))  # they share nothing


# ---- normalization ----

def test_normalization_is_visible_settable_and_applied():
    x, y = blobs(300)
    m = kiln.Model.from_string(MLP)
    assert m.normalization is None
    plain = m.predict((x - 10) / 3)
    m.normalization = (10.0, 3.0)
    assert np.allclose(m.predict(x), plain, atol=1e-5)
    mean, std = m.fit_normalization(x)
    assert np.allclose(mean, x.mean(0), atol=1e-4) and np.allclose(std, x.std(0), rtol=1e-4)
    m.normalization = None
    assert m.normalization is None
    with pytest.raises(ValueError, match="deviation above 0"):
        m.normalization = (0.0, 0.0)
    with pytest.raises(ValueError, match="expected 1, 6"):
        m.normalization = (np.zeros(4), np.ones(4))
    with pytest.raises(TypeError, match="pair"):
        m.normalization = 3
    m.fit(x, y, epochs=1, validation_data=(x[:50], y[:50]), verbose=False)
    assert np.allclose(m.normalization[0], x.mean(0), atol=1e-3)


def test_train_step_warns_once_without_statistics():
    x, y = blobs(64)
    m = kiln.Model.from_string(MLP)
    with pytest.warns(UserWarning, match="normalize is standard"):
        m.train_step(x[:32], y[:32])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.train_step(x[:32], y[:32])  # once only
        n = kiln.Model.from_string(MLP)
        n.normalization = n.fit_normalization(x)
        n.train_step(x[:32], y[:32])


def test_folded_normalization_reproduces_predictions_without_it():
    x, _ = blobs(50)
    m = kiln.Sequential([kiln.Linear(9, name="fc"), kiln.ReLU(), kiln.Linear(2, name="out")],
                        input_shape=6, loss="mse")
    m.normalization = m.fit_normalization(x)
    sd = m.state_dict(fold_normalization=True)
    h = np.maximum(x.astype(np.float64) @ sd["fc.weight"].T + sd["fc.bias"], 0)
    out = h @ sd["out.weight"].T + sd["out.bias"]
    assert np.allclose(out, m.predict(x), atol=1e-4)
    assert not np.allclose(sd["fc.weight"], m.state_dict()["fc.weight"])
    conv = kiln.Sequential([kiln.Conv2d(4, size=3, pad=1), kiln.Flatten(), kiln.Linear(2)],
                           input_shape=(2, 5, 5))
    conv.normalization = ([1.0, 2.0], [2.0, 4.0])
    with pytest.raises(ValueError, match="pads its input"):
        conv.state_dict(fold_normalization=True)


# ---- training feedback ----

def test_fit_reports_steps_progress_and_regression_metrics(capsys):
    x, y = regression(400)
    m = kiln.Sequential([kiln.Linear(16), kiln.ReLU(), kiln.Linear(1)], input_shape=5,
                        loss="mse", lr=0.01, batch=50)
    steps = []
    h = m.fit(x, y, epochs=3, validation_data=(x[:100], y[:100]),
              on_step=lambda row: steps.append(row) and False, progress=True)
    assert len(steps) == 3 * 8 and steps[-1]["batches"] == 8 and steps[-1]["step"] == 24
    printed = capsys.readouterr().out
    assert "\r  epoch 1 [" in printed and "8/8" in printed
    assert "(100 in the validation data)" in printed and "held out" not in printed
    assert len(h["val_mae"]) == 3 and len(h["val_r2"]) == 3
    s = m.evaluate(x[:100], y[:100])
    loss, acc = s
    assert np.isnan(acc) and s.mae == pytest.approx(h["val_mae"][-1], rel=1e-3)
    p = m.predict(x[:100])[:, 0].astype(np.float64)
    r2 = 1 - ((y[:100] - p) ** 2).sum() / ((y[:100] - y[:100].mean()) ** 2).sum()
    assert s.r2 == pytest.approx(r2, abs=1e-5) and s.r2 == pytest.approx(h["val_r2"][-1], 1e-3)
    m.fit(x, y, epochs=1, on_step=lambda row: row["batch"] == 2, verbose=False)
    assert m.evaluate(x, y).loss > 0


def test_restore_best_weights_and_fit_at_m_lr():
    x, y = blobs(300)
    xv, yv = blobs(100, seed=5)
    ends = {}
    for restore in (True, False):
        m = kiln.Model.from_string(MLP.replace("lr = 0.01", "lr = 0.3"))
        h = m.fit(x, y, epochs=6, validation_data=(xv, yv), restore_best_weights=restore,
                  verbose=False)
        ends[restore] = (m.evaluate(xv, yv).loss, h["val_loss"])
    assert ends[True][0] == pytest.approx(min(ends[True][1]), rel=1e-4)
    assert ends[False][0] == pytest.approx(ends[False][1][-1], rel=1e-4)
    m = kiln.Model.from_string(MLP)
    m.configure(batch=64)  # above the network's 32: fit makes a larger one, as asked
    seen = []
    m.fit(x, y, epochs=1, on_step=lambda row: seen.append(row["batches"]), verbose=False)
    assert seen[-1] == 5  # 270 training samples (10% held out) in batches of 64
    m.lr = 0.05
    assert m.fit(x, y, epochs=1, verbose=False)["lr"][0] == pytest.approx(0.05)
    assert m.fit(x, y, epochs=1, lr=0.002, verbose=False)["lr"][0] == pytest.approx(0.002)
    assert m.lr == pytest.approx(0.002)


# ---- devices ----

def test_devices_by_index_object_or_selector_and_to():
    first = kiln.devices()[0]
    for device in (0, first, str(first.index)):
        assert kiln.Model.from_string(MLP, device=device).device == first
    assert first.memory > 0 and first.compute_units > 0 and first.version
    x, y = blobs(200)
    m = kiln.Model.from_string(MLP)
    m.fit(x, y, epochs=1, verbose=False)
    twin = copy.deepcopy(m)
    assert m.to(first) is m and m.device == first
    assert np.allclose(m.predict(x), twin.predict(x), atol=1e-6)
    assert m.train_step(x[:32], y[:32]) == pytest.approx(twin.train_step(x[:32], y[:32]),
                                                         abs=1e-6)
    assert np.allclose(m.predict(x), twin.predict(x), atol=1e-5)  # optimizer state moved


# ---- modes, gradients, frozen parameters ----

def test_train_and_eval_modes():
    x, _ = blobs(64)
    m = kiln.Model.from_string(MLP)
    assert not m.training and m.train() is m and m.training
    a, b = m.predict(x), m.predict(x)
    assert not np.array_equal(a, b)  # dropout and batch statistics
    m.eval()
    assert np.array_equal(m.predict(x), m.predict(x))
    with pytest.raises(TypeError, match="mode must be True or False"):
        m.train("yes")


def test_gradients_by_name_and_frozen_layers():
    x, y = blobs(64)
    m = kiln.Model.from_string(MLP)
    m.normalization = m.fit_normalization(x)
    m.train_step(x[:32], y[:32])
    g = m.grad("head.weight")
    assert g.shape == (3, 12) and np.abs(g).sum() > 0
    with pytest.raises(ValueError, match="not a parameter"):
        m.grad("1.running_mean")
    before = m.state_dict()
    assert m.freeze(["fc1", "1"]) is m
    assert m.frozen == ["fc1.weight", "fc1.bias", "1.weight", "1.bias"]
    m.configure(weight_decay=0.5)
    m.train_step(x[:32], y[:32])
    after = m.state_dict()
    for name in m.frozen:
        assert np.array_equal(before[name], after[name]), name
    assert not np.array_equal(before["head.weight"], after["head.weight"])
    assert np.abs(m.grad("fc1.weight")).sum() == 0
    m.unfreeze()
    assert m.frozen == []
    m.train_step(x[:32], y[:32])
    assert not np.array_equal(after["fc1.weight"], m.state_dict()["fc1.weight"])
    with pytest.raises(ValueError, match="names no parameter"):
        m.freeze("nope")
    m.freeze("fc1")
    m.train_step(np.concatenate([x, x, x]), np.concatenate([y, y, y]))  # a larger network
    assert m.frozen == ["fc1.weight", "fc1.bias"]


def test_load_data_gives_integer_class_labels(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n0.5,1,2\n0.25,3,0\n1,1,1\n")
    x, y = kiln.load_data(path)
    assert y.dtype == np.int64 and list(y) == [2, 0, 1] and x.dtype == np.float32
    reg = tmp_path / "r.csv"
    reg.write_text("a,label\n0.5,1.5\n0.25,-3\n")
    assert kiln.load_data(reg)[1].dtype == np.float32


def test_help_shows_arguments_and_defaults():
    import inspect
    sig = inspect.signature(kiln.Model.fit)
    assert sig.parameters["restore_best_weights"].default is True
    assert "restore_best_weights" in kiln.Model.fit.__doc__
    assert inspect.signature(kiln.Conv2d).parameters["stride"].default == 1
    assert "index" in kiln.Device.__doc__ and "memory" in kiln.Device.__doc__
    assert "serialized" in kiln.Model.__doc__


def test_pytorch_given_folded_weights_predicts_as_kiln():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    rng = np.random.default_rng(3)
    x = (rng.normal(0, 1, (20, 2, 6, 6)) * np.array([2.0, 0.5]).reshape(1, 2, 1, 1) + 4)
    x = x.astype(np.float32)
    m = kiln.Sequential([kiln.Conv2d(3, size=3, name="conv"), kiln.ReLU(), kiln.Flatten(),
                         kiln.Linear(4, name="fc")], input_shape=(2, 6, 6))
    m.normalization = m.fit_normalization(x)
    assert m.normalization[0].shape == (2,)  # one pair per channel
    net = torch.nn.Sequential()
    net.add_module("conv", torch.nn.Conv2d(2, 3, 3))
    net.add_module("1", torch.nn.ReLU())
    net.add_module("2", torch.nn.Flatten())
    net.add_module("fc", torch.nn.Linear(48, 4))
    net.load_state_dict({k: torch.from_numpy(v)
                         for k, v in m.state_dict(fold_normalization=True).items()})
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    assert np.allclose(out, m.predict(x), atol=1e-4)


def test_class_weight_weighs_the_training_loss_for_this_call():
    rng = np.random.default_rng(8)
    x = rng.normal(0, 1, (200, 6)).astype(np.float32)
    y = (x[:, 0] > 1.2).astype(np.int64)  # about 12 % of class 1
    m = kiln.Sequential([kiln.Linear(2)], input_shape=6, normalize="none", batch=200)
    z = m.predict(x).astype(np.float64)
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    terms = lse - z[np.arange(200), y]
    w = np.array([1.0, 9.0])[y]
    first = []
    m.fit(x, y, epochs=1, validation_data=(x, y), class_weight={1: 9}, verbose=False,
          on_step=lambda row: first.append(row["loss"]))
    assert first[0] == pytest.approx((w * terms).sum() / w.sum(), rel=1e-5)
    assert m.settings["class_weight"] == "none"  # for that call only
    plain, balanced = (kiln.Sequential([kiln.Linear(8), kiln.ReLU(), kiln.Linear(2)],
                                       input_shape=6, lr=0.01, seed=2) for _ in range(2))
    plain.fit(x, y, epochs=15, validation_data=(x, y), verbose=False)
    balanced.fit(x, y, epochs=15, validation_data=(x, y), class_weight="balanced",
                 verbose=False)
    recall = [np.mean(mm.predict(x)[y == 1].argmax(1) == 1) for mm in (plain, balanced)]
    assert recall[1] >= recall[0]
    with pytest.raises(ValueError, match="names class 5"):
        m.fit(x, y, epochs=1, class_weight={5: 2.0}, verbose=False)
    with pytest.raises(ValueError, match="'bal'"):
        m.fit(x, y, epochs=1, class_weight="bal", verbose=False)
    with pytest.raises(ValueError, match="has 3 values"):
        m.fit(x, y, epochs=1, class_weight=[1, 2, 3], verbose=False)
    reg = kiln.Sequential([kiln.Linear(1)], input_shape=6, loss="mse")
    with pytest.raises(ValueError, match="loss is mse"):
        reg.fit(x, y.astype(np.float32), epochs=1, class_weight="balanced", verbose=False)
