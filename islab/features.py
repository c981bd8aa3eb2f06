"""Frozen-backbone features for the Food-101 external-validity study (docs/dris-studies.md).

The data flow: Food-101 images (one uint8 tensor per split, resized once and cached on disk)
-> ImageNet backbones (torchvision ResNet-18, MobileNetV3-Small, EfficientNet-B0) in eval mode
-> penultimate features, extracted ONCE per backbone and cached (npz keyed by backbone, weights
and a content fingerprint of the images) -> a feature `Dataset` on which the ordinary trainer
(islab.train with the registry's `linear` model) trains linear-probe proxies -> the target, a
ResNet-50 with only its last block (layer4) and a new fc trained (`PartialFinetune`).

Why features are quantised: islab.data keeps every split as a uint8 tensor and its batch
pipeline (prepare_batch / normalise) accepts only uint8.  Rather than add a second, float
pipeline, each feature is standardised with the training split's mean and std, clipped to
+-Z_CLIP standard deviations and stored as 8 bits: x_q = round((z + Z) / (2Z) * 255).  The
dataset's mean 0.5 and std 1/(2Z) make `normalise` map x_q back to z (step 2Z/255 = 0.039 std,
so the rounding error is at most 0.02 std).  A feature split is (N, 1, D, 1): one channel, so
normalise does one operation per batch, and `linear` flattens it to D inputs.

Weights are never fetched silently: torchvision's ImageNet weights (the DEFAULT enum) are read
from --weights-dir or the torch hub cache, and a missing file raises PretrainedMissing naming the
file, the folder and the URL (download=True fetches it instead).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from islab.data import DataMissing, Dataset, Split, prepare_batch, split_indices
from islab.models import FeatureClassifier, PretrainedMissing
from islab.runs import atomic_write_with, intact, save_npz_verified
from islab.seeding import derive_seed, numpy_rng

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BACKBONES = ("resnet18", "mobilenet_v3_small", "efficientnet_b0")   # the paper's probe proxies
TARGETS = ("resnet50", "resnet18")    # resnet50 = the paper's target; resnet18 for quick checks
Z_CLIP = 5.0                          # features are clipped to +-5 training standard deviations
FEATURE_CACHE_VERSION = 1
IMAGE_CACHE_VERSION = 1


# ---------------------------------------------------------------- Food-101 images


def food101_files(data_dir) -> Path:
    """The torchvision Food-101 folder (data_dir/food-101), or DataMissing saying what to place where."""
    base = Path(data_dir) / "food-101"
    need = [base / "meta" / "train.json", base / "meta" / "test.json", base / "images"]
    missing = [str(p.relative_to(base)) for p in need if not p.exists()]
    if missing:
        raise DataMissing(f"food101 not found: {base} lacks {', '.join(missing)}; extract food-101.tar.gz "
                          f"(it unpacks to food-101/) into {data_dir}, or rerun with --download")
    return base


def _load_image(path, size: int) -> np.ndarray:
    """One RGB image as uint8 (3, size, size): shorter side resized to `size`, centre crop."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (size, size))   # JPEG: decode at a reduced scale that is still >= size
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        im = im.crop((left, top, left + size, top + size))
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def _read_split(base: Path, split: str):
    """(relative image paths, class ids, class names) in torchvision's Food101 order."""
    meta = json.loads((base / "meta" / f"{split}.json").read_text())
    classes = sorted(meta)
    files, labels = [], []
    for c in meta:   # torchvision iterates the json's own order and labels by sorted name
        files += meta[c]
        labels += [classes.index(c)] * len(meta[c])
    return files, np.asarray(labels, dtype=np.int64), classes


