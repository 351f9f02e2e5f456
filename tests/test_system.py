"""The whole system through the real CLI (report §4): ``ray-tagger run`` on the demo set with the
tiny preset, killed during relabelling and resumed, then checked against the planted label
corruption and the test labels; re-run when complete; ``predict`` → ``evaluate``; ``tag``.

The tiny preset's ``system:`` section trains 3 relabelling models (split 0, folds 0–2) and
R ∈ {2, 4} × 1 split final models, 2 at a time, on a 2-core machine (logical CPUs, DESIGN §3):
the third relabelling run starts when one of the first two ends, which is when the test kills.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ray_tagger.metrics import lwlrap

pytestmark = pytest.mark.e2e  # trains models through the CLI (see pyproject.toml)

CLIPS = 60
TOLERANCE = 0.03
"""How far the final ensemble's test lwlrap may fall below the best single model's."""


BASELINE_WEIGHTS = (0.25, 0.5)
"""The run blends the classical baseline into its submission at one of these weights, chosen on the
relabelling models' held-out folds (the `demo` preset chooses from 0, 0.25, 0.5, 0.75)."""


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def _cli(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ray_tagger", *args], env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _run_cmd(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "ray_tagger", "run", str(run_dir), "--preset", "tiny", "--demo-clips", str(CLIPS), "--demo-classes", "8",
            "--concurrency", "2", "--set", f"system.baseline_weights={list(BASELINE_WEIGHTS)}"]


def _summaries(root: Path) -> dict[str, float]:
    """Run name → mtime of its summary.json (complete runs only)."""
    return {p.parent.name: p.stat().st_mtime for p in root.glob("runs/*/summary.json")}


def _metric_lines(root: Path) -> dict[str, int]:
    return {p.parent.name: len(p.read_text().splitlines()) for p in root.glob("runs/*/metrics.jsonl")}


