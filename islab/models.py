"""Model registry by name: the CIFAR model zoo, a CIFAR ResNet-18 and small models for 8x8 digits.

    model = build_model("resnet20", num_classes=10, input_shape=(3, 32, 32))
    logits, h = model.forward_with_features(x)      # x: (B, C, H, W); logits (B, K); h (B, D)
    W = last_linear(model)                          # logits == h @ W.weight.T + W.bias
    logits, h = logits_and_features(any_model, x)   # any nn.Module whose last nn.Linear makes the logits

Families (see MODEL_FAMILIES):
- "cifar_zoo": ResNet-20/32/44/56, VGG-11/13/16/19-BN, MobileNetV2 x0.5..x1.4, ShuffleNetV2 x0.5..x2.0.
  Written from the published chenyaofo/pytorch-cifar-models architecture and checkpoint layout: same topology, attribute names,
  Sequential indices and conv-bias choices as chenyaofo/pytorch-cifar-models, so the released
  state_dicts load with strict=True (`load_pretrained`, `build_pretrained`).
- "cifar": resnet18, a torchvision-style ResNet-18 adapted to 32x32 (3x3 stride-1 stem, no max-pool).
- "digits": linear (multinomial logistic regression), mlp (one hidden layer), cnn (small, cheap),
  cnn_wide (wider/deeper digits "target" model).
- "small": models sized for 28x28 grey images on a CPU (the Fashion-MNIST preset): mlp2x256 (two
  hidden layers, the target) and pooled_cnn (a cheap convolutional proxy that works at 14x14).

Every model takes its input channel count from input_shape = (C, H, W) and runs on both 3x32x32 and
1x8x8 inputs (global pooling; VGG drops max-pools that would shrink a 1x1 map, see `VGG`).
"""
from __future__ import annotations

import functools
import itertools
import os
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


class FeatureClassifier(nn.Module):
    """Base class: subclasses implement forward_with_features(x) -> (logits (B, K), h (B, D)), where
    h is the exact input of the last nn.Linear (penultimate features). forward returns logits only."""

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(x)[0]


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=bias)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


