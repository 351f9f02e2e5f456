"""Tests for ray_tagger.mixup against report §2.1 (waveform mixup).

Expectations come from the report's formulas, hand-computed values and seeded statistical
bounds; none of them reuses the module's own arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ray_tagger.mixup import MixRecord, MixupConfig, draw, mixup, superpose

SR = 44100
MAX_SAMPLES = 30 * SR  # 30 s at 44.1 kHz
K = 80


def _targets(rng: np.random.Generator, n: int, k: int = K) -> np.ndarray:
    """(n, k) float32 n-hot with 1-3 labels per row."""
    y = np.zeros((n, k), dtype=np.float32)
    for i in range(n):
        y[i, rng.choice(k, size=rng.integers(1, 4), replace=False)] = 1
    return y


def _paired_pool(rng: np.random.Generator, pairs: int = 8, low: int = 50, high: int = 400) -> list[np.ndarray]:
    """2·pairs float32 waveforms whose lengths come in equal pairs, so every example has a candidate."""
    lengths = np.repeat(rng.integers(low, high, size=pairs), 2)
    return [rng.standard_normal(int(t)).astype(np.float32) for t in lengths]


def _mixed_length(t_i: int, t_j: int, tau: int) -> int:
    """Report: the mix spans [min(0, τ), max(T_i, τ + T_j))."""
    return max(t_i, tau + t_j) - min(0, tau)


def _loop_superpose(base, partner, tau: int, lam0: float, lam1: float) -> np.ndarray:
    """λ0·x_i(t) + λ1·(max|x_i|/max|x_j|)·x_j(t − τ), one sample at a time."""
    peak_i = max(abs(float(v)) for v in base)
    peak_j = max(abs(float(v)) for v in partner)
    start = min(0, tau)
    out = []
    for n in range(_mixed_length(len(base), len(partner), tau)):
        t = n + start
        value = 0.0
        if 0 <= t < len(base):
            value += lam0 * float(base[t])
        if 0 <= t - tau < len(partner):
            value += lam1 * (peak_i / peak_j) * float(partner[t - tau])
        out.append(value)
    return np.array(out)


def _shift_bounds(t_i: int, t_j: int, max_samples: int = MAX_SAMPLES) -> tuple[int, int]:
    return max(-t_j, t_i - max_samples), min(t_i, max_samples - t_j)


@pytest.fixture(scope="module")
def many_draws():
    """~12k seeded mixup draws over pools of paired random-length waveforms."""
    rng = np.random.default_rng(20190601)
    runs = []
    for _ in range(750):  # 750 pools × 16 examples = 12,000 draws
        waves = _paired_pool(rng)
        targets = _targets(rng, len(waves))
        out_waves, out_targets, records = mixup(waves, targets, rng)
        runs.append((waves, targets, out_waves, out_targets, records))
    return runs


def _all_records(many_draws) -> list[MixRecord]:
    return [r for run in many_draws for r in run[4]]


# --- probability of mixing ---------------------------------------------------------------


def test_mix_rate_is_two_thirds(many_draws) -> None:
    records = _all_records(many_draws)
    assert len(records) >= 10_000
    rate = np.mean([r.partner >= 0 for r in records])
    assert rate == pytest.approx(2 / 3, abs=0.02)


def test_mix_rate_follows_config_probability() -> None:
    rng = np.random.default_rng(5)
    lengths = np.array([100, 100, 100, 100])
    config = MixupConfig(probability=0.25)
    mixed = [draw(lengths, i % 4, rng, config).partner >= 0 for i in range(8000)]
    assert np.mean(mixed) == pytest.approx(0.25, abs=0.02)


# --- gains -----------------------------------------------------------------------------


def test_gains_in_range_and_log_symmetric_uniform_magnitude(many_draws) -> None:
    mixed = [r for r in _all_records(many_draws) if r.partner >= 0]
    g0 = np.array([r.gain_base for r in mixed])
    g1 = np.array([r.gain_partner for r in mixed])
    gains = np.concatenate([g0, g1])
    n = gains.size
    assert n > 12_000
    assert gains.min() >= 0.5 and gains.max() <= 2.0

    log_g = np.log(gains)
    assert abs(log_g.mean()) < 4 * log_g.std() / np.sqrt(n)
    p_up = np.mean(gains >= 1)
    assert abs(p_up - 0.5) < 4 * np.sqrt(0.25 / n)

    magnitude = np.maximum(gains, 1 / gains)  # a_m ~ U(1, 2)
    assert stats.kstest(magnitude, stats.uniform(loc=1, scale=1).cdf).pvalue > 1e-3
    # both directions actually used, across the whole range
    assert gains.min() < 0.52 and gains.max() > 1.98

    # λ0 and λ1 are drawn independently
    corr = np.corrcoef(np.log(g0), np.log(g1))[0, 1]
    assert abs(corr) < 4 / np.sqrt(g0.size)


def test_unmixed_records_carry_no_partner_gain(many_draws) -> None:
    unmixed = [r for r in _all_records(many_draws) if r.partner < 0]
    assert unmixed
    assert all(r.gain_partner == 0.0 and r.gain_base == 1.0 and r.shift == 0 for r in unmixed)


# --- partners --------------------------------------------------------------------------


def test_partners_short_enough_and_never_self() -> None:
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(300):
        # wide spread of lengths, plus pairs so most examples have candidates
        lengths = np.concatenate([rng.integers(20, 2000, size=6), np.repeat(rng.integers(20, 2000, size=3), 2)])
        waves = [rng.standard_normal(int(t)).astype(np.float32) for t in lengths]
        _, _, records = mixup(waves, _targets(rng, len(waves)), rng)
        for i, r in enumerate(records):
            if r.partner >= 0:
                assert r.partner != i
                assert 0 <= r.partner < len(waves)
                assert lengths[r.partner] <= 1.1 * lengths[i]
                checked += 1
    assert checked > 1000


def test_length_ratio_boundary() -> None:
    rng = np.random.default_rng(12)
    # T_j = 1.1·T_i exactly is allowed; one sample more is not.
    ok = [draw(np.array([1000, 1100]), 0, rng, MixupConfig()) for _ in range(600)]
    assert {r.partner for r in ok} == {-1, 1}
    too_long = [draw(np.array([1000, 1101]), 0, rng, MixupConfig()) for _ in range(600)]
    assert all(r.partner == -1 for r in too_long)
    # the longer one may take the shorter one as partner
    reverse = [draw(np.array([1000, 1101]), 1, rng, MixupConfig()) for _ in range(600)]
    assert {r.partner for r in reverse} == {-1, 0}


def test_example_without_candidate_is_unchanged() -> None:
    rng = np.random.default_rng(13)
    waves = [rng.standard_normal(1000).astype(np.float32), rng.standard_normal(100).astype(np.float32)]
    targets = _targets(rng, 2)
    for _ in range(200):
        out_waves, out_targets, records = mixup(waves, targets, rng)
        assert records[1].partner == -1  # 1000 > 1.1·100: no candidate, never itself
        np.testing.assert_array_equal(out_waves[1], waves[1])
        np.testing.assert_array_equal(out_targets[1], targets[1])


def test_every_candidate_gets_chosen() -> None:
    rng = np.random.default_rng(14)
    lengths = np.array([500, 100, 400, 550, 551, 900])
    partners = {draw(lengths, 0, rng, MixupConfig()).partner for _ in range(3000)}
    assert partners == {-1, 1, 2, 3}  # 551 > 550 and 900 are too long; 0 is itself


# --- shift and 30 s limit ------------------------------------------------------------------


def test_shift_bounds_and_output_length_near_30_seconds() -> None:
    rng = np.random.default_rng(21)
    seen_low = seen_high = 0
    for _ in range(400):
        lengths = np.concatenate([rng.integers(20 * SR, MAX_SAMPLES + 1, size=6), [MAX_SAMPLES, MAX_SAMPLES]])
        lengths = np.concatenate([lengths, rng.integers(SR, 20 * SR, size=4)])
        for i in range(len(lengths)):
            r = draw(lengths, i, rng, MixupConfig())
            if r.partner < 0:
                continue
            t_i, t_j = int(lengths[i]), int(lengths[r.partner])
            low, high = _shift_bounds(t_i, t_j)
            assert low <= r.shift <= high
            assert _mixed_length(t_i, t_j, r.shift) <= MAX_SAMPLES
            seen_low += r.shift < 0
            seen_high += r.shift > 0
    assert seen_low > 100 and seen_high > 100  # both directions exercised


def test_mixup_outputs_never_past_30_seconds() -> None:
    rng = np.random.default_rng(22)
    for _ in range(4):
        lengths = [MAX_SAMPLES, MAX_SAMPLES - 1, *rng.integers(25 * SR, MAX_SAMPLES, size=3), 14 * SR, 15 * SR]
        waves = [rng.uniform(-1, 1, size=int(t)).astype(np.float32) for t in lengths]
        targets = _targets(rng, len(waves))
        out_waves, _, records = mixup(waves, targets, rng)
        for i, (out, r) in enumerate(zip(out_waves, records)):
            assert out.ndim == 1 and len(out) <= MAX_SAMPLES
            if r.partner >= 0:
                t_i, t_j = len(waves[i]), len(waves[r.partner])
                low, high = _shift_bounds(t_i, t_j)
                assert low <= r.shift <= high
                assert len(out) == _mixed_length(t_i, t_j, r.shift)
            else:
                assert len(out) == len(waves[i])


def test_two_full_length_clips_mix_without_shift() -> None:
    rng = np.random.default_rng(23)
    lengths = np.array([MAX_SAMPLES, MAX_SAMPLES])
    shifts = {draw(lengths, 0, rng, MixupConfig()).shift for _ in range(100)}
    assert shifts == {0}  # τ ∈ [max(−T, 0), min(T, 0)] = {0}


def test_shift_uniform_small_range_all_values() -> None:
    """30 samples per "30 s": τ ∈ [max(−18, 20−30), min(20, 30−18)] = [−10, 12], 23 values."""
    config = MixupConfig(sample_rate=1, max_seconds=30.0)
    rng = np.random.default_rng(24)
    lengths = np.array([20, 18])
    shifts = np.array([r.shift for r in (draw(lengths, 0, rng, config) for _ in range(30_000)) if r.partner >= 0])
    values, counts = np.unique(shifts, return_counts=True)
    np.testing.assert_array_equal(values, np.arange(-10, 13))
    assert stats.chisquare(counts).pvalue > 1e-3


def test_shift_uniform_large_range_ks() -> None:
    """Fixed pair of 20 s and 15 s clips: τ ~ U(−10 s, 15 s) in samples."""
    rng = np.random.default_rng(25)
    jitter = np.random.default_rng(26)
    t_i, t_j = 20 * SR, 15 * SR
    low, high = _shift_bounds(t_i, t_j)
    assert (low, high) == (-10 * SR, 15 * SR)
    lengths = np.array([t_i, t_j])
    shifts = np.array([r.shift for r in (draw(lengths, 0, rng, MixupConfig()) for _ in range(6000)) if r.partner >= 0])
    assert shifts.min() >= low and shifts.max() <= high
    # discrete uniform on {low..high} + U(0,1) jitter is continuous uniform on [low, high+1)
    u = (shifts - low + jitter.random(shifts.size)) / (high - low + 1)
    assert stats.kstest(u, "uniform").pvalue > 1e-3


# --- labels, unchanged examples, inputs ----------------------------------------------------


def test_labels_union_and_unmixed_unchanged(many_draws) -> None:
    n_mixed = n_unmixed = 0
    for waves, targets, out_waves, out_targets, records in many_draws:
        assert out_targets.shape == targets.shape
        assert len(out_waves) == len(waves)
        for i, r in enumerate(records):
            if r.partner >= 0:
                expected = np.maximum(targets[i], targets[r.partner])
                np.testing.assert_array_equal(out_targets[i], expected)
                n_mixed += 1
            else:
                np.testing.assert_array_equal(out_targets[i], targets[i])
                np.testing.assert_array_equal(out_waves[i], waves[i])
                assert out_waves[i].dtype == np.float32
                n_unmixed += 1
    assert n_mixed > 1000 and n_unmixed > 1000


def test_union_is_not_a_weighted_average() -> None:
    rng = np.random.default_rng(31)
    waves = [rng.standard_normal(300).astype(np.float32) for _ in range(2)]
    targets = np.zeros((2, 4), dtype=np.float32)
    targets[0, 0] = targets[1, 2] = 1
    targets[0, 3] = targets[1, 3] = 1  # shared label stays 1, not 2
    for _ in range(50):
        _, out_targets, records = mixup(waves, targets, rng)
        for i, r in enumerate(records):
            if r.partner >= 0:
                np.testing.assert_array_equal(out_targets[i], [1, 0, 1, 1])
            else:
                np.testing.assert_array_equal(out_targets[i], targets[i])


def test_mixed_waves_match_independent_superposition(many_draws) -> None:
    for waves, _, out_waves, _, records in many_draws[:60]:
        for i, r in enumerate(records):
            if r.partner < 0:
                continue
            expected = _loop_superpose(waves[i], waves[r.partner], r.shift, r.gain_base, r.gain_partner)
            np.testing.assert_allclose(out_waves[i], expected, rtol=1e-5, atol=1e-5)


def test_inputs_unmodified_and_outputs_not_aliased() -> None:
    rng = np.random.default_rng(41)
    for _ in range(30):
        waves = _paired_pool(rng, pairs=4)
        targets = _targets(rng, len(waves))
        waves_before = [w.copy() for w in waves]
        targets_before = targets.copy()
        out_waves, out_targets, _ = mixup(waves, targets, rng)
        for w, before in zip(waves, waves_before):
            np.testing.assert_array_equal(w, before)
        np.testing.assert_array_equal(targets, targets_before)
        assert not np.shares_memory(out_targets, targets)
        for out, w in zip(out_waves, waves):
            assert not np.shares_memory(out, w)


# --- hand computation --------------------------------------------------------------------

BASE = np.array([1.0, -2.0, 3.0, 0.5, -1.0], dtype=np.float32)  # max|x_i| = 3
PARTNER = np.array([0.5, -4.0, 2.0, 1.0], dtype=np.float32)  # max|x_j| = 4 → scale 3/4


@pytest.mark.parametrize(
    ("tau", "expected"),
    [
        # λ0 = 1.5, λ1 = 0.6, λ1·3/4 = 0.45; values worked out by hand
        (2, [1.5, -3.0, 4.5 + 0.225, 0.75 - 1.8, -1.5 + 0.9, 0.45]),
        (-3, [0.225, -1.8, 0.9, 1.5 + 0.45, -3.0, 4.5, 0.75, -1.5]),
        (0, [1.5 + 0.225, -3.0 - 1.8, 4.5 + 0.9, 0.75 + 0.45, -1.5]),
        (-4, [0.225, -1.8, 0.9, 0.45, 1.5, -3.0, 4.5, 0.75, -1.5]),  # τ = −T_j: back to back
        (5, [1.5, -3.0, 4.5, 0.75, -1.5, 0.225, -1.8, 0.9, 0.45]),  # τ = T_i: back to back
    ],
)
def test_superpose_hand_computed(tau: int, expected: list[float]) -> None:
    out = superpose(BASE, PARTNER, tau, 1.5, 0.6)
    assert out.dtype == np.float32
    assert len(out) == max(5, tau + 4) - min(0, tau)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out, _loop_superpose(BASE, PARTNER, tau, 1.5, 0.6), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("tau", [-4, -3, -1, 0, 1, 3, 5])
@pytest.mark.parametrize(("lam0", "lam1"), [(1.0, 1.0), (0.5, 2.0), (1.7, 0.55)])
def test_superpose_matches_loops(tau: int, lam0: float, lam1: float) -> None:
    out = superpose(BASE, PARTNER, tau, lam0, lam1)
    np.testing.assert_allclose(out, _loop_superpose(BASE, PARTNER, tau, lam0, lam1), rtol=1e-6, atol=1e-6)


def test_partner_scaled_to_base_peak_exactly() -> None:
    # τ = T_i, λ0 = 1, λ1 = 2: the partner part is 2 · (3/4) · x_j = [0.75, −6, 3, 1.5].
    out = superpose(BASE, PARTNER, 5, 1.0, 2.0)
    np.testing.assert_allclose(out, [1.0, -2.0, 3.0, 0.5, -1.0, 0.75, -6.0, 3.0, 1.5], rtol=0, atol=1e-6)
    assert np.abs(out[5:]).max() == pytest.approx(2.0 * 3.0)  # partner's peak = λ1 · base's peak


def test_mixup_with_seed_matches_hand_loop() -> None:
    waves = [BASE.copy(), PARTNER.copy()]
    targets = np.eye(2, dtype=np.float32)
    rng = np.random.default_rng(3)
    checked = set()
    for _ in range(60):
        out_waves, _, records = mixup(waves, targets, rng)
        r = records[0]  # T_j = 4 ≤ 1.1·5: base 0 can take partner 1
        if r.partner < 0:
            continue
        assert r.partner == 1 and -4 <= r.shift <= 5
        expected = _loop_superpose(BASE, PARTNER, r.shift, r.gain_base, r.gain_partner)
        assert len(out_waves[0]) == max(5, r.shift + 4) - min(0, r.shift)
        np.testing.assert_allclose(out_waves[0], expected, rtol=1e-6, atol=1e-6)
        checked.add(int(np.sign(r.shift)))
    assert checked == {-1, 0, 1}


# --- determinism ---------------------------------------------------------------------------


def _run(seed: int):
    data_rng = np.random.default_rng(99)
    waves = _paired_pool(data_rng)
    targets = _targets(data_rng, len(waves))
    return mixup(waves, targets, np.random.default_rng(seed))


def test_same_seed_same_outputs() -> None:
    a_waves, a_targets, a_records = _run(7)
    b_waves, b_targets, b_records = _run(7)
    assert a_records == b_records
    np.testing.assert_array_equal(a_targets, b_targets)
    for a, b in zip(a_waves, b_waves):
        np.testing.assert_array_equal(a, b)
    c_waves, _, c_records = _run(8)
    assert c_records != a_records
