"""ONNX export against ONNX Runtime: every example model through `kiln
export` and `kiln predict`, random graphs with residuals and
concatenations, and GPT-style sequence models through Model.export_onnx
and Model.predict. onnx.checker must accept each file, and ONNX Runtime's
outputs must equal kiln's within 1e-5. Needs the onnx and onnxruntime
packages (tools/test.sh installs them into build/venv-onnx with pip when
it can); without them the tests that run ONNX files are skipped, and the
refusals and the command's errors are still checked."""
import csv
import glob
import os
import subprocess

import numpy as np
import pytest

import kiln

try:
    import onnx
    import onnxruntime as ort
    MISSING = None
except ImportError as e:  # the tests that run ONNX files are skipped with the reason
    MISSING = (f"the {e.name} package is not installed (pip install onnx onnxruntime; "
               f"tools/test.sh does it in build/venv-onnx)")
needs_onnx = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = sorted(glob.glob(os.path.join(SOURCE, "examples", "*.ini")))
STANDARD = {"Gemm", "MatMul", "Conv", "MaxPool", "AveragePool", "BatchNormalization",
            "LayerNormalization", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Erf", "Softmax",
            "Add", "Concat", "Flatten", "Sub", "Div", "Mul", "Identity", "Transpose", "Reshape",
            "Slice", "Cast", "Gather"}
TOLERANCE = 1e-5


def kiln_command():
    """The kiln command beside the library the package loaded."""
    path = os.path.join(os.path.dirname(kiln.library_path), "kiln")
    if not os.access(path, os.X_OK):
        pytest.skip(f"no kiln command beside {kiln.library_path}")
    return path


def run_onnx(path, x):
    """onnx.checker's verdict (with shape inference), then ONNX Runtime's
    outputs for x, reshaped to the model's input shape."""
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    ops = {n.op_type for n in model.graph.node}
    assert ops <= STANDARD, f"not standard: {ops - STANDARD}"
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    shape = [d.dim_value for d in dims[1:]]
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.reshape([len(x)] + shape)})[0], ops


def targets(m, n, rng):
    outs = m.output_size
    if m.loss == "cross_entropy":
        return rng.integers(0, outs, n)
    if m.loss == "bce":
        return rng.integers(0, 2, (n, outs)).astype(np.float32)
    return rng.normal(0, 1, (n, outs)).astype(np.float32)


def train_briefly(m, rng, n=64):
    """One epoch on inputs of mean 3 and deviation 2: the normalization
    (where the model's [train] has one) and batchnorm's running statistics
    move away from 0 and 1."""
    x = rng.normal(3, 2, (n, m.input_size)).astype(np.float32)
    m.fit(x, targets(m, n, rng), epochs=1, verbose=False)


