"""islab/features.py pieces (the Food-101 path of DR-IS/food101.py) with known answers: the
quantised feature round trip, the partial fine-tune, the backbones' feature sizes, missing weights."""
import numpy as np
import pytest
import torch

from islab import features
from islab.data import prepare_batch


def test_feature_dataset_round_trip_through_prepare_batch():
    rng = np.random.default_rng(0)
    train_f = rng.normal(3.0, 2.0, size=(50, 6)).astype(np.float32)
    test_f = rng.normal(3.0, 2.0, size=(20, 6)).astype(np.float32)

    def blank(n):
        return features.Split(torch.zeros(n, 3, 4, 4, dtype=torch.uint8), torch.arange(n) % 3)

    ds_img = features.Dataset("img", blank(50), blank(20), 3, (3, 4, 4), features.IMAGENET_MEAN,
                              features.IMAGENET_STD, "none")
    fds = features.feature_dataset(train_f, test_f, ds_img, "toy")
    assert fds.input_shape == (1, 6, 1) and fds.train.x.dtype == torch.uint8 and fds.augment == "none"
    z = (train_f - train_f.mean(0)) / (train_f.std(0) + 1e-6)
    back = prepare_batch(fds, fds.train.x, train=False).view(50, 6).numpy()
    inside = np.abs(z) <= features.Z_CLIP
    # 8-bit grid of step 2Z/255: rounding error at most half a step
    assert np.abs(back - z)[inside].max() <= features.Z_CLIP / 255 + 1e-6
    assert torch.equal(fds.train.y, ds_img.train.y)


def test_partial_finetune_trains_only_layer4_and_fc():
    model = features.build_target("resnet18", 5, seed=0, device="cpu", pretrained=False)
    model.train()
    assert not model.frozen.training and model.layer4.training       # frozen BN keeps its statistics
    x = torch.randn(2, 3, 32, 32)
    logits, h = model.forward_with_features(x)
    assert logits.shape == (2, 5) and h.shape == (2, 512)
    logits.sum().backward()
    assert all(p.grad is None for p in model.frozen.parameters())
    assert all(p.grad is not None for p in model.layer4.parameters()) and model.fc.weight.grad is not None
    # the new fc comes from the seed's init stream
    same = features.build_target("resnet18", 5, seed=0, device="cpu", pretrained=False)
    other = features.build_target("resnet18", 5, seed=1, device="cpu", pretrained=False)
    assert torch.equal(same.fc.weight, model.fc.weight) and not torch.equal(other.fc.weight, model.fc.weight)


@pytest.mark.parametrize("name,dim", [("resnet18", 512), ("mobilenet_v3_small", 1024),
                                      ("efficientnet_b0", 1280)])
def test_backbone_penultimate_dims(name, dim):
    with torch.no_grad():
        out = features.build_backbone(name, pretrained=False)(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, dim)


def test_missing_weights_message_names_file_and_folder(tmp_path):
    with pytest.raises(features.PretrainedMissing, match="resnet18-f37072fd.pth"):
        features.check_weights(["resnet18"], weights_dir=tmp_path)
