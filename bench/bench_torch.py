#!/usr/bin/python3
"""The PyTorch side of bench/run.py: one workload per run, timed as bench_lathe times it.

    /usr/bin/python3 bench/bench_torch.py resnet18 --batch 8 --size 224 --threads 2 [--channels-last]
    /usr/bin/python3 bench/bench_torch.py fashion | matmul --n 2048

resnet18 is torchvision's ResNet-18 (1000 classes); fashion is the CNN of
examples/fashion_torch.py.  A training step is zero_grad, forward, mean
cross-entropy, backward and SGD(lr=0.01, momentum=0.9).step(), on a new random
batch each step (made before the step's clock starts).  matmul is numpy's
a @ b in f32, which is OpenBLAS's sgemm (its threads: OPENBLAS_NUM_THREADS,
set by the caller).  Prints one line:

    result workload=resnet18 batch=8 size=224 threads=2 layout=nchw steps=5 median_ms=... min_ms=... maxrss_mb=...

Needs Debian's python3-torch and python3-torchvision (benchmarks only: nothing
else in Lathe does).
"""
import argparse
import os
import resource
import statistics
import sys
import time

import numpy as np


def result(**kv):
    print("result " + " ".join(f"{k}={v}" for k, v in kv.items()), flush=True)


def maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def train_steps(a, model, shape, classes, extra):
    import torch
    import torch.nn.functional as F

    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    gen = torch.Generator().manual_seed(1)
    times = []
    for i in range(a.warmup + a.steps):
        x = torch.rand(shape, generator=gen) * 2 - 1
        if a.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (shape[0],), generator=gen)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    result(workload=a.workload, **extra, threads=torch.get_num_threads(),
           layout="channels_last" if a.channels_last else "nchw", steps=a.steps,
           median_ms=f"{1e3 * statistics.median(times):.3f}", min_ms=f"{1e3 * min(times):.3f}",
           maxrss_mb=f"{maxrss_mb():.1f}", loss=f"{loss.item():.4g}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload", choices=["resnet18", "fashion", "matmul"])
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--channels-last", action="store_true")
    a = p.parse_args()

    if a.workload == "matmul":
        rng = np.random.default_rng(2)
        x = rng.random((a.n, a.n), dtype=np.float32)
        w = rng.random((a.n, a.n), dtype=np.float32)
        times = []
        for i in range(a.warmup + a.steps):
            t = time.perf_counter()
            x @ w
            if i >= a.warmup:
                times.append(time.perf_counter() - t)
        md = statistics.median(times)
        result(workload="matmul", n=a.n, threads=os.environ.get("OPENBLAS_NUM_THREADS", "default"), steps=a.steps,
               median_ms=f"{1e3 * md:.3f}", min_ms=f"{1e3 * min(times):.3f}",
               gflops=f"{2.0 * a.n ** 3 / md / 1e9:.1f}", maxrss_mb=f"{maxrss_mb():.1f}")
        return

    import torch

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.workload == "resnet18":
        import torchvision

        batch = a.batch or 1
        model = torchvision.models.resnet18(num_classes=1000)
        train_steps(a, model, (batch, 3, a.size, a.size), 1000, {"batch": batch, "size": a.size})
    else:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
        from fashion_torch import Net

        batch = a.batch or 64
        train_steps(a, Net(), (batch, 1, 28, 28), 10, {"batch": batch})


if __name__ == "__main__":
    main()
