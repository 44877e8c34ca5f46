#!/usr/bin/python3
"""Lathe against PyTorch on this machine, every figure from one invocation.

    /usr/bin/python3 bench/run.py [--build build] [--repeat 3] [--quick] [--only NAME,...]

Each workload runs as separate processes, interleaved: Lathe (bench_lathe,
2 threads), then PyTorch (bench_torch.py) with 1 and 2 threads, NCHW and
channels_last, repeated --repeat times; a figure is the median over the
repeats of each process's median step.  PyTorch's figure is its best setting.
Ratio = PyTorch best / Lathe: above 1 means Lathe is faster.  "% of peak" is
the contractions' FLOPs of a step over its time, against the fp32 FMA peak
measured here (bench_lathe peak).  PyTorch runs with OPENBLAS_NUM_THREADS=1
(its own threads do the work; two pools would fight over two cores); numpy's
matmul (OpenBLAS) runs with OPENBLAS_NUM_THREADS set to the thread count and
OPENBLAS_CORETYPE removed from its environment.  Peak memory is each process's
peak resident set as it reports it (getrusage), Lathe's including JIT
compilation.

The busy neighbour: one process spinning on a core (bench_lathe spin) while
Lathe's ResNet-18 64x64 batch-1 step runs on 1 and on 2 threads.

Needs Debian's python3-torch, python3-torchvision, python3-numpy and an
OpenBLAS (libopenblas0-pthread); benchmarks only.  The epoch figures take
minutes (PyTorch's Fashion-MNIST epoch on one thread is about two):
--quick skips them and runs fewer, shorter repeats.
"""
import argparse
import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(cmd, env=None):
    """Run cmd; return its "result" line as a dict."""
    e = dict(os.environ)
    e.update(env or {})
    for k in [k for k, v in e.items() if v is None]:
        del e[k]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, text=True)
    out, err = p.communicate()
    if p.returncode != 0:
        sys.exit(f"run.py: {shlex.join(cmd)} failed ({p.returncode}):\n{err}{out}")
    for line in out.splitlines():
        if line.startswith("result "):
            d = {}
            rest = line[len("result "):]
            while rest:
                k, _, rest = rest.partition("=")
                if k == "desc":
                    d[k], rest = rest, ""
                    break
                v, _, rest = rest.partition(" ")
                d[k] = v
            return d
    sys.exit(f"run.py: no result from {shlex.join(cmd)}:\n{err}{out}")


def lathe(build, *args):
    return [os.path.join(build, "bench_lathe"), *args]


def torch(*args):
    return ["/usr/bin/python3", os.path.join(HERE, "bench_torch.py"), *args]


TORCH_ENV = {"OPENBLAS_NUM_THREADS": "1"}


def med(rs, key="median_ms"):
    return statistics.median(float(r[key]) for r in rs)


def step_workload(a, name, largs, targs, layouts=True, steps=None):
    """Interleaved runs of one training-step workload; returns a row."""
    steps = steps or ["--steps", str(a.steps)]
    variants = [(t, cl) for t in (1, 2) for cl in ((False, True) if layouts else (False,))]
    lr, tr = [], {v: [] for v in variants}
    for _ in range(a.repeat):
        lr.append(run(lathe(a.build, *largs, "--threads", "2", *steps)))
        for (t, cl) in variants:
            tr[(t, cl)].append(run(torch(*targs, "--threads", str(t), *steps, *(["--channels-last"] if cl else [])),
                                   TORCH_ENV))
    lathe_ms = med(lr)
    best = min(variants, key=lambda v: med(tr[v]))
    torch_ms = med(tr[best])
    gflop = float(lr[0].get("gflop", 0))
    return {"name": name, "lathe_ms": lathe_ms, "torch_ms": torch_ms,
            "torch_best": f"{best[0]} thread{'s' if best[0] > 1 else ''}, {'channels_last' if best[1] else 'NCHW'}",
            "gflop": gflop, "lathe_rss": max(float(r["maxrss_mb"]) for r in lr),
            "torch_rss": max(float(r["maxrss_mb"]) for r in tr[best]),
            "all_torch": {f"{t}t{' cl' if cl else ''}": med(tr[(t, cl)]) for (t, cl) in variants}}


def matmul_workload(a, n):
    lr, nr = [], []
    env = {"OPENBLAS_NUM_THREADS": "2", "OPENBLAS_CORETYPE": None}
    for _ in range(a.repeat):
        lr.append(run(lathe(a.build, "matmul", "--n", str(n), "--threads", "2", "--steps", str(a.steps))))
        nr.append(run(torch("matmul", "--n", str(n), "--steps", str(a.steps)), env))
    return {"name": f"matmul {n}³ (numpy/OpenBLAS)", "lathe_ms": med(lr), "torch_ms": med(nr), "torch_best": "2 threads",
            "gflop": 2.0 * n ** 3 / 1e9, "lathe_rss": max(float(r["maxrss_mb"]) for r in lr),
            "torch_rss": max(float(r["maxrss_mb"]) for r in nr)}


