#!/usr/bin/python3
"""Data-parallel training on this machine: Lathe's ranks against PyTorch DDP (issue 15).

    /usr/bin/python3 bench/ddp.py [--build build] [--repeat 3] [--steps N] [--only lathe|torch]

The Fashion-MNIST CNN (examples/fashion_cnn.lathe; in PyTorch the Net of
examples/fashion_torch.py, the same layers and PyTorch's default
initialization) trained at a global batch of 64 with SGD (lr 0.05, momentum
0.9), shuffled, for one epoch (937 steps, 59968 samples: the last partial
batch dropped, as Lathe's trainer does) or for --steps N steps (the same N for
every configuration; a quick run).  The configurations, each as separate
processes, interleaved over --repeat rounds:

  (a) Lathe, 1 process x 2 threads     the native trainer, --threads 2
  (b) Lathe, 1 process x 1 thread      --threads 1
  (c) Lathe, 2 ranks x 1 thread        mpirun --bind-to none -np 2 TRAINER --threads 1
                                       (synchronized batch norm, overlapped gathers)
  (g) the same with --local-bn         batch norm per rank, as DDP's default
  (h) the same with --no-overlap       each gather at once
  (d) PyTorch, 1 process x 1 thread    torch.set_num_threads(1)
  (e) PyTorch DDP, 2 ranks x 1 thread  gloo on 127.0.0.1, each rank 32 of each
                                       global batch of 64 (DistributedSampler's
                                       sharding: the batch's samples rank::2)

The trainer is built here, into a temporary directory, by
`BUILD/lathe compile examples/fashion_cnn.lathe -o TRAINER --ranks 1,2`; a
lathe that does not know --ranks compiles it without, and (c) is reported
as unavailable (as it is when mpirun fails).  Lathe's figure is the samples/s
of its summary line (its training loop only: after loading the data and, for
(c), starting MPI).  PyTorch's is timed the same way: its training loop only
(data read from the IDX .gz files with gzip and numpy beforehand, pixels /255,
no normalization; the process group set up and the ranks at a barrier before
the clock starts, and at one after it stops), the same shuffled epochs
(torch.randperm), batches gathered from the tensors in the loop.  DDP runs
with its defaults: plain BatchNorm per rank (statistics of the rank's 32
samples; rank 0's running statistics broadcast each step), not SyncBatchNorm;
SyncBatchNorm is tried once as well and reported if this PyTorch runs it on
CPU with gloo.  PyTorch processes run with OMP_NUM_THREADS, MKL_NUM_THREADS
and OPENBLAS_NUM_THREADS set to 1.

Figures: each configuration's median samples/s over the rounds (min-max), then
Lathe 2 ranks / PyTorch DDP 2 ranks (target >= 2), each one's scaling
efficiency, (2 ranks x 1 thread) / (2 x 1 process x 1 thread) (Lathe's target
>= 0.90), and Lathe's 2 ranks against its 1 process x 2 threads.

Needs Debian's python3-torch and python3-numpy, Open MPI's mpirun and the
Fashion-MNIST files (/usr/share/datasets/fashion-mnist).  A full run (three
rounds of seven epochs; PyTorch's on one thread is the longest, about 35 s on
a 2-core Xeon) takes about 6 minutes; --steps 100 --repeat 1 about 15 s.
"""
import argparse
import datetime
import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = "/usr/share/datasets/fashion-mnist"
BATCH = 64
LR, MOMENTUM = 0.05, 0.9

# the PyTorch processes' thread pools: one thread each
TORCH_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


# --- PyTorch: one process of a run (--torch-worker), one rank of a DDP run ---