def init_conv_bn(model: nn.Module, linear_std: float | None = None) -> None:
    """The zoo's init: convs kaiming-normal (fan_out, relu) with zero bias; BN weight 1, bias 0;
    Linear N(0, linear_std) with zero bias when linear_std is given, else PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------- ResNet (CIFAR zoo + 18)

class BasicBlock(nn.Module):
    """Post-activation residual block: conv3x3-BN-ReLU-conv3x3-BN, + shortcut, ReLU. The shortcut is a
    projection ("option B": 1x1 conv + BN, key `downsample.{0,1}`) when stride or width changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class CifarResNet(FeatureClassifier):
    """3x3 stride-1 stem (conv1, bn1), no max-pool, stages layer1..layerN of BasicBlocks (the first
    block of each stage carries the stride), global average pool, fc. h = pooled features (B, widths[-1])."""

    def __init__(self, in_ch: int, num_classes: int, stem: int, widths: tuple[int, ...],
                 depths: tuple[int, ...], strides: tuple[int, ...]):
        super().__init__()
        self.conv1 = conv3x3(in_ch, stem)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.stage_names = []
        prev = stem
        for i, (width, depth, stride) in enumerate(zip(widths, depths, strides), start=1):
            blocks = [BasicBlock(prev if j == 0 else width, width, stride if j == 0 else 1)
                      for j in range(depth)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            self.stage_names.append(f"layer{i}")
            prev = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, num_classes)
        init_conv_bn(self)  # fc keeps PyTorch's default init (as the zoo and torchvision do)

    def forward_with_features(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        h = torch.flatten(self.avgpool(x), 1)
        return self.fc(h), h


def cifar_resnet(n: int, num_classes: int, input_shape: tuple[int, int, int]) -> CifarResNet:
    """ResNet-(6n+2): widths 16/32/64, n blocks per stage, strides 1/2/2 (resnet20: n=3 ... resnet56: n=9)."""
    return CifarResNet(input_shape[0], num_classes, 16, (16, 32, 64), (n, n, n), (1, 2, 2))


def resnet18(num_classes: int, input_shape: tuple[int, int, int]) -> CifarResNet:
    """torchvision-style ResNet-18 (widths 64..512, 2 blocks per stage) with the CIFAR stem."""
    return CifarResNet(input_shape[0], num_classes, 64, (64, 128, 256, 512), (2, 2, 2, 2), (1, 2, 2, 2))


# ----------------------------------------------------------------------------- VGG-BN

VGG_CONFIGS = {  # torchvision letters A/B/D/E; "M" = 2x2 max-pool
    "vgg11_bn": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13_bn": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16_bn": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19_bn": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                 512, 512, 512, 512, "M"],
}


class VGG(FeatureClassifier):
    """features (conv3x3 with bias, BN, ReLU per conv; one index per "M"), flatten, classifier
    Linear(512,512)-ReLU-Dropout-Linear(512,512)-ReLU-Dropout-Linear(512,K) (indices 0..6).

    The zoo relies on 5 pools taking 32x32 to 1x1. A pool whose input is already 1 pixel in a dimension
    becomes nn.Identity (no parameters, so the state_dict keys and indices are unchanged); on 8x8 inputs
    the last two pools are skipped. If the map is still larger than 1x1 after the last index (inputs
    above 32x32), it is averaged to 1x1 so that the 512-wide classifier still applies.
    h = output of classifier[:6] (after the second dropout), shape (B, 512)."""

    def __init__(self, cfg: list, num_classes: int, input_shape: tuple[int, int, int]):
        super().__init__()
        in_ch, height, width = input_shape
        layers: list[nn.Module] = []
        for v in cfg:
            if v == "M":
                if height >= 2 and width >= 2:
                    layers.append(nn.MaxPool2d(2, 2))
                    height, width = height // 2, width // 2
                else:
                    layers.append(nn.Identity())
            else:
                layers += [conv3x3(in_ch, v, bias=True), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                in_ch = v
        self.features = nn.Sequential(*layers)
        self.pool_to_one = (height, width) != (1, 1)
        self.classifier = nn.Sequential(
            nn.Linear(in_ch, 512), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(512, num_classes),
        )
        init_conv_bn(self, linear_std=0.01)

    def forward_with_features(self, x):
        x = self.features(x)
        if self.pool_to_one:
            x = F.adaptive_avg_pool2d(x, 1)
        h = torch.flatten(x, 1)
        for layer in itertools.islice(self.classifier, 6):  # no new nn.Sequential per forward
            h = layer(h)
        return self.classifier[6](h), h


# ----------------------------------------------------------------------------- MobileNetV2

def make_divisible(v: float, divisor: int = 8) -> int:
    """Round v to the nearest multiple of divisor (at least divisor), never going down by more than 10%."""
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


def conv_bn_relu6(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1,
                  groups: int = 1) -> nn.Sequential:
    """Keys .0 (conv, no bias) and .1 (BN); .2 is the parameter-free ReLU6."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """[1x1 expand conv-BN-ReLU6 if t != 1], 3x3 depthwise conv-BN-ReLU6, 1x1 linear conv, BN; the input is
    added back when stride is 1 and the width is unchanged. All in `conv` (Sequential) for the zoo keys."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int):
        super().__init__()
        hidden = int(round(in_ch * expand))
        self.use_residual = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = [] if expand == 1 else [conv_bn_relu6(in_ch, hidden, kernel=1)]
        layers += [conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_residual else self.conv(x)


# (t = expansion, c = output width before the multiplier, n = blocks, s = stride of the first block).
# CIFAR changes from ImageNet: stem stride 1 and the 24-channel setting stride 1 (32 -> 32 -> 16 -> 8 -> 4).
MOBILENETV2_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2(FeatureClassifier):
    """features.0 stem conv_bn_relu6 (stride 1), features.1..17 inverted residuals, features.18 1x1
    conv_bn_relu6 to last_channel; global average pool; classifier = (Dropout(0.2), Linear).
    h = the Linear's input (pooled features after dropout), shape (B, last_channel)."""

    def __init__(self, width_mult: float, num_classes: int, input_shape: tuple[int, int, int]):
        super().__init__()
        stem = make_divisible(32 * width_mult)
        last_channel = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [conv_bn_relu6(input_shape[0], stem, stride=1)]
        prev = stem
        for t, c, n, s in MOBILENETV2_SETTINGS:
            out_ch = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(prev, out_ch, s if i == 0 else 1, t))
                prev = out_ch
        layers.append(conv_bn_relu6(prev, last_channel, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channel, num_classes))
        init_conv_bn(self, linear_std=0.01)

    def forward_with_features(self, x):
        pooled = torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
        h = self.classifier[0](pooled)
        return self.classifier[1](h), h


# ----------------------------------------------------------------------------- ShuffleNetV2

def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, g*c, H, W) -> interleave the g groups channel-wise (view as (B, g, c), transpose, flatten).

    Keeps the memory format: a channels_last input (the CUDA default in islab.train) is shuffled
    within each pixel's channel vector and stays channels_last, instead of coming back in the
    standard layout and being converted again by the next convolution."""
    b, ch, hgt, wid = x.shape
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        nhwc = x.permute(0, 2, 3, 1)   # a contiguous (B, H, W, C) view of the same memory
        out = nhwc.reshape(b, hgt, wid, groups, ch // groups).transpose(3, 4).reshape(b, hgt, wid, ch)
        return out.permute(0, 3, 1, 2)
    return x.view(b, groups, ch // groups, hgt, wid).transpose(1, 2).contiguous().view(b, ch, hgt, wid)


class ShuffleBlock(nn.Module):
    """ShuffleNetV2 unit. Stride 1: split channels in half, pass the first half through, transform the second
    with branch2. Stride 2: branch1 (dw3x3-BN-1x1-BN-ReLU) on the full input next to branch2.
    Concatenate, then shuffle with 2 groups. branch2 = 1x1-BN-ReLU-dw3x3-BN-1x1-BN-ReLU (keys 0,1,3,4,5,6)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        half = out_ch // 2
        self.stride = stride
        self.branch1 = None
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(in_ch, in_ch, 3, stride, 1, groups=in_ch, bias=False), nn.BatchNorm2d(in_ch),
                nn.Conv2d(in_ch, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True))
        branch2_in = in_ch if stride > 1 else half
        self.branch2 = nn.Sequential(
            nn.Conv2d(branch2_in, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, stride, 1, groups=half, bias=False), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True))

    def forward(self, x):
        if self.branch1 is None:
            kept, transformed = x.chunk(2, dim=1)
            out = torch.cat((kept, self.branch2(transformed)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


SHUFFLENETV2_CHANNELS = {  # stages_out_channels: conv1, stage2, stage3, stage4, conv5
    "x0_5": (24, 48, 96, 192, 1024), "x1_0": (24, 116, 232, 464, 1024),
    "x1_5": (24, 176, 352, 704, 1024), "x2_0": (24, 244, 488, 976, 2048),
}


class ShuffleNetV2(FeatureClassifier):
    """conv1 (3x3 stride 1, BN, ReLU; no max-pool for CIFAR), stage2/3/4 with 4/8/4 units (first has
    stride 2: 32 -> 16 -> 8 -> 4), conv5 (1x1, BN, ReLU), mean over H and W, fc. PyTorch default init.
    h = the spatial mean (B, channels[4])."""

    def __init__(self, channels: tuple[int, ...], num_classes: int, input_shape: tuple[int, int, int]):
        super().__init__()
        self.conv1 = nn.Sequential(conv3x3(input_shape[0], channels[0]), nn.BatchNorm2d(channels[0]),
                                   nn.ReLU(inplace=True))
        prev = channels[0]
        for name, repeats, out_ch in zip(("stage2", "stage3", "stage4"), (4, 8, 4), channels[1:4]):
            units = [ShuffleBlock(prev, out_ch, 2)]
            units += [ShuffleBlock(out_ch, out_ch, 1) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*units))
            prev = out_ch
        self.conv5 = nn.Sequential(conv1x1(prev, channels[4]), nn.BatchNorm2d(channels[4]),
                                   nn.ReLU(inplace=True))
        self.fc = nn.Linear(channels[4], num_classes)

    def forward_with_features(self, x):
        x = self.stage4(self.stage3(self.stage2(self.conv1(x))))
        h = self.conv5(x).mean(dim=(2, 3))
        return self.fc(h), h


# ----------------------------------------------------------------------------- digits models (8x8)

class LinearModel(FeatureClassifier):
    """Multinomial logistic regression on the flattened input; h = the flattened input (B, C*H*W)."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int]):
        super().__init__()
        self.fc = nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], num_classes)

    def forward_with_features(self, x):
        h = torch.flatten(x, 1)
        return self.fc(h), h


class MLP(FeatureClassifier):
    """Flatten, Linear(C*H*W, hidden), ReLU, Linear(hidden, K); h = hidden activations (B, hidden)."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], hidden: int = 128):
        super().__init__()
        self.hidden = nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], hidden)
        self.fc = nn.Linear(hidden, num_classes)

    def forward_with_features(self, x):
        h = F.relu(self.hidden(torch.flatten(x, 1)))
        return self.fc(h), h


