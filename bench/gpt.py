#!/usr/bin/python3
"""Lathe's char_gpt against the same GPT in PyTorch eager, in one run.

    /usr/bin/python3 bench/gpt.py [--build build] [--steps 2000] [--speed-steps 200] [--repeat 3]

The model is examples/char_gpt.lathe (4 layers, 4 heads, width 128, context
64, batch 32, dropout 0.1, bytes as tokens) and, in PyTorch, the GPT class of
tests/fixtures/make_seq_fixtures.py (nanoGPT's structure, PyTorch's default
initialization of each module).  Both train on Debian's fortunes
(/usr/share/games/fortunes: its text files in name order, 2.58 MB) with
AdamW (lr 1e-3, weight decay 0.1 on every parameter, betas 0.9/0.999), the
first 90% of the bytes cut into windows of 65 bytes at a stride of 64, in
the same shuffled order (Lathe's lathe_ds_permutation, reimplemented here).

Speed: --speed-steps steps of each, interleaved --repeat times (Lathe's
native trainer on 2 threads; PyTorch on 1 and on 2 threads), the median
tokens/s of each; PyTorch's figure is its best thread setting, timed from
its 10th step.  Ratio = Lathe / PyTorch.
Loss: --steps steps of each (PyTorch at its best thread setting), then the
mean loss per token over every window of the last 10% of the bytes.
Needs Debian's python3-torch and the fortunes package; minutes to run.
"""
import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = "/usr/share/games/fortunes"
T, B, V = 64, 32, 256
M64 = (1 << 64) - 1


def corpus_bytes(path=CORPUS):
    """What text:DIR reads: regular files, no symbolic links, no NUL bytes, by name."""
    out = b""
    for name in sorted(os.listdir(path), key=lambda s: s.encode()):
        if name.startswith("."):
            continue
        full = os.path.join(path, name)
        if os.path.islink(full) or not os.path.isfile(full):
            continue
        data = open(full, "rb").read()
        if b"\0" not in data:
            out += data
    return out


def windows(data, validation):
    split = int(len(data) * 0.9)
    part = data[split:] if validation else data[:split]
    n = (len(part) - 1) // T
    return part, n


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def permutation(n, seed, epoch):
    """runtime/dataset.h's lathe_ds_permutation, exactly."""
    state = mix((mix(seed) + epoch) & M64)
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        bound = (1 << 64) % (i + 1)
        while True:
            state = (state + 0x9E3779B97F4A7C15) & M64
            r = mix(state)
            if r >= bound:
                break
        j = r % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def torch_worker(args):
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
    from make_seq_fixtures import GPT
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = corpus_bytes()
    part, n = windows(data, False)
    buf = torch.tensor(list(part), dtype=torch.int64)
    model = GPT().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    steps_per_epoch = n // B
    perm, epoch = None, -1
    t0 = None
    for step in range(args.steps):
        e, b = divmod(step, steps_per_epoch)
        if e != epoch:
            epoch, perm = e, torch.tensor(permutation(n, 0, e))
        idx = perm[b * B:(b + 1) * B] * T
        rows = idx[:, None] + torch.arange(T + 1)[None, :]
        w = buf[rows]
        x, y = w[:, :T], w[:, 1:]
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step == 9:
            t0 = time.perf_counter()
    elapsed = time.perf_counter() - t0
    tps = (args.steps - 10) * B * T / elapsed
    vloss = float("nan")
    if args.eval:
        model.eval()
        vpart, vn = windows(data, True)
        vbuf = torch.tensor(list(vpart), dtype=torch.int64)
        total, count = 0.0, 0
        with torch.no_grad():
            for s in range(0, vn, 256):
                idx = torch.arange(s, min(s + 256, vn)) * T
                w = vbuf[idx[:, None] + torch.arange(T + 1)[None, :]]
                lo = torch.nn.functional.cross_entropy(model(w[:, :T]).reshape(-1, V), w[:, 1:].reshape(-1),
                                                       reduction="sum")
                total += float(lo)
                count += w.shape[0] * T
        vloss = total / count
    print(f"result tokens_per_s={tps:.1f} val_loss={vloss:.5f} final_loss={float(loss):.5f}")


def run(cmd, env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(cmd, capture_output=True, text=True, env=e)
    if p.returncode != 0:
        sys.exit(f"gpt.py: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}{p.stdout}")
    return p.stdout + p.stderr


def lathe(trainer, steps, evaluate):
    out = run([trainer, "--data", "text:" + CORPUS, "--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.1",
               "--shuffle", "--seed", "0", "--steps", str(steps), "--threads", "2", "--log-every", "0"] +
              (["--eval"] if evaluate else []))
    sps = float(re.search(r"([0-9.]+) samples/s; final loss", out).group(1))
    m = re.search(r"^test loss ([0-9.]+)", out, re.M)
    return sps * T, float(m.group(1)) if m else float("nan")


def torch_run(threads, steps, evaluate):
    out = run([sys.executable, __file__, "--torch-worker", "--threads", str(threads), "--steps", str(steps)] +
              (["--eval"] if evaluate else []), env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": str(threads)})
    m = re.search(r"result tokens_per_s=([0-9.]+) val_loss=([0-9.naN]+)", out)
    return float(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--speed-steps", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--torch-worker", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval", action="store_true")
    args = ap.parse_args()
    if args.torch_worker:
        return torch_worker(args)
    trainer = os.path.join(args.build, "char_gpt")
    run([os.path.join(args.build, "lathe"), "compile", os.path.join(ROOT, "examples", "char_gpt.lathe"), "-o", trainer])
    speeds = {"lathe": [], "torch1": [], "torch2": []}
    for r in range(args.repeat):
        speeds["lathe"].append(lathe(trainer, args.speed_steps, False)[0])
        speeds["torch1"].append(torch_run(1, args.speed_steps, False)[0])
        speeds["torch2"].append(torch_run(2, args.speed_steps, False)[0])
        print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} tok/s" for k, v in speeds.items()), file=sys.stderr)
    med = {k: statistics.median(v) for k, v in speeds.items()}
    best_t = 1 if med["torch1"] >= med["torch2"] else 2
    best = med[f"torch{best_t}"]
    _, lloss = lathe(trainer, args.steps, True)
    _, tloss = torch_run(best_t, args.steps, True)
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    print(f"# char_gpt: Lathe vs PyTorch {__import__('torch').__version__} eager, {datetime.date.today()}, {cpu}, "
          f"{os.cpu_count()} cores")
    print("| | Lathe (2 threads) | PyTorch 1 thread | PyTorch 2 threads | ratio (Lathe / PyTorch best) |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| training tokens/s (median of {args.repeat} x {args.speed_steps} steps) | {med['lathe']:.0f} | "
          f"{med['torch1']:.0f} | {med['torch2']:.0f} | {med['lathe'] / best:.2f} |")
    print(f"| validation loss per byte after {args.steps} steps | {lloss:.4f} | "
          f"{tloss if best_t == 1 else float('nan'):.4f} | {tloss if best_t == 2 else float('nan'):.4f} | "
          f"{(lloss - tloss) / tloss * 100:+.1f}% |")


if __name__ == "__main__":
    main()
