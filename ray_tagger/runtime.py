"""Connecting to Ray: an existing cluster when one is named, else a local one."""

from __future__ import annotations

import logging
import os

import ray

log = logging.getLogger(__name__)


def ensure_ray(num_cpus: int | None = None) -> None:
    """Connect once per process: to ``RAY_ADDRESS`` if set (as under ``ray job submit``),
    otherwise start a local single-node Ray (``num_cpus`` logical CPUs, default: all cores)."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address)
    else:
        log.info("starting a local Ray (%s CPUs)", num_cpus or "all")
        ray.init(num_cpus=num_cpus, include_dashboard=False)
