"""islab.models: zoo parameter counts and state_dict keys against the released chenyaofo/pytorch-cifar-models checkpoints,
the feature interface, and pretrained-weight loading without network."""
import pytest
import torch
import torch.nn as nn

from islab.models import (MODEL_FAMILIES, MODELS, PretrainedMissing, build_model, build_pretrained,
                          count_parameters, last_linear, load_pretrained, pretrained_url)

# exact parameter counts of the released CIFAR-10 and CIFAR-100 checkpoints (chenyaofo/pytorch-cifar-models).
EXACT_PARAMS = {  # name: (10 classes, 100 classes)
    "resnet20": (272_474, 278_324), "resnet32": (466_906, 472_756),
    "resnet44": (661_338, 667_188), "resnet56": (855_770, 861_620),
    "vgg11_bn": (9_756_426, 9_802_596), "vgg13_bn": (9_941_322, 9_987_492),
    "vgg16_bn": (15_253_578, 15_299_748), "vgg19_bn": (20_565_834, 20_612_004),
    "mobilenetv2_x0_5": (700_490, 815_780), "mobilenetv2_x0_75": (1_368_234, 1_483_524),
    "mobilenetv2_x1_0": (2_236_682, 2_351_972), "mobilenetv2_x1_4": (4_333_706, 4_495_076),
    "shufflenetv2_x0_5": (352_042, 444_292), "shufflenetv2_x1_0": (1_263_854, 1_356_104),
    "shufflenetv2_x1_5": (2_488_874, 2_581_124), "shufflenetv2_x2_0": (5_365_486, 5_549_896),
    # Not in the reference: torchvision's ImageNet ResNet-18 has 11,689,512; the 3x3 stem saves
    # 64*3*(49-9) = 7,680 and a 10-way fc instead of 1000-way saves 990*513 = 507,870.
    "resnet18": (11_173_962, 11_173_962 + 90 * 513),
}
ZOO = MODEL_FAMILIES["cifar_zoo"]
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(autouse=True)
def one_thread():
    """Many tiny ops: one intra-op thread avoids oversubscription stalls on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def on_meta(name, num_classes, input_shape=(3, 32, 32)):
    """Build without allocating or initialising weights: shapes, counts and keys only."""
    with torch.device("meta"):
        return build_model(name, num_classes, input_shape)


def conv_keys(prefix, bias=False):
    return [f"{prefix}.weight"] + ([f"{prefix}.bias"] if bias else [])


def bn_keys(prefix):
    return [f"{prefix}.{s}" for s in BN]


def reference_keys(name):
    """The state_dict keys of the released checkpoints, built from their naming patterns."""
    keys = []
    if name.startswith("resnet"):
        n = (int(name[6:]) - 2) // 6
        keys += conv_keys("conv1") + bn_keys("bn1")
        for layer in (1, 2, 3):
            for i in range(n):
                p = f"layer{layer}.{i}"
                keys += conv_keys(f"{p}.conv1") + bn_keys(f"{p}.bn1")
                keys += conv_keys(f"{p}.conv2") + bn_keys(f"{p}.bn2")
                if layer > 1 and i == 0:
                    keys += conv_keys(f"{p}.downsample.0") + bn_keys(f"{p}.downsample.1")
        keys += ["fc.weight", "fc.bias"]
    elif name.startswith("vgg"):
        conv_indices = {
            "vgg11_bn": [0, 4, 8, 11, 15, 18, 22, 25],
            "vgg13_bn": [0, 3, 7, 10, 14, 17, 21, 24, 28, 31],
            "vgg16_bn": [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40],
            "vgg19_bn": [0, 3, 7, 10, 14, 17, 20, 23, 27, 30, 33, 36, 40, 43, 46, 49],
        }[name]
        for k in conv_indices:
            keys += conv_keys(f"features.{k}", bias=True) + bn_keys(f"features.{k + 1}")
        keys += [f"classifier.{i}.{s}" for i in (0, 3, 6) for s in ("weight", "bias")]
    elif name.startswith("mobilenetv2"):
        keys += conv_keys("features.0.0") + bn_keys("features.0.1")
        keys += conv_keys("features.1.conv.0.0") + bn_keys("features.1.conv.0.1")
        keys += conv_keys("features.1.conv.1") + bn_keys("features.1.conv.2")
        for k in range(2, 18):
            p = f"features.{k}.conv"
            keys += conv_keys(f"{p}.0.0") + bn_keys(f"{p}.0.1") + conv_keys(f"{p}.1.0") + bn_keys(f"{p}.1.1")
            keys += conv_keys(f"{p}.2") + bn_keys(f"{p}.3")
        keys += conv_keys("features.18.0") + bn_keys("features.18.1")
        keys += ["classifier.1.weight", "classifier.1.bias"]
    elif name.startswith("shufflenetv2"):
        keys += conv_keys("conv1.0") + bn_keys("conv1.1")
        for stage, blocks in (("stage2", 4), ("stage3", 8), ("stage4", 4)):
            for i in range(blocks):
                p = f"{stage}.{i}"
                if i == 0:
                    keys += conv_keys(f"{p}.branch1.0") + bn_keys(f"{p}.branch1.1")
                    keys += conv_keys(f"{p}.branch1.2") + bn_keys(f"{p}.branch1.3")
                for c, b in ((0, 1), (3, 4), (5, 6)):
                    keys += conv_keys(f"{p}.branch2.{c}") + bn_keys(f"{p}.branch2.{b}")
        keys += conv_keys("conv5.0") + bn_keys("conv5.1") + ["fc.weight", "fc.bias"]
    return keys


# ------------------------------------------------------------------ registry, counts, keys

def test_registry_names_and_families():
    assert len(ZOO) == 16
    names = [n for fam in MODEL_FAMILIES.values() for n in fam]
    assert sorted(names) == sorted(MODELS), "every registry model is in exactly one family"
    with pytest.raises(ValueError, match="resnet20.*cnn"):
        build_model("resnet21", 10, (3, 32, 32))
    with pytest.raises(ValueError):
        build_model("cnn", 10, (1, 8))


@pytest.mark.parametrize("name", sorted(EXACT_PARAMS))
def test_parameter_counts_match_reference(name):
    assert count_parameters(on_meta(name, 10)) == EXACT_PARAMS[name][0]
    assert count_parameters(on_meta(name, 100)) == EXACT_PARAMS[name][1]


def test_digits_parameter_counts_by_hand():
    assert count_parameters(on_meta("linear", 10, (1, 8, 8))) == 64 * 10 + 10
    assert count_parameters(on_meta("mlp", 10, (1, 8, 8))) == 64 * 128 + 128 + 128 * 10 + 10
    # conv 1->32 (no bias) + BN(32) + conv 32->64 + BN(64) + fc 64->10
    assert count_parameters(on_meta("cnn", 10, (1, 8, 8))) == 9 * 32 + 64 + 9 * 32 * 64 + 128 + 650


def test_small_28x28_model_parameter_counts_by_hand():
    # 784-256-256-10 with biases
    assert count_parameters(on_meta("mlp2x256", 10, (1, 28, 28))) == 784 * 256 + 256 + 256 * 256 + 256 + 2570
    # conv 1->16 (no bias) + BN(16) + conv 16->32 + BN(32) + fc 32->10; the input pool has no weights
    assert count_parameters(on_meta("pooled_cnn", 10, (1, 28, 28))) == 9 * 16 + 32 + 9 * 16 * 32 + 64 + 330


@pytest.mark.parametrize("name", ZOO)
def test_state_dict_keys_match_reference_layout(name):
    sd = on_meta(name, 10).state_dict()
    assert list(sd) == reference_keys(name)  # same names, same order


def test_reference_key_counts_and_shapes():
    counts = {"resnet20": 128, "resnet32": 200, "resnet44": 272, "resnet56": 344,
              **{n: 314 for n in ZOO if n.startswith("mobilenetv2")},
              **{n: 338 for n in ZOO if n.startswith("shufflenetv2")}}
    for name, count in counts.items():
        assert len(on_meta(name, 10).state_dict()) == count, name
    shapes = {
        ("resnet20", "layer2.0.downsample.0.weight"): (32, 16, 1, 1),
        ("resnet56", "layer3.0.downsample.1.running_var"): (64,),
        ("vgg19_bn", "classifier.6.weight"): (10, 512),
        ("vgg19_bn", "features.49.bias"): (512,),  # VGG convs keep their bias
        ("mobilenetv2_x0_5", "features.18.1.running_var"): (1280,),
        ("mobilenetv2_x1_4", "features.18.0.weight"): (1792, 448, 1, 1),
        ("mobilenetv2_x1_0", "features.0.0.weight"): (32, 3, 3, 3),
        ("shufflenetv2_x0_5", "stage2.0.branch1.0.weight"): (24, 1, 3, 3),  # depthwise on 24 channels
        ("shufflenetv2_x1_0", "conv5.0.weight"): (1024, 464, 1, 1),
    }
    for (name, key), shape in shapes.items():
        assert tuple(on_meta(name, 10).state_dict()[key].shape) == shape, (name, key)


def test_vgg_skips_pools_at_8x8_but_keeps_keys():
    big, small = on_meta("vgg19_bn", 10, (3, 32, 32)), on_meta("vgg19_bn", 10, (3, 8, 8))
    shapes = lambda model: {k: v.shape for k, v in model.state_dict().items()}  # noqa: E731
    assert shapes(big) == shapes(small)
    pools = [i for i, m in enumerate(big.features) if isinstance(m, nn.MaxPool2d)]
    assert pools == [6, 13, 26, 39, 52]
    assert [type(small.features[i]) for i in pools] == [nn.MaxPool2d] * 3 + [nn.Identity] * 2


# ------------------------------------------------------------------ forward and features

@pytest.mark.parametrize("input_shape", [(3, 32, 32), (1, 8, 8)])
def test_forward_shapes_and_features_feed_last_linear(input_shape):
    torch.manual_seed(0)
    x = torch.randn(2, *input_shape)
    for name in MODELS:
        model = build_model(name, 7, input_shape).eval()
        with torch.no_grad():
            logits, h = model.forward_with_features(x)
            plain = model(x)
        head = last_linear(model)
        assert logits.shape == (2, 7) and h.shape == (2, head.in_features), name
        assert torch.allclose(h @ head.weight.T + head.bias, logits, atol=1e-5), name
        assert torch.equal(plain, logits), name


@pytest.mark.parametrize("name", ["vgg11_bn", "mobilenetv2_x0_5"])
def test_features_are_post_dropout_in_train_mode(name):
    torch.manual_seed(0)
    model = build_model(name, 5, (3, 8, 8)).train()
    logits, h = model.forward_with_features(torch.randn(4, 3, 8, 8))
    head = last_linear(model)
    assert (h == 0).any(), "dropout zeroes some features in train mode"
    assert torch.allclose(h @ head.weight.T + head.bias, logits, atol=1e-5)


# ------------------------------------------------------------------ pretrained loading (offline)

@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """Point the torch hub cache to a temporary TORCH_HOME (restored after the test)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # forget any set_dir so get_dir follows TORCH_HOME
    assert torch.hub.get_dir() == str(tmp_path / "hub")
    return tmp_path / "hub"


