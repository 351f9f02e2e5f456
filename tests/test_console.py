"""The calm console (ray_tagger.console): what reaches the terminal and what only the log file.

A real process (a subprocess), so that the file descriptors 1 and 2 are the terminal's, as they
are for a user; the check of a real command's console is in tests/test_train.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import json, logging, os, sys, time
    from pathlib import Path
    from ray_tagger.console import Console, runs_progress, say, stage

    log_path, runs = Path(sys.argv[1]), Path(sys.argv[2])
    logging.basicConfig(level=logging.INFO)
    ours = logging.getLogger("ray_tagger.test")
    print("before")
    with Console(log_path, "demo"):
        print("python print")
        sys.stdout.flush()
        os.write(1, b"raw fd1\\n")
        os.write(2, b"raw fd2\\n")
        logging.getLogger("ray.tune").warning("ray warning")
        ours.info("our info")
        stage(ours, "== stage %d/6: relabel", 3)
        ours.warning("our warning")
        with runs_progress("relabel", {"a": runs / "a", "b": runs / "b", "c": runs / "c"}, 100, every_s=0.05):
            time.sleep(0.5)
        with runs_progress("sweep", {"a": runs / "a", "b": runs / "b"}, 100, every_s=0.05, early_stops=True):
            time.sleep(0.2)
        say("result table")
    print("after")
""")


def _write_run(folder: Path, metrics: list[dict], complete: bool) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if complete:
        (folder / "summary.json").write_text("{}")


def test_calm_console_shows_stages_warnings_progress_and_results_and_logs_everything(tmp_path):
    runs = tmp_path / "runs"
    _write_run(runs / "a", [{"iteration": 50}, {"iteration": 100, "val_lwlrap": 0.5}], complete=True)
    _write_run(runs / "b", [{"iteration": 20}, {"iteration": 40, "val_lwlrap": 0.3125}], complete=False)
    # c has not started: no folder
    log_path = tmp_path / "run" / "ray-tagger.log"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(log_path), str(runs)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["before", "result table", "after"]
    err = done.stderr
    for shown in (f"Ray's output and the full log go to {log_path}", "== stage 3/6: relabel", "our warning"):
        assert shown in err
    for hidden in ("python print", "raw fd", "ray warning", "our info"):
        assert hidden not in done.stdout + err
    # the bar's last state: 100 + 40 of 300 iterations, one run of three done with its held-out lwlrap,
    # the running one with its iteration and last held-out lwlrap
    lines = err.replace("\r", "\n").strip().splitlines()
    bar = [line for line in lines if line.startswith("relabel:")][-1]
    assert "140/300 it" in bar, bar
    assert "runs 1/3 done, held-out 0.50; b 40 (0.31)" in bar, bar
    # a sweep whose scheduler stopped b at iteration 40 ends at 100 % of what was trained
    bar = lines[-1]
    assert bar.startswith("sweep: 100%") and "140/140 it" in bar, bar
    assert "runs 1/2 done, 1 stopped, held-out 0.50" in bar and "b 40" not in bar, bar
    text = log_path.read_text()
    for logged in ("python print", "raw fd1", "raw fd2", "ray warning", "our info", "== stage 3/6: relabel",
                   "our warning", "result table"):
        assert logged in text, logged
    assert "before" not in text and "after" not in text


def test_resumed_command_appends_to_its_log(tmp_path):
    log_path = tmp_path / "ray-tagger.log"
    runs = tmp_path / "runs"
    runs.mkdir()
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", SCRIPT, str(log_path), str(runs)], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    assert log_path.read_text().count("ray-tagger demo (pid") == 2