class SmallCNN(FeatureClassifier):
    """Stack of conv3x3-BN-ReLU layers with one 2x2 max-pool after layer `pool_after` (skipped if the map
    is already 1 pixel), global average pool, fc. h = pooled features (B, widths[-1])."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], widths: tuple[int, ...],
                 pool_after: int):
        super().__init__()
        in_ch, height, width = input_shape
        layers: list[nn.Module] = []
        for i, w in enumerate(widths):
            layers += [conv3x3(in_ch, w), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            in_ch = w
            if i == pool_after and height >= 2 and width >= 2:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(in_ch, num_classes)
        init_conv_bn(self)

    def forward_with_features(self, x):
        h = torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
        return self.fc(h), h


# ----------------------------------------------------------------------------- 28x28 CPU models

class DeepMLP(FeatureClassifier):
    """Flatten, then Linear-ReLU per hidden width, then the head; h = last hidden activations.

    mlp2x256 (784-256-256-10, 269,322 parameters) is the Fashion-MNIST target: cheap on a CPU,
    and able to memorise targeted noise within the preset's 10-epoch schedule (REPRODUCTION.md
    reports how much)."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], widths: tuple[int, ...]):
        super().__init__()
        d = input_shape[0] * input_shape[1] * input_shape[2]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip((d,) + widths[:-1], widths))
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward_with_features(self, x):
        h = torch.flatten(x, 1)
        for layer in self.hidden:
            h = F.relu(layer(h))
        return self.fc(h), h


