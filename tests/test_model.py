"""The CRNN against Table 1 of the report: shapes, parameter count, padding invariance."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ray_tagger.model import CRNN, ModelConfig, count_parameters, fast_layout


def test_default_is_the_report_model():
    model = CRNN()
    assert model.config.n_classes == 80
    assert count_parameters(model) == 2_647_680


@pytest.mark.parametrize("n", [1, 7, 8, 500, 1501])
def test_table1_shapes(n):
    torch.manual_seed(0)
    model = CRNN().eval()
    shapes: dict[str, tuple] = {}

    def record(name):
        return lambda module, args, out: shapes.__setitem__(name, tuple((out[0] if isinstance(out, tuple) else out).shape))

    for i, block in enumerate(model.blocks):
        block.norms[-1].register_forward_hook(record(f"conv{i}"))
        block.pool.register_forward_hook(record(f"pool{i}"))
    model.conv1d[0].register_forward_pre_hook(lambda m, args: shapes.__setitem__("reshape", tuple(args[0].shape)))
    model.norms1d[-1].register_forward_hook(record("conv1d"))
    model.fc.register_forward_pre_hook(lambda m, args: shapes.__setitem__("gru", tuple(args[0].shape)))
    model.fc.register_forward_hook(record("fc"))
    b = 2
    out = model(torch.randn(b, 1, 128, n), torch.tensor([n, max(1, n // 2)]))
    n2, n4, n8 = math.ceil(n / 2), math.ceil(math.ceil(n / 2) / 2), math.ceil(n / 8)
    assert n8 == math.ceil(n4 / 2)
    expected = {
        "conv0": (b, 16, 128, n), "pool0": (b, 16, 64, n2),
        "conv1": (b, 32, 64, n2), "pool1": (b, 32, 32, n4),
        "conv2": (b, 64, 32, n4), "pool2": (b, 64, 16, n8),
        "conv3": (b, 128, 16, n8), "pool3": (b, 128, 8, n8),
        "conv4": (b, 256, 8, n8), "pool4": (b, 256, 4, n8),
        "reshape": (b, 1024, n8), "conv1d": (b, 256, n8), "gru": (b, 256), "fc": (b, 256),
    }
    assert shapes == expected
    assert out.shape == (b, 80)
    assert torch.all((out > 0) & (out < 1))


def test_appended_padding_does_not_change_the_output():
    torch.manual_seed(1)
    model = CRNN().eval()
    for length in (1, 13, 64, 301):
        x = torch.randn(1, 1, 128, length)
        alone = model(x, torch.tensor([length]))
        for pad in (1, 7, 50):
            padded = torch.cat([x, 100 * torch.randn(1, 1, 128, pad)], dim=-1)
            got = model(padded, torch.tensor([length]))
            torch.testing.assert_close(got, alone, rtol=1e-5, atol=1e-6)


def test_batch_neighbours_do_not_leak_into_an_example():
    torch.manual_seed(2)
    model = CRNN(ModelConfig.tiny(n_classes=5)).eval()
    short = torch.randn(1, 1, 128, 40)
    other = torch.randn(1, 1, 128, 97)
    batch = torch.cat([torch.cat([short, torch.full((1, 1, 128, 57), -41.0)], -1), other], 0)
    out = model(batch, torch.tensor([40, 97]))
    torch.testing.assert_close(out[0:1], model(short, torch.tensor([40])), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[1:2], model(other, torch.tensor([97])), rtol=1e-5, atol=1e-6)


def test_max_readout_ignores_padding_and_batch_neighbours_and_scripts():
    """``readout='max'``: each GRU unit's maximum over the valid frames, so padding (even huge
    values past the length) changes nothing in eval mode; the model still scripts for export."""
    torch.manual_seed(3)
    config = dataclasses.replace(ModelConfig.tiny(n_classes=5), readout="max")
    model = CRNN(config).eval()
    short, other = torch.randn(1, 1, 128, 40), torch.randn(1, 1, 128, 97)
    alone = model(short, torch.tensor([40]))
    batch = torch.cat([torch.cat([short, 100 * torch.randn(1, 1, 128, 57)], -1), other], 0)
    out = model(batch, torch.tensor([40, 97]))
    torch.testing.assert_close(out[0:1], alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[1:2], model(other, torch.tensor([97])), rtol=1e-5, atol=1e-6)
    # the maximum, by hand: the GRU's outputs over the 5 frames left of 40 after the time pooling of 8
    with torch.no_grad():
        x = short
        lengths = torch.tensor([40])
        for block in model.blocks:
            x, lengths = block(x, lengths)
        x = x.flatten(1, 2)
        for conv, norm in zip(model.conv1d, model.norms1d):
            x = torch.relu(norm(conv(x)))
        seq, _ = model.gru(x.transpose(1, 2))
        assert seq.shape[1] == 5 == int(lengths)
        by_hand = torch.sigmoid(model.out(torch.relu(model.fc(seq.max(dim=1).values))))
    torch.testing.assert_close(alone, by_hand, rtol=1e-5, atol=1e-6)
    last = CRNN(dataclasses.replace(config, readout="last")).eval()
    last.load_state_dict(model.state_dict())  # the same weights: only the read-out differs
    assert not torch.allclose(last(short, torch.tensor([40])), alone)
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(batch, torch.tensor([40, 97])), out, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="model.readout"):
        ModelConfig(readout="mean")


def test_channels_last_layout_computes_the_same_model():
    """fast_layout changes the memory layout only: the outputs and the loss are those of the default
    layout for the same weights, and the gradients those of a float64 reference up to float32 error;
    padding is still ignored; the weights load into either layout.

    The gradients of channels-last are measurably less exact: its BatchNorm backward loses about
    1e-5 (relative) per layer against 1e-7 for the default layout, and through the nine BatchNorm
    layers of this model the first blocks' weight gradients end up 4-8 % from the reference on one
    thread (as a Train worker runs) and about 1 % on two, against 4e-6 for the default layout.
    A wrong layout (weights permuted) would be off by about 100 %."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a Train worker (one CPU), where the error is largest
    try:
        _check_channels_last()
    finally:
        torch.set_num_threads(threads)


