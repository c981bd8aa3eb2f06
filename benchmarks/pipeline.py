"""Training throughput: the device-resident data path vs a conventional torchvision DataLoader.

Same model, batch, optimiser and step; only the data path differs:
  (a) device-resident: the whole training split is one uint8 tensor on the device; a batch is
      a gather by index plus islab.data.prepare_batch (per-example crop + flip, normalise) there;
  (b) DataLoader: torchvision RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor +
      Normalize per image on CPU workers, then a host-to-device copy.
Prints images/s for both and their ratio.  Default: a small CPU size on the generated
CIFAR-shaped set; `--preset cifar` uses 50,000 CIFAR-shaped images and VGG-19-BN on a GPU.

    python benchmarks/pipeline.py                       # CPU, resnet20, 1,024 images
    python benchmarks/pipeline.py --preset cifar        # GPU: vgg19_bn, 50k images, batch 128
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from islab import cli  # noqa: E402
from islab.data import load_dataset, prepare_batch  # noqa: E402
from islab.models import MODELS  # noqa: E402
from islab.seeding import torch_generator  # noqa: E402
from islab.train import new_model, pick_device  # noqa: E402


def sgd_step(model, opt, x, y, amp):
    """The one step both arms share (forward, cross-entropy, backward, update)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        loss = F.cross_entropy(model(x).float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def device_resident(ds, model, opt, args, device, amp):
    gen = torch_generator(0, "augment", device=device)
    order = torch_generator(0, "order", device=device)
    n, b, seen = len(ds.train), args.batch_size, 0
    for _ in range(args.warmup):
        idx = torch.randint(0, n, (b,), generator=order, device=device)
        sgd_step(model, opt, prepare_batch(ds, ds.train.x[idx], True, gen), ds.train.y[idx], amp)
    sync(device)
    t = time.perf_counter()
    for _ in range(args.epochs):
        perm = torch.randperm(n, generator=order, device=device)
        for s in range(0, n - b + 1, b):
            idx = perm[s:s + b]
            sgd_step(model, opt, prepare_batch(ds, ds.train.x[idx], True, gen), ds.train.y[idx], amp)
            seen += b
    sync(device)
    return seen / (time.perf_counter() - t)


def dataloader(ds, model, opt, args, device, amp):
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, Dataset

    tf = T.Compose([T.RandomCrop(ds.input_shape[1], padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(ds.mean, ds.std)])
    images = ds.train.x.permute(0, 2, 3, 1).cpu().numpy()  # HWC uint8, as torchvision datasets hold it
    labels = ds.train.y.cpu().numpy()

    class Images(Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            from PIL import Image

            return tf(Image.fromarray(images[i])), int(labels[i])

    loader = DataLoader(Images(), batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=args.workers, pin_memory=device.type == "cuda",
                        persistent_workers=args.workers > 0)
    it = iter(loader)
    for _ in range(args.warmup):
        x, y = next(it)
        sgd_step(model, opt, x.to(device, non_blocking=True), y.to(device, non_blocking=True), amp)
    sync(device)
    seen, t = 0, time.perf_counter()
    for _ in range(args.epochs):
        for x, y in loader:
            sgd_step(model, opt, x.to(device, non_blocking=True), y.to(device, non_blocking=True), amp)
            seen += len(y)
    sync(device)
    return seen / (time.perf_counter() - t)


def main(argv=None):
    p = cli.make_parser(__doc__.split("\n")[0])
    p.add_argument("--preset", choices=["cpu", "cifar"], default="cpu",
                   help="cpu: resnet20 on 1,024 generated images; cifar: vgg19_bn on 50,000 generated CIFAR-shaped images")
    p.add_argument("--model", choices=sorted(MODELS), metavar="MODEL",
                   help=f"registry model (default: the preset's), one of {', '.join(MODELS)}")
    p.add_argument("--n", type=cli.positive_int, help="training images (default: the preset's)")
    p.add_argument("--batch-size", type=cli.positive_int, default=128, help="images per step")
    p.add_argument("--epochs", type=cli.positive_int, default=1, help="timed passes over the images")
    p.add_argument("--warmup", type=cli.nonnegative_int, default=3, help="untimed steps first (cudnn autotune)")
    p.add_argument("--workers", type=cli.nonnegative_int, default=2, help="DataLoader worker processes")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = p.parse_args(argv)
    model_name = args.model or {"cpu": "resnet20", "cifar": "vgg19_bn"}[args.preset]
    n = args.n or {"cpu": 1024, "cifar": 50000}[args.preset]
    try:
        device = pick_device(args.device, arg="--device")
    except ValueError as e:
        cli.fail(str(e))
    amp = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    ds = load_dataset("fake_cifar", train_size=n, device=device)
    out = {}
    for name, arm in (("device-resident", device_resident), ("DataLoader", dataloader)):
        model = new_model(model_name, ds, 0, device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        out[name] = arm(ds, model, opt, args, device, amp)
        print(f"{name:16s} {out[name]:9.1f} images/s  ({model_name}, batch {args.batch_size}, n {n}, "
              f"{device.type}, torch threads {torch.get_num_threads()})", flush=True)
    print(f"ratio device-resident / DataLoader = {out['device-resident'] / out['DataLoader']:.2f}")
    return out


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    cli.run_main(main)