class PooledCNN(FeatureClassifier):
    """A cheap CNN for 28x28 inputs: 2x2 average pool (28 -> 14), conv3x3-BN-ReLU (16 ch), 2x2
    max-pool (14 -> 7), conv3x3-BN-ReLU (32 ch), global average pool, fc; h = pooled features (B, 32).

    The first pool quarters the cost of every later layer; its training throughput on a CPU is
    measured by `python benchmarks/train_overhead.py --model pooled_cnn` (benchmarks/README.md)."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], widths=(16, 32)):
        super().__init__()
        in_ch, height, width = input_shape
        self.pool_input = height >= 16 and width >= 16   # tiny inputs (8x8 digits) skip the first pool
        self.conv1, self.bn1 = conv3x3(in_ch, widths[0]), nn.BatchNorm2d(widths[0])
        self.conv2, self.bn2 = conv3x3(widths[0], widths[1]), nn.BatchNorm2d(widths[1])
        self.fc = nn.Linear(widths[1], num_classes)
        init_conv_bn(self)

    def forward_with_features(self, x):
        if self.pool_input:
            x = F.avg_pool2d(x, 2)
        x = F.relu(self.bn1(self.conv1(x)))
        if x.shape[-1] >= 2 and x.shape[-2] >= 2:
            x = F.max_pool2d(x, 2)
        x = F.relu(self.bn2(self.conv2(x)))
        h = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(h), h


# ----------------------------------------------------------------------------- registry

Constructor = Callable[[int, tuple], nn.Module]  # (num_classes, (C, H, W)) -> model
ZOO_MODELS: dict[str, Constructor] = {  # chenyaofo's names; these have released CIFAR weights
    **{f"resnet{6 * n + 2}": functools.partial(cifar_resnet, n) for n in (3, 5, 7, 9)},
    **{name: functools.partial(VGG, cfg) for name, cfg in VGG_CONFIGS.items()},
    **{f"mobilenetv2_{tag}": functools.partial(MobileNetV2, mult)
       for tag, mult in (("x0_5", 0.5), ("x0_75", 0.75), ("x1_0", 1.0), ("x1_4", 1.4))},
    **{f"shufflenetv2_{tag}": functools.partial(ShuffleNetV2, ch)
       for tag, ch in SHUFFLENETV2_CHANNELS.items()},
}
DIGITS_MODELS: dict[str, Constructor] = {
    "linear": LinearModel,
    "mlp": MLP,
    "cnn": functools.partial(SmallCNN, widths=(32, 64), pool_after=0),  # ~0.7 s for 10 epochs, 1 thread
    "cnn_wide": functools.partial(SmallCNN, widths=(64, 64, 128, 128), pool_after=1),  # the digits target
}
SMALL_MODELS: dict[str, Constructor] = {
    "mlp2x256": functools.partial(DeepMLP, widths=(256, 256)),   # the Fashion-MNIST target
    "mlp2x1024": functools.partial(DeepMLP, widths=(1024, 1024)),  # 7x larger: the memorisation candidate
    "pooled_cnn": PooledCNN,                                     # the Fashion-MNIST conv proxy
}
MODELS: dict[str, Constructor] = {**ZOO_MODELS, "resnet18": resnet18, **DIGITS_MODELS, **SMALL_MODELS}

MODEL_FAMILIES: dict[str, tuple[str, ...]] = {
    "cifar_zoo": tuple(ZOO_MODELS),
    "cifar": ("resnet18",),
    "digits": ("linear", "mlp", "cnn", "cnn_wide"),
    "small": tuple(SMALL_MODELS),
}


def build_model(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """A freshly initialised model; input_shape = (C, H, W) of one example (C = first conv's in_channels)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from: {', '.join(MODELS)}")
    if len(input_shape) != 3 or any(int(d) < 1 for d in input_shape):
        raise ValueError(f"input_shape must be (C, H, W) with positive sizes, got {tuple(input_shape)}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return MODELS[name](int(num_classes), tuple(int(d) for d in input_shape))


def last_linear(model: nn.Module) -> nn.Linear:
    """The classification head: the last-registered nn.Linear (every registry model registers its head
    last, so this is the layer whose input forward_with_features returns as h)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer")
    return linears[-1]


def logits_and_features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, C), h (B, D)) of any classifier: h is the input of the nn.Linear that produced the
    logits, so the last-layer gradient-norm bound (islab.scores.gradnorm_bound) is exact.

    Registry models (and any model with a `forward_with_features` method) take that fast path.
    Any other nn.Module (torchvision, a user's) runs its ordinary forward with a forward hook on
    every nn.Linear; the last one called is the head, and its output must be the model's output
    (a model that transforms its logits after the head has no "last-layer gradient" of the
    logits: ValueError, as for a model without any nn.Linear)."""
    fast = getattr(model, "forward_with_features", None)
    if fast is not None:
        return fast(x)
    calls = []

    def record(module, inputs, output):
        calls.append((inputs[0], output))

    handles = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.Linear)]
    if not handles:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer: the penultimate features are the "
                         "input of the last nn.Linear (the classification head)")
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    if not calls:
        raise ValueError(f"{type(model).__name__}.forward never called one of its nn.Linear layers")
    h, out = calls[-1]
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError(f"{type(model).__name__} must return logits of shape (batch, classes), got "
                         f"{getattr(logits, 'shape', type(logits).__name__)}")
    if out is not logits and not (out.shape == logits.shape and torch.equal(out, logits)):
        raise ValueError(f"the output of {type(model).__name__} is not the output of the last nn.Linear it "
                         "calls: the head must produce the logits (no softmax or other layer after it)")
    if h.dim() != 2:
        raise ValueError(f"the input of the head nn.Linear has shape {tuple(h.shape)}; expected (batch, features)")
    return logits, h


