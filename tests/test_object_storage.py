"""Shards and run folders on object storage, against a real S3-compatible server on 127.0.0.1.

The server is moto's server mode (pinned in the test extras), started by this module in its own
process; ray-tagger reaches it through pyarrow's S3 file system with the endpoint and keys in the
environment, as on a cluster. The end-to-end test runs ``prepare`` and ``run`` on a
two-node Ray cluster (``ray.cluster_utils.Cluster``: a head node without CPUs, so every task,
actor and Train worker runs on the other node) with the shards and the run folder in the bucket
(its models train with ``run.autocast=bf16``, which puts that path through the training loop).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import stat
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
import yaml

from ray_tagger.runtime import free_port
from ray_tagger.storage import ObjectPath, location, remove_tree, tree_bytes

BUCKET = "ray-tagger-test"


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 with one bucket; the environment points pyarrow (and every Ray
    process started while the module runs) at it. Yields the bucket's URI."""
    import boto3

    port = free_port("127.0.0.1")
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"the moto S3 server did not start on {endpoint}")
            time.sleep(0.2)
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    yield f"s3://{BUCKET}"
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.terminate()
    server.wait(timeout=30)


def _objects(prefix: str) -> list[str]:
    """Keys under ``prefix`` as the server lists them (boto3, not our code)."""
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _exercise(root) -> dict:
    """The same sequence of path operations, on a local folder or an object-store prefix."""
    out = {}
    (root / "a" / "b").mkdir(parents=True, exist_ok=True)
    (root / "a" / "b" / "x.json").write_text(json.dumps({"k": 1}))
    (root / "a" / "y.txt").write_text("first\n")
    with (root / "a" / "y.txt").open("a") as f:
        f.write("second\n")
    with (root / "a" / "z.bin").open("wb") as f:
        np.save(f, np.arange(5))
    out["bytes"] = (tree_bytes(root / "a"), tree_bytes(root / "missing"))
    out["read"] = (root / "a" / "y.txt").read_text()
    out["json"] = json.loads((root / "a" / "b" / "x.json").read_text())
    out["npy"] = np.load(io.BytesIO((root / "a" / "z.bin").read_bytes())).tolist()
    out["kinds"] = [((root / p).exists(), (root / p).is_file(), (root / p).is_dir())
                    for p in ("a", "a/b", "a/y.txt", "a/missing")]
    out["children"] = [p.name for p in sorted((root / "a").iterdir())]
    out["glob"] = [p.name for p in sorted((root / "a").glob("*.txt"))]
    out["rglob"] = sorted(str(p.relative_to(root)) for p in (root / "a").rglob("*") if p.is_file())
    out["names"] = [(root / "a" / "y.txt").name, (root / "a" / "y.txt").suffix, (root / "a" / "y.txt").stem,
                    (root / "a" / "y.txt").parent.name]
    (root / "a" / "y.txt").unlink()
    (root / "a" / "y.txt").unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError):
        (root / "a" / "y.txt").read_text()
    remove_tree(root / "a" / "b")
    out["after"] = [p.name for p in sorted((root / "a").iterdir())]
    return out


def test_object_paths_behave_like_local_paths(s3, tmp_path):
    """pathlib on a local folder is the reference for what the stages rely on."""
    remote = _exercise(location(f"{s3}/exercise"))
    local = _exercise(location(tmp_path))
    assert remote == local
    assert remote["read"] == "first\nsecond\n" and remote["npy"] == [0, 1, 2, 3, 4]
    saved = io.BytesIO()
    np.save(saved, np.arange(5))
    assert remote["bytes"] == (len('{"k": 1}') + len("first\nsecond\n") + len(saved.getvalue()), 0)
    keys = _objects("exercise/")
    assert "exercise/a/z.bin" in keys and not [k for k in keys if "y.txt" in k or "/b/" in k], keys


def test_object_paths_name_their_uri_and_travel_to_other_processes(s3):
    p = location(f"{s3}//runs/r1/")
    assert isinstance(p, ObjectPath) and str(p) == f"{s3}/runs/r1" and str(p / "model.pt") == f"{s3}/runs/r1/model.pt"
    assert pickle.loads(pickle.dumps(p)) == p
    assert str(p.parent.parent) == s3 and p.parent.parent.parent == p.parent.parent  # the bucket is the top
    with pytest.raises(ValueError, match=r"'\.' and '\.\.'"):
        location(f"{s3}/runs/../x")
    with pytest.raises(TypeError):
        open(p)  # never a local file named "s3:/..."


