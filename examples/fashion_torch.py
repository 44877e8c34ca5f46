#!/usr/bin/python3
"""Eager PyTorch baseline for the main job named in README: Fashion-MNIST CNN training.

Trains the small CNN below on Debian's Fashion-MNIST (/usr/share/datasets/fashion-mnist)
and prints test loss and accuracy over all 10000 test images, the training time and
samples/s. Lathe's compiled trainer must reach the same test accuracy as this script
within half a point (0.5 percentage points).

Model: conv 1->32 3x3 pad 1, BatchNorm2d, relu, maxpool 2; conv 32->64 3x3 pad 1,
BatchNorm2d, relu, maxpool 2; flatten; linear 3136->128; relu; linear 128->10.
PyTorch default initialization, mean cross-entropy, SGD(lr=0.05, momentum=0.9),
batch 64, reshuffled each epoch with torch.randperm on a generator seeded with --seed.
The last partial batch is kept (60000 = 937 * 64 + 32, so 938 steps per epoch).
Pixels are x/255 in [0, 1], no normalization.

Run with Debian's interpreter (python3-torch, python3-torchvision; no network):
    /usr/bin/python3 examples/fashion_torch.py --threads 1 --seed 0
"""
import argparse
import gzip
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"


def load_idx(name):
    """Read one IDX .gz file into a numpy array (big-endian header, uint8 data)."""
    with gzip.open(f"{DATA}/{name}", "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(prefix):
    x = load_idx(f"{prefix}-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y = load_idx(f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)  # parameter init
    gen = torch.Generator().manual_seed(a.seed)  # shuffling

    xtr, ytr = load_split("train")
    xte, yte = load_split("t10k")
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    n = xtr.shape[0]
    steps = (n + a.batch - 1) // a.batch  # ceil: the last partial batch is kept

    t0 = time.perf_counter()
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(steps):
            idx = perm[i * a.batch:(i + 1) * a.batch]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
        print(f"epoch {epoch + 1}: train loss {total / n:.4f} ({steps} steps)")
    train_s = time.perf_counter() - t0

    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, xte.shape[0], 1000):
            out = model(xte[i:i + 1000])
            loss_sum += F.cross_entropy(out, yte[i:i + 1000], reduction="sum").item()
            correct += (out.argmax(1) == yte[i:i + 1000]).sum().item()
    m = xte.shape[0]
    print(f"test loss {loss_sum / m:.4f}  accuracy {100.0 * correct / m:.2f}% ({correct}/{m})")
    print(f"train time {train_s:.1f} s  {a.epochs * n / train_s:.0f} samples/s "
          f"(threads {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
