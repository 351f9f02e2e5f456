"""The relabelling check (``relabel.judge``): relabel only with an ensemble clearly better than chance
on the curated clips it held out, and only when the thresholds keep most noisy excerpts.

Unit tests of the decision with hand-computed numbers, of the held-out pooling and of the precision
against planted truth; then one tiny system: relabelling models trained for 2 iterations (at
chance) make ``relabel`` stop with a one-line error and write nothing as if it had relabelled, the
CLI says so and exits 1, and ``--keep-provided-labels`` keeps the provided labels.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_tagger.config import SystemConfig, resolve_system
from ray_tagger.relabel import RelabelRefused, decide, judge, pool_heldout, relabel_precision
from ray_tagger.report import chance_lwlrap

# -- the decision ---------------------------------------------------------------------------------


def test_decide_passes_exactly_at_chance_plus_gain_and_at_max_drop():
    system = SystemConfig(relabel_min_gain=0.125, relabel_max_drop=0.5)  # binary-exact: 0.25 + 0.125 = 0.375
    check = decide(0.375, 0.25, 0.5, system)
    assert check == {"heldout_lwlrap": 0.375, "chance": 0.25, "min_gain": 0.125, "would_drop": 0.5, "max_drop": 0.5,
                     "decision": "relabelled"}
    with pytest.raises(RelabelRefused, match="held-out lwlrap"):
        decide(np.nextafter(0.375, 0), 0.25, 0.5, system)
    with pytest.raises(RelabelRefused, match="would drop"):
        decide(0.375, 0.25, np.nextafter(0.5, 1), system)


def test_refusal_is_one_line_naming_the_failed_condition_with_its_numbers():
    with pytest.raises(RelabelRefused) as weak:
        decide(0.161, 0.158, 0.2, SystemConfig())  # needs 0.158 + 0.1; drops 20% <= 50%
    msg = str(weak.value)
    assert msg == ("relabel: the relabelling ensemble's held-out lwlrap on the curated folds is 0.161, chance on the same "
                   "clips 0.158 (needs ≥ 0.258): its scores cannot judge the noisy labels; train longer or wider (preset), "
                   "or pass --keep-provided-labels (system.relabel_on_failure=keep_provided) to train the final models on "
                   "the provided labels")
    assert weak.value.check["decision"] == "refused" and weak.value.check["would_drop"] == 0.2
    with pytest.raises(RelabelRefused) as drops:
        decide(0.6, 0.158, 0.75, SystemConfig())  # good ranking, but 75% dropped > 50%
    msg = str(drops.value)
    assert "\n" not in msg and "held-out lwlrap" not in msg
    assert "thresholds would drop 75.0% of the noisy excerpts (at most 50%)" in msg
    assert "--set system.relabel_max_drop=SHARE" in msg and "--keep-provided-labels" in msg
    with pytest.raises(RelabelRefused) as both:
        decide(0.161, 0.158, 1.0, SystemConfig())
    assert "(needs ≥ 0.258) and its thresholds would drop 100.0%" in str(both.value)


def test_keep_provided_returns_the_decision_instead_of_raising():
    keep = SystemConfig(relabel_on_failure="keep_provided")
    assert decide(0.161, 0.158, 1.0, keep)["decision"] == "kept_provided"
    assert decide(0.6, 0.158, 0.1, keep)["decision"] == "relabelled"
    with pytest.raises(ValueError, match="relabel_on_failure"):
        SystemConfig(relabel_on_failure="ignore")


def test_judge_scores_the_held_out_ranking_against_chance_on_the_same_clips():
    truth = np.eye(4)[np.arange(400) % 4]  # one label of 4 per clip: chance = E[1/rank] = 25/48
    chance = chance_lwlrap(truth)
    assert chance == pytest.approx(25 / 48, abs=0.01)
    check = judge(truth, truth + 0.0, 0.1, SystemConfig())  # perfect ranking: lwlrap 1
    assert check["heldout_lwlrap"] == 1.0 and check["chance"] == chance and check["decision"] == "relabelled"
    with pytest.raises(RelabelRefused) as inverted:  # the true class always ranks last of 4: lwlrap 1/4
        judge(truth, 1 - truth, 0.1, SystemConfig())
    assert inverted.value.check["heldout_lwlrap"] == 0.25
    assert f"is 0.250, chance on the same clips {chance:.3f} (needs ≥ {chance + 0.1:.3f})" in str(inverted.value)


def test_pool_heldout_averages_only_the_members_that_held_the_clip_out():
    scores = np.array([  # (N=3 clips, M=3 members, K=2)
        [[0.1, 0.9], [0.5, 0.5], [0.3, 0.7]],
        [[0.2, 0.2], [0.6, 0.4], [0.0, 0.0]],
        [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]],
    ])
    before = scores.copy()
    keys, pooled = pool_heldout(["a", "b", "c"], scores, {"a": 0, "b": 1, "c": 2}, [0, 1, 0])
    assert keys == ["a", "b"]  # fold 2 was held out by no member
    np.testing.assert_allclose(pooled, [[0.2, 0.8], [0.6, 0.4]])  # a: members 0 and 2; b: member 1
    np.testing.assert_array_equal(scores, before)
    with pytest.raises(ValueError, match="no curated clip"):
        pool_heldout(["c"], scores[2:], {"c": 2}, [0, 1, 0])


def test_relabel_precision_against_planted_truth_and_random_changes(tmp_path):
    """3 classes; x1 provided {A}, true {B}, relabelled {B}: one right addition, one right removal.
    x2 provided {A, B}, true {A}, relabelled {C}: C added wrongly, A removed wrongly, B removed rightly."""
    (tmp_path / "relabeled").mkdir()
    rows = [{"clip_id": "x1.wav", "provided": ["A"], "labels": ["B"], "scores": [0.0] * 3},
            {"clip_id": "x2.wav", "provided": ["A", "B"], "labels": ["C"], "scores": [0.0] * 3}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "relabeled" / "split_0.parquet")
    truth = tmp_path / "data-noisy-truth.csv"
    with open(truth, "w", newline="") as f:
        csv.writer(f).writerows([["fname", "labels", "true_labels", "corrupted"],
                                 ["x1.wav", "A", "B", "True"], ["x2.wav", "A,B", "A", "True"]])
    p = relabel_precision(tmp_path, truth)
    assert p == {"added": 2, "added_precision": 1 / 2,
                 "added_random": 1 / 3,  # not provided: x1 B, C; x2 C -> 1 of them (x1 B) true
                 "removed": 3, "removed_precision": 2 / 3,
                 "removed_random": 2 / 3}  # provided: x1 A, x2 A, x2 B -> 2 really absent


def test_format_changes_states_the_check_and_the_precision(tmp_path):
    from ray_tagger.relabel import format_changes

    (tmp_path / "relabeled").mkdir()
    pq.write_table(pa.Table.from_pylist([{"clip_id": "x.wav", "provided": ["A"], "labels": ["A"], "scores": [0.0, 0.0]}]),
                   tmp_path / "relabeled" / "split_0.parquet")
    (tmp_path / "truth.csv").write_text("fname,labels,true_labels,corrupted\nx.wav,A,B,True\n")
    (tmp_path / "changes.csv").write_text("class,threshold,error_rate,provided,kept,added,removed\nA,0.5,0.0,1,1,0,0\n"
                                          "B,inf,0.0,0,0,0,0\n")
    check = {"heldout_lwlrap": 0.5, "chance": 0.25, "min_gain": 0.125, "would_drop": 0.25, "max_drop": 0.5,
             "decision": "relabelled"}
    summary = {"excerpts": 1, "labels_added": 0, "labels_removed": 0, "dropped": 0, "check": check}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    lines = format_changes(tmp_path, tmp_path / "truth.csv").splitlines()
    assert lines[-2] == ("check passed: held-out lwlrap on the curated folds 0.500, chance 0.250 (needs ≥ 0.375); "
                         "25.0% of the excerpts dropped (at most 50%)")
    assert lines[-1] == ("against the planted truth: 0 labels added, - of them true (random additions: 100.0%); "
                         "0 removed, - of them really absent (random removals: 100.0%)")
    (tmp_path / "summary.json").write_text(json.dumps({**summary, "check": {**check, "heldout_lwlrap": 0.3,
                                                                            "decision": "kept_provided"}}))
    assert format_changes(tmp_path).splitlines()[-1] == (
        "check failed, provided labels kept (the thresholds above were not applied): the relabelling ensemble's held-out "
        "lwlrap on the curated folds is 0.300, chance on the same clips 0.250 (needs ≥ 0.375): its scores cannot judge "
        "the noisy labels")


# -- a relabelling ensemble at chance, end to end -------------------------------------------------

OVERRIDES = ["optim.iterations=2", "optim.bn_refresh_batches=2", "system.relabel_folds=[0]"]


def _cli(*args: str) -> tuple[int, str, str]:
    """``ray-tagger ARGS --preset tiny ...`` in this process (the module's Ray session) -> exit code, stdout, stderr."""
    from ray_tagger.cli import main

    out, err = io.StringIO(), io.StringIO()
    address = os.environ.pop("RAY_ADDRESS", None)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*args, "--preset", "tiny", "--concurrency", "2", *[a for o in OVERRIDES for a in ("--set", o)]])
    finally:
        if address is not None:
            os.environ["RAY_ADDRESS"] = address
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def refused(ray_session, tmp_path_factory):
    """A demo set (1 split, 2 folds), relabelling runs of 2 iterations; ``ray-tagger relabel`` refuses."""
    from ray_tagger.config import resolve_features
    from ray_tagger.demo_data import DemoConfig, generate
    from ray_tagger.prepare import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("guard")
    generate(root / "data", DemoConfig(clips=24))
    shards = root / "shards"
    # every curated clip is held out once; the tiny preset's log-mel settings
    prepare(root / "data", shards, PrepareConfig(splits=1, folds=2, features=resolve_features("tiny")))
    out = root / "relabel"
    return root, shards, out, _cli("relabel", str(shards), str(out))