def count_parameters(model: nn.Module) -> int:
    """Number of parameter scalars (BN running statistics are buffers and do not count)."""
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- pretrained weights

ZOO_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
ZOO_INPUT_SHAPE = (3, 32, 32)
ZOO_URL = ("https://github.com/chenyaofo/pytorch-cifar-models/releases/download/"
           "{tag}/{dataset}_{name}-{hash}.pt")
ZOO_HASHES = {  # name: (cifar10 hash8, cifar100 hash8), the first 8 hex digits of the file's SHA-256
    "resnet20": ("4118986f", "23dac2f1"), "resnet32": ("ef93fc4d", "84213ce6"),
    "resnet44": ("2a3cabcb", "ffe32858"), "resnet56": ("187c023a", "f2eff4c8"),
    "vgg11_bn": ("eaeebf42", "57d0759e"), "vgg13_bn": ("c01e4a43", "5ebe5778"),
    "vgg16_bn": ("6ee7ea24", "7d8c4031"), "vgg19_bn": ("57191229", "b98f7bd7"),
    "mobilenetv2_x0_5": ("ca14ced9", "9f915757"), "mobilenetv2_x0_75": ("a53c314e", "d7891e60"),
    "mobilenetv2_x1_0": ("fe6a5b48", "1311f9ff"), "mobilenetv2_x1_4": ("3bbbd6e2", "8a269f5e"),
    "shufflenetv2_x0_5": ("1308b4e9", "1977720f"), "shufflenetv2_x1_0": ("98807be3", "9ae22beb"),
    "shufflenetv2_x1_5": ("296694dd", "e2c85ad8"), "shufflenetv2_x2_0": ("ec31611c", "e7e584cd"),
}


