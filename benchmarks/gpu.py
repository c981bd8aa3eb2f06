"""The GPU benchmark of issue 14, as one command: VGG-19-BN epochs, ResNet-20 proxies, data path.

    python benchmarks/gpu.py --out benchmarks/results/gpu.txt      # on a GPU node (~5 min on one H200)
    python benchmarks/gpu.py --smoke                               # tiny sizes on the CPU (a test)

Everything runs through the project's own code on generated CIFAR-10-shaped data (islab.data
fake_cifar: 3x32x32 uint8, 10 classes; --n training images, default 50,000 = CIFAR-10):
  1. vgg19     one VGG-19-BN epoch through islab.train.train: batch 128, bf16 autocast,
               channels_last (the CUDA defaults of TrainConfig), without and with --compile.
               Each run trains 2 epochs; the 2nd is reported (the 1st holds cudnn autotuning and,
               with compile, the compilation).  images/s = N / epoch seconds, where an epoch
               includes its test evaluation (256 images); peak = torch.cuda.max_memory_allocated.
               Goal (issue 14): <= 1 s per 50,000-image epoch on one H200 (the paper: ~9 s/epoch on
               an A100).
  2. resnet20  the proxy protocol (AUM/forgetting every step, eval snapshot, test eval): one epoch
               of one proxy, then K = 3 proxies as 3 sequential runs vs one batched islab.ensemble
               run, and their ratio (> 1: batched faster; decides the default on GPUs).
  3. pipeline  benchmarks/pipeline.py --preset cifar: the device-resident data path vs a
               torchvision DataLoader (--workers processes), same VGG-19-BN step.  Goal: >= 3x.
Prints one line per measurement and, with --out, writes them to a text file too.
"""
from __future__ import annotations

import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from islab import cli, runs  # noqa: E402
from islab.data import load_dataset, subset  # noqa: E402
from islab.ensemble import train_ensemble  # noqa: E402
from islab.train import TrainConfig, pick_device, train  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_gib(device) -> str:
    return f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device.type == "cuda" else "n/a (CPU)"


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def vgg_epochs(ds, device, args, report):
    n, labels = len(ds.train), ds.train.y.cpu().numpy()
    cuda = device.type == "cuda"
    for compiled in (False, True):
        if compiled and device.type != "cuda":
            report("vgg19    compile: skipped (islab.train compiles on CUDA only)")
            continue
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=0.05, compile=compiled)
        reset_peak(device)
        t = time.perf_counter()
        res = train(args.target, ds, labels, cfg, seed=0)
        sync(device)
        total = time.perf_counter() - t
        last = res.history[-1]
        report(f"vgg19    {args.target} compile={compiled}: epoch {last['epoch']} {last['seconds']:.2f} s = "
               f"{n / last['seconds']:.0f} images/s (N {n}, batch {args.batch_size}, "
               f"amp {cfg.amp and cuda}, channels_last {cfg.channels_last and cuda});"
               f" first epoch {res.history[0]['seconds']:.2f} s; {args.epochs} epochs {total:.1f} s; "
               f"peak {peak_gib(device)}; train loss {last['train_loss']:.3f}")