def _check_channels_last():
    torch.manual_seed(3)
    cfg = ModelConfig(blocks=((8, 2, 2), (16, 2, 2), (16, 2, 2), (32, 2, 1), (32, 1, 1)), conv1d_channels=32,
                      gru_hidden=32, fc_hidden=32, n_classes=7)
    plain = CRNN(cfg)
    fast = fast_layout(CRNN(cfg))
    fast.load_state_dict(plain.state_dict())
    reference = CRNN(cfg).double()
    reference.load_state_dict(plain.state_dict())
    assert fast.blocks[0].convs[0].weight.is_contiguous(memory_format=torch.channels_last)
    x, lengths = torch.randn(3, 1, 128, 90), torch.tensor([90, 61, 20])
    y = (torch.rand(3, 7) < 0.3).float()
    losses, grads = [], []
    for model, dtype in ((plain, torch.float32), (fast, torch.float32), (reference, torch.float64)):
        model.train()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model(x.to(dtype), lengths, return_logits=True), y.to(dtype))
        loss.backward()
        losses.append(loss.item())
        # a convolution's bias before BatchNorm has a gradient of exactly 0 in exact arithmetic (the
        # normalisation removes it): in float32 it is pure noise, so only the weights are compared
        grads.append([p.grad.double() for n, p in model.named_parameters() if n.endswith("weight")])
    assert losses[1] == pytest.approx(losses[2], rel=1e-5) and losses[0] == pytest.approx(losses[2], rel=1e-5)
    for g_plain, g_fast, g_ref in zip(*grads):
        assert (g_plain - g_ref).norm() <= 1e-4 * g_ref.norm()
        assert (g_fast - g_ref).norm() <= 0.15 * g_ref.norm()
    plain.eval(), fast.eval()
    padded = torch.cat([x[2:], 100 * torch.randn(1, 1, 128, 70)], -1)
    torch.testing.assert_close(fast(padded, lengths[2:]), plain(x[2:], lengths[2:]), rtol=1e-5, atol=1e-6)
    back = CRNN(cfg)
    back.load_state_dict(fast.state_dict())
    assert back.blocks[0].convs[0].weight.is_contiguous()
    torch.testing.assert_close(back.eval()(x, lengths), fast(x, lengths), rtol=1e-5, atol=1e-6)


