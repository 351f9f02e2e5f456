"""Connecting to Ray: an existing cluster when one is named, else a local one."""

from __future__ import annotations

import contextlib
import logging
import os
import socket

import ray

from .console import stage

log = logging.getLogger(__name__)

_started_here = False
_deferred_cpus: int | None = None

LOCAL_TRAIN_POLL_S = "0.5"
"""Ray Train's controller polls its workers every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` (2 s by
default), and a run's end waits for the next poll: on a local Ray this process starts, the poll
is every 0.5 s unless the variable is set (a `tiny` training run: 59.5 s → 57.3 s, the wait
after the final report 3.9 s → 1.4 s; docs/BENCHMARKS.md). A cluster keeps its own setting."""

LOCAL_TRAIN_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": LOCAL_TRAIN_POLL_S,
    # Ray Train starts a PreemptionWatcher actor per run that polls Ray Core for nodes being drained
    # (a cloud reclaiming a spot node): a local Ray has its one node, which nothing drains, so the
    # actor would only cost a process per training run (1.4-2.3 CPU-s measured).
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}
"""What a local Ray this process starts sets for Ray Train, unless the environment sets it."""


DASHBOARD_VAR = "RAY_TAGGER_DASHBOARD"
"""``0`` starts a local Ray without its dashboard: about 5 s less per command on a 2-core machine
(a 2-iteration `tiny` training run, interleaved: 37.9 and 39.6 s, once 49.8 s, against 43.8-45.0 s
with it; docs/BENCHMARKS.md), but Ray Train's placement-group cleaner, which asks the dashboard's
state API whether a run's controller lives, then logs a warning every second of every training run
and could not remove a dead controller's placement group. The tests set it where they do not
look at the dashboard."""


def local_train_env() -> None:
    """Set :data:`LOCAL_TRAIN_ENV` where the environment does not (before a local ``ray.init``:
    the local Ray's processes inherit this process's environment)."""
    for name, value in LOCAL_TRAIN_ENV.items():
        os.environ.setdefault(name, value)


def ensure_ray(num_cpus: int | None = None) -> None:
    """Connect once per process: to ``RAY_ADDRESS`` if set (as under ``ray job submit``; ``auto``
    attaches to a head started on this machine), otherwise start a local single-node Ray
    (``num_cpus`` logical CPUs, default: what :func:`defer_ray` recorded, else all cores). The local
    Ray is always a new one: a bare ``ray.init()`` would attach to any head whose address ``ray
    start`` left in ``/tmp/ray/ray_current_cluster`` and then refuse ``num_cpus``. A local Ray has
    its dashboard on 127.0.0.1 (port 8265, or the next free one; not with ``RAY_TAGGER_DASHBOARD=0``),
    which the console line names; its state API is also what lets Ray Train's placement-group cleaner
    find a run's controller. Every stage that hands Ray work calls it first."""
    global _started_here
    use_v1_parquet_reader()
    if ray.is_initialized():
        return
    if num_cpus is None:
        num_cpus = _deferred_cpus
    address = os.environ.get("RAY_ADDRESS")
    if address:
        stage(log, "connecting to the Ray cluster at %s", address)
        ray.init(address=address)
    else:
        local_train_env()
        dashboard = os.environ.get(DASHBOARD_VAR, "1") != "0"
        context = start_local_ray(num_cpus=num_cpus, include_dashboard=dashboard, dashboard_host="127.0.0.1")
        _started_here = True
        cpus = num_cpus or "all"
        if not dashboard:
            stage(log, "started a local Ray (%s logical CPUs), without its dashboard (%s=0)", cpus, DASHBOARD_VAR)
        elif context.dashboard_url:
            token = "" if os.environ.get("RAY_AUTH_MODE") == "disabled" else \
                " (sign in with the token `ray get-auth-token` prints)"
            stage(log, "started a local Ray (%s logical CPUs), its dashboard at http://%s%s", cpus, context.dashboard_url, token)
        else:
            stage(log, "started a local Ray (%s logical CPUs); its dashboard did not start (Ray's reason is in the log)", cpus)


START_TRIES = 2
"""How often a local Ray is started before a command gives up. On a machine whose cores are all
busy (two test processes side by side on 2 cores, each with its local Ray) the raylet once waited
longer than its fixed ~15 s for the dashboard agent's ports and exited, and ``ray.init`` raised
"The current node timed out during startup". One more start is tried before the command gives up
(the failed one's processes idle until the command ends)."""


