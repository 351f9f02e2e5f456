"""cluster/ and jobs/: the launcher config validates against Ray's own schema, the KubeRay
manifests parse and name entrypoints that exist, the runtime envs name existing stages."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from ray_tagger.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return set(action.choices)


def _check_entrypoint(entrypoint: str) -> None:
    """``python -m ray_tagger SUB ARGS`` with a real sub-command whose arguments parse."""
    words = shlex.split(entrypoint)
    assert words[:3] == ["python", "-m", "ray_tagger"], entrypoint
    assert words[3] in _subcommands(), entrypoint
    build_parser().parse_args(words[3:])  # exits (SystemExit) on unknown options


def test_launcher_config_validates_against_rays_schema():
    import jsonschema
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())
    jsonschema.validate(config, schema)
    types = config["available_node_types"]
    assert config["head_node_type"] in types and {"gpu_worker", "cpu_worker"} <= set(types)
    assert config["docker"]["image"].startswith("rayproject/ray:2.60.")
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])


def test_schema_check_is_not_vacuous():
    import jsonschema
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())
    del config["available_node_types"]["gpu_worker"]["resources"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, schema)


def test_kuberay_manifests_parse_and_name_real_entrypoints():
    cluster = yaml.safe_load((ROOT / "cluster" / "kuberay" / "raycluster.yaml").read_text())
    job = yaml.safe_load((ROOT / "cluster" / "kuberay" / "rayjob.yaml").read_text())
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    for spec in (cluster["spec"], job["spec"]["rayClusterSpec"]):
        assert spec["rayVersion"] == "2.60.0"
        groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
        assert set(groups) == {"gpu", "cpu"}
        gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert gpu["nvidia.com/gpu"] == "1"
    _check_entrypoint(job["spec"]["entrypoint"])
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]["RAY_TRAIN_ENABLE_STATE_TRACKING"] == "1"


def test_the_object_storage_rayjob_needs_no_shared_volume():
    """rayjob-s3.yaml: the same cluster as rayjob.yaml without volumes; shards and run folder are s3:// URIs."""
    plain = yaml.safe_load((ROOT / "cluster" / "kuberay" / "rayjob.yaml").read_text())
    job = yaml.safe_load((ROOT / "cluster" / "kuberay" / "rayjob-s3.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    _check_entrypoint(job["spec"]["entrypoint"])
    args = build_parser().parse_args(shlex.split(job["spec"]["entrypoint"])[3:])
    assert args.data_dir.startswith("s3://") and args.run_dir.startswith("s3://")
    spec = job["spec"]["rayClusterSpec"]
    pods = [spec["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in spec["workerGroupSpecs"])]
    assert all("volumes" not in pod and "volumeMounts" not in pod["containers"][0] for pod in pods)
    assert all(pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "ray-tagger-s3", "optional": True}}] for pod in pods)
    for pod in pods:  # otherwise the same pods as the shared-volume job
        del pod["containers"][0]["envFrom"]
    plain_spec = plain["spec"]["rayClusterSpec"]
    for pod in [plain_spec["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in plain_spec["workerGroupSpecs"])]:
        del pod["volumes"], pod["containers"][0]["volumeMounts"]
    assert spec == plain_spec


@pytest.mark.parametrize("stage", ["prepare", "train", "relabel", "ensemble", "sweep", "run"])
def test_job_runtime_envs_exist_per_stage_and_name_their_entrypoint(stage):
    path = ROOT / "jobs" / f"{stage}.yaml"
    env = yaml.safe_load(path.read_text())
    assert set(env) <= {"excludes", "env_vars"} and ".venv/" in env["excludes"]
    assert all(isinstance(v, str) for v in env["env_vars"].values()), "runtime_env env_vars must be strings"
    assert f"python -m ray_tagger {stage} " in path.read_text()
    assert stage in _subcommands()
    assert (env["env_vars"].get("RAY_TRAIN_ENABLE_STATE_TRACKING") == "1") == (stage != "prepare")


def test_bad_entrypoint_is_caught():
    with pytest.raises(AssertionError):
        _check_entrypoint("python -m ray_tagger nonesuch x")
    with pytest.raises(SystemExit):
        _check_entrypoint("python -m ray_tagger run /x --no-such-option")


@pytest.mark.parametrize("argv", [["relabel", "s3://bucket/shards", "/shared/runs"],
                                  ["run", "/shared/data", "gs://bucket/runs/paper"],
                                  ["ensemble", "/s", "/r", "--relabeled", "s3://b/relabel"],
                                  ["predict", "gs://b/runs/paper", "/shared/test", "--out", "s3://b/submission.csv"]])
def test_object_store_uris_are_taken_for_shards_and_run_folders(argv):
    args = build_parser().parse_args(argv)
    assert any(str(v).startswith(("s3://", "gs://")) for v in vars(args).values())


@pytest.mark.parametrize("argv", [["prepare", "s3://bucket/data", "/shared/shards"],
                                  ["demo-data", "gs://bucket/demo"],
                                  ["export", "/shared/runs/paper", "s3://bucket/tagger.pt"],
                                  ["train", "ftp://host/shards", "/shared/runs/r"]])
def test_uris_where_a_local_path_is_needed_or_of_unknown_schemes_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert ("cluster/README.md" in err and "only for shards and run folders" in err) or "is not an object store" in err


def test_local_and_mounted_paths_pass():
    args = build_parser().parse_args(["relabel", "/shared/shards", "relative/runs", "--preset", "tiny"])
    assert (args.shards_dir, args.run_dir) == ("/shared/shards", "relative/runs")
