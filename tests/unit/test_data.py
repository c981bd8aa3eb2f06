"""Tests of islab.data: the dataset registry, on-disk loaders (with tiny fake files) and the batch pipeline."""
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from islab import data as data_mod
from islab.data import (DATASETS, DIGITS_MEAN, DIGITS_STD, DataDamaged, DataMissing, Dataset, Split, load_dataset,
                        normalise, prepare_batch, random_crop_flip, split_indices, subset)
from islab.seeding import numpy_rng


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- digits

DIGITS_CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]   # sklearn's 1797 digits


def test_digits_shapes_dtypes_and_range():
    ds = load_dataset("digits")
    assert ds.train.x.shape == (1437, 1, 8, 8) and ds.test.x.shape == (360, 1, 8, 8)
    assert ds.train.x.dtype == torch.uint8 and ds.train.y.dtype == torch.int64
    assert int(ds.train.x.max()) == 255 and int(ds.train.x.min()) == 0
    # 0..16 maps to round(v * 255 / 16): exactly 17 grey levels, 8 -> 127.5 -> 128
    levels = torch.unique(torch.cat([ds.train.x.flatten(), ds.test.x.flatten()])).tolist()
    assert levels == [int(np.rint(v * 255 / 16)) for v in range(17)]
    assert (ds.num_classes, ds.input_shape, ds.augment) == (10, (1, 8, 8), "none")
    assert len(ds.train) == 1437 and len(ds.test) == 360


def test_digits_split_is_fixed_stratified_and_seed_independent():
    a, b = load_dataset("digits", seed=0), load_dataset("digits", seed=123)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.train.y, b.train.y)
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.test.y, b.test.y)
    train_counts = torch.bincount(a.train.y, minlength=10).numpy()
    test_counts = torch.bincount(a.test.y, minlength=10).numpy()
    assert (train_counts + test_counts).tolist() == DIGITS_CLASS_COUNTS
    # stratified: every class's test share is within one example of 20 %
    assert np.all(np.abs(test_counts - 0.2 * np.array(DIGITS_CLASS_COUNTS)) < 1.0)


def test_digits_normalisation_constants_are_the_training_split_statistics():
    x = load_dataset("digits").train.x.double() / 255
    assert abs(x.mean().item() - DIGITS_MEAN[0]) < 1e-4
    assert abs(x.std(unbiased=False).item() - DIGITS_STD[0]) < 1e-4


def test_train_size_is_a_seeded_subset_and_leaves_test_alone():
    full = load_dataset("digits")
    a = load_dataset("digits", train_size=100, seed=1)
    b = load_dataset("digits", train_size=100, seed=1)
    c = load_dataset("digits", train_size=100, seed=2)
    assert len(a.train) == 100 and torch.equal(a.train.x, b.train.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.train.x, c.train.x)
    keep, _ = split_indices(1437, 1337, numpy_rng(1, "data"))
    assert torch.equal(a.train.x, full.train.x[keep]) and torch.equal(a.train.y, full.train.y[keep])
    assert torch.equal(a.test.x, full.test.x)
    with pytest.raises(ValueError, match="exceeds"):
        load_dataset("digits", train_size=5000)


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError) as err:
        load_dataset("imagenet")
    assert all(name in str(err.value) for name in DATASETS)


# ----------------------------------------------------------------------------- random_crop_flip

def encoded_images(n, c=3, h=8, w=8):
    """x[n, c, i, j] = 1 + 70 c + 8 i + j: every pixel says where it came from; 0 is padding."""
    i = torch.arange(h)[:, None]
    j = torch.arange(w)[None, :]
    img = torch.stack([1 + 70 * ch + 8 * i + j for ch in range(c)])
    return img.to(torch.uint8).expand(n, c, h, w).clone()


def candidate_crops(img, pad):
    """Reference, by loops: every (dy, dx, flip) crop of one zero-padded (C, H, W) image."""
    c, h, w = img.shape
    padded = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=img.dtype)
    padded[:, pad:pad + h, pad:pad + w] = img
    out = {}
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            window = padded[:, dy:dy + h, dx:dx + w]
            out[(dy, dx, False)] = window
            out[(dy, dx, True)] = window.flip(-1)
    return out