def start_local_ray(**init_kwargs):
    """``ray.init(address="local", **init_kwargs)``, tried :data:`START_TRIES` times when Ray reports
    that the new node timed out during startup; returns Ray's context.

    The new Ray's processes are started with ``RAY_ADDRESS`` naming its own GCS (on a free port
    chosen here; this process's environment is as before once ``ray.init`` returns). Without it, a
    process inside that Ray that looks its cluster up by address would take the machine's latest
    cluster (``/tmp/ray/ray_current_cluster``): Ray Train's placement-group cleaner did, asked a head
    started beside it whether its run's controller lived, heard no, and removed the live run's
    placement group, killing its workers."""
    for attempt in range(1, START_TRIES + 1):
        saved = {name: os.environ.get(name) for name in ("RAY_ADDRESS", _GCS_PORT_VAR)}
        port = free_port()
        os.environ[_GCS_PORT_VAR] = str(port)
        os.environ["RAY_ADDRESS"] = f"{ray.util.get_node_ip_address()}:{port}"
        try:
            return ray.init(address="local", **init_kwargs)
        except Exception as e:  # Ray raises a bare Exception for this
            if attempt == START_TRIES or "timed out during startup" not in str(e):
                raise
            log.warning("the local Ray did not start (%s); starting it again (try %d of %d)", e, attempt + 1, START_TRIES)
            ray.shutdown()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


_GCS_PORT_VAR = "RAY_GCS_SERVER_PORT"
"""The port a new Ray head's GCS takes (Ray reads it when it starts one)."""


def free_port(host: str = "") -> int:
    """A TCP port free on ``host`` now (every interface by default): the OS's pick for a bind to port 0."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def defer_ray(num_cpus: int | None = None) -> None:
    """Connect to ``RAY_ADDRESS`` now if set; otherwise only record ``num_cpus`` for the local Ray
    that :func:`ensure_ray` starts when a stage first has work for it. A command run again on
    complete outputs (``train``, ``run``) then answers without starting one (about 15-20 s of a
    2-core machine: the processes Ray starts with, and their shutdown)."""
    global _deferred_cpus
    if os.environ.get("RAY_ADDRESS"):
        ensure_ray()
    else:
        _deferred_cpus = num_cpus


def cpu_tasks():
    """``compute=`` for a driver-side Ray Data stage of CPU-bound tasks (features, decoding): on a local
    Ray this process started, at most one task per core of the machine. Its logical CPUs are
    over-subscribed on purpose (DESIGN §3: Train's placement), and each task beyond the cores is
    one more new worker process importing torch: on 2 cores and 8 logical CPUs, the pooled features
    of 250 clips took 34.9 s uncapped, 17.3 s capped, 7.7 s in one process (docs/BENCHMARKS.md). None (Ray's
    default: as many as the logical CPUs allow) on a cluster."""
    return core_tasks() if _started_here else None


def core_tasks():
    """``compute=`` for at most one task per core of this machine."""
    import ray.data

    return ray.data.TaskPoolStrategy(size=os.cpu_count() or 1)


@contextlib.contextmanager
def using_execution_options(context, options):
    """Run the block with ``context.execution_options = options`` (a Ray Data ``DataContext``: the
    current one, or a Dataset's own); the options it had come back after, also on an error. Yields them."""
    saved = context.execution_options
    context.execution_options = options
    try:
        yield saved
    finally:
        context.execution_options = saved


def use_v1_parquet_reader() -> None:
    """This process's Ray Data reads Parquet with the V1 reader. Ray 2.60's default V2 reader starts
    ``RAY_DATA_PARQUET_FOOTER_NUM_ACTORS`` (32) footer-reading actors, each a new Python process,
    on every execution of a read; for our few shard files that is most of a small read's time
    (docs/BENCHMARKS.md, "Footer actors"). Datasets carry the driver's context to their tasks."""
    import ray.data

    ray.data.DataContext.get_current().use_datasource_v2 = False


def shutdown_own_ray() -> None:
    """Stop the local Ray that :func:`ensure_ray` started in this process (nothing else)."""
    global _started_here, _deferred_cpus
    if _started_here and ray.is_initialized():
        ray.shutdown()
    _started_here, _deferred_cpus = False, None