def test_pretrained_url():
    base = "https://github.com/chenyaofo/pytorch-cifar-models/releases/download/"
    assert pretrained_url("cifar10", "resnet20") == base + "resnet/cifar10_resnet20-4118986f.pt"
    assert pretrained_url("cifar100", "vgg16_bn").endswith("vgg/cifar100_vgg16_bn-7d8c4031.pt")
    assert pretrained_url("cifar10", "mobilenetv2_x0_75").endswith(
        "mobilenetv2/cifar10_mobilenetv2_x0_75-a53c314e.pt")
    assert pretrained_url("cifar100", "shufflenetv2_x2_0").endswith(
        "shufflenetv2/cifar100_shufflenetv2_x2_0-e7e584cd.pt")
    for dataset, name in (("cifar10", "repvgg_a0"), ("cifar10", "resnet18"), ("svhn", "resnet20")):
        with pytest.raises(ValueError):
            pretrained_url(dataset, name)


def test_missing_offline_file_names_file_folder_and_url(hub_dir):
    with pytest.raises(PretrainedMissing) as err:
        build_pretrained("cifar10", "resnet20")
    assert isinstance(err.value, FileNotFoundError)
    message = str(err.value)
    assert "cifar10_resnet20-4118986f.pt" in message
    assert str(hub_dir / "checkpoints") in message
    assert pretrained_url("cifar10", "resnet20") in message
    with pytest.raises(PretrainedMissing):
        load_pretrained(build_model("resnet20", 10, (3, 32, 32)), "cifar10", "resnet20",
                        weights=str(hub_dir / "nowhere.pt"))