def test_crop_flip_keeps_shape_dtype_and_is_seeded():
    x = torch.randint(0, 256, (32, 3, 32, 32), generator=gen(0), dtype=torch.uint8)
    out = random_crop_flip(x, gen(5))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out, random_crop_flip(x, gen(5)))
    assert not torch.equal(out, random_crop_flip(x, gen(6)))
    assert torch.equal(x, torch.randint(0, 256, (32, 3, 32, 32), generator=gen(0), dtype=torch.uint8))


def test_crop_flip_with_pad_zero_only_flips():
    x = torch.randint(0, 256, (64, 3, 6, 7), generator=gen(1), dtype=torch.uint8)
    out = random_crop_flip(x, gen(2), pad=0)
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert torch.all(same | mirrored)
    assert 10 < int(mirrored.sum()) < 54   # both outcomes happen (fair coin, 64 draws)


def test_crop_flip_matches_the_loop_reference_per_example():
    pad, n = 4, 200
    x = encoded_images(n)
    out = random_crop_flip(x, gen(3), pad=pad)
    crops = candidate_crops(x[0], pad)
    drawn = []
    for k in range(n):
        match = [key for key, window in crops.items() if torch.equal(out[k], window)]
        assert match, f"example {k} is not a shifted window (or mirror) of its padded image"
        drawn.append(match[0])
    # per-example offsets and flips, covering the whole range [0, 2 * pad]
    assert len(set(drawn)) > 50
    assert {d[0] for d in drawn} == set(range(2 * pad + 1))
    assert {d[1] for d in drawn} == set(range(2 * pad + 1))
    assert {d[2] for d in drawn} == {False, True}


def test_crop_flip_rows_are_contiguous_windows_of_the_padded_row():
    # column code only: value = 1 + j, so each output row must read (0-padded) consecutive columns
    pad, w = 4, 10
    x = (1 + torch.arange(w)).to(torch.uint8).expand(16, 1, 5, w).clone()
    out = random_crop_flip(x, gen(4), pad=pad).long()
    padded_row = torch.cat([torch.zeros(pad), 1 + torch.arange(w), torch.zeros(pad)]).long()
    windows = padded_row.unfold(0, w, 1)                         # (2 pad + 1, w)
    windows = torch.cat([windows, windows.flip(-1)])
    for k in range(16):
        rows = out[k, 0]
        nonzero_rows = rows[rows.any(1)]
        assert len(nonzero_rows) >= 5 - pad   # rows of real pixels exist
        assert torch.all(nonzero_rows == nonzero_rows[0])     # one column window for all rows
        assert (windows == nonzero_rows[0]).all(1).any()


# ----------------------------------------------------------------------------- normalise, prepare_batch

def test_normalise_known_answers():
    x = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2)
    out = normalise(x, (0.5,), (0.25,))
    assert out.dtype == torch.float32
    assert out.flatten().tolist() == [-2.0, 2.0]
    # per channel: channel 0 -> (x/255 - 0)/1, channel 1 -> (x/255 - 1)/0.5; (C, H, W) input too
    x = torch.full((2, 1, 1), 51, dtype=torch.uint8)
    out = normalise(x, (0.0, 1.0), (1.0, 0.5))
    assert torch.allclose(out.flatten(), torch.tensor([0.2, -1.6]))
    assert x.dtype == torch.uint8 and int(x[0, 0, 0]) == 51   # input untouched
    with pytest.raises(AssertionError, match="uint8"):
        normalise(x.float(), (0.0, 1.0), (1.0, 0.5))


def test_prepare_batch_augments_only_training_batches_of_crop_flip_sets():
    ds = load_dataset("fake_cifar", train_size=64)
    x = ds.train.x[:16]
    plain = normalise(x, ds.mean, ds.std)
    assert torch.equal(prepare_batch(ds, x, train=False), plain)
    assert torch.equal(prepare_batch(ds, x, train=True, generator=gen(9)),
                       normalise(random_crop_flip(x, gen(9)), ds.mean, ds.std))
    assert not torch.equal(prepare_batch(ds, x, train=True, generator=gen(9)), plain)
    with pytest.raises(AssertionError, match="generator"):
        prepare_batch(ds, x, train=True)
    digits = load_dataset("digits", train_size=20)
    assert torch.equal(prepare_batch(digits, digits.train.x, train=True, generator=gen(0)),
                       normalise(digits.train.x, digits.mean, digits.std))


# ----------------------------------------------------------------------------- on-disk loaders