def test_tiny_config_keeps_the_structure():
    model = CRNN(ModelConfig.tiny(n_classes=12))
    assert count_parameters(model) < 100_000
    assert model(torch.randn(3, 1, 128, 20), torch.tensor([20, 11, 3])).shape == (3, 12)


def test_bad_input_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(B, 1, 128, N\)"):
        CRNN(ModelConfig.tiny())(torch.randn(2, 128, 20), torch.tensor([20, 20]))


def test_output_biases_start_at_the_log_odds_of_the_label_rate():
    # 1.5 labels of 80 classes: p = 0.01875, log(p / (1 - p)) = -3.9576 (hand-computed)
    model = CRNN(ModelConfig())
    assert torch.allclose(model.out.bias, torch.full((80,), -3.95757), atol=1e-4)
    default = CRNN(ModelConfig(label_rate=None))
    assert default.out.bias.abs().max() <= 1 / math.sqrt(256)  # PyTorch's uniform(±1/sqrt(fan_in))


def test_prior_initialised_crnn_learns_a_planted_band_task_fast():
    """A class is a band of 16 mel bins with extra energy somewhere in the clip; 8 classes, one per
    example. With the label-rate biases the CRNN of half the report's width must find it within
    200 steps (seeded; it reached 100 % accuracy by step 150 when measured)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    k = 8
    blocks = ((8, 2, 2), (16, 2, 2), (32, 2, 2), (64, 2, 1), (128, 1, 1))
    model = CRNN(ModelConfig(n_classes=k, blocks=blocks, conv1d_channels=128, gru_hidden=128, fc_hidden=128))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def batch(n: int, frames: int = 100):
        x, y = torch.randn(n, 1, 128, frames, generator=g) * 0.5, torch.zeros(n, k)
        for i in range(n):
            c = int(torch.randint(0, k, (1,), generator=g))
            s = int(torch.randint(0, frames - 20, (1,), generator=g))
            x[i, 0, 16 * c: 16 * (c + 1), s: s + 20] += 1.5
            y[i, c] = 1
        return x, torch.full((n,), frames), y

    for _ in range(200):
        x, lengths, y = batch(16)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x, lengths, return_logits=True), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, lengths, y = batch(64)
    with torch.no_grad():
        accuracy = (model(x, lengths).argmax(1) == y.argmax(1)).float().mean().item()
    assert accuracy >= 0.9


def test_a_bf16_autocast_train_step_follows_the_float32_step():
    """``run.autocast: bf16`` (train.train_step): the same step as float32 to bfloat16's precision,
    with float32 weights and loss, and not silently float32 (the loss differs in its low bits)."""
    import copy

    from ray_tagger.train import train_step

    torch.manual_seed(0)
    cfg = ModelConfig(blocks=((4, 2, 2), (8, 2, 2), (8, 2, 2), (16, 2, 1), (16, 1, 1)), conv1d_channels=32, gru_hidden=32,
                      fc_hidden=32, n_classes=10)
    a = CRNN(cfg)
    b = copy.deepcopy(a)
    x, lengths = torch.randn(4, 1, 128, 120), torch.tensor([120, 100, 80, 64])
    y = (torch.rand(4, 10) < 0.2).float()
    loss_a, norm_a = train_step(a, torch.optim.Adam(a.parameters(), lr=1e-3), x, lengths, y, 15.0, "none")
    loss_b, norm_b = train_step(b, torch.optim.Adam(b.parameters(), lr=1e-3), x, lengths, y, 15.0, "bf16")
    assert loss_b.dtype == torch.float32 and all(p.dtype == torch.float32 for p in b.parameters())
    assert loss_b.item() != loss_a.item(), "autocast changed nothing: the forward pass ran in float32"
    assert loss_b.item() == pytest.approx(loss_a.item(), rel=0.005)  # bfloat16: 8 mantissa bits, ~0.4 % per rounding
    assert norm_b.item() == pytest.approx(norm_a.item(), rel=0.1)
    for p, q in zip(a.parameters(), b.parameters()):  # Adam's first step moves every weight by about lr
        assert torch.allclose(p, q, atol=2.5e-3)


def test_autocast_takes_only_known_precisions():
    from ray_tagger.config import RunConfig

    assert RunConfig().autocast == "none"
    with pytest.raises(ValueError, match="run.autocast"):
        RunConfig(autocast="fp16")
