"""Token models from Python: (n, T) id arrays in, (n, T, V) probabilities out,
train_step on (x, y) windows, the vocabulary of a checkpoint written by
`kiln train --data TEXT`, and wrong token arrays refused."""
import os
import subprocess

import numpy as np
import pytest

import kiln

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(SOURCE, "tests", "data", "gpt_sonnets.ini")
TEXT = os.path.join(SOURCE, "tests", "data", "sonnets.txt")
KILN = os.path.join(SOURCE, "build", "kiln")


def windows(ids, n, T, rng):
    starts = rng.integers(0, len(ids) - T, n)
    x = np.stack([ids[s:s + T] for s in starts])
    y = np.stack([ids[s + 1:s + T + 1] for s in starts])
    return x, y


@pytest.fixture(scope="module")
def corpus():
    text = open(TEXT, encoding="utf-8").read()
    chars = sorted(set(text))
    return chars, np.array([chars.index(c) for c in text], dtype=np.int64)


def test_predict_gives_probabilities_per_position(corpus):
    chars, ids = corpus
    with kiln.Model.from_file(MODEL) as m:
        assert (m.vocab_size, m.block) == (56, 16)
        x, _ = windows(ids, 3, 16, np.random.default_rng(0))
        p = m.predict(x)
        assert p.shape == (3, 16, 56)
        assert np.allclose(p.sum(axis=-1), 1, atol=1e-5)
        # causal: changing the last token changes no earlier position's output
        x2 = x.copy()
        x2[:, -1] = (x2[:, -1] + 1) % 56
        p2 = m.predict(x2)
        assert np.allclose(p[:, :-1], p2[:, :-1], atol=1e-6)
        assert not np.allclose(p[:, -1], p2[:, -1])


def test_train_step_on_token_windows_lowers_the_loss(corpus):
    _, ids = corpus
    rng = np.random.default_rng(1)
    with kiln.Model.from_file(MODEL) as m:
        x, y = windows(ids, 8, 16, rng)
        first = m.evaluate(x, y)[0]
        assert abs(first - np.log(56)) < 0.3  # an untrained model guesses evenly
        for _ in range(40):
            m.train_step(*windows(ids, 8, 16, rng))
        assert m.evaluate(x, y)[0] < first - 0.5


def test_wrong_token_arrays_are_refused(corpus):
    _, ids = corpus
    with kiln.Model.from_file(MODEL) as m:
        x, y = windows(ids, 2, 16, np.random.default_rng(2))
        with pytest.raises(ValueError, match=r"a token model takes \(2, 16\) next-token ids"):
            m.train_step(x, y[:, :8])
        bad = x.copy()
        bad[1, 3] = 56
        with pytest.raises(kiln.KilnError) as e:
            m.train_step(bad, y)
        assert "56" in str(e.value)
        with pytest.raises(kiln.KilnError):
            m.predict(np.full((1, 16), -1))


@pytest.mark.skipif(not os.path.exists(KILN), reason="the kiln command is not built")
def test_a_checkpoint_keeps_the_text_vocabulary(corpus, tmp_path):
    chars, ids = corpus
    out = tmp_path / "run"
    subprocess.run([KILN, "train", MODEL, "--data", TEXT, "--steps", "20", "--out", str(out)],
                   check=True, capture_output=True)
    with kiln.Model.from_file(MODEL) as m:
        assert m.vocab is None
        m.load(str(out / "final.safetensors"))
        assert m.vocab == "".join(chars)
        other = kiln.Model.from_file(MODEL)
        other.vocab = "".join(chars[1:]) + "~"  # 56 other characters
        with pytest.raises(kiln.KilnError, match="another vocabulary"):
            other.load(str(out / "final.safetensors"))
        other.close()


@pytest.mark.skipif(not os.path.exists(KILN), reason="the kiln command is not built")
def test_generate_writes_text_of_the_vocabulary(tmp_path):
    out = tmp_path / "gen"
    subprocess.run([KILN, "train", MODEL, "--data", TEXT, "--steps", "20", "--out", str(out)],
                   check=True, capture_output=True)
    with kiln.Model.from_file(MODEL) as m:
        m.load(str(out / "final.safetensors"))
        streamed = []
        a = m.generate("Thy", tokens=40, seed=4, stream=streamed.append)
        assert len(a) == 40 and "".join(streamed) == a
        assert set(a) <= set(m.vocab)
        assert m.generate("Thy", tokens=40, seed=4) == a  # the same seed, the same text
        greedy = m.generate("Thy", tokens=20, temperature=0)
        assert greedy == m.generate("Thy", tokens=20, temperature=0, seed=9)
        assert greedy == m.generate("Thy", tokens=20, top_k=1, seed=3)  # one left to sample
        # a prompt longer than the block is cropped to its last block
        long = "Thy beauty " * 5
        assert m.generate(long, tokens=10, temperature=0) == \
            m.generate(long[-16:], tokens=10, temperature=0)
        with pytest.raises(kiln.KilnError, match=r"the character 'Z' \(U\+005A\)"):
            m.generate("Zeal")
        with pytest.raises(kiln.KilnError, match="temperature"):
            m.generate("Thy", temperature=-1)
        with pytest.raises(kiln.KilnError, match="larger than the vocabulary of 56"):
            m.generate("Thy", top_k=57)
        with pytest.raises(ValueError):
            m.generate("Thy", top_k=0)
    # the command writes what the library writes
    cli = subprocess.run([KILN, "generate", MODEL, str(out / "final.safetensors"), "--prompt",
                          "Thy", "--tokens", "40", "--seed", "4"], check=True,
                         capture_output=True, text=True).stdout
    assert cli == "Thy" + a + "\n"


def test_fit_on_arrays_says_what_a_token_model_trains_on(corpus):
    _, ids = corpus
    with kiln.Model.from_file(MODEL) as m:
        x, y = windows(ids, 8, 16, np.random.default_rng(3))
        with pytest.raises(kiln.KilnError, match="a token model trains on a corpus"):
            m.fit(x, y, epochs=1)


def test_a_larger_batch_keeps_the_vocabulary(corpus):
    chars, ids = corpus
    with kiln.Model.from_file(MODEL) as m:
        m.vocab = "".join(chars)
        x, y = windows(ids, 40, 16, np.random.default_rng(5))  # above [train] batch 8
        m.train_step(x, y)
        assert m.vocab == "".join(chars)
        assert m.predict(x[:2]).shape == (2, 16, 56)
