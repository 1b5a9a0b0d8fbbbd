#!/usr/bin/env python3
"""kiln against PyTorch on nanoGPT's shakespeare_char CPU configuration
(examples/gpt_char.ini: 4 layers, 4 heads, 128 wide, block 64, batch 12,
a vocabulary of 84), random weights and tokens, 2 threads each:

- training tokens/s: forward, backward, clipping and an AdamW step
  (kiln: kiln_net_train_step; PyTorch: nanoGPT's model and optimizer);
- generation tokens/s for block - 1 tokens from one token, temperature 1:
  kiln_net_generate with its KV cache and re-running the window, PyTorch
  with a KV cache (per-layer keys and values, one position a token) and
  without (nanoGPT's generate: the whole window a token).

Rounds alternate kiln and PyTorch; each figure is the median of the
rounds with its range. kiln runs as build/bench/bench_gpt (a process per
round, PoCL limited to 2 threads).

    /work/venv-torch/bin/python bench/gpt_speed.py [--rounds 3] [--build build]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_char_torch import GPT  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Config:
    vocab_size, block_size, n_layer, n_head, n_embd, bias = 84, 64, 4, 4, 128, False


def logits_window(model, idx):
    t = model.transformer
    x = t.wte(idx) + t.wpe(torch.arange(idx.size(1)))
    for block in t.h:
        x = block(x)
    return model.lm_head(t.ln_f(x[:, -1:, :]))[:, -1, :]


def generate_window(model, n):
    """nanoGPT's GPT.generate: the whole (cropped) window for every token."""
    idx = torch.zeros((1, 1), dtype=torch.long)
    for _ in range(n):
        cond = idx[:, -Config.block_size:]
        probs = F.softmax(logits_window(model, cond), dim=-1)
        idx = torch.cat((idx, torch.multinomial(probs, 1)), dim=1)
    return idx


def generate_cached(model, n):
    """One position a token: each layer's keys and values kept and extended."""
    t, H, C = model.transformer, Config.n_head, Config.n_embd
    keys = [None] * len(t.h)
    values = [None] * len(t.h)
    tok = torch.zeros((1, 1), dtype=torch.long)
    out = []
    for pos in range(n):
        x = t.wte(tok) + t.wpe(torch.tensor([pos]))
        for i, block in enumerate(t.h):
            q, k, v = block.attn.c_attn(block.ln_1(x)).split(C, dim=2)
            q, k, v = (u.view(1, 1, H, C // H).transpose(1, 2) for u in (q, k, v))
            keys[i] = k if keys[i] is None else torch.cat((keys[i], k), dim=2)
            values[i] = v if values[i] is None else torch.cat((values[i], v), dim=2)
            y = F.scaled_dot_product_attention(q, keys[i], values[i])
            x = x + block.attn.c_proj(y.transpose(1, 2).reshape(1, 1, C))
            x = x + block.mlp(block.ln_2(x))
        probs = F.softmax(model.lm_head(t.ln_f(x))[:, -1, :], dim=-1)
        tok = torch.multinomial(probs, 1)
        out.append(tok)
    return out


def torch_round(model, opt, batch, steps):
    B, T, V = 12, Config.block_size, Config.vocab_size
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B, T))
    best = float('inf')
    for s in range(steps + 1):  # the first warms up
        t0 = time.perf_counter()
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if s:
            best = min(best, time.perf_counter() - t0)
    n = T - 1
    with torch.no_grad():
        generate_cached(model, 2)
        t0 = time.perf_counter()
        generate_cached(model, n)
        cached = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        generate_window(model, n)
        window = n / (time.perf_counter() - t0)
    return {'train': B * T / best, 'cache': cached, 'window': window}


def kiln_round(build):
    env = dict(os.environ, POCL_MAX_PTHREAD_COUNT='2', KILN_DEVICE=os.environ.get(
        'KILN_DEVICE', 'pocl'))
    out = subprocess.run([os.path.join(build, 'bench', 'bench_gpt'),
                          os.path.join(ROOT, 'examples', 'gpt_char.ini')],
                         env=env, check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    return {'train': r['train_tokens_per_s'], 'cache': r['generate_tokens_per_s'],
            'window': r['window_tokens_per_s'], 'attention': r['attention_share']}


def summary(rows, key):
    v = [r[key] for r in rows]
    return f'{statistics.median(v):8.1f} ({min(v):.1f} to {max(v):.1f})'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--steps', type=int, default=10,
                    help='timed training steps a round (kiln_bench_gpt times 10)')
    ap.add_argument('--build', default=os.path.join(ROOT, 'build'))
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = GPT(Config)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1},
                             {'params': rest, 'weight_decay': 0.0}], lr=1e-3, betas=(0.9, 0.99))
    kiln_rows, torch_rows = [], []
    for r in range(a.rounds):
        kiln_rows.append(kiln_round(a.build))
        torch_rows.append(torch_round(model, opt, 12, a.steps))
        print(f'round {r + 1}: kiln {kiln_rows[-1]}, torch {torch_rows[-1]}', file=sys.stderr)
    cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
                if line.startswith('model name')), 'unknown CPU')
    print(f'{cpu}, {os.cpu_count()} cores, 2 threads each, {a.rounds} alternated rounds; '
          f'median (range)')
    print(f'PyTorch {torch.__version__}')
    print(f'{"":32} {"kiln":>30} {"PyTorch":>30}')
    for key, label in (('train', 'training tokens/s'), ('cache', 'generation tokens/s, KV cache'),
                       ('window', 'generation tokens/s, no cache')):
        print(f'{label:32} {summary(kiln_rows, key):>30} {summary(torch_rows, key):>30}')
    ratios = [k['train'] / t['train'] for k, t in zip(kiln_rows, torch_rows)]
    print(f'{"training, kiln/PyTorch":32} {statistics.median(ratios):>14.2f} '
          f'({min(ratios):.2f} to {max(ratios):.2f}, the ratio within each round)')
    share = statistics.median(r['attention'] for r in kiln_rows)
    print(f'kiln: attention {100 * share:.0f} % of a training step')


if __name__ == '__main__':
    main()