def write_fake_cifar(root, per_file, cifar100=False, seed=0):
    """Tiny CIFAR files in torchvision's on-disk pickle format; returns the true (x, y) per split."""
    rng = np.random.default_rng(seed)
    folder = root / ("cifar-100-python" if cifar100 else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    names = ["train"] if cifar100 else [f"data_batch_{b}" for b in range(1, 6)]
    classes = 100 if cifar100 else 10
    truth = {"train": ([], []), "test": ([], [])}
    for split, files in (("train", names), ("test", ["test" if cifar100 else "test_batch"])):
        for name in files:
            x = rng.integers(0, 256, (per_file, 3, 32, 32), dtype=np.uint8)
            y = rng.integers(0, classes, per_file).tolist()
            # the CIFAR layout: one row per image, 1024 red then 1024 green then 1024 blue, row-major
            entry = {"data": x.reshape(per_file, 3072), "filenames": [f"{i}.png" for i in range(per_file)]}
            if cifar100:
                entry.update(fine_labels=y, coarse_labels=[v // 5 for v in y])
            else:
                entry.update(labels=y, batch_label=name)
            with open(folder / name, "wb") as f:
                pickle.dump(entry, f)
            truth[split][0].append(x)
            truth[split][1].extend(y)
    meta_name, key = ("meta", "fine_label_names") if cifar100 else ("batches.meta", "label_names")
    with open(folder / meta_name, "wb") as f:
        pickle.dump({key: [f"class{i}" for i in range(classes)]}, f)
    return {s: (np.concatenate(xs), np.array(ys)) for s, (xs, ys) in truth.items()}


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_fake_cifar_files_round_trip_through_torchvision(tmp_path, name):
    truth = write_fake_cifar(tmp_path, per_file=3, cifar100=(name == "cifar100"))
    ds = load_dataset(name, data_dir=tmp_path)
    n_train = 3 if name == "cifar100" else 15
    assert ds.train.x.shape == (n_train, 3, 32, 32) and ds.test.x.shape == (3, 3, 32, 32)
    assert ds.train.x.dtype == torch.uint8 and ds.train.y.dtype == torch.int64
    assert ds.train.x.is_contiguous()
    for split, (x, y) in ((ds.train, truth["train"]), (ds.test, truth["test"])):
        assert np.array_equal(split.x.numpy(), x) and split.y.tolist() == y.tolist()
    assert ds.augment == "crop_flip" and ds.num_classes == (100 if name == "cifar100" else 10)
    # files already present: download=True must not try the network (or an md5) and load the same
    again = load_dataset(name, data_dir=tmp_path, download=True)
    assert torch.equal(again.train.x, ds.train.x)


def test_missing_cifar_raises_data_missing_naming_folder_and_flag(tmp_path):
    with pytest.raises(DataMissing) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    message = str(err.value)
    assert "--download" in message and str(tmp_path / "cifar-10-batches-py") in message
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(DataMissing, match="--download"):
        load_dataset("cifar100", data_dir=tmp_path)


def write_idx(path, array):
    """An MNIST idx file: 0, 0, dtype code 8 (uint8), ndim; then each dim big-endian int32; then data."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_idx_set(raw, n_train=7, n_test=4, gz=False, seed=0):
    """The four idx files of an MNIST-style data set in `raw`; returns the arrays written."""
    import gzip

    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x, y = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
        for stem, arr in ((f"{prefix}-images-idx3-ubyte", x), (f"{prefix}-labels-idx1-ubyte", y)):
            write_idx(raw / stem, arr)
            if gz:
                (raw / (stem + ".gz")).write_bytes(gzip.compress((raw / stem).read_bytes()))
                (raw / stem).unlink()
        truth[prefix] = (x, y)
    return truth


@pytest.fixture
def small_idx(monkeypatch):
    """Fake idx sets of 7 training and 4 test images stand for the 60,000 / 10,000 of the real ones."""
    monkeypatch.setattr(data_mod, "IDX_SIZES", {"train": 7, "t10k": 4})


def test_fake_mnist_files_round_trip_and_missing_folder(tmp_path, small_idx):
    with pytest.raises(DataMissing, match="--download"):
        load_dataset("mnist", data_dir=tmp_path)
    truth = write_idx_set(tmp_path / "MNIST" / "raw")
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.train.x.shape == (7, 1, 28, 28) and ds.test.x.shape == (4, 1, 28, 28)
    assert ds.train.x.dtype == torch.uint8 and ds.train.y.dtype == torch.int64
    assert np.array_equal(ds.train.x[:, 0].numpy(), truth["train"][0])
    assert ds.test.y.tolist() == truth["t10k"][1].tolist()
    assert (ds.mean, ds.std, ds.augment) == ((0.1307,), (0.3081,), "none")


def test_fashion_mnist_reads_gzipped_idx_from_data_dir_first(tmp_path, monkeypatch, small_idx):
    # the system folder is searched second: point it at an empty place so only data_dir can match
    monkeypatch.setitem(data_mod.IDX_SETS, "fashion-mnist",
                        ("FashionMNIST", str(tmp_path / "system"), "install it"))
    with pytest.raises(DataMissing) as err:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert "--download" in msg and "install it" in msg and str(tmp_path / "system") in msg
    truth = write_idx_set(tmp_path / "FashionMNIST" / "raw", gz=True)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path)
    assert np.array_equal(ds.train.x[:, 0].numpy(), truth["train"][0])
    assert ds.train.y.tolist() == truth["train"][1].tolist()
    assert (ds.mean, ds.std, ds.augment, ds.crop_pad) == ((0.2860,), (0.3530,), "crop_flip", 2)
    # the system copy is used when data_dir has nothing
    sys_truth = write_idx_set(tmp_path / "system", gz=True, seed=1)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path / "elsewhere")
    assert torch.equal(ds.train.y, torch.as_tensor(sys_truth["train"][1])) and ds.test.y.tolist() == sys_truth["t10k"][1].tolist()


@pytest.mark.parametrize("damage", ["truncated_data", "truncated_gzip", "bad_magic", "trailing_bytes", "empty"])
def test_damaged_idx_file_raises_data_damaged_naming_the_file(tmp_path, damage, small_idx):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_set(raw, gz=damage == "truncated_gzip")
    name = "train-images-idx3-ubyte" + (".gz" if damage == "truncated_gzip" else "")
    f = raw / name
    data = f.read_bytes()
    f.write_bytes({"truncated_data": data[:-100], "truncated_gzip": data[: len(data) // 2],
                   "bad_magic": b"\x00\x00\x0d\x03" + data[4:], "trailing_bytes": data + b"x",
                   "empty": b""}[damage])
    with pytest.raises(DataDamaged) as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert name in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, DataMissing)      # scripts turn it into one line and exit 2


def _reshape_header(f, dims):
    """The same bytes under another header of the same byte count (the data is then scrambled)."""
    data = f.read_bytes()
    f.write_bytes(bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + data[4 + 4 * data[3]:])


IDX_LIES = {   # case: (file, damage, text in the message)
    "images 14x56": ("train-images-idx3-ubyte", lambda f: _reshape_header(f, [7, 14, 56]), "[7, 14, 56]"),
    "images flat": ("t10k-images-idx3-ubyte", lambda f: _reshape_header(f, [4, 784]), "[4, 784]"),
    "labels as a matrix": ("train-labels-idx1-ubyte", lambda f: _reshape_header(f, [7, 1]), "[7, 1]"),
    "label out of range": ("t10k-labels-idx1-ubyte", lambda f: f.write_bytes(f.read_bytes()[:-1] + bytes([10])),
                           "label 10, outside 0..9"),
    "train and test swapped": ("train-images-idx3-ubyte", None, "holds 4 images where this split has 7"),
}


@pytest.mark.parametrize("case", sorted(IDX_LIES))
def test_idx_dimensions_sizes_and_labels_are_checked(tmp_path, case, small_idx):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_set(raw)
    name, damage, text = IDX_LIES[case]
    if damage is None:
        for kind in ("images-idx3", "labels-idx1"):
            a, b = raw / f"train-{kind}-ubyte", raw / f"t10k-{kind}-ubyte"
            a.rename(tmp_path / "x"), b.rename(a), (tmp_path / "x").rename(b)
    else:
        damage(raw / name)
    with pytest.raises(DataDamaged) as err:
        load_dataset("mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert str(raw / name) in msg and text in msg and "\n" not in msg


def test_the_real_sizes_are_60000_and_10000():
    assert data_mod.IDX_SIZES == {"train": 60000, "t10k": 10000}


def test_idx_header_and_size_known_answer(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", arr)
    assert (tmp_path / "a").read_bytes()[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4])
    assert np.array_equal(data_mod.read_idx(tmp_path / "a"), arr)


REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (REAL_FASHION / "train-images-idx3-ubyte.gz").exists() and not os.environ.get("CI"),
                    reason="real Fashion-MNIST not installed (`make data`); CI always has it")
def test_real_fashion_mnist_is_complete_balanced_with_the_documented_statistics():
    ds = load_dataset("fashion-mnist", data_dir="/nonexistent")   # only the system copy can match
    assert ds.train.x.shape == (60000, 1, 28, 28) and ds.test.x.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.train.y).tolist() == [6000] * 10
    assert torch.bincount(ds.test.y).tolist() == [1000] * 10
    x = ds.train.x.double() / 255
    assert abs(x.mean().item() - ds.mean[0]) < 5e-5 and abs(x.std(unbiased=False).item() - ds.std[0]) < 5e-5


# ----------------------------------------------------------------------------- fake_cifar

def test_fake_cifar_is_deterministic_balanced_and_learnable():
    a, b = load_dataset("fake_cifar", seed=0), load_dataset("fake_cifar", seed=5)
    assert a.train.x.shape == (512, 3, 32, 32) and a.test.x.shape == (256, 3, 32, 32)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert torch.bincount(a.train.y).tolist() == [52, 52] + [51] * 8
    small = load_dataset("fake_cifar", train_size=100)
    assert len(small.train) == 100 and torch.equal(small.test.x, a.test.x)
    # learnable: nearest class-mean colour (3 numbers per image) beats chance (10 %) by far
    colour = lambda x: x.float().mean((2, 3))                             # noqa: E731
    centroids = torch.stack([colour(a.train.x[a.train.y == k]).mean(0) for k in range(10)])
    predicted = torch.cdist(colour(a.test.x), centroids).argmin(1)
    assert (predicted == a.test.y).float().mean().item() > 0.5


# ----------------------------------------------------------------------------- split_indices, subset

def test_split_indices_disjoint_covering_and_seeded():
    keep, held = split_indices(100, 30, np.random.default_rng(0))
    assert len(keep) == 70 and len(held) == 30
    assert np.intersect1d(keep, held).size == 0
    assert np.array_equal(np.sort(np.concatenate([keep, held])), np.arange(100))
    keep2, held2 = split_indices(100, 30, np.random.default_rng(0))
    assert np.array_equal(keep, keep2) and np.array_equal(held, held2)
    assert not np.array_equal(held, split_indices(100, 30, np.random.default_rng(1))[1])
    assert len(split_indices(5, 0, np.random.default_rng(0))[1]) == 0
    with pytest.raises(ValueError):
        split_indices(5, 6, np.random.default_rng(0))


def test_subset_takes_the_given_rows_in_order():
    split = Split(torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1), torch.arange(5) * 10)
    part = subset(split, np.array([3, 0]))
    assert part.x.flatten().tolist() == [3, 0] and part.y.tolist() == [30, 0]
    assert subset(split, torch.tensor([4])).y.tolist() == [40]


def test_dataset_to_moves_both_splits():
    ds = load_dataset("digits", train_size=10)
    moved = ds.to("cpu")
    assert isinstance(moved, Dataset) and moved.train.x.device.type == "cpu"
    assert moved.mean == ds.mean and torch.equal(moved.test.y, ds.test.y)


def test_prepare_batch_crops_with_the_data_sets_own_padding():
    # crop_pad 0: a "crop" can only return the image itself, so every output is x or its mirror
    x = torch.arange(2 * 16, dtype=torch.uint8).view(2, 1, 4, 4)
    ds = Dataset("t", Split(x, torch.zeros(2, dtype=torch.int64)), Split(x, torch.zeros(2, dtype=torch.int64)),
                 2, (1, 4, 4), (0.0,), (1 / 255,), "crop_flip", crop_pad=0)
    out = prepare_batch(ds, x, train=True, generator=torch.Generator().manual_seed(0))
    for i in range(2):
        assert torch.equal(out[i], x[i].float()) or torch.equal(out[i], x[i].flip(-1).float())
    # crop_pad 1: some draw shifts the image (a zero column or row appears at an edge)
    ds1 = Dataset("t", ds.train, ds.test, 2, (1, 4, 4), (0.0,), (1 / 255,), "crop_flip", crop_pad=1)
    g = torch.Generator().manual_seed(0)
    shifted = [prepare_batch(ds1, x + 1, train=True, generator=g) for _ in range(20)]
    assert any((s == 0).any() for s in shifted)
