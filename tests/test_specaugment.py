"""Tests for ray_tagger.specaugment against report §2.2–2.4 (frequency warping and masks).

Expectations come from the report's distributions (seeded, with statistical bounds),
hand-computed warp values, and an independent reading of the masks from the output.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import stats

from ray_tagger.specaugment import (
    SpecAugment,
    SpecAugmentConfig,
    apply_masks,
    frequency_warp,
    sample_masks,
    sample_warp,
    source_positions,
    warp_map,
)

F = 128
N_DRAWS = 40_000


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def warp_draws() -> tuple[np.ndarray, np.ndarray]:
    f_c, alpha = sample_warp(N_DRAWS, F, SpecAugmentConfig(), _gen(2019))
    assert f_c.shape == alpha.shape == (N_DRAWS,)
    return f_c.numpy(), alpha.numpy()


# --- sampled warp parameters ----------------------------------------------------------------


def test_cutoff_is_exponential_with_scale_half_f(warp_draws) -> None:
    f_c, _ = warp_draws
    assert f_c.min() >= 0
    assert abs(f_c.mean() - 64) < 4 * 64 / np.sqrt(N_DRAWS)
    assert stats.kstest(f_c, stats.expon(scale=64).cdf).pvalue > 1e-3
    assert np.mean(f_c > F) == pytest.approx(np.exp(-2), abs=4 * np.sqrt(np.exp(-2) / N_DRAWS))


def test_cutoff_scales_with_number_of_bins() -> None:
    f_c, _ = sample_warp(N_DRAWS, 40, SpecAugmentConfig(), _gen(3))
    assert stats.kstest(f_c.numpy(), stats.expon(scale=20).cdf).pvalue > 1e-3


def test_alpha_distribution(warp_draws) -> None:
    _, alpha = warp_draws
    p_up = np.mean(alpha > 1)
    assert abs(p_up - 0.5) < 4 * np.sqrt(0.25 / N_DRAWS)
    log_a = np.log(alpha)
    assert abs(log_a.mean()) < 4 * log_a.std() / np.sqrt(N_DRAWS)
    # log-symmetry: log α and −log α have the same distribution
    assert stats.ks_2samp(log_a[log_a > 0], -log_a[log_a < 0]).pvalue > 1e-3
    # max(α, 1/α) = 1 + u, u ~ Exp(scale 0.07)
    u = np.maximum(alpha, 1 / alpha) - 1
    assert abs(u.mean() - 0.07) < 4 * 0.07 / np.sqrt(N_DRAWS)
    assert stats.kstest(u, stats.expon(scale=0.07).cdf).pvalue > 1e-3


def test_warp_draws_are_independent_of_each_other(warp_draws) -> None:
    f_c, alpha = warp_draws
    corr = np.corrcoef(f_c, np.log(alpha))[0, 1]
    assert abs(corr) < 4 / np.sqrt(N_DRAWS)


# --- the warp map -----------------------------------------------------------------------------


@pytest.mark.parametrize("f_c", [0.5, 10.0, 64.0, 127.0, 128.0, 200.0, 1e4])
def test_alpha_one_is_identity(f_c: float) -> None:
    x = torch.randn(2, 1, F, 9, generator=_gen(1))
    ones = torch.ones(2, dtype=torch.float64)
    pos = source_positions(F, torch.full((2,), f_c, dtype=torch.float64), ones)
    torch.testing.assert_close(pos, torch.arange(F, dtype=torch.float64).expand(2, F), rtol=0, atol=1e-9)
    torch.testing.assert_close(frequency_warp(x, pos), x, rtol=0, atol=1e-6)


def test_hand_computed_breakpoint_inside() -> None:
    """F=128, f_c=40, α=1.2: src = 80/2.2 = 400/11, α·src = 480/11; slope above = 58/63."""
    f = torch.tensor([0.0, 10.0, 400 / 11, 60.0, 100.0, 128.0], dtype=torch.float64)
    g = warp_map(f, F, torch.tensor([40.0], dtype=torch.float64), torch.tensor([1.2], dtype=torch.float64))[0]
    src, tgt, slope = Fraction(400, 11), Fraction(480, 11), Fraction(128 * 11 - 480, 128 * 11 - 400)
    assert slope == Fraction(58, 63)
    expected = [
        0.0,
        12.0,  # 1.2 · 10
        float(tgt),  # breakpoint
        float(tgt + (60 - src) * slope),  # 480/11 + (260/11)·(58/63) = 4120/63
        float(tgt + (100 - src) * slope),  # 480/11 + (700/11)·(58/63) = 10120/99
        128.0,  # (F, F)
    ]
    assert float(tgt + (60 - src) * slope) == pytest.approx(4120 / 63)
    assert float(tgt + (100 - src) * slope) == pytest.approx(10120 / 99)
    torch.testing.assert_close(g, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-9)

    # and the inverse reads those source positions back
    pos = source_positions(F, torch.tensor([40.0], dtype=torch.float64), torch.tensor([1.2], dtype=torch.float64))[0]
    assert pos[12].item() == pytest.approx(10.0)
    assert pos[0].item() == 0.0
    assert pos[120].item() == pytest.approx(float(src + (120 - tgt) / slope))


@pytest.mark.parametrize(("f_c", "alpha"), [(200.0, 0.9), (120.0, 1.2), (500.0, 1.05), (130.0, 0.8)])
def test_breakpoint_outside_scales_whole_axis(f_c: float, alpha: float) -> None:
    # (120, 1.2): src = 109.1 < F but α·src = 130.9 > F — the breakpoint lies outside the axis.
    f = torch.linspace(0, F, 257, dtype=torch.float64)
    fc_t, a_t = torch.tensor([f_c], dtype=torch.float64), torch.tensor([alpha], dtype=torch.float64)
    torch.testing.assert_close(warp_map(f, F, fc_t, a_t)[0], alpha * f, rtol=0, atol=1e-9)
    expected_pos = (torch.arange(F, dtype=torch.float64) / alpha).clamp(0, F - 1)
    torch.testing.assert_close(source_positions(F, fc_t, a_t)[0], expected_pos, rtol=0, atol=1e-9)


def _sampled_and_edge_params() -> tuple[torch.Tensor, torch.Tensor]:
    f_c, alpha = sample_warp(2000, F, SpecAugmentConfig(), _gen(77))
    edge_fc = torch.tensor([0.0, 1e-3, 1.0, 63.9, 127.9, 128.0, 140.0, 1e5], dtype=torch.float64)
    edge_a = torch.tensor([1.3, 0.7, 1.5, 0.6, 1.01, 0.99, 1.1, 0.8], dtype=torch.float64)
    return torch.cat([f_c, edge_fc]), torch.cat([alpha, edge_a])


def test_warp_map_monotone_over_axis() -> None:
    f_c, alpha = _sampled_and_edge_params()
    f = torch.linspace(0, F, 2049, dtype=torch.float64)
    g = warp_map(f, F, f_c, alpha)
    assert g.shape == (f_c.numel(), f.numel())
    diffs = g.diff(dim=1)
    assert (diffs >= 0).all()
    not_one = (alpha - 1).abs() > 1e-12
    assert (diffs[not_one] > 0).all()
    assert (g[:, 0] == 0).all()
    # breakpoint inside: the map ends at (F, F); outside: it ends at α·F
    src, tgt = 2 * f_c / (alpha + 1), 2 * f_c * alpha / (alpha + 1)
    inside = (src < F) & (tgt < F)
    assert inside.any() and (~inside).any()
    torch.testing.assert_close(g[inside, -1], torch.full_like(g[inside, -1], F), rtol=0, atol=1e-9)
    torch.testing.assert_close(g[~inside, -1], alpha[~inside] * F, rtol=0, atol=1e-9)
    # the breakpoint maps (src) → (α·src)
    torch.testing.assert_close(
        torch.stack([warp_map(s[None], F, c[None], a[None])[0, 0] for s, c, a in zip(src[inside][:50], f_c[inside][:50], alpha[inside][:50])]),
        tgt[inside][:50],
        rtol=0,
        atol=1e-9,
    )


def test_source_positions_monotone_in_range_and_inverse() -> None:
    f_c, alpha = _sampled_and_edge_params()
    pos = source_positions(F, f_c, alpha)
    assert pos.shape == (f_c.numel(), F)
    assert (pos >= 0).all() and (pos <= F - 1).all()
    assert (pos.diff(dim=1) >= 0).all()
    targets = torch.arange(F, dtype=torch.float64)
    checked = 0
    for b in range(f_c.numel()):
        back = warp_map(pos[b], F, f_c[b : b + 1], alpha[b : b + 1])[0]  # g(g⁻¹(f))
        unclamped = pos[b] < F - 1
        torch.testing.assert_close(back[unclamped], targets[unclamped], rtol=0, atol=1e-9)
        # clamped at the top: the true g⁻¹(f) lies beyond F−1, i.e. g(F−1) ≤ f
        assert (back[~unclamped] <= targets[~unclamped] + 1e-9).all()
        checked += int(unclamped.sum())
    assert checked > 0.9 * f_c.numel() * F


# --- interpolation ----------------------------------------------------------------------------


def test_linear_interpolation_reads_source_positions() -> None:
    f_c, alpha = _sampled_and_edge_params()
    b, n = f_c.numel(), 3
    x = torch.arange(F, dtype=torch.float64)[None, None, :, None].expand(b, 2, F, n).contiguous()
    pos = source_positions(F, f_c, alpha)
    out = frequency_warp(x, pos)
    assert out.shape == x.shape
    torch.testing.assert_close(out, pos[:, None, :, None].expand(b, 2, F, n), rtol=0, atol=1e-9)


def test_linear_interpolation_between_neighbours_by_hand() -> None:
    x = torch.tensor([0.0, 10.0, 30.0, 70.0])[None, None, :, None]  # (1, 1, 4, 1)
    pos = torch.tensor([[0.25, 1.5, 2.75, 3.0]])
    out = frequency_warp(x, pos)[0, 0, :, 0]
    torch.testing.assert_close(out, torch.tensor([2.5, 20.0, 60.0, 70.0]), rtol=0, atol=1e-5)


# --- masks ----------------------------------------------------------------------------------

LENGTHS = [1, 4, 5, 12, 37, 100, 349, 350, 351, 600]  # w_max = [0, 0, 1, 2, 7, 20, 69, 70, 70, 70]


def _expected_w_max(n: int) -> int:
    return min(70, n // 5)  # floor(0.2·N) in integer arithmetic


@pytest.fixture(scope="module")
def mask_draws():
    lengths = torch.tensor(LENGTHS * 4000)
    f0, height, n0, width = sample_masks(lengths.numel(), F, lengths, SpecAugmentConfig(), _gen(5))
    return lengths, f0, height, n0, width


def test_mask_sizes_and_positions_in_bounds(mask_draws) -> None:
    lengths, f0, height, n0, width = mask_draws
    assert all(t.shape == lengths.shape for t in (f0, height, n0, width))
    assert (height >= 0).all() and (height <= 16).all()
    assert (f0 >= 0).all() and (f0 <= F - height).all()
    w_max = torch.tensor([_expected_w_max(int(n)) for n in lengths])
    assert (width >= 0).all() and (width <= w_max).all()
    assert (n0 >= 0).all() and (n0 <= lengths - width).all()


def test_mask_values_all_reached_and_uniform(mask_draws) -> None:
    lengths, f0, height, n0, width = mask_draws
    h_values, h_counts = np.unique(height.numpy(), return_counts=True)
    np.testing.assert_array_equal(h_values, np.arange(17))
    assert stats.chisquare(h_counts).pvalue > 1e-3
    # f0 reaches both ends of {0..F−H} for the smallest and largest H
    for h in (0, 16):
        sel = f0[height == h]
        assert sel.min() == 0 and sel.max() == F - h
    for n in LENGTHS:
        sel = lengths == n
        w_values, w_counts = np.unique(width[sel].numpy(), return_counts=True)
        np.testing.assert_array_equal(w_values, np.arange(_expected_w_max(n) + 1))
        if w_values.size > 1:
            assert stats.chisquare(w_counts).pvalue > 1e-3
    # the tiny clips: n0 takes every value of {0..N−W}
    for n in (1, 4, 5):
        sel = lengths == n
        for w in range(_expected_w_max(n) + 1):
            vals = n0[sel & (width == w)].unique().tolist()
            assert vals == list(range(n - w + 1))


def test_apply_masks_zeroes_exactly_the_bands() -> None:
    g = _gen(9)
    b, n = 6, 50
    x = torch.rand(b, 2, F, n, generator=g) + 0.5  # no zeros to begin with
    lengths = torch.tensor([50, 1, 4, 20, 35, 50])
    f0, height, n0, width = sample_masks(b, F, lengths, SpecAugmentConfig(), g)
    # make sure at least one example has both masks non-empty, at known places
    f0[0], height[0], n0[0], width[0] = 3, 16, 40, 10
    out = apply_masks(x, f0, height, n0, width)
    expected = x.clone()
    for i in range(b):
        for f in range(int(f0[i]), int(f0[i] + height[i])):
            expected[i, :, f, :] = 0
        for t in range(int(n0[i]), int(n0[i] + width[i])):
            expected[i, :, :, t] = 0
    assert torch.equal(out, expected)
    assert (out[0, :, 3:19, :] == 0).all() and (out[0, :, 19:, :40] != 0).all() and (out[0, :, 2, :40] != 0).all()
    assert (out[0, :, :, 40:50] == 0).all()


def test_apply_masks_at_the_edges_and_empty() -> None:
    x = torch.ones(1, 1, F, 10)
    out = apply_masks(x, torch.tensor([F - 16]), torch.tensor([16]), torch.tensor([8]), torch.tensor([2]))
    assert (out[0, 0, F - 16 :, :] == 0).all() and (out[0, 0, : F - 16, :8] == 1).all()
    assert (out[0, 0, :, 8:] == 0).all()
    empty = apply_masks(x, torch.tensor([F]), torch.tensor([0]), torch.tensor([10]), torch.tensor([0]))
    assert torch.equal(empty, x)


# --- the whole transform ------------------------------------------------------------------


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    x = torch.rand(5, 1, F, 120, generator=g) + 0.25  # strictly positive, so zeros can only be masks
    lengths = torch.tensor([120, 1, 4, 60, 100])
    return x, lengths


def _bands(zero: torch.Tensor) -> tuple[list[int], list[int]]:
    """Rows all zero and frames all zero of one (F, N) boolean map."""
    rows = torch.nonzero(zero.all(dim=1)).flatten().tolist()
    frames = torch.nonzero(zero.all(dim=0)).flatten().tolist()
    return rows, frames


@pytest.mark.parametrize("warp", [True, False])
def test_specaugment_masks_are_bands_of_zeros(warp: bool) -> None:
    x, lengths = _batch()
    augment = SpecAugment(SpecAugmentConfig(warp=warp))
    seen_rows = seen_frames = 0
    for seed in range(30):
        out = augment(x, lengths, _gen(seed))
        assert out.shape == x.shape
        for b in range(x.shape[0]):
            zero = out[b, 0] == 0
            rows, frames = _bands(zero)
            # zeros are exactly the union of one band of rows and one band of frames
            union = torch.zeros_like(zero)
            union[rows, :] = True
            union[:, frames] = True
            assert torch.equal(zero, union)
            assert len(rows) <= 16
            assert rows == (list(range(rows[0], rows[0] + len(rows))) if rows else [])
            w_max = _expected_w_max(int(lengths[b]))
            assert len(frames) <= w_max
            assert all(t < lengths[b] for t in frames)
            assert frames == (list(range(frames[0], frames[0] + len(frames))) if frames else [])
            seen_rows += len(rows) > 0
            seen_frames += len(frames) > 0
            if not warp:  # unmasked values untouched
                assert torch.equal(out[b, 0][~zero], x[b, 0][~zero])
    assert seen_rows > 100 and seen_frames > 50


def test_specaugment_does_not_modify_input_and_is_deterministic() -> None:
    x, lengths = _batch(1)
    x_before, lengths_before = x.clone(), lengths.clone()
    augment = SpecAugment()
    a = augment(x, lengths, _gen(123))
    assert torch.equal(x, x_before) and torch.equal(lengths, lengths_before)
    b = augment(x, lengths, _gen(123))
    assert torch.equal(a, b)
    c = augment(x, lengths, _gen(124))
    assert not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert not torch.equal(a, x)


def test_specaugment_composes_warp_then_masks() -> None:
    x, lengths = _batch(2)
    cfg = SpecAugmentConfig()
    out = SpecAugment(cfg)(x, lengths, _gen(55))
    g = _gen(55)
    f_c, alpha = sample_warp(x.shape[0], F, cfg, g)
    masks = sample_masks(x.shape[0], F, lengths, cfg, g)
    expected = apply_masks(frequency_warp(x, source_positions(F, f_c, alpha)), *masks)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