def test_an_interrupted_prepare_on_object_storage_is_refused_by_later_stages(s3):
    from ray_tagger.stream import shard_meta

    shards = location(f"{s3}/half-prepared")
    (shards / "_PREPARING").write_text("{}")
    (shards / "stats.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="interrupted"):
        shard_meta(shards)


@pytest.mark.e2e
def test_a_tiny_run_on_two_nodes_keeps_everything_in_the_bucket(s3, tmp_path):
    """``prepare`` into the bucket, then ``run`` from the bucket's shards, through a head node and a
    worker node: shards, runs, models, predictions, plots and the logs all in the bucket (the
    scoring stages read the models back from it), nothing written beside the data or in the
    working folder."""
    from ray.cluster_utils import Cluster

    from ray_tagger.demo_data import DemoConfig, generate

    data = tmp_path / "data"  # Zenodo layout: the test labels travel in the shards
    generate(data, DemoConfig(clips=40, num_classes=6, class_choice="spread", layout="zenodo"))
    for p in [data, *data.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))  # prepare must not write here
    work = tmp_path / "cwd"
    work.mkdir()
    shards, run = f"{s3}/shards", f"{s3}/runs/two-nodes"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    cluster.add_node(num_cpus=8, object_store_memory=400 * 2**20)
    try:
        env = {**os.environ, "RAY_ADDRESS": cluster.address}

        def cli(*args: str) -> None:
            done = subprocess.run([sys.executable, "-m", "ray_tagger", *args], cwd=work, env=env, capture_output=True,
                                  text=True, timeout=900)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

        cli("prepare", str(data), shards, "--preset", "tiny", "--splits", "1", "--folds", "2")
        cli("run", shards, run, "--preset", "tiny", "--concurrency", "1", "--set", "optim.iterations=20",
            "--set", "run.validate_every=20", "--set", "run.checkpoint_every=10", "--set", "system.relabel_folds=[0]",
            "--set", "system.final_R=[2]", "--set", "run.autocast=bf16", "--keep-provided-labels")
    finally:
        cluster.shutdown()
    keys = _objects("shards/")
    assert {"shards/manifest.json", "shards/stats.json", "shards/vocabulary.json", "shards/excerpts.parquet",
            "shards/pooled.parquet"} <= set(keys)
    assert not any(k.endswith("_PREPARING") for k in keys), "prepare committed its shards"
    assert any(k.startswith("shards/audio/source=noisy/") and k.endswith(".parquet") for k in keys)
    manifest = json.loads(location(f"{shards}/manifest.json").read_text())
    assert {s: c["written"] for s, c in manifest["counts"].items()} == {"curated": 40, "noisy": 40, "test": 20}
    keys = _objects("runs/two-nodes/")
    for key in ("run.json", "relabel/summary.json", "relabel/runs/s0_f0/model.pt", "relabel/runs/s0_f0/metrics.jsonl",
                "final/ensemble.json", "final/runs/s0_R2/model.pt", "predictions/submission.csv",
                "plots/training_curves.png", "baseline/baseline.json", "results.json", "ray-tagger.log"):
        assert f"runs/two-nodes/{key}" in keys, key
    assert any("/checkpoints/" in k for k in keys), "Ray Train's checkpoints went to the bucket too"
    assert json.loads(location(f"{run}/run.json").read_text())["data_dir"] == shards
    metrics = [json.loads(line) for line in location(f"{run}/final/runs/s0_R2/metrics.jsonl").read_text().splitlines()]
    assert max(m.get("iteration", 0) for m in metrics) == 20
    # the run also takes the bf16-autocast path through the training loop (on the CPU here): recorded, finite
    config = yaml.safe_load(location(f"{run}/final/runs/s0_R2/config.yaml").read_text())
    assert config["job"]["run"]["autocast"] == "bf16"
    assert all(np.isfinite(m["loss"]) for m in metrics if "loss" in m)
    results = json.loads(location(f"{run}/results.json").read_text())
    assert results["test_clips"] == 20 and any(r["models"] == 1 for r in results["table"])
    assert "ray-tagger run" in location(f"{run}/ray-tagger.log").read_text()
    assert list(work.iterdir()) == [], "nothing was written in the working folder (no local 's3:' folder)"
    submission = pd.read_csv(io.StringIO(location(f"{run}/predictions/submission.csv").read_text())).set_index("fname")
    scores = np.load(io.BytesIO(location(f"{run}/predictions/test_scores.npz").read_bytes()))
    assert sorted(submission.index) == sorted(scores["fnames"].tolist()) and len(submission) == 20
    mean = pd.DataFrame(scores["scores"].mean(axis=1), index=scores["fnames"], columns=scores["classes"])
    np.testing.assert_allclose(submission.loc[mean.index, mean.columns].to_numpy(), mean.to_numpy(), atol=1e-6)