class PretrainedMissing(FileNotFoundError):
    """The weights file is neither given nor in the torch hub cache, and downloading was not allowed."""


def _check_zoo(dataset: str, name: str) -> None:
    if dataset not in ZOO_NUM_CLASSES:
        raise ValueError(f"no pretrained zoo for dataset {dataset!r}; "
                         f"choose from: {', '.join(ZOO_NUM_CLASSES)}")
    if name not in ZOO_HASHES:
        raise ValueError(f"no pretrained weights for model {name!r}; choose from: {', '.join(ZOO_HASHES)}")


def pretrained_url(dataset: str, name: str) -> str:
    """Release URL of chenyaofo's checkpoint, e.g. .../download/resnet/cifar10_resnet20-4118986f.pt."""
    _check_zoo(dataset, name)
    tag = next(t for t in ("resnet", "vgg", "mobilenetv2", "shufflenetv2") if name.startswith(t))
    digest = ZOO_HASHES[name][0 if dataset == "cifar10" else 1]
    return ZOO_URL.format(tag=tag, dataset=dataset, name=name, hash=digest)


def load_pretrained(model: nn.Module, dataset: str, name: str, weights: str | None = None,
                    download: bool = False) -> nn.Module:
    """Load zoo weights into `model` with strict=True and return it.

    weights: a local state_dict file, used as is. Otherwise the torch hub cache
    (<torch.hub.get_dir()>/checkpoints/<file name>, i.e. $TORCH_HOME/hub/checkpoints) is used when the file is
    there; if not, download=True fetches it with torch.hub.load_state_dict_from_url and download=False raises
    PretrainedMissing naming the file, the folder to place it in and the URL.
    """
    if weights is not None:
        if not os.path.isfile(weights):
            raise PretrainedMissing(f"weights file not found: {weights}")
        state, source = _read_state(weights), weights
    else:
        url = pretrained_url(dataset, name)
        filename = url.rsplit("/", 1)[1]
        folder = os.path.join(torch.hub.get_dir(), "checkpoints")
        cached = os.path.join(folder, filename)
        if os.path.isfile(cached):
            state, source = _read_state(cached), cached
        elif download:
            # check_hash: the download must match the SHA-256 prefix in its file name (a corrupt or
            # substituted file is refused, not loaded)
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True)
            source = url
        else:
            raise PretrainedMissing(
                f"pretrained weights {filename} not found in {folder}; place the file there (from {url}), "
                f"pass weights=<path>, or allow download=True")
    load_state_checked(model, state, source)
    return model


def _read_state(path: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  truncated, not a torch file, pickled code: one clear line
        raise ValueError(f"cannot read weights file {path} ({type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0][:120]})") from None


def load_state_checked(model: nn.Module, state, source: str) -> None:
    """model.load_state_dict(state, strict=True), but a file of another architecture raises
    ValueError naming the first missing or unexpected key, or the first tensor whose shape
    differs (torch only says 'Error(s) in loading state_dict')."""
    if not isinstance(state, dict):
        raise ValueError(f"{source} holds no state_dict (a {type(state).__name__})")
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            raise ValueError(f"{source} does not fit {type(model).__name__}: key {key} is missing "
                             f"(the model expects shape {tuple(value.shape)})")
        got = tuple(getattr(state[key], "shape", ()))
        if got != tuple(value.shape):
            raise ValueError(f"{source} does not fit {type(model).__name__}: {key} has shape {got} in the "
                             f"file but {tuple(value.shape)} in the model")
    extra = [k for k in state if k not in own]
    if extra:
        raise ValueError(f"{source} does not fit {type(model).__name__}: unexpected key {extra[0]}")
    model.load_state_dict(state, strict=True)


def build_pretrained(dataset: str, name: str, weights: str | None = None,
                     download: bool = False) -> nn.Module:
    """A zoo model for `dataset` (cifar10: 10 classes, cifar100: 100; input 3x32x32) with its released
    weights.
    Returned in training mode, like build_model; call .eval() for inference."""
    _check_zoo(dataset, name)
    model = build_model(name, ZOO_NUM_CLASSES[dataset], ZOO_INPUT_SHAPE)
    return load_pretrained(model, dataset, name, weights=weights, download=download)