def load_idx(name):
    """One IDX .gz file as a numpy array (big-endian header, uint8 data)."""
    import gzip

    import numpy as np

    with gzip.open(os.path.join(DATA, name), "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def torch_worker(a):
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    rank, world = a.rank, a.world
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world)
    x = torch.from_numpy(load_idx("train-images-idx3-ubyte.gz").astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(load_idx("train-labels-idx1-ubyte.gz").astype(np.int64))
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    from fashion_torch import Net

    torch.manual_seed(0)  # the same initialization on every rank (DDP also broadcasts rank 0's)
    model = Net().train()
    if world > 1:
        if a.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    n = x.shape[0]
    spe = n // BATCH  # 937: the last partial batch dropped, as Lathe's trainer does
    total = a.steps if a.steps > 0 else spe
    gen = torch.Generator().manual_seed(0)  # the same order on every rank
    if world > 1:
        dist.barrier()
    t0 = time.perf_counter()
    step, perm = 0, None
    while step < total:
        if step % spe == 0:
            perm = torch.randperm(n, generator=gen)
        b = step % spe
        idx = perm[b * BATCH:(b + 1) * BATCH][rank::world]  # DistributedSampler's shard of the global batch
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
    last = loss.item()
    if world > 1:
        dist.barrier()
    elapsed = time.perf_counter() - t0
    if rank == 0:
        print(f"result samples_per_s={step * BATCH / elapsed:.1f} steps={step} samples={step * BATCH} "
              f"seconds={elapsed:.3f} final_loss={last:.4f} threads={torch.get_num_threads()}", flush=True)
    if world > 1:
        dist.destroy_process_group()


# --- the driver ---

class Unavailable(Exception):
    """A configuration that cannot run here: the message says what failed, .why why."""

    def __init__(self, msg, why=None):
        super().__init__(msg)
        self.why = why or msg


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_with(extra):
    e = dict(os.environ)
    e.update(extra)
    return e


def run_group(cmds, env, timeout):
    """Start every (cmd, env) at once; return their outputs, or raise
    Unavailable (ending the others) when one fails."""
    procs = []
    outs = {}
    for cmd, extra in cmds:
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=env_with({**env, **extra})))
    deadline = time.monotonic() + timeout
    try:
        pending = list(range(len(procs)))
        while pending:
            for i in list(pending):
                if procs[i].poll() is not None:
                    out, err = procs[i].communicate()
                    outs[i] = (out, err)
                    pending.remove(i)
                    if procs[i].returncode != 0:
                        # the error: a traceback's last line; under mpirun, the first line that is not its banner
                        msg = [ln.strip() for ln in (err + out).splitlines() if ln.strip().strip("-")]
                        why = (msg[0] if cmds[i][0][0] == "mpirun" else msg[-1]) if msg else "no output"
                        raise Unavailable(f"{shlex.join(cmds[i][0])} failed ({procs[i].returncode}): {why}", why)
            if time.monotonic() > deadline:
                raise Unavailable(f"{shlex.join(cmds[0][0])}: no result after {timeout} s")
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return [outs[i] for i in range(len(procs))]


def torch_run(a, world, sync_bn=False):
    cmd = ["/usr/bin/python3", os.path.abspath(__file__), "--torch-worker", "--world", str(world)]
    if a.steps:
        cmd += ["--steps", str(a.steps)]
    if sync_bn:
        cmd.append("--sync-bn")
    port = str(free_port())
    cmds = [(cmd + ["--rank", str(r)], {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(r),
                                        "WORLD_SIZE": str(world)}) for r in range(world)]
    outs = run_group(cmds, TORCH_ENV, a.timeout)
    m = re.search(r"^result samples_per_s=([0-9.]+) .*final_loss=(\S+)", outs[0][0], re.M)
    if not m:
        raise Unavailable(f"no result from {shlex.join(cmds[0][0])}:\n{outs[0][1]}{outs[0][0]}")
    return float(m.group(1)), m.group(2)


SUMMARY = re.compile(r"(\d+) steps? \((\d+) samples, .*?\) in [0-9.]+ s, ([0-9.]+) samples/s; final loss (\S+)")


def lathe_run(a, trainer, threads, ranks, extra=()):
    flags = ["--data", DATA, "--lr", str(LR), "--momentum", str(MOMENTUM), "--shuffle", "--seed", "0",
             "--threads", str(threads), "--log-every", "0", *extra]
    flags += ["--steps", str(a.steps)] if a.steps else ["--epochs", "1"]
    cmd = [trainer, *flags]
    if ranks > 1:
        root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
        cmd = ["mpirun", *root, "--oversubscribe", "--bind-to", "none", "-np", str(ranks), *cmd]
    env = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"} if ranks > 1 else {}
    (out, err), = run_group([(cmd, {})], env, a.timeout)
    m = SUMMARY.search(out)
    if not m:
        raise Unavailable(f"no summary line from {shlex.join(cmd)}:\n{err}{out}")
    steps, samples, sps = int(m.group(1)), int(m.group(2)), float(m.group(3))
    per_step = samples / steps if steps else BATCH
    if ranks > 1 and abs(per_step * ranks - BATCH) < 1e-9:
        sps *= ranks  # rank 0 counted its own samples: the run's are ranks times as many
    elif abs(per_step - BATCH) > 1e-9:
        print(f"ddp.py: note: {shlex.join(cmd)} reports {per_step:g} samples a step, not {BATCH}", file=sys.stderr)
    return sps, m.group(4)


