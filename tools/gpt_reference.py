#!/usr/bin/env python3
"""Writes the PyTorch reference of a tiny GPT that tests/test_gpt.c checks
kiln against, as llm.c's test_gpt2 does: nanoGPT's model (Karpathy,
github.com/karpathy/nanoGPT, model.py, restated below in its essentials),
2 layers, 2 heads, 32 wide, block 16, a vocabulary of 13, with biases.

The file holds, under these names (all float32; token ids as floats):
  w.NAME       the initial weights, by nanoGPT's state_dict names
  x, y         one batch (4, 16) of input and target token ids
  logits       (4, 16, 13) and loss (1) of the first forward
  g.NAME       the gradient of every parameter (lm_head.weight's is wte's:
               the two are one tensor)
  losses, lrs  (5) the loss before each of 5 AdamW steps, and each step's lr
  after.NAME   the weights after the 5 steps
The steps are nanoGPT's train.py on one batch: AdamW with betas (0.9, 0.99),
weight decay 0.1 on tensors of 2 or more dimensions only, gradients clipped
to norm 1.0, lr warmup + cosine (warmup 2, decay over 5 steps, 1e-3 to 1e-4).

Run by hand where PyTorch is installed (pip install torch numpy safetensors):
  python3 tools/gpt_reference.py tests/data/gpt_tiny.safetensors
  python3 tools/gpt_reference.py --check KILN_CHECKPOINT
The second form loads a checkpoint kiln wrote for tests/data/gpt_tiny.ini
into nanoGPT's GPT (strict: every name and shape) and prints its loss on
the reference batch."""
import argparse
import math
import sys

import torch
import torch.nn as nn
from torch.nn import functional as F
from safetensors.torch import save_file, load_file


class LayerNorm(nn.Module):
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.n_head, self.n_embd = c.n_head, c.n_embd

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


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


class Config:
    block_size, vocab_size, n_layer, n_head, n_embd, bias = 16, 13, 2, 2, 32, True


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
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith('c_proj.weight'):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))

    def _init_weights(self, m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets):
        pos = torch.arange(0, idx.size(1), dtype=torch.long)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


def get_lr(it, warmup=2, decay=5, lr=1e-3, min_lr=1e-4):
    """nanoGPT's train.py schedule, at step it (from 0)."""
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    ratio = (it - warmup) / (decay - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def optimizer_of(model):
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{'params': [p for p in params if p.dim() >= 2], 'weight_decay': 0.1},
              {'params': [p for p in params if p.dim() < 2], 'weight_decay': 0.0}]
    return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99), foreach=False)


def state(model, prefix):
    return {prefix + k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def batch():
    g = torch.Generator().manual_seed(1337)
    data = torch.randint(0, Config.vocab_size, (4, Config.block_size + 1), generator=g)
    return data[:, :-1].contiguous(), data[:, 1:].contiguous()


def write(path):
    torch.manual_seed(42)
    model = GPT(Config())
    x, y = batch()
    out = state(model, 'w.')
    out['x'], out['y'] = x.float(), y.float()
    logits, loss = model(x, y)
    loss.backward()
    out['logits'], out['loss'] = logits.detach().clone(), loss.detach().reshape(1)
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in model.state_dict():
        key = 'transformer.wte.weight' if name == 'lm_head.weight' else name
        out['g.' + name] = grads[key].detach().clone()
    model.zero_grad(set_to_none=True)
    opt = optimizer_of(model)
    losses, lrs = [], []
    for it in range(5):
        lr = get_lr(it)
        for group in opt.param_groups:
            group['lr'] = lr
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        lrs.append(lr)
    out['losses'] = torch.tensor(losses, dtype=torch.float32)
    out['lrs'] = torch.tensor(lrs, dtype=torch.float32)
    out.update(state(model, 'after.'))
    save_file(out, path, metadata={'torch': torch.__version__})
    print(f'{path}: loss {out["loss"].item():.6f}, after 5 steps {losses}')


def check(path):
    model = GPT(Config())
    weights = load_file(path)
    model.load_state_dict(weights, strict=True)
    x, y = batch()
    _, loss = model(x, y)
    print(f'{path} in nanoGPT: loss {loss.item():.6f} on the reference batch')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('output', nargs='?', default='tests/data/gpt_tiny.safetensors')
    ap.add_argument('--check', metavar='CHECKPOINT')
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.check:
        check(a.check)
    else:
        write(a.output)


if __name__ == '__main__':
    sys.exit(main())
