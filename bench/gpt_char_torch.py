#!/usr/bin/env python3
"""examples/gpt_char.ini in PyTorch, as nanoGPT's model.py and train.py run it.

The same corpus, character vocabulary and 90/10 split as `kiln train
--data`, nanoGPT's GPT (pre-LayerNorm blocks without biases, a fused QKV
projection, GELU MLP, learned positions, the head tied to the token
embedding, N(0, 0.02) initialisation with the residual projections scaled
by 1/sqrt(2 n_layer)), AdamW with weight decay on matrices only, clipping
at 1.0 and kiln's warmup_cosine schedule (nanoGPT's warmup is
lr (it + 1) / (warmup + 1); kiln's lr (it + 1) / warmup: the same curve
within one step). Prints a row per evaluation, then the validation loss
over the whole validation split (consecutive windows, as `kiln eval` scores
it) and training tokens per second.

    /work/venv-torch/bin/python bench/gpt_char_torch.py --data ~/.local/share/kiln/shakespeare.txt
"""
import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F


class LayerNorm(nn.Module):
    def __init__(self, n, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.n_head = c.n_head

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1 = LayerNorm(c.n_embd, c.bias)
        self.attn = CausalSelfAttention(c)
        self.ln_2 = LayerNorm(c.n_embd, c.bias)
        self.mlp = MLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c.vocab_size, c.n_embd),
            wpe=nn.Embedding(c.block_size, c.n_embd),
            h=nn.ModuleList([Block(c) for _ in range(c.n_layer)]),
            ln_f=LayerNorm(c.n_embd, c.bias)))
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith('c_proj.weight'):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * c.n_layer))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx, targets):
        pos = torch.arange(idx.size(1), dtype=torch.long)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def lr_at(it, a):
    """kiln's warmup_cosine (src/optim/sched.c), t_max = steps."""
    if it < a.warmup:
        return a.lr * (it + 1) / a.warmup
    t, span = it - a.warmup, a.steps - a.warmup
    return a.min_lr + (a.lr - a.min_lr) * (1 + math.cos(math.pi * t / span)) / 2


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', required=True, help='the UTF-8 corpus (tools/shakespeare.sh)')
    p.add_argument('--steps', type=int, default=2000)
    p.add_argument('--eval-every', type=int, default=250)
    p.add_argument('--eval-batches', type=int, default=20)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--seed', type=int, default=1337)
    p.add_argument('--json', help='write the figures here')
    p.add_argument('--rate-only', action='store_true',
                   help='skip the whole-split validation loss (for timing runs)')
    a = p.parse_args()
    a.lr, a.min_lr, a.warmup, a.batch = 1e-3, 1e-4, 100, 12
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    text = open(a.data, encoding='utf-8').read()
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    data = np.array([stoi[ch] for ch in text], dtype=np.int64)
    n = int(len(data) * 0.9)
    train, val = torch.from_numpy(data[:n]), torch.from_numpy(data[n:])

    class C:
        vocab_size, block_size, n_layer, n_head, n_embd, bias = len(chars), 64, 4, 4, 128, False
    model = GPT(C)
    print(f'{sum(q.numel() for q in model.parameters())} parameters, vocabulary {len(chars)}')
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1},
                             {'params': no_decay, 'weight_decay': 0.0}],
                            lr=a.lr, betas=(0.9, 0.99), eps=1e-8, foreach=False)

    def batch(split):
        d = train if split == 'train' else val
        ix = torch.randint(len(d) - C.block_size, (a.batch,))
        x = torch.stack([d[i:i + C.block_size] for i in ix])
        y = torch.stack([d[i + 1:i + 1 + C.block_size] for i in ix])
        return x, y

    @torch.no_grad()
    def estimate():
        model.eval()
        out = {}
        for split in ('train', 'val'):
            out[split] = float(np.mean([model(*batch(split)).item()
                                        for _ in range(a.eval_batches)]))
        model.train()
        return out

    @torch.no_grad()
    def whole_val():
        """Mean loss over consecutive windows of the validation split."""
        model.eval()
        T, total, count = C.block_size, 0.0, 0
        starts = list(range(0, len(val) - T, T))
        for k in range(0, len(starts), 64):
            s = starts[k:k + 64]
            x = torch.stack([val[i:i + T] for i in s])
            y = torch.stack([val[i + 1:i + 1 + T] for i in s])
            total += model(x, y).item() * len(s) * T
            count += len(s) * T
        model.train()
        return total / count

    train_time = 0.0
    for it in range(a.steps):
        for g in opt.param_groups:
            g['lr'] = lr_at(it, a)
        x, y = batch('train')
        t0 = time.perf_counter()
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        train_time += time.perf_counter() - t0
        done = it + 1
        if done % a.eval_every == 0 or done == a.steps:
            e = estimate()
            print(f'step {done}/{a.steps}  lr {lr_at(it, a):.3g}  train loss {e["train"]:.4f}  '
                  f'val loss {e["val"]:.4f}  {done * a.batch * C.block_size / train_time:.0f} '
                  f'tokens/s', flush=True)
    v = float('nan') if a.rate_only else whole_val()
    tps = a.steps * a.batch * C.block_size / train_time
    print(f'validation loss over the whole split: {v:.4f}; {tps:.0f} training tokens/s '
          f'(PyTorch {torch.__version__}, {a.threads} threads)')
    if a.json:
        with open(a.json, 'w') as f:
            json.dump({'val_loss': v, 'tokens_per_second': tps, 'torch': torch.__version__,
                       'threads': a.threads, 'steps': a.steps}, f)


if __name__ == '__main__':
    main()