def compile_trainer(a, tmp):
    """Build the native trainer; returns (path, whether it has the 2-rank program, note)."""
    lathe = os.path.join(a.build, "lathe")
    trainer = os.path.join(tmp, "fashion_cnn")
    base = [lathe, "compile", os.path.join(ROOT, "examples", "fashion_cnn.lathe"), "-o", trainer]
    p = subprocess.run(base + ["--ranks", "1,2"], capture_output=True, text=True)
    if p.returncode == 0:
        return trainer, True, None
    first = (p.stderr.strip() or p.stdout.strip() or f"exit status {p.returncode}").splitlines()[0]
    q = subprocess.run(base, capture_output=True, text=True)
    if q.returncode != 0:
        sys.exit(f"ddp.py: {shlex.join(base)} failed ({q.returncode}):\n{q.stderr}{q.stdout}")
    return trainer, False, f"`lathe compile ... --ranks 1,2` failed ({first}): the trainer, compiled without " \
                           "--ranks, has no 2-rank program"


def fmt(xs):
    if not xs:
        return "unavailable", ""
    return f"{statistics.median(xs):.0f}", f"{min(xs):.0f}-{max(xs):.0f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build"), help="Lathe's build directory (default: build)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--steps", type=int, default=0, help="N steps of each configuration instead of an epoch")
    p.add_argument("--only", choices=["lathe", "torch"], help="only Lathe's or only PyTorch's configurations")
    p.add_argument("--timeout", type=int, default=1800, help=argparse.SUPPRESS)
    # one PyTorch process (internal)
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--world", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--sync-bn", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.torch_worker:
        return torch_worker(a)
    if a.steps < 0 or a.repeat < 1:
        p.error("--steps must be >= 0 and --repeat >= 1")
    a.build = os.path.abspath(a.build)
    if a.only != "torch" and not os.access(os.path.join(a.build, "lathe"), os.X_OK):
        p.error(f"no {os.path.join(a.build, 'lathe')}: build Lathe first (./setup.sh) or name its build with --build "
                "(or --only torch)")

    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    length = f"{a.steps} steps" if a.steps else "one epoch (937 steps)"
    versions = []
    do_lathe, do_torch = a.only in (None, "lathe"), a.only in (None, "torch")
    if do_lathe:
        v = subprocess.run([os.path.join(a.build, "lathe"), "--version"], capture_output=True, text=True)
        versions.append(v.stdout.strip() or "lathe ?")
    if do_torch:
        v = subprocess.run(["/usr/bin/python3", "-c", "import torch; print(torch.__version__)"], capture_output=True,
                           text=True, env=env_with(TORCH_ENV))
        versions.append(f"PyTorch {v.stdout.strip() or '?'} (gloo)")
    print(f"machine: {cpu}, {os.cpu_count()} cores; {', '.join(versions)}")
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"Fashion-MNIST CNN, global batch {BATCH}, SGD lr {LR} momentum {MOMENTUM}, shuffled; "
          f"each figure: median samples/s of {a.repeat} interleaved rounds of {length}\n", flush=True)

    configs = []  # (key, label, run)
    notes = []
    with tempfile.TemporaryDirectory(prefix="lathe-ddp-") as tmp:
        if do_lathe:
            trainer, ranked, note = compile_trainer(a, tmp)
            configs += [("a", "Lathe, 1 process × 2 threads", lambda: lathe_run(a, trainer, 2, 1)),
                        ("b", "Lathe, 1 process × 1 thread", lambda: lathe_run(a, trainer, 1, 1))]
            configs.append(("c", "Lathe, 2 ranks × 1 thread (mpirun), synchronized BatchNorm",
                            lambda: lathe_run(a, trainer, 1, 2)))
            if ranked:  # the same with DDP's batch norm, and without overlap
                local = trainer + "_local_bn"
                q = subprocess.run([os.path.join(a.build, "lathe"), "compile",
                                    os.path.join(ROOT, "examples", "fashion_cnn.lathe"), "-o", local, "--ranks", "1,2",
                                    "--local-bn"], capture_output=True, text=True)
                if q.returncode == 0:
                    configs.append(("g", "Lathe, 2 ranks × 1 thread (mpirun), BatchNorm per rank (--local-bn)",
                                    lambda: lathe_run(a, local, 1, 2)))
                configs.append(("h", "Lathe, 2 ranks × 1 thread (mpirun), synchronized BatchNorm, --no-overlap",
                                lambda: lathe_run(a, trainer, 1, 2, ["--no-overlap"])))
        if do_torch:
            configs += [("d", "PyTorch, 1 process × 1 thread", lambda: torch_run(a, 1)),
                        ("e", "PyTorch DDP (gloo), 2 ranks × 1 thread, BatchNorm per rank",
                         lambda: torch_run(a, 2)),
                        ("f", "PyTorch DDP (gloo), 2 ranks × 1 thread, SyncBatchNorm",
                         lambda: torch_run(a, 2, sync_bn=True))]
        sps = {k: [] for k, _, _ in configs}
        loss = {}
        dead = {"c": note} if do_lathe and not ranked else {}
        for r in range(a.repeat):
            done = []
            for k, label, run in configs:
                if k in dead:
                    continue
                try:
                    s, lo = run()
                except Unavailable as e:
                    dead[k] = e
                    done.append(f"{k} failed")
                    continue
                sps[k].append(s)
                loss[k] = lo
                done.append(f"{k} {s:.0f}")
            print(f"round {r + 1}/{a.repeat}: " + ", ".join(done) + " samples/s", file=sys.stderr, flush=True)

    if "f" in dead:  # SyncBatchNorm: an extra, reported only when it runs
        notes.append(f"PyTorch DDP with SyncBatchNorm did not run here ({dead.pop('f').why}); "
                     "only plain per-rank BatchNorm is reported")
        configs = [c for c in configs if c[0] != "f"]

    print("| configuration | samples/s (median) | min-max | final loss (last round) |")
    print("| --- | --- | --- | --- |")
    for k, label, _ in configs:
        med, rng = fmt(sps[k])
        print(f"| ({k}) {label} | {med} | {rng} | {loss.get(k, '')} |")
    print()

    def m(k):
        return statistics.median(sps[k]) if sps.get(k) else None

    def ratio(num, den, what, target=None, scale=1.0):
        if num is None or den is None:
            print(f"- {what}: unavailable")
            return
        v = num / (scale * den)
        t = f" (target >= {target:.2f}: {'met' if v >= target else 'not met'})" if target else ""
        print(f"- {what}: {v:.2f}{t}")

    if do_lathe and do_torch:
        ratio(m("c"), m("e"), "Lathe 2 ranks / PyTorch DDP 2 ranks, (c)/(e)", 2.0)
        ratio(m("g"), m("e"), "the same, both with BatchNorm per rank, (g)/(e)", 2.0)
        ratio(m("b"), m("d"), "Lathe / PyTorch, 1 process × 1 thread, (b)/(d)")
    if do_lathe:
        ratio(m("c"), m("b"), "Lathe scaling efficiency, (c) / (2 × (b))", 0.90, scale=2.0)
        ratio(m("c"), m("h"), "Lathe 2 ranks with overlap / without, (c)/(h)")
    if do_torch:
        ratio(m("e"), m("d"), "PyTorch DDP scaling efficiency, (e) / (2 × (d))", scale=2.0)
    if do_lathe:
        ratio(m("c"), m("a"), "Lathe 2 ranks × 1 thread / 1 process × 2 threads, (c)/(a)")
    for k, why in dead.items():
        notes.append(f"({k}) unavailable: {why}")
    if do_torch:
        notes.append("PyTorch DDP runs with its defaults: plain BatchNorm per rank (each rank's 32 samples), "
                     "not SyncBatchNorm")
    notes.append(f"load average after: {os.getloadavg()[0]:.2f} (other processes on these cores skew the figures, "
                 "Lathe's 2-thread ones most)")
    for n in notes:
        print(f"note: {n}")


if __name__ == "__main__":
    main()