def _decode_cached(base: Path, files, size: int, cache_dir, log=None) -> np.ndarray:
    """Decode + resize a list of images with a thread pool, cached as one .npy per list."""
    from concurrent.futures import ThreadPoolExecutor

    key = json.dumps([IMAGE_CACHE_VERSION, str(base.resolve()), size, files])
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"food101-images-{size}px-{len(files)}-{digest}.npy" if cache_dir else None
    if path is not None and intact(path, log):   # its SHA-256 checked: a damaged file is moved aside
        try:
            arr = np.load(path)
            if arr.shape == (len(files), 3, size, size) and arr.dtype == np.uint8:
                if log:
                    log(f"images: cached ({path.name})")
                return arr
        except (OSError, ValueError):   # not an array of this code: decode again
            pass
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        arr = np.stack(list(pool.map(lambda f: _load_image(base / "images" / f"{f}.jpg", size), files)))
    if path is not None:
        atomic_write_with(path, lambda f: np.save(f, arr), verified=True)   # streamed: ~11 GB at 224 px
    if log:
        log(f"images: decoded {len(files)} at {size}x{size}")
    return arr


def load_food101(data_dir, image_size: int = 224, download: bool = False, cache_dir=None,
                 train_size: int | None = None, test_size: int | None = None, seed: int = 0,
                 device="cpu", log=None, name: str = "food101") -> Dataset:
    """Food-101 (standard 75 750 / 25 250 split) as uint8 tensors (N, 3, S, S) on `device`.

    train_size / test_size keep a seeded subset (seed's 'data' / 'test-data' streams, original
    order).  Missing files raise DataMissing (download=True fetches the archive through
    torchvision first).
    """
    if download:
        from torchvision.datasets import Food101

        try:
            Food101(root=str(data_dir), split="train", download=True)
        except (OSError, RuntimeError) as err:
            raise DataMissing(f"food101: downloading into {data_dir} failed ({err}); extract "
                              f"food-101.tar.gz into {data_dir} instead") from err
    base = food101_files(data_dir)
    splits = []
    for split, size_cap, stream in (("train", train_size, "data"), ("test", test_size, "test-data")):
        files, labels, classes = _read_split(base, split)
        if size_cap is not None and size_cap < len(files):
            keep, _ = split_indices(len(files), len(files) - int(size_cap), numpy_rng(seed, stream))
            files, labels = [files[i] for i in keep], labels[keep]
        x = _decode_cached(base, files, image_size, cache_dir, log)
        splits.append(Split(torch.from_numpy(x), torch.from_numpy(labels)))
    return Dataset(name=name, train=splits[0], test=splits[1], num_classes=len(classes),
                   input_shape=(3, image_size, image_size), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                   augment="crop_flip").to(device)


def make_fake_food101(root, classes: int = 4, train_per_class: int = 24, test_per_class: int = 8,
                      size: int = 64, seed: int = 0) -> Path:
    """Write a tiny GENERATED stand-in in torchvision's Food-101 layout under root/food-101.

    Image of class c = 128 + 50 * colour[c] + 35 * smooth pattern[c] + 40 * pixel noise, saved as
    JPEG (quality 90).  Only for tests and dry runs: it says nothing about Food-101.
    Returns root.  Existing files are kept (the same seed writes the same images).
    """
    from PIL import Image

    base = Path(root) / "food-101"
    g = torch.Generator().manual_seed(derive_seed(seed, "fake-food101"))
    colour = torch.rand(classes, 3, 1, 1, generator=g) * 2 - 1
    pattern = nn.functional.interpolate(torch.randn(classes, 1, 4, 4, generator=g), size=(size, size),
                                        mode="bilinear", align_corners=False)
    names = [f"fake_dish_{c}" for c in range(classes)]
    for split, per in (("train", train_per_class), ("test", test_per_class)):
        meta = {}
        for c, cname in enumerate(names):
            (base / "images" / cname).mkdir(parents=True, exist_ok=True)
            meta[cname] = []
            for j in range(per):
                rel = f"{cname}/{split}_{j}"
                meta[cname].append(rel)
                path = base / "images" / f"{rel}.jpg"
                if path.exists():
                    continue
                img = 128 + 50 * colour[c] + 35 * pattern[c] + 40 * torch.randn(3, size, size, generator=g)
                arr = img.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
                Image.fromarray(arr).save(path, quality=90)
        (base / "meta").mkdir(parents=True, exist_ok=True)
        (base / "meta" / f"{split}.json").write_text(json.dumps(meta))
    (base / "meta" / "classes.txt").write_text("\n".join(names) + "\n")
    return Path(root)


