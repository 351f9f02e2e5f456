"""``ray job submit`` against a real local head with token auth, as cluster/README.md tells a user.

The commands are read from the README's local-head block (the lines starting with ``ray ``)
and run as written, with free ports and a temporary run folder in place of 6379, 8265 and
/tmp/tagger-smoke, from the repository root, with the project's environment first on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ray_tagger.runtime import free_port

# trains models through the CLI; its `ray stop` stops every Ray process on the machine, so it must not
# run beside other tests (pytest -n 2 -m 'not serial', then -m serial: README)
pytestmark = [pytest.mark.e2e, pytest.mark.serial]

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "cluster" / "README.md").read_text()
    block = text.split("<!-- local-head")[1].split("<!-- /local-head -->")[0]
    return [line.strip() for line in block.splitlines() if line.strip().startswith("ray ")]


@pytest.fixture(scope="module")
def head_and_job(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("job") / "smoke"
    gcs, dashboard = free_port("127.0.0.1"), free_port("127.0.0.1")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `source .venv/bin/activate`
    commands = [c.replace("6379", str(gcs)).replace("8265", str(dashboard)).replace("/tmp/tagger-smoke", str(run_dir))
                for c in _readme_commands()]
    assert [shlex.split(c)[:3] for c in commands] == [["ray", "start", "--head"], ["ray", "job", "submit"],
                                                      ["ray", "job", "status"], ["ray", "stop"]]
    start, submit, status, stop = commands
    out = {"dashboard_port": dashboard, "gcs_port": gcs}
    try:
        done = subprocess.run(shlex.split(start), cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        out["unauthenticated"] = _status_code(f"http://127.0.0.1:{dashboard}/api/jobs/")
        out["beside"] = subprocess.run([sys.executable, "-c", _BESIDE_THE_HEAD], cwd=ROOT,
                                       env={**env, "RAY_TAGGER_DASHBOARD": "1"}, capture_output=True, text=True, timeout=180)
        client = {**env, "RAY_AUTH_MODE": "token"}  # `export RAY_AUTH_MODE=token`
        out["submit"] = subprocess.run(shlex.split(submit), cwd=ROOT, env=client, capture_output=True, text=True,
                                       timeout=1500)
        out["status"] = subprocess.run(shlex.split(status), cwd=ROOT, env=client, capture_output=True, text=True,
                                       timeout=120)
        token = subprocess.run(["ray", "get-auth-token"], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=60).stdout.strip()
        out["dashboard"] = _dashboard(f"http://127.0.0.1:{dashboard}", token)
    finally:
        out["stop"] = subprocess.run(shlex.split(stop), cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    return run_dir, out


_BESIDE_THE_HEAD = """
import logging
import ray
logging.basicConfig(level=logging.INFO)
from ray_tagger.runtime import ensure_ray, shutdown_own_ray
ensure_ray(2)
print("CPU", ray.cluster_resources().get("CPU"), "nodes", len(ray.nodes()))
@ray.remote
def address():
    import os
    return os.environ.get("RAY_ADDRESS")
print("own GCS", ray.get_runtime_context().gcs_address, "a worker's RAY_ADDRESS", ray.get(address.remote()))
shutdown_own_ray()
"""
"""What a command without ``RAY_ADDRESS`` does while the head runs (``ray start`` wrote its address
into /tmp/ray/ray_current_cluster, where a bare ``ray.init`` looks first)."""


def _get(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read())


def _dashboard(base: str, token: str) -> dict:
    """What the dashboard's own APIs list for the job: its Ray Data datasets and the Train runs."""
    job_id = _get(f"{base}/api/jobs/tagger-smoke", token)["job_id"]
    datasets = [d["dataset"] for d in _get(f"{base}/api/data/datasets/{job_id}", token)["datasets"]]
    runs = [r["name"] for r in _get(f"{base}/api/train/v2/runs/v1", token)["train_runs"]]
    return {"datasets": datasets, "train_runs": runs}


def _status_code(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_token_auth_is_on(head_and_job):
    _, out = head_and_job
    assert out["unauthenticated"] == 401


def test_a_command_without_ray_address_starts_its_own_ray_beside_the_head(head_and_job):
    _, out = head_and_job
    beside = out["beside"]
    assert beside.returncode == 0, beside.stdout[-2000:] + beside.stderr[-2000:]
    assert "started a local Ray (2 logical CPUs), its dashboard at http://127.0.0.1:" in beside.stderr, beside.stderr[-2000:]
    assert f"127.0.0.1:{out['dashboard_port']}" not in beside.stderr, "its own dashboard, beside the head's"
    assert "CPU 2.0 nodes 1" in beside.stdout, beside.stdout  # its own 2 CPUs, not the head's 12
    # its processes name their own cluster: an address lookup inside it (Ray Train's placement-group
    # cleaner does one) would otherwise take the head, the machine's latest cluster
    own, worker = re.search(r"own GCS (\S+) a worker's RAY_ADDRESS (\S+)", beside.stdout).groups()
    assert worker == own and not own.endswith(f":{out['gcs_port']}"), beside.stdout


def test_submitted_run_succeeds_and_writes_its_outputs(head_and_job):
    run_dir, out = head_and_job
    submit, status = out["submit"], out["status"]
    assert submit.returncode == 0, submit.stdout[-4000:] + submit.stderr[-2000:]
    assert "Job 'tagger-smoke' succeeded" in status.stdout + status.stderr, status.stdout + status.stderr
    assert "connecting to the Ray cluster" in submit.stdout + submit.stderr, "the job must use the head, not a local Ray"
    results = json.loads((run_dir / "results.json").read_text())
    names = [r["name"] for r in results["table"]]
    assert names[0] == "chance (random scores)" and "ensemble (all)" in names
    assert len(json.loads((run_dir / "relabel" / "summary.json").read_text())["runs"]) == 1
    assert len(json.loads((run_dir / "final" / "ensemble.json").read_text())["members"]) == 1
    assert (run_dir / "predictions" / "submission.csv").is_file()


def test_dashboard_lists_the_runs_and_their_named_pipelines(head_and_job):
    run_dir, out = head_and_job
    runs = sorted(p.name for p in run_dir.glob("*/runs/*"))
    assert len(runs) == 2, runs
    listed = out["dashboard"]
    assert set(runs) <= set(listed["train_runs"]), listed["train_runs"]
    for run in runs:
        assert any(d.startswith(f"{run}.train0") for d in listed["datasets"]), (run, listed["datasets"])
        assert any(d.startswith(f"{run}.plain") for d in listed["datasets"]), (run, listed["datasets"])
    assert any(d.startswith("ensemble_scores_") for d in listed["datasets"]), listed["datasets"]


def test_head_is_stopped(head_and_job):
    _, out = head_and_job
    assert out["stop"].returncode == 0
    assert "Stopped" in out["stop"].stdout + out["stop"].stderr