def proxy_epochs(ds, device, args, report):
    n, labels = len(ds.train), ds.train.y.cpu().numpy()
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=0.05, snapshot_epochs=(1,),
                      track_presentations=True)
    seeds = list(range(args.k))
    train(args.proxy, ds, labels, cfg, seed=99)   # warm-up: cudnn autotuning for this shape
    sync(device)
    reset_peak(device)
    t = time.perf_counter()
    one = train(args.proxy, ds, labels, cfg, seed=seeds[0])
    sync(device)
    report(f"resnet20 one {args.proxy} proxy epoch (AUM, forgetting, snapshot, test eval): "
           f"{time.perf_counter() - t:.2f} s = {n / one.history[0]['seconds']:.0f} images/s of training; "
           f"peak {peak_gib(device)}")
    t = time.perf_counter()
    for s in seeds:
        train(args.proxy, ds, labels, cfg, seed=s)
    sync(device)
    seq = time.perf_counter() - t
    train_ensemble(args.proxy, ds, labels, cfg, [99 + s for s in seeds])   # warm-up of the folded shapes
    sync(device)
    reset_peak(device)
    t = time.perf_counter()
    train_ensemble(args.proxy, ds, labels, cfg, seeds)
    sync(device)
    bat = time.perf_counter() - t
    report(f"resnet20 K={args.k} proxies, 1 epoch each: sequential {seq:.2f} s, batched {bat:.2f} s, "
           f"ratio {seq / bat:.2f} (peak batched {peak_gib(device)})")


def main(argv=None):
    p = cli.make_parser(__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--n", type=cli.positive_int, default=50000, help="generated training images")
    p.add_argument("--batch-size", type=cli.positive_int, default=128, help="images per step")
    p.add_argument("--epochs", type=cli.positive_int, default=2,
                   help="epochs per VGG run (the last is reported)")
    p.add_argument("--target", default="vgg19_bn", help="model of part 1")
    p.add_argument("--proxy", default="resnet20", help="proxy model of part 2")
    p.add_argument("--k", type=cli.positive_int, default=3, help="proxies in part 2")
    p.add_argument("--workers", type=cli.nonnegative_int, default=8,
                   help="DataLoader worker processes (part 3)")
    p.add_argument("--parts", default="vgg19,resnet20,pipeline", help="comma list of parts to run")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes on the CPU (32 images, batch 16, 1 epoch, 0 workers): checks the script")
    p.add_argument("--out", type=cli.output_file, default=None, help="also write the report lines to this text file")
    args = p.parse_args(argv)
    parts = [x for x in args.parts.split(",") if x]
    for x in parts:
        if x not in ("vgg19", "resnet20", "pipeline"):
            cli.fail(f"unknown part {x!r}; choose from vgg19, resnet20, pipeline")
    if args.smoke:
        args.device, args.n, args.batch_size, args.epochs, args.workers = "cpu", 32, 16, 1, 0
    try:
        device = pick_device(args.device, arg="--device")
    except ValueError as e:
        cli.fail(str(e))
    if device.type != "cuda" and not args.smoke and args.device == "auto":
        cli.fail("no CUDA device found: this benchmark is sized for a GPU (--smoke runs it at tiny sizes "
                 "on the CPU; --device cpu runs the full sizes there)")
    lines = []

    def report(line):
        print(line, flush=True)
        lines.append(line)

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    report(f"benchmarks/gpu.py on {device} ({gpu}), torch {torch.__version__}, "
           f"{time.strftime('%Y-%m-%d %H:%M %Z')}")
    ds = load_dataset("fake_cifar", train_size=args.n, device=device)
    if args.smoke:
        ds = replace(ds, test=subset(ds.test, range(16)))
    if "vgg19" in parts:
        vgg_epochs(ds, device, args, report)
    if "resnet20" in parts:
        proxy_epochs(ds, device, args, report)
    if "pipeline" in parts:
        import pipeline

        argv_p = ["--preset", "cifar", "--n", str(args.n), "--batch-size", str(args.batch_size),
                  "--workers", str(args.workers), "--device", str(device), "--model", args.target]
        if args.smoke:
            argv_p += ["--warmup", "1"]
        out = pipeline.main(argv_p)
        report(f"pipeline {args.target}: device-resident {out['device-resident']:.0f} images/s, DataLoader "
               f"({args.workers} workers) {out['DataLoader']:.0f} images/s, ratio "
               f"{out['device-resident'] / out['DataLoader']:.2f}")
    if args.out:
        runs.atomic_write_text(args.out, "\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    cli.run_main(main)   # bad input and OSErrors: exit 2, one line