# ---------------------------------------------------------------- backbones and weights


def _weights_enum(name: str):
    from torchvision.models import get_model_weights

    return get_model_weights(name).DEFAULT


def weights_file(name: str, weights_dir=None) -> Path:
    """Where the DEFAULT ImageNet weights of torchvision model `name` are looked for."""
    folder = Path(weights_dir) if weights_dir else Path(torch.hub.get_dir()) / "checkpoints"
    return folder / _weights_enum(name).url.rsplit("/", 1)[1]


def check_weights(names, weights_dir=None, download: bool = False) -> None:
    """Raise PretrainedMissing (one line: file, folder, URL) for the first missing weights file."""
    if download:
        return
    for name in names:
        path = weights_file(name, weights_dir)
        if not path.is_file():
            raise PretrainedMissing(f"ImageNet weights for {name} not found: place {path.name} (from "
                                    f"{_weights_enum(name).url}) in {path.parent}, or rerun with --download")


def _torchvision_model(name: str, pretrained: bool, weights_dir=None) -> nn.Module:
    from torchvision.models import get_model

    model = get_model(name, weights=None)
    if pretrained:
        folder = str(Path(weights_dir) if weights_dir else Path(torch.hub.get_dir()) / "checkpoints")
        # check_hash: a download must match the SHA-256 prefix in its file name
        try:
            state = _weights_enum(name).get_state_dict(model_dir=folder, progress=False, check_hash=True)
        except (RuntimeError, EOFError, OSError) as e:   # a truncated or foreign cached file
            raise ValueError(f"cannot read the ImageNet weights of {name} in {folder} "
                             f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]})") from None
        from islab.models import load_state_checked

        load_state_checked(model, state, f"ImageNet weights of {name}")
    return model


def _last_linear_name(model: nn.Module) -> str:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


def _set_module(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def build_backbone(name: str, pretrained: bool = True, weights_dir=None) -> nn.Module:
    """torchvision model `name` with its last nn.Linear replaced by Identity, in eval mode:
    forward(x) gives the penultimate features (resnet18 512, mobilenet_v3_small 1024,
    efficientnet_b0 1280).  pretrained=False builds it untrained (tests, --fake)."""
    assert name in BACKBONES, f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}"
    model = _torchvision_model(name, pretrained, weights_dir)
    _set_module(model, _last_linear_name(model), nn.Identity())
    return model.eval()


@torch.no_grad()
def extract_features(model: nn.Module, ds: Dataset, x_uint8: torch.Tensor, batch: int = 256,
                     amp: bool = True) -> np.ndarray:
    """Eval-mode features of un-augmented images: float32 numpy (N, D).  x_uint8 (N, 3, S, S)."""
    device = x_uint8.device
    model = model.to(device).eval()
    out = []
    for s in range(0, len(x_uint8), batch):
        xb = prepare_batch(ds, x_uint8[s:s + batch], train=False)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=(amp and device.type == "cuda")):
            out.append(model(xb).float().cpu())
    return torch.cat(out).numpy()


