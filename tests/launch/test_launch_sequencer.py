"""The in-cluster sequencer against a fake Kubernetes API: order, failure, stuck pods, watch expiry, restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RELEASE, STAGES, sequencer, status, wait_for
from kube_fake_api import JobController

from posesyn_core.launch.sequencer import EXIT_RUN_FAILED, EXIT_SUCCEEDED

pytestmark = pytest.mark.timeout(120)  # a hung watch fails fast, not at the suite's limit

ROOT = Path(__file__).resolve().parents[2]


def test_happy_path_runs_stages_in_order(api, kube, release, controller):
    assert sequencer(kube).run() == EXIT_SUCCEEDED
    assert controller.started == STAGES
    data = status(api)
    assert data["run.state"] == "Succeeded"
    assert [data[f"{s}.state"] for s in STAGES] == ["Succeeded"] * 3
    assert all(data[f"{s}.started"] <= data[f"{s}.finished"] for s in STAGES)


def test_failed_stage_stops_the_run_and_later_stages_stay_suspended(api, kube, release):
    controller = JobController(api, {"tpe-train": "oom"})
    assert sequencer(kube).run() == EXIT_RUN_FAILED
    assert controller.started == ["world", "tpe-train"]
    assert api.get("jobs", f"{RELEASE}-eem")["spec"]["suspend"] is True
    data = status(api)
    assert data["run.state"] == "Failed" and data["tpe-train.state"] == "Failed"
    assert "failed 3 times (backoffLimit reached)" in data["tpe-train.message"]
    assert "ran out of memory: raise tpe-train.resources.memory (now 4Gi)" in data["run.message"]
    assert "eem.state" not in data


def test_with_kueue_the_sequencer_hands_each_stage_to_its_queue(api, kube, release, controller):
    for stage in STAGES:  # what the chart renders with kueue.enabled
        api.update("jobs", f"{RELEASE}-{stage}",
                   lambda j: j["metadata"].setdefault("annotations", {}).update({"posesyn.ai/queue-name": "gpu"}))
    assert sequencer(kube).run() == EXIT_SUCCEEDED
    assert controller.started == STAGES
    for stage in STAGES:
        assert api.get("jobs", f"{RELEASE}-{stage}")["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu"


def test_config_error_is_reported_as_do_not_retry(api, kube, release):
    JobController(api, {"world": "config"})
    assert sequencer(kube).run() == EXIT_RUN_FAILED
    assert "config or usage error: fix the run config" in status(api)["world.message"]


def test_unschedulable_pod_reason_is_recorded_then_cancel_stops_the_sequencer(api, kube, release, in_background):
    JobController(api, {"world": "unschedulable"})
    thread, result = in_background(sequencer(kube, watch_timeout_s=1))
    wait_for(lambda: "Insufficient nvidia.com/gpu" in status(api).get("world.message", ""))
    assert status(api)["world.message"].startswith("Stage world is pending: cannot be scheduled: 0/3 nodes")
    # what `posesyn cancel` does: mark the run cancelled, suspend the stage Job
    api.update("configmaps", f"{RELEASE}-status", lambda cm: cm["data"].update({"run.state": "Cancelled"}))
    api.update("jobs", f"{RELEASE}-world", lambda j: j["spec"].update(suspend=True))
    thread.join(30)
    assert result == [EXIT_RUN_FAILED]
    assert status(api)["run.state"] == "Cancelled"


def test_watch_expiry_410_relists_and_carries_on(api, kube, release, in_background):
    controller = JobController(api, {"tpe-train": "hold"})
    thread, result = in_background(sequencer(kube, watch_timeout_s=30))
    wait_for(lambda: "tpe-train" in controller.started and api.open_watches == 1)
    lists_before = api.count("GET", r"/jobs\?(?!.*watch)")
    api.expire_watches()  # the open watch ends with ERROR 410; any watch from an older version gets 410 too
    wait_for(lambda: api.gone_served >= 1)
    controller.release_hold("tpe-train")
    thread.join(30)
    assert result == [EXIT_SUCCEEDED]
    assert controller.started == STAGES
    assert api.count("GET", r"/jobs\?(?!.*watch)") > lists_before  # it re-listed after the 410


def test_transient_api_errors_are_retried(api, kube, release, controller):
    api.fail_next(503, 500)
    assert sequencer(kube).run() == EXIT_SUCCEEDED


def test_restarted_sequencer_does_not_rerun_completed_stages(api, kube, release, tmp_path, in_background):
    """Kill a sequencer process while stage 2 runs; a new one waits for stage 2 and then starts stage 3."""
    controller = JobController(api, {"tpe-train": "hold"})
    script = (f"import sys; from kubernetes import client; from posesyn_core.launch.kube import Kube; "
              f"from posesyn_core.launch.sequencer import Sequencer; "
              f"k = Kube(client.ApiClient(client.Configuration(host={api.url!r})), {api.namespace!r}); "
              f"sys.exit(Sequencer(k, {RELEASE!r}, {STAGES!r}, {RELEASE + '-status'!r}).run())")
    first = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for(lambda: "tpe-train" in controller.started, timeout=30)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    patches_before = api.count("PATCH", r"/jobs/")
    thread, result = in_background(sequencer(kube))
    wait_for(lambda: api.count("GET", r"watch=") > 0)
    controller.release_hold("tpe-train")
    thread.join(30)
    assert result == [EXIT_SUCCEEDED]
    assert controller.started == STAGES  # each stage started exactly once
    assert api.count("PATCH", r"/jobs/") == patches_before + 1  # only eem was resumed by the new sequencer
