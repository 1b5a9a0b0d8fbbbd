#!/usr/bin/env python3
"""Tabular regression as scikit-learn users write it: a table of numeric
features, a mean-squared-error model, and MAE and R² on held-out rows
(from kiln's own evaluate, checked against numpy). The data is a
synthetic, seeded table of houses (size, rooms, age, distance, ...), so
the script needs no download. With PyTorch installed, the trained
weights (normalization folded in) give PyTorch the same R².

usage: tabular_regression.py [EPOCHS]   (default 60)
"""
import sys

import numpy as np

import kiln


def houses(n, seed=0):
    rng = np.random.default_rng(seed)
    size = rng.uniform(30, 250, n)
    rooms = np.clip(np.round(size / 30 + rng.normal(0, 1, n)), 1, 10)
    age = rng.uniform(0, 100, n)
    distance = rng.exponential(8, n)
    floor = rng.integers(0, 12, n).astype(float)
    x = np.column_stack([size, rooms, age, distance, floor]).astype(np.float32)
    price = (2.5 * size + 12 * rooms - 0.8 * age - 9 * np.log1p(distance) + 1.5 * floor +
             0.004 * size * (100 - age) / 10 + rng.normal(0, 15, n))
    return x, (price / 100).astype(np.float32)  # in hundreds of thousands


def main():
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    x, y = houses(6000)
    split = 5000
    model = kiln.Sequential([kiln.Linear(64), kiln.ReLU(), kiln.Linear(32), kiln.ReLU(),
                             kiln.Linear(1)],
                            input_shape=5, loss="mse", optimizer="adamw", lr=3e-3,
                            weight_decay=1e-4, batch=64, schedule="cosine", seed=1)
    history = model.fit(x[:split], y[:split], epochs=epochs,
                        validation_data=(x[split:], y[split:]), verbose=False,
                        callback=lambda r: print(f"epoch {r['epoch']:3d}  val MAE "
                                                 f"{r['val_mae']:.4f}  R² {r['val_r2']:.4f}")
                        if r["epoch"] % 10 == 0 else None)
    scores = model.evaluate(x[split:], y[split:])
    p = model.predict(x[split:])[:, 0].astype(np.float64)
    t = y[split:].astype(np.float64)
    r2 = 1 - ((t - p) ** 2).sum() / ((t - t.mean()) ** 2).sum()
    print(f"kiln: held-out MSE {scores.loss:.4f}, MAE {scores.mae:.4f}, R² {scores.r2:.4f} "
          f"(numpy: R² {r2:.4f}); best epoch's validation R² {max(history['val_r2']):.4f}")
    try:
        import torch
        from torch import nn
    except ImportError:
        print("(PyTorch is not installed: no PyTorch check)")
        return
    net = nn.Sequential(nn.Linear(5, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(),
                        nn.Linear(32, 1))
    state = model.state_dict(fold_normalization=True)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    with torch.no_grad():
        q = net(torch.from_numpy(x[split:]))[:, 0].double().numpy()
    print(f"PyTorch: R² {1 - ((t - q) ** 2).sum() / ((t - t.mean()) ** 2).sum():.4f}")


if __name__ == "__main__":
    main()