@pytest.fixture(scope="module")
def system_run(tmp_path_factory):
    """Start ``run``, kill its whole process group (driver and local Ray) once one relabelling run is
    complete and another is part-way, then run the same command again to the end."""
    run_dir = tmp_path_factory.mktemp("system") / "run"
    log = open(run_dir.parent / "first.log", "w")
    proc = subprocess.Popen(_run_cmd(run_dir), env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    relabel = run_dir / "relabel"
    deadline = time.monotonic() + 1500
    state = None
    while time.monotonic() < deadline and proc.poll() is None:
        done, lines = _summaries(relabel), _metric_lines(relabel)
        running = [n for n, k in lines.items() if n not in done and k >= 3]
        if done and running:
            state = (done, lines)
            break
        time.sleep(0.5)
    assert proc.poll() is None and state is not None, (run_dir.parent / "first.log").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    time.sleep(3)
    finished_before = _summaries(relabel)  # may include a run that finished in the last instant
    again = subprocess.run(_run_cmd(run_dir), env=_env(), capture_output=True, text=True, timeout=2400)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    return run_dir, finished_before, again


def test_killed_run_resumes_without_retraining_finished_runs(system_run):
    run_dir, finished_before, again = system_run
    after = _summaries(run_dir / "relabel")
    assert len(after) == 3
    for name, mtime in finished_before.items():
        assert after[name] == mtime, f"{name} was finished before the kill and was trained again"
    assert f"{len(finished_before)} of 3 runs are complete and are not trained again" in again.stderr


def test_relabel_runs_overlapped_in_time(system_run):
    run_dir, _, _ = system_run
    runs = json.loads((run_dir / "relabel" / "summary.json").read_text())["runs"]
    spans = sorted((r["started"], r["finished"]) for r in runs)
    overlaps = sum(1 for (a0, a1), (b0, b1) in zip(spans, spans[1:]) if b0 < a1)
    assert overlaps >= 1, f"no two relabelling runs overlapped: {spans}"


def _read_truth_csv(path: Path, key: str) -> dict[str, set[str]]:
    with open(path, newline="") as f:
        return {r["fname"]: set(filter(None, r[key].split(","))) for r in csv.DictReader(f)}


def test_relabelling_undoes_planted_corruption_better_than_chance(system_run):
    """A changed (excerpt, class) cell fixes the corruption when it adds a true label the provided set
    lacked or removes a provided label that is not true. Changing cells at random would fix a
    fraction ``wrong / cells`` of the changes; relabelling must do clearly better, in precision and
    in recall of the corrupted cells."""
    import pyarrow.parquet as pq

    run_dir, _, _ = system_run
    truth = _read_truth_csv(run_dir / "demo-data-noisy-truth.csv", "true_labels")
    classes = json.loads((run_dir / "shards" / "vocabulary.json").read_text())["classes"]
    tables = sorted((run_dir / "relabel" / "relabeled").glob("split_*.parquet"))
    assert [t.name for t in tables] == ["split_0.parquet", "split_1.parquet", "split_2.parquet"]
    cells = wrong = changed = fixed = 0
    for t in tables:
        for r in pq.read_table(t).to_pylist():
            provided, new, true = set(r["provided"]), set(r["labels"]), truth[r["clip_id"]]
            assert r["dropped"] == (not new)
            for c in classes:
                cells += 1
                is_wrong = (c in provided) != (c in true)
                is_changed = (c in provided) != (c in new)
                wrong += is_wrong
                changed += is_changed
                fixed += is_wrong and is_changed
    base_rate = wrong / cells
    precision, recall = fixed / max(changed, 1), fixed / wrong
    print(f"\ncells {cells}, corrupted {wrong} ({base_rate:.3f}), changed {changed}, fixed {fixed}: "
          f"precision {precision:.3f}, recall {recall:.3f} (random changes: precision {base_rate:.3f}, "
          f"recall {changed / cells:.3f})")
    assert wrong > 0 and changed > 0
    assert precision > 2 * base_rate
    assert recall > 2 * changed / cells


def test_final_ensemble_is_not_worse_than_its_best_model_and_both_beat_chance(system_run):
    run_dir, _, again = system_run
    results = json.loads((run_dir / "results.json").read_text())
    rows = {r["name"]: r for r in results["table"]}
    chance = rows["chance (random scores)"]["lwlrap"]
    best = max(r["lwlrap"] for r in results["table"] if r["models"] == 1)
    ensemble = rows["ensemble (all)"]["lwlrap"]
    print(f"\nchance {chance:.3f}, best single model {best:.3f}, ensemble {ensemble:.3f}")
    assert rows["ensemble (all)"]["models"] == 2
    assert ensemble >= best - TOLERANCE
    assert best > chance + 0.1 and ensemble > chance + 0.1
    assert "best single model" in again.stdout and "ensemble (all)" in again.stdout
    for plot in ("training_curves", "per_class_lwlrap", "relabel_changes"):
        assert (run_dir / "plots" / f"{plot}.png").stat().st_size > 10_000


def _chosen_weight(run_dir: Path) -> float:
    return json.loads((run_dir / "baseline" / "submission_weight.json").read_text())["weight"]


def test_the_baseline_weight_is_the_best_of_the_choices_on_the_relabelling_held_out_folds(system_run):
    """The held-out scores `run` weighed are those relabel's check judged (same lwlrap), and the weight
    it chose is the recorded best (ties to the smaller)."""
    run_dir, _, again = system_run
    record = json.loads((run_dir / "baseline" / "submission_weight.json").read_text())
    with np.load(run_dir / "relabel" / "heldout.npz") as f:
        heldout = {k: f[k] for k in f.files}
    check = json.loads((run_dir / "relabel" / "summary.json").read_text())["check"]
    assert abs(lwlrap(heldout["truth"], heldout["scores"])[0] - check["heldout_lwlrap"]) < 1e-9
    assert set(heldout["fold"].tolist()) == set(record["folds"]) == {0, 1, 2}  # the tiny preset's relabel_folds
    assert record["heldout_clips"] == len(heldout["clip_id"]) and record["weights"] == list(BASELINE_WEIGHTS)
    grid = {float(w): v for w, v in record["heldout_lwlrap"].items()}
    assert set(grid) == set(BASELINE_WEIGHTS) and all(0.0 < v <= 1.0 for v in grid.values())
    assert record["weight"] == min(w for w in grid if grid[w] == max(grid.values()))
    assert json.loads((run_dir / "results.json").read_text())["submission_weighing"] == record
    assert f"→ {record['weight']:g}" in again.stderr and "baseline weight: held-out lwlrap of the relabelling models" in again.stderr


def test_the_submission_blends_the_chosen_baseline_row_into_the_members_mean(system_run):
    """submission = (1 - w) · members' mean + w · baseline, checked backwards: the baseline scores it
    implies are probabilities and score exactly one of the table's two baseline rows."""
    run_dir, _, again = system_run
    weight = _chosen_weight(run_dir)
    saved = np.load(run_dir / "predictions" / "test_scores.npz")
    fnames, classes, members = saved["fnames"].tolist(), saved["classes"].tolist(), saved["scores"]
    with open(run_dir / "predictions" / "submission.csv", newline="") as f:
        submitted = {r["fname"]: [float(r[c]) for c in classes] for r in csv.DictReader(f)}
    submission = np.array([submitted[n] for n in fnames])
    implied = (submission - (1 - weight) * members.mean(axis=1)) / weight
    assert implied.min() > -1e-5 and implied.max() < 1 + 1e-5
    assert np.abs(implied - members.mean(axis=1)).max() > 0.05, "the submission is not just the members' mean"
    from tests.test_train import _truth

    truth_of = _truth(run_dir / "demo-data-test-labels.csv")
    truth = np.array([[c in truth_of[n] for c in classes] for n in fnames], float)
    rows = {r["name"]: r["lwlrap"] for r in json.loads((run_dir / "results.json").read_text())["table"]}
    baseline_rows = [v for k, v in rows.items() if k.startswith("classical baseline")]
    assert len(baseline_rows) == 2
    assert min(abs(lwlrap(truth, implied)[0] - v) for v in baseline_rows) < 1e-6, (lwlrap(truth, implied)[0], baseline_rows)
    blended = [k for k in rows if k.startswith("ensemble (all) + baseline (")]
    assert blended == [f"{blended[0].split(' at weight')[0]} at weight {weight:g}"]
    assert abs(rows[blended[0]] - lwlrap(truth, submission)[0]) < 1e-9
    assert blended[0] in again.stdout  # the results table
    assert f"submission: the final models' mean score × {1 - weight:g} + the classical baseline" in again.stderr  # a stage line


def test_rerunning_a_complete_run_trains_nothing(system_run):
    run_dir, _, again = system_run
    before = {**_summaries(run_dir / "relabel"), **{f"final/{k}": v for k, v in _summaries(run_dir / "final").items()}}
    done = subprocess.run(_run_cmd(run_dir), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after = {**_summaries(run_dir / "relabel"), **{f"final/{k}": v for k, v in _summaries(run_dir / "final").items()}}
    assert after == before and len(after) == 5
    assert "Trial" not in done.stdout + done.stderr, "no Tune trial may start"
    assert "is complete; nothing to relabel" in done.stderr
    assert "started a local Ray" not in done.stderr, "every stage is complete: no Ray is started"
    assert "started a local Ray" in again.stderr


def test_predict_blends_as_the_submission_did_and_evaluate_equals_the_lwlrap_computed_here(system_run, tmp_path):
    """`predict` on the run folder blends the classical baseline in as the run's submission did: its
    output equals submission.csv, and equals, on every test clip, the blend computed in this process
    from the saved models, the saved baseline and features built here from the shards (the pooled
    statistics with numpy); the CLI's evaluate of it equals lwlrap of that. The exported TorchScript file
    blends too and gives predict's scores."""
    import pyarrow.parquet as pq
    import torch

    from ray_tagger.baseline import load_blend
    from ray_tagger.decode import decode, to_float
    from ray_tagger.infer import load_member, member_paths
    from ray_tagger.scoring import score_features
    from tests.test_train import _features, _truth

    run_dir, _, _ = system_run
    weight = _chosen_weight(run_dir)
    out = tmp_path / "submission.csv"
    done = _cli("predict", str(run_dir), str(run_dir / "shards"), "--out", str(out), "--num-cpus", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"models × {1 - weight:g} + the run's classical baseline × {weight:g}, as its submission)" in done.stdout

    def read(path: Path) -> dict[str, np.ndarray]:
        with open(path, newline="") as f:
            return {r["fname"]: np.array([float(v) for k, v in r.items() if k != "fname"]) for r in csv.DictReader(f)}

    predicted, submitted = read(out), read(run_dir / "predictions" / "submission.csv")
    assert predicted.keys() == submitted.keys() and len(predicted) == CLIPS // 2
    assert max(np.abs(predicted[k] - submitted[k]).max() for k in predicted) < 1e-4
    evaluated = _cli("evaluate", str(out), str(run_dir / "demo-data-test-labels.csv"))
    assert evaluated.returncode == 0, evaluated.stderr
    overall = float(evaluated.stdout.split("overall lwlrap:")[1].split()[0])
    members = [load_member(p) for p in member_paths(run_dir)]
    classes = members[0][1]["classes"]
    feats, truth = _features(run_dir / "shards", "test", classes, lambda r: True, _truth(run_dir / "demo-data-test-labels.csv"))
    rows = pq.read_table(run_dir / "shards" / "audio" / "source=test").to_pylist()  # _features' order
    # the tiny preset trains on 2 s crops: each clip scores as the mean over 2 s windows, 1 s apart
    assert all(meta["crop_s"] == 2.0 for _, meta in members)
    window = 1 + 2 * 44100 // 882  # frames of 2 s at the report's hop
    mean_here = score_features([m for m, _ in members], feats, window).mean(axis=1)
    pooled_here = np.stack([np.concatenate([f.mean(1), f.std(1), f.max(1)]) for f in feats])
    blend = load_blend(run_dir)
    assert blend is not None and blend.weight == weight
    blended_here = (1 - weight) * mean_here + weight * blend.model.predict(pooled_here)
    assert max(np.abs(predicted[r["clip_id"]] - blended_here[i]).max() for i, r in enumerate(rows)) < 1e-4
    here = lwlrap(truth, blended_here)[0]
    assert abs(overall - here) < 1e-5, (overall, here)
    assert abs(overall - json.loads((run_dir / "results.json").read_text())["submission_lwlrap"]) < 1e-4
    # the exported TorchScript ensemble blends the same baseline in: predict's scores on every test clip
    exported = _cli("export", str(run_dir), str(tmp_path / "tagger.pt"))
    assert exported.returncode == 0, exported.stderr
    assert f"blended with the run's classical baseline at weight {weight:g}," in exported.stdout
    tagger = torch.jit.load(str(tmp_path / "tagger.pt"))
    assert tagger.classes == classes and tagger.baseline_weight == weight
    worst = max(np.abs(tagger(torch.from_numpy(to_float(decode(r["audio"], "flac")))).numpy() - predicted[r["clip_id"]]).max()
                for r in rows)
    assert worst < 1e-4, worst


def test_tag_downmixes_and_resamples_any_file(system_run, tmp_path):
    """A stereo copy (both channels equal) tags exactly like the mono file; a 48 kHz copy is resampled
    to 44.1 kHz and gives nearly the same scores; the output lists the top classes, scored as the run's
    submission (blended with its baseline)."""
    import soundfile as sf
    import torch
    import torchaudio

    run_dir, _, _ = system_run
    wav = sorted((run_dir / "demo-data" / "test").glob("*.wav"))[0]
    mono, sr = sf.read(wav, dtype="float32")
    sf.write(tmp_path / "stereo.wav", np.stack([mono, mono], axis=1), sr)
    up = torchaudio.functional.resample(torch.from_numpy(mono), sr, 48000).numpy()
    sf.write(tmp_path / "48k.flac", up, 48000)
    done = _cli("tag", str(run_dir), str(wav), str(tmp_path / "stereo.wav"), str(tmp_path / "48k.flac"), "--top", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3
    parsed = [dict((p.rsplit(" ", 1)[0], float(p.rsplit(" ", 1)[1])) for p in line.split(": ", 1)[1].split(", ")) for line in lines]
    assert all(len(p) == 3 for p in parsed)
    assert parsed[0] == parsed[1]
    assert list(parsed[0]) [0] == list(parsed[2])[0]
    assert max(abs(parsed[0][c] - parsed[2].get(c, parsed[0][c])) for c in parsed[0]) < 0.05
    # tag blends in the run's classical baseline as its submission did: a test clip's printed scores (3
    # decimals) are its submission.csv scores
    with open(run_dir / "predictions" / "submission.csv", newline="") as f:
        submitted = next(r for r in csv.DictReader(f) if r["fname"] == wav.name)
    assert max(abs(score - float(submitted[c])) for c, score in parsed[0].items()) < 6e-4, (parsed[0], submitted)
    bad = _cli("tag", str(run_dir), str(tmp_path / "missing.wav"))
    assert bad.returncode == 1 and "cannot read audio" in bad.stderr and "Traceback" not in bad.stderr