@pytest.mark.e2e
def test_models_at_chance_stop_relabel_with_one_line_and_exit_1_and_nothing_looks_relabelled(refused):
    from ray_tagger.ensemble import ensemble_specs

    root, _, out, (code, _, err) = refused
    record = json.loads((out / "refused.json").read_text())
    check, message = record["check"], record["message"]
    print(f"\n{message}")
    assert code == 1
    assert [line for line in err.splitlines() if "error:" in line] == [f"ray-tagger relabel: error: {message}"], err[-2000:]
    assert "Traceback" not in err and message.startswith("relabel: ") and "\n" not in message
    assert check["decision"] == "refused"
    assert check["heldout_lwlrap"] < check["chance"] + 0.1 or check["would_drop"] > 0.5
    assert abs(check["heldout_lwlrap"] - check["chance"]) < 0.15, "2 iterations of training should be at chance"
    # besides the training runs, only the refusal and the command's log (ray_tagger.console)
    assert sorted(p.name for p in out.iterdir() if p.name not in ("runs", "tune")) == ["ray-tagger.log", "refused.json"]
    assert len(list(out.glob("runs/*/summary.json"))) == 1  # the training runs stay: a re-run skips them
    with pytest.raises(FileNotFoundError, match="run 'ray-tagger relabel' first"):
        ensemble_specs(resolve_system("tiny", OVERRIDES), out)


@pytest.mark.e2e
def test_keep_provided_labels_trains_nothing_and_keeps_every_provided_label(refused):
    root, shards, out, _ = refused
    runs_before = {p: p.stat().st_mtime for p in out.glob("runs/*/summary.json")}
    code, printed, err = _cli("relabel", str(shards), str(out), "--keep-provided-labels",
                              "--noisy-truth", str(root / "data-noisy-truth.csv"))
    assert code == 0, err[-2000:]
    assert {p: p.stat().st_mtime for p in out.glob("runs/*/summary.json")} == runs_before
    summary = json.loads((out / "summary.json").read_text())
    assert summary["check"]["decision"] == "kept_provided"
    assert (summary["dropped"], summary["labels_added"], summary["labels_removed"]) == (0, 0, 0)
    assert not (out / "refused.json").exists() and not (out / "thresholds.json").exists()
    rows = [r for path in summary["tables"].values() for r in pq.read_table(path).to_pylist()]
    assert len(rows) == 2 * 24 and all(r["labels"] == r["provided"] and not r["dropped"] for r in rows)
    assert "check failed, provided labels kept" in printed
    assert "against the planted truth: 0 labels added, - of them true (random additions: " in printed
