"""SWA averaging, its state_dict round trip, the BatchNorm refresh, and the loss."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ray_tagger.loss import bce_loss
from ray_tagger.model import CRNN, ModelConfig
from ray_tagger.swa import SWA, refresh_batchnorm


def test_swa_is_the_arithmetic_mean_of_the_snapshots():
    torch.manual_seed(0)
    model = CRNN(ModelConfig.tiny(n_classes=3))
    swa = SWA(model)
    snapshots = []
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        swa.update(model)
        snapshots.append([p.detach().clone() for p in model.parameters()])
    assert swa.snapshots == 5
    target = CRNN(ModelConfig.tiny(n_classes=3))
    swa.copy_to(target)
    for i, p in enumerate(target.parameters()):
        torch.testing.assert_close(p, torch.stack([s[i] for s in snapshots]).mean(0), rtol=1e-5, atol=1e-6)


def test_swa_state_dict_round_trip():
    torch.manual_seed(1)
    model = CRNN(ModelConfig.tiny(n_classes=3))
    swa = SWA(model)
    for _ in range(3):
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        swa.update(model)
    restored = SWA(CRNN(ModelConfig.tiny(n_classes=3)))
    restored.load_state_dict(swa.state_dict())
    assert restored.snapshots == 3
    for a, b in zip(restored.averaged.parameters(), swa.averaged.parameters()):
        assert torch.equal(a, b)


def test_batchnorm_refresh_uses_the_statistics_of_the_data_seen():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    model.eval()
    data = torch.randn(4, 50, 3) * torch.tensor([1.0, 3.0, 0.5]) + torch.tensor([2.0, -1.0, 0.0])
    with torch.no_grad():
        hidden = model[0](data)  # what the BatchNorm sees, (4 batches, 50, 3)
    n = refresh_batchnorm(model, data, lambda m, batch: m(batch))
    bn = model[1]
    assert n == 4 and not model.training and bn.momentum == 0.1
    torch.testing.assert_close(bn.running_mean, hidden.reshape(-1, 3).mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, hidden.var(dim=1, unbiased=True).mean(0), rtol=1e-5, atol=1e-6)


def test_batchnorm_refresh_of_one_batch_gives_its_exact_moments():
    torch.manual_seed(3)
    model = nn.Sequential(nn.BatchNorm1d(2))
    batch = torch.randn(200, 2) * 4 + 7
    refresh_batchnorm(model, [batch], lambda m, b: m(b))
    torch.testing.assert_close(model[0].running_mean, batch.mean(0))
    torch.testing.assert_close(model[0].running_var, batch.var(0, unbiased=True))


def test_bce_is_summed_over_classes_and_averaged_over_the_batch():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    p = 1 / (1 + np.exp(-logits.numpy().astype(np.float64)))
    y = targets.numpy()
    expected = np.mean(-np.sum(y * np.log(p) + (1 - y) * np.log(1 - p), axis=1))
    assert abs(bce_loss(logits, targets).item() - expected) < 1e-6