def _randomised(model):
    """Give BN running statistics non-default values so that a load which skipped buffers would show."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2_x0_5", "shufflenetv2_x0_5"])
def test_state_dict_round_trip_strict(name, tmp_path):
    torch.manual_seed(1)
    source = _randomised(build_model(name, 100, (3, 32, 32)))
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(2)
    fresh = build_model(name, 100, (3, 32, 32)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(fresh(x), source(x))
        load_pretrained(fresh, "cifar100", name, weights=str(path))
        assert torch.equal(fresh(x), source(x))
    # strict: a checkpoint missing one key is refused, naming the key
    partial = {k: v for k, v in source.state_dict().items() if k != "fc.bias" and k != "classifier.1.bias"}
    torch.save(partial, path)
    with pytest.raises(ValueError, match=r"key (fc|classifier\.1)\.bias is missing"):
        load_pretrained(fresh, "cifar100", name, weights=str(path))
    # ... and so is another architecture's file (10 classes instead of 100): the first key whose
    # shape differs is named, with both shapes
    torch.save(build_model(name, 10, (3, 32, 32)).state_dict(), path)
    with pytest.raises(ValueError, match=r"has shape \(10, \d+\) in the file but \(100, \d+\) in the model"):
        load_pretrained(fresh, "cifar100", name, weights=str(path))


def test_hub_downloads_check_the_hash_in_the_file_name(hub_dir, monkeypatch):
    seen = {}
    state = build_model("resnet20", 10, (3, 32, 32)).state_dict()

    def fake_download(url, **kwargs):   # what torch.hub would be asked (no network here)
        seen.update(url=url, **kwargs)
        return state

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    build_pretrained("cifar10", "resnet20", download=True)
    assert seen["url"].endswith("cifar10_resnet20-4118986f.pt") and seen["check_hash"] is True


def test_build_pretrained_uses_hub_cache(hub_dir):
    torch.manual_seed(3)
    source = _randomised(build_model("resnet20", 10, (3, 32, 32)))
    (hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(source.state_dict(), hub_dir / "checkpoints" / "cifar10_resnet20-4118986f.pt")
    model = build_pretrained("cifar10", "resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))
    with pytest.raises(PretrainedMissing):  # the cifar100 file is a different name: not there
        build_pretrained("cifar100", "resnet20")


def test_channel_shuffle_keeps_channels_last_and_values():
    from islab.models import channel_shuffle

    x = torch.randn(2, 6, 3, 4)
    ref = channel_shuffle(x, 2)
    out = channel_shuffle(x.contiguous(memory_format=torch.channels_last), 2)
    assert torch.equal(out, ref)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert ref.is_contiguous()
    # hand-computed: groups (0 1 2 | 3 4 5) interleave to 0 3 1 4 2 5
    assert channel_shuffle(torch.arange(6.0).view(1, 6, 1, 1), 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_shufflenet_blocks_stay_channels_last():
    torch.manual_seed(0)
    model = build_model("shufflenetv2_x0_5", 10, (3, 32, 32)).eval()
    x = torch.randn(2, 3, 32, 32)
    ref = model(x)
    model = model.to(memory_format=torch.channels_last)
    layouts = []
    for block in [m for m in model.modules() if type(m).__name__ == "ShuffleBlock"]:
        block.register_forward_hook(lambda m, i, o: layouts.append(
            o.is_contiguous(memory_format=torch.channels_last) and not o.is_contiguous()))
    out = model(x.contiguous(memory_format=torch.channels_last))
    assert len(layouts) == 16 and all(layouts)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_vgg_forward_builds_no_module(monkeypatch):
    model = build_model("vgg11_bn", 10, (3, 32, 32)).eval()

    def no_new_modules(*a, **k):
        raise AssertionError("a module was constructed inside forward")

    monkeypatch.setattr(torch.nn.Module, "__init__", no_new_modules)
    logits, h = model.forward_with_features(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and h.shape == (2, 512)