def cached_features(name: str, ds: Dataset, pretrained: bool = True, weights_dir=None, cache_dir=None,
                    batch: int = 256, amp: bool = True, log=None, data_fingerprint: str | None = None):
    """(train (N, D), test (M, D)) float32 features of backbone `name`, extracted once and cached.

    The cache file is keyed by the backbone, its weights (enum name or 'untrained') and a content
    fingerprint of both image splits (pass `data_fingerprint` = islab.proxies.fingerprint(train x,
    test x) to hash ~15 GB of Food-101 once, not once per backbone); a file for another key, or
    unreadable, is rebuilt.
    """
    from islab.proxies import fingerprint

    key = {"version": FEATURE_CACHE_VERSION, "backbone": name,
           "weights": str(_weights_enum(name)) if pretrained else "untrained",
           "data": data_fingerprint or fingerprint(ds.train.x, ds.test.x), "mean": list(ds.mean),
           "std": list(ds.std)}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"features-{ds.name}-{name}-{digest}.npz" if cache_dir else None
    if path is not None and intact(path, log):   # its SHA-256 checked: a damaged file is moved aside
        try:
            with np.load(path, allow_pickle=False) as z:
                if json.loads(str(z["key"])) == key and len(z["train"]) == len(ds.train):
                    if log:
                        log(f"features {name}: cached ({path.name})")
                    return z["train"], z["test"]
        except Exception:  # truncated / corrupt file: extract again
            pass
    model = build_backbone(name, pretrained, weights_dir)
    train_f = extract_features(model, ds, ds.train.x, batch, amp)
    test_f = extract_features(model, ds, ds.test.x, batch, amp)
    if log:
        log(f"features {name}: extracted {train_f.shape[1]}-dim for {len(train_f)} + {len(test_f)} images")
    if path is not None:
        save_npz_verified(path, key=np.array(json.dumps(key, sort_keys=True)), train=train_f, test=test_f)
    return train_f, test_f


# ---------------------------------------------------------------- features as a Dataset


def quantise(features, mean, std, z_clip: float = Z_CLIP) -> np.ndarray:
    """Standardise with (mean, std), clip to +-z_clip, map to uint8 0..255 (see module doc)."""
    z = (np.asarray(features, dtype=np.float64) - mean) / std
    return np.rint((np.clip(z, -z_clip, z_clip) + z_clip) / (2 * z_clip) * 255.0).astype(np.uint8)


def feature_dataset(train_f, test_f, ds: Dataset, backbone: str, z_clip: float = Z_CLIP) -> Dataset:
    """A Dataset whose 'images' are quantised features (N, 1, D, 1), labels from ds, no
    augmentation; normalise() turns a batch back into standardised features."""
    mean = train_f.mean(axis=0)
    std = train_f.std(axis=0) + 1e-6   # constant features map to 0, not NaN
    d = train_f.shape[1]

    def split(f, y):
        return Split(torch.from_numpy(quantise(f, mean, std, z_clip)).view(len(f), 1, d, 1), y.cpu())

    return Dataset(name=f"{ds.name}-{backbone}", train=split(train_f, ds.train.y),
                   test=split(test_f, ds.test.y),
                   num_classes=ds.num_classes, input_shape=(1, d, 1), mean=(0.5,), std=(1.0 / (2 * z_clip),),
                   augment="none").to(ds.train.x.device)


# ---------------------------------------------------------------- the partially fine-tuned target


class PartialFinetune(FeatureClassifier):
    """A torchvision ResNet whose stem and layer1-3 are frozen (no gradients, always in eval
    mode, so their BatchNorm statistics stay the pretrained ones); layer4 and a new fc train.

    forward_with_features(x) -> (logits (B, C), h (B, D)), h the pooled layer4 output.
    """

    def __init__(self, arch: str, num_classes: int, pretrained: bool = True, weights_dir=None):
        super().__init__()
        assert arch in TARGETS, f"unknown target {arch!r}; choose from {', '.join(TARGETS)}"
        net = _torchvision_model(arch, pretrained, weights_dir)
        self.frozen = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                                    net.layer1, net.layer2, net.layer3)
        for p in self.frozen.parameters():
            p.requires_grad_(False)
        self.layer4 = net.layer4
        self.fc = nn.Linear(net.fc.in_features, num_classes)

    def train(self, mode: bool = True):
        super().train(mode)
        self.frozen.eval()
        return self

    def forward_with_features(self, x):
        with torch.no_grad():
            x = self.frozen(x)
        h = torch.flatten(nn.functional.adaptive_avg_pool2d(self.layer4(x), 1), 1)
        return self.fc(h), h


def build_target(arch: str, num_classes: int, seed: int, device, pretrained: bool = True,
                 weights_dir=None) -> PartialFinetune:
    """The target with its new fc drawn from the run's own 'init' stream (as islab.train.new_model)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        model = PartialFinetune(arch, num_classes, pretrained, weights_dir)
    return model.to(device)