def read_predictions(path):
    """kiln predict's CSV: the probability or output columns."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    keys = [k for k in rows[0] if k.startswith(("p_", "output_"))]
    return np.array([[float(r[k]) for k in keys] for r in rows], dtype=np.float32)


@needs_onnx
@pytest.mark.parametrize("example", EXAMPLES, ids=[os.path.basename(e) for e in EXAMPLES])
def test_example_models_match_kiln_predict(example, tmp_path):
    exe = kiln_command()
    rng = np.random.default_rng(7)
    checkpoint, onnx_path = str(tmp_path / "w.safetensors"), str(tmp_path / "m.onnx")
    with kiln.Model.from_file(example) as m:
        if m.block:  # a token model: a step on token windows, compared per token below
            return check_token_example(m, example, checkpoint, onnx_path, rng)
        train_briefly(m, rng)
        m.save(checkpoint)
        x = rng.normal(3, 2, (23, m.input_size)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run([exe, "export", example, checkpoint, "-o", onnx_path],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([exe, "predict", example, checkpoint, str(tmp_path / "x.npy"),
                           "--format", "csv", "--out", str(tmp_path / "p.csv")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    got, ops = run_onnx(onnx_path, x)
    want = read_predictions(tmp_path / "p.csv")
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=TOLERANCE, atol=TOLERANCE)
    assert "Dropout" not in ops


def check_token_example(m, example, checkpoint, onnx_path, rng):
    """A token model's example: one step on random windows, then `kiln
    export` of its checkpoint against the model's own per-token
    probabilities (kiln predict prints one row per sample, not per token)."""
    ids = rng.integers(0, m.vocab_size, (4, m.block + 1))
    m.train_step(ids[:, :-1], ids[:, 1:])
    m.save(checkpoint)
    done = subprocess.run([kiln_command(), "export", example, checkpoint, "-o", onnx_path],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    x = rng.integers(0, m.vocab_size, (3, m.block)).astype(np.float32)
    want = m.predict(x).reshape(3, m.block, m.vocab_size).astype(np.float64)
    if not np.allclose(want.sum(-1), 1, atol=1e-4):  # logits: the softmax the file ends with
        want = np.exp(want - want.max(-1, keepdims=True))
        want /= want.sum(-1, keepdims=True)
    got, ops = run_onnx(onnx_path, x)
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=TOLERANCE, atol=TOLERANCE)
    assert "Dropout" not in ops


def vector_graph(rng, features):
    """Random layers on vectors: residual blocks, concatenations, every
    activation, normalizations and dropout."""
    lines, width, k = [f"[input]\nshape = {features}"], features, 0

    def add(text):
        nonlocal k
        lines.append(text)
        k += 1
        return k - 1

    for _ in range(rng.integers(4, 7)):
        kind = rng.choice(["linear", "residual", "concat", "act", "norm", "dropout"])
        if kind == "linear":
            width = int(rng.integers(3, 12))
            add(f"[linear]\nout = {width}\nbias = {rng.choice(['true', 'false'])}")
        elif kind == "residual":
            base = k - 1 if k else "input"
            add(f"[linear]\nout = {width}")
            add("[tanh]")
            add(f"[add]\nfrom = {base}, {k - 1}")
        elif kind == "concat":
            base = k - 1 if k else "input"
            extra = int(rng.integers(2, 6))
            add(f"[linear]\nout = {extra}")
            add(rng.choice(["[gelu]", "[gelu]\napprox = tanh", "[sigmoid]"]))
            add(f"[concat]\nfrom = {k - 1}, {base}")
            width += extra
        elif kind == "act":
            add(rng.choice(["[relu]", "[leaky_relu]\nslope = 0.1", "[sigmoid]", "[tanh]",
                            "[gelu]", "[gelu]\napprox = tanh"]))
        elif kind == "norm":
            add(rng.choice(["[batchnorm]", "[layernorm]"]))
        else:
            add("[dropout]\np = 0.4")
    add(f"[linear]\nout = {int(rng.integers(1, 5))}")
    return lines


def image_graph(rng, channels):
    """Random layers on images: convolutions with residuals and channel
    concatenations, both pools with padding, batchnorm and layernorm."""
    lines, c, k = [f"[input]\nshape = {channels}x9x11"], channels, 0

    def add(text):
        nonlocal k
        lines.append(text)
        k += 1
        return k - 1

    c = int(rng.integers(2, 6))
    add(f"[conv2d]\nout = {c}\nsize = 3\npad = 1")
    add("[batchnorm]")
    add("[relu]")
    for _ in range(rng.integers(2, 4)):
        base = k - 1
        kind = rng.choice(["residual", "concat", "norm"])
        if kind == "residual":
            add(f"[conv2d]\nout = {c}\nsize = 3\npad = 2\ndilation = 2")
            add("[leaky_relu]\nslope = 0.2")
            add(f"[add]\nfrom = {base}, {k - 1}")
        elif kind == "concat":
            extra = int(rng.integers(1, 4))
            add(f"[conv2d]\nout = {extra}\nsize = 1\nbias = false")
            add(f"[concat]\nfrom = {base}, {k - 1}")
            c += extra
        else:
            add(rng.choice(["[batchnorm]", "[layernorm]\ndims = 3", "[gelu]"]))
    add(rng.choice(["[maxpool]\nsize = 2\npad = 1", "[maxpool]\nsize = 3\nstride = 2",
                    "[avgpool]\nsize = 3\nstride = 2\npad = 1", "[avgpool]\nsize = 2"]))
    add("[flatten]")
    add("[dropout]\np = 0.2")
    add(f"[linear]\nout = {int(rng.integers(2, 6))}")
    return lines


@needs_onnx
@pytest.mark.parametrize("seed", range(6))
def test_random_graphs_match_predict(seed, tmp_path):
    rng = np.random.default_rng(100 + seed)
    lines = vector_graph(rng, int(rng.integers(2, 9))) if seed % 2 == 0 else \
        image_graph(rng, int(rng.integers(1, 4)))
    head = ["", "[softmax]", "[sigmoid]"][seed % 3]
    loss = ["mse", "cross_entropy", "bce"][seed % 3] if seed < 3 else "mse"
    text = "\n".join(lines + ([head] if head else []) +
                     [f"[train]\nloss = {loss}\nbatch = 16\nseed = {seed}"]) + "\n"
    path = str(tmp_path / "m.onnx")
    with kiln.Model.from_string(text) as m:
        train_briefly(m, rng)
        state = m.state_dict()  # batchnorm's running statistics far from 0 and 1
        stats = {k: (rng.uniform(0.5, 2, v.shape) if k.endswith("var") else
                     rng.normal(0, 1, v.shape)).astype(np.float32)
                 for k, v in state.items() if ".running_" in k}
        m.load_state_dict(stats, strict=False)
        m.export_onnx(path)
        x = rng.normal(3, 2, (17, m.input_size)).astype(np.float32)
        want = m.predict(x)
    got, _ = run_onnx(path, x)
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=TOLERANCE, atol=TOLERANCE,
                               err_msg=text)


EVERY_LAYER = """[input]
shape = 2x6x5
[conv2d]
out = 3
size = 3
pad = 1
[batchnorm]
[leaky_relu]
slope = 0.2
name = a
[conv2d]
out = 3
size = 3
pad = 2
dilation = 2
[add]
from = a, 3
[concat]
from = 4, input
[maxpool]
size = 2
stride = 2
pad = 1
[avgpool]
size = 3
stride = 1
pad = 1
[layernorm]
dims = 3
[gelu]
[flatten]
[linear]
out = 9
[batchnorm]
[tanh]
[dropout]
p = 0.3
[gelu]
approx = tanh
[layernorm]
[sigmoid]
[linear]
out = 4
bias = false
[relu]
[linear]
out = 3
[train]
seed = 11
"""


@needs_onnx
def test_every_layer_kind_matches_predict(tmp_path):
    """Every layer and activation in one model, trained with cross_entropy
    on logits: the export adds the Softmax that predict applies."""
    rng = np.random.default_rng(5)
    path = str(tmp_path / "m.onnx")
    with kiln.Model.from_string(EVERY_LAYER) as m:
        train_briefly(m, rng)
        m.export_onnx(path)
        x = rng.normal(3, 2, (9, m.input_size)).astype(np.float32)
        z = m.predict(x).astype(np.float64)
    want = np.exp(z - z.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    got, ops = run_onnx(path, x)
    np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE)
    assert {"Conv", "MaxPool", "AveragePool", "LayerNormalization", "BatchNormalization",
            "Erf", "Tanh", "Gemm", "Concat", "Add", "Flatten", "Softmax"} <= ops


SEQUENCE = """[input]
tokens = {vocab}
block = {block}
[embedding]
name = transformer.wte
out = {width}
[position]
name = transformer.wpe
positions = {positions}
[transformer_block]
count = 2
heads = {heads}
bias = {bias}
dropout = 0.1
[layernorm]
name = transformer.ln_f
[linear]
name = lm_head
out = {vocab}
bias = false
tie = transformer.wte
"""


@needs_onnx
@pytest.mark.parametrize("vocab,block,width,positions,heads,bias",
                         [(13, 16, 32, 16, 2, "true"), (7, 5, 12, 9, 3, "false")])
def test_sequence_models_match_predict(vocab, block, width, positions, heads, bias, tmp_path):
    """nanoGPT's architecture: token ids in (as floats), attention as
    MatMul and Softmax under a causal mask, a Softmax per token after the
    tied head's logits."""
    rng = np.random.default_rng(vocab)
    path = str(tmp_path / "gpt.onnx")
    text = SEQUENCE.format(vocab=vocab, block=block, width=width, positions=positions,
                           heads=heads, bias=bias)
    with kiln.Model.from_string(text) as m:
        state = {k: (rng.normal(0, 0.3, v.shape) + (".ln_" in k and k.endswith("weight")))
                 .astype(np.float32) for k, v in m.state_dict().items()}
        m.load_state_dict(state)  # weights far from nanoGPT's N(0, 0.02²): outputs not flat
        m.export_onnx(path)
        x = rng.integers(0, vocab, (7, block)).astype(np.float32)
        z = m.predict(x).reshape(7, block, vocab).astype(np.float64)
    want = np.exp(z - z.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    got, ops = run_onnx(path, x)
    np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE)
    assert {"Gather", "MatMul", "Softmax", "LayerNormalization", "Erf"} <= ops
    assert onnx.load(path).graph.output[0].type.tensor_type.shape.dim[2].dim_value == vocab


def test_refusals_name_the_layer_and_write_nothing(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_text("before")
    text = "[input]\nshape = 4\n[layernorm]\ndims = 2\nname = across\n[linear]\nout = 2\n"
    with kiln.Model.from_string(text) as m:
        with pytest.raises(kiln.KilnError, match=r"\[layernorm\] \(across\).*no ONNX form"):
            m.export_onnx(target)
    with kiln.Model.from_string("[input]\nshape = 4\n[linear]\nout = 2\n") as m:
        with pytest.raises(kiln.KilnError, match="inside-a-file.onnx: cannot write there"):
            m.export_onnx(target / "inside-a-file.onnx")
    assert target.read_text() == "before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_export_command_needs_an_output(tmp_path):
    exe = kiln_command()
    model = os.path.join(SOURCE, "examples", "robust_mlp.ini")
    done = subprocess.run([exe, "export", model, "none.safetensors"], capture_output=True,
                          text=True)
    assert done.returncode == 2 and "-o FILE.onnx is required" in done.stderr
    done = subprocess.run([exe, "export", model, str(tmp_path / "none.safetensors"), "-o",
                           str(tmp_path / "m.onnx")], capture_output=True, text=True)
    assert done.returncode == 1 and "none.safetensors" in done.stderr
    assert not os.path.exists(tmp_path / "m.onnx")
