"""The entry point of every stage image: `jobs/<stage>.py` is `sys.exit(main("<stage>"))`.

A stage pod gets everything from its environment, as the Helm chart renders it:
- `POSESYN_CONFIG`: the run YAML (mounted from the run's ConfigMap; default `/etc/posesyn/run.yaml`);
- `JOB_COMPLETION_INDEX`: the shard index, set by Kubernetes in Indexed Jobs (shardable stages only);
- storage endpoint/credentials in the standard AWS variables (see `posesyn_core.storage`).

It calls `execute_stage`, the same function the embedded runner calls, so nothing in a stage knows which
runner started it. The process exit code is the contract with the Job's `podFailurePolicy`
(`posesyn_core.errors`): 2 (bad config) and 3 (bad data) fail the Job at once, 1 lets the Job retry.
"""

from __future__ import annotations

import logging
import os
import sys

from posesyn_core.errors import EXIT_OK, ConfigError, as_user_error
from posesyn_core.logs import setup_logging

DEFAULT_CONFIG = "/etc/posesyn/run.yaml"


def shard_index(stage: str, shardable: bool) -> int | None:
    """The shard this pod runs: JOB_COMPLETION_INDEX for shardable stages, None (all of it) otherwise."""
    raw = os.environ.get("JOB_COMPLETION_INDEX")
    if raw is None or not shardable:
        return None
    if not raw.isdigit():
        raise ConfigError(f"JOB_COMPLETION_INDEX={raw!r} is not a shard index (a non-negative integer)")
    return int(raw)


def main(stage: str) -> int:
    """Run one stage (or one shard of it) from the pod's environment; returns the process exit code."""
    setup_logging(os.environ.get("POSESYN_LOG_LEVEL", "INFO"))
    log = logging.getLogger(f"posesyn.{stage}")
    config_path = os.environ.get("POSESYN_CONFIG", DEFAULT_CONFIG)
    try:
        # Imported here so a broken install is reported like any other failure, not as a bare traceback.
        from posesyn_core.pipeline import load_run_config
        from posesyn_core.stages import execute_stage
        from posesyn_core.storage import open_store

        run = load_run_config(config_path)
        spec = type(run).registry.get(stage)
        if spec is None:
            raise ConfigError(f"{config_path}: this image runs stage {stage!r}, which is not registered")
        if stage not in run.stages:
            raise ConfigError(f"{config_path}: stages: {stage!r} is not part of this run ({run.stages})")
        shard = shard_index(stage, spec.shardable)
        store = open_store(run.root)
        store.preflight()  # a wrong bucket or missing credentials: one line at once, not deep inside the stage
        result = execute_stage(run, stage, shard=shard, store=store)
    # Anything else is a bug: Python prints the traceback and exits 1 (the Job retries).
    except Exception as e:
        error = as_user_error(e)
        if error is None:
            raise
        print(f"posesyn {stage}: error: {error}", file=sys.stderr, flush=True)
        return error.exit_code
    log.info("finished", extra={"fields": {"status": result.status, "shard": shard}})
    return EXIT_OK
