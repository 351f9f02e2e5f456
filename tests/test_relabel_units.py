"""Pieces of the relabelling, the sweep and the report, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from ray_tagger.config import SystemConfig, TrainJobConfig, resolve, resolve_system
from ray_tagger.relabel import choose_thresholds, relabel_specs
from ray_tagger.report import chance_lwlrap, format_table, results_table
from ray_tagger.sweep import R_VALUES, STRENGTH_RANGE, trial_job, trial_plan, with_strength


def test_threshold_minimises_the_error_count_worked_example():
    # scores sorted: .9(1) .8(0) .7(1) .4(1) .3(0) .1(0)
    scores = np.array([[0.9], [0.8], [0.7], [0.4], [0.3], [0.1]])
    labels = np.array([[1], [0], [1], [1], [0], [0]])
    # errors for t = inf, .9, .8, .7, .4, .3, .1: 3, 2, 3, 2, 1, 2, 3 -> t = .4, 1 error of 6
    t, err = choose_thresholds(scores, labels)
    assert t[0] == 0.4 and err[0] == pytest.approx(1 / 6)


def test_threshold_never_splits_tied_scores_and_prefers_the_higher_threshold():
    # the tied .5 pair must be both in or both out; t=.9 and t=.5 both give 1 error -> .9
    scores = np.array([[0.9], [0.5], [0.5], [0.2]])
    labels = np.array([[1], [1], [0], [0]])
    t, err = choose_thresholds(scores, labels)
    assert t[0] == 0.9 and err[0] == pytest.approx(1 / 4)


def test_threshold_of_a_class_without_labels_keeps_nothing_and_classes_are_independent():
    rng = np.random.default_rng(0)
    scores = rng.random((50, 3))
    labels = np.zeros((50, 3), int)
    labels[:, 1] = scores[:, 1] > 0.6  # separable: zero errors at the smallest positive score
    labels[:, 2] = 1
    t, err = choose_thresholds(scores, labels)
    assert t[0] == np.inf and err[0] == 0
    assert t[1] == scores[scores[:, 1] > 0.6, 1].min() and err[1] == 0
    assert t[2] == scores[:, 2].min() and err[2] == 0


def test_threshold_matches_brute_force_on_random_data():
    rng = np.random.default_rng(1)
    scores = rng.random((200, 4)).round(2)  # rounding makes ties
    labels = (rng.random((200, 4)) < scores * 0.8).astype(int)
    t, err = choose_thresholds(scores, labels)
    for c in range(4):
        candidates = np.append(np.unique(scores[:, c]), np.inf)
        errors = [((scores[:, c] >= x) != labels[:, c]).sum() for x in candidates]
        assert err[c] * 200 == pytest.approx(min(errors))
        assert ((scores[:, c] >= t[c]) != labels[:, c]).sum() == min(errors)


def test_report_system_is_15_relabelling_and_6_final_models():
    system = resolve_system("paper")
    assert system == SystemConfig()
    assert (system.relabel_R, system.final_R) == (8, (2, 4))
    specs = relabel_specs(system)
    assert len(specs) == 15 and {s.R for s in specs} == {8} and len({s.name for s in specs}) == 15
    assert len(system.final_R) * len(system.final_splits) == 6


def test_system_section_is_not_part_of_a_run_config_and_takes_overrides():
    assert "system" not in resolve("paper").to_dict()
    assert resolve_system("paper", ["system.final_R=[4]"]).final_R == (4,)


def test_strength_one_is_the_report_and_scales_every_knob():
    job = TrainJobConfig()
    assert with_strength(job, 1.0) == job
    half = with_strength(job, 0.5)
    assert half.mixup.probability == pytest.approx(1 / 3)
    assert (half.specaugment.freq_mask_max, half.specaugment.time_mask_max) == (8, 35)
    assert half.specaugment.alpha_scale == pytest.approx(0.035)
    assert with_strength(job, 1.75).mixup.probability == 1.0
    demo = resolve("demo")  # 64 bands: the frequency mask keeps its share of the bands
    assert (with_strength(demo, 0.5).specaugment.freq_mask_max, demo.features.n_mels) == (4, 64)


def test_trial_plan_cycles_R_and_draws_strength_in_range_reproducibly():
    plan = trial_plan(8, seed=3)
    assert [p["R"] for p in plan] == list(R_VALUES) * 2
    assert all(STRENGTH_RANGE[0] <= p["strength"] <= STRENGTH_RANGE[1] for p in plan)
    assert plan == trial_plan(8, seed=3) and plan != trial_plan(8, seed=4)
    assert len({p["name"] for p in plan}) == 8


def test_results_table_ensembles_and_chance():
    truth = np.eye(4)[[0, 1, 2, 3, 0, 1]]
    perfect = truth + 0.0
    inverted = 1 - truth
    scores = np.stack([perfect, inverted, perfect], axis=1)  # (N, M=3, K)
    runs = [{"name": "a", "R": 2}, {"name": "b", "R": 2}, {"name": "c", "R": 4}]
    rows = {r["name"]: r for r in results_table(truth, scores, runs)}
    assert rows["single model a"]["lwlrap"] == 1.0
    assert rows["single model b"]["lwlrap"] == pytest.approx(0.25)  # the true class ranks last of 4
    assert rows["ensemble R=2"]["models"] == 2 and "ensemble R=4" not in rows  # one model is no ensemble
    assert rows["ensemble (all)"]["lwlrap"] == 1.0
    # one label per clip among 4 classes: random scores give E[1/rank] = (1 + 1/2 + 1/3 + 1/4) / 4
    assert chance_lwlrap(np.eye(4)[np.arange(400) % 4]) == pytest.approx(25 / 48, abs=0.01)
    text = format_table(list(rows.values()))
    assert "best single model (a, of 3)" in text and "single model b" not in text


def test_chance_does_not_depend_on_the_order_of_the_clips():
    rng = np.random.default_rng(5)
    truth = (rng.random((120, 28)) < 0.06).astype(np.float64)
    truth[np.arange(120), rng.integers(0, 28, 120)] = 1
    figures = {chance_lwlrap(truth[rng.permutation(120)]) for _ in range(5)}
    assert len(figures) == 1


def test_relabel_check_defaults_and_they_are_not_part_of_a_run_identity():
    system = SystemConfig()
    assert (system.relabel_min_gain, system.relabel_max_drop, system.relabel_on_failure) == (0.1, 0.5, "stop")
    assert set(system.to_dict()) - set(system.identity()) == set(SystemConfig.GUARD_FIELDS)
    assert resolve_system("paper", ["system.relabel_max_drop=0.8"]).relabel_max_drop == 0.8


def test_keep_provided_labels_flag_maps_to_relabel_on_failure():
    from ray_tagger.cli import _keep_provided, build_parser

    def parsed(*argv: str) -> SystemConfig:
        args = build_parser().parse_args(list(argv))
        return resolve_system(args.preset, args.set, _keep_provided(args))

    assert parsed("relabel", "shards", "out").relabel_on_failure == "stop"
    assert parsed("relabel", "shards", "out", "--keep-provided-labels").relabel_on_failure == "keep_provided"
    assert parsed("run", "out", "--keep-provided-labels").relabel_on_failure == "keep_provided"
    assert parsed("run", "out", "--keep-provided-labels", "--set", "system.relabel_on_failure=stop").relabel_on_failure == "stop"


def test_every_report_of_a_sweep_trial_carries_the_held_out_lwlrap():
    """Reports come at log steps, checkpoints and the last iteration; each must validate, or Tune
    refuses the result (seen with the demo preset: log every 50, checkpoint every 30, 90 iterations)."""
    demo = trial_job(resolve("demo", ["optim.iterations=90", "run.checkpoint_every=30"]))
    assert (demo.run.log_every, demo.run.validate_every) == (10, 10)
    reports = [it for it in range(1, 91) if it % 50 == 0 or it % 30 == 0 or it == 90]
    assert all(it % demo.run.validate_every == 0 for it in reports)
    default = trial_job(resolve("demo"))  # log 50, checkpoint 300, 1,200 iterations: unchanged
    assert (default.run.log_every, default.run.validate_every) == (50, 50)