def epoch_workload(a):
    """One Fashion-MNIST epoch: Lathe's native trainer against fashion_torch.py."""
    data = "/usr/share/datasets/fashion-mnist"
    trainer = os.path.join(a.build, "bench_fashion_cnn")
    subprocess.run([os.path.join(a.build, "lathe"), "compile", os.path.join(ROOT, "examples", "fashion_cnn.lathe"),
                    "-o", trainer], check=True, capture_output=True)
    flags = ["--lr", "0.05", "--momentum", "0.9", "--shuffle", "--eval"]
    lt, tt = [], {1: [], 2: []}
    for _ in range(a.epoch_repeat):
        p = subprocess.run([trainer, "--data", data, "--epochs", "1", "--threads", "2", "--log-every", "0", *flags],
                           check=True, capture_output=True, text=True)
        # "fashion_cnn: 937 steps (59968 samples, 1 full epochs) in 9.8 s, 6116 samples/s; ..."
        sps = [w for w in p.stdout.split(",") if "samples/s" in w][0]
        lt.append(59968 / float(sps.split()[0]))
        acc_l = p.stdout.strip().splitlines()[-1]
        for t in (1, 2):
            q = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "examples", "fashion_torch.py"), "--threads",
                                str(t)], check=True, capture_output=True, text=True, env={**os.environ, **TORCH_ENV})
            line = [ln for ln in q.stdout.splitlines() if ln.startswith("train time")][0]
            tt[t].append(float(line.split()[2]))
    best = min(tt, key=lambda t: statistics.median(tt[t]))
    return {"name": "Fashion CNN epoch (60000 samples, with evaluation in Lathe's)", "lathe_ms": 1e3 * statistics.median(lt),
            "torch_ms": 1e3 * statistics.median(tt[best]), "torch_best": f"{best} thread{'s' if best > 1 else ''}",
            "gflop": 0, "note": acc_l}


def neighbour(a):
    spin = subprocess.Popen(lathe(a.build, "spin"))
    try:
        r = {1: [], 2: []}
        for _ in range(a.repeat):
            for t in (1, 2):
                # past the executor's first runs, which use every thread whatever the machine
                r[t].append(run(lathe(a.build, "resnet18", "--threads", str(t), "--warmup", "24",
                                      "--steps", str(3 * a.steps))))
    finally:
        spin.kill()
        spin.wait()
    return {t: med(r[t]) for t in (1, 2)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--epoch-repeat", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default="", help="comma-separated: resnet,fashion,matmul,epoch,compile,neighbour")
    a = p.parse_args()
    if a.quick:
        a.repeat, a.steps = 1, 3
    only = set(a.only.split(",")) if a.only else {"resnet", "fashion", "matmul", "epoch", "compile", "neighbour"}
    if a.quick:
        only.discard("epoch")

    cpu = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")][0]
    target = run(lathe(a.build, "target"))["desc"]
    peak = statistics.median(float(run(lathe(a.build, "peak", "--threads", "2"))["gflops"]) for _ in range(3))
    print(f"machine: {cpu}, {os.cpu_count()} cores; Lathe's target: {target}")
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
          f"measured fp32 FMA peak, 2 threads: {peak:.0f} GFLOP/s")
    print(f"each figure: median of {a.repeat} interleaved runs of {a.steps} timed steps\n")

    rows = []
    if "resnet" in only:
        for batch, size in ((1, 64), (32, 64), (8, 224)):
            args = ["resnet18", "--batch", str(batch), "--size", str(size)]
            rows.append(step_workload(a, f"ResNet-18 step, {batch}×3×{size}×{size}", args, args))
    if "fashion" in only:
        rows.append(step_workload(a, "Fashion CNN step, batch 64", ["fashion"], ["fashion"], layouts=False))
    if "matmul" in only:
        for n in (1024, 2048):
            rows.append(matmul_workload(a, n))
    if "epoch" in only:
        rows.append(epoch_workload(a))

    print("| workload | Lathe | PyTorch best | PyTorch's setting | ratio | Lathe % of peak | peak RSS Lathe / PyTorch |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        pct = f"{100 * r['gflop'] / (r['lathe_ms'] / 1e3) / peak:.0f}%" if r["gflop"] else ""
        rss = f"{r['lathe_rss']:.0f} / {r['torch_rss']:.0f} MB" if "lathe_rss" in r else ""
        unit = "s" if r["lathe_ms"] > 5000 else "ms"
        sc = 1e-3 if unit == "s" else 1
        print(f"| {r['name']} | {r['lathe_ms'] * sc:.1f} {unit} | {r['torch_ms'] * sc:.1f} {unit} | {r['torch_best']} | "
              f"{r['torch_ms'] / r['lathe_ms']:.2f} | {pct} | {rss} |")
    for r in rows:
        if "all_torch" in r:
            print(f"  {r['name']}: PyTorch " + ", ".join(f"{k} {v:.1f} ms" for k, v in r["all_torch"].items()))
        if "note" in r:
            print(f"  {r['name']}: Lathe's {r['note']}")
    if "compile" in only:
        c = []
        for _ in range(a.repeat):  # cold: an empty cache; warm: the same graph again, its code cached
            with tempfile.TemporaryDirectory() as cache:
                c.append(run(lathe(a.build, "compile"), {"LATHE_CACHE_DIR": cache}))
        print(f"\nResNet-18 training graph (1×3×64×64), JIT compile: cold {med(c, 'cold_s'):.3f} s (empty cache), "
              f"warm {med(c, 'warm_s'):.3f} s (code from the cache), {c[0]['kernels']} kernels")
    if "neighbour" in only:
        nb = neighbour(a)
        print(f"busy neighbour (one spinning process), ResNet-18 1×3×64×64 step: 1 thread {nb[1]:.1f} ms, "
              f"2 threads {nb[2]:.1f} ms ({nb[1] / nb[2]:.2f}x)")


if __name__ == "__main__":
    main()
