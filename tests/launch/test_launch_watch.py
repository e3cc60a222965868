"""`posesyn watch/logs/cluster status/cancel/resume` through a kubeconfig pointing at the fake API server,
with the sequencer running in the background as it would in its pod."""

from __future__ import annotations

import json
import threading

import pytest
from conftest import RELEASE, STAGES, invoke, sequencer, status, wait_for
from kube_fake_api import JobController

from posesyn_core.launch.sequencer import EXIT_RUN_FAILED, EXIT_SUCCEEDED

pytestmark = pytest.mark.timeout(120)  # a hung watch fails fast, not at the suite's limit


@pytest.fixture
def start_sequencer(kube, in_background):
    """Starts the run's sequencer in the background (watch timeout 2 s); the test ends only after it does."""
    return lambda: in_background(sequencer(kube, watch_timeout_s=2))


def watcher_watches(api) -> int:
    """How many watches `posesyn watch` has opened: each follows a snapshot it printed. (The sequencer watches
    one stage's Job: its selector names the stage.)"""
    return sum("watch=" in path and "posesyn.ai" not in path for _, path in list(api.requests))


def test_watch_follows_a_run_to_success(api, kube, kubeconfig, release, start_sequencer):
    controller = JobController(api, {"world": "hold"})
    thread, result = start_sequencer()
    outputs: list[str] = []
    watcher = threading.Thread(target=lambda: outputs.append(invoke(["watch", RELEASE, "--poll", "1"], 0).output))
    watcher.start()
    world_running = lambda: (api.get("jobs", "demo-world") or {}).get("status", {}).get("ready")  # noqa: E731
    wait_for(lambda: world_running() and watcher_watches(api) > 0)
    seen = watcher_watches(api)
    # The second watch opened from now follows a snapshot taken after the first one was asked for: world ran.
    wait_for(lambda: watcher_watches(api) > seen + 1)
    controller.release_hold("world")
    watcher.join(60)
    thread.join(30)
    assert result == [EXIT_SUCCEEDED] and controller.started == STAGES
    lines = outputs[0].splitlines()
    first = {}
    for ln in lines:
        first.setdefault(ln.split()[0], ln)
    assert list(first)[:3] == STAGES  # pipeline order
    assert any(ln.startswith("world") and "Running" in ln and "pods 0/1/0" in ln for ln in lines)
    assert "Suspended" in first["tpe-train"] and "Suspended" in first["eem"]
    for stage in STAGES:
        assert "Succeeded" in [ln for ln in lines if ln.startswith(stage + " ")][-1]
    assert lines[-1].startswith(f"Run {RELEASE} succeeded: 3 stages in")


def test_watch_reports_a_failed_stage_and_exits_1(api, kube, kubeconfig, release, start_sequencer):
    JobController(api, {"tpe-train": "fail"})
    start_sequencer()
    out = invoke(["watch", RELEASE, "--poll", "1"], 1).output
    assert "Run demo failed: Stage tpe-train failed: failed 3 times (backoffLimit reached); last attempt exited " \
           "with code 1" in out
    assert "posesyn logs demo tpe-train" in out and "posesyn resume demo" in out
    logs = invoke(["logs", RELEASE], 0).output  # no stage named: the failed one
    assert "tpe-train attempt 2 starting" in logs and "[demo-tpe-train-0-0] tpe-train attempt 0 starting" in logs


def test_watch_survives_watch_expiry(api, kube, kubeconfig, release, start_sequencer):
    controller = JobController(api, {"world": "hold"})
    start_sequencer()
    done: list[str] = []
    watcher = threading.Thread(target=lambda: done.append(invoke(["watch", RELEASE, "--poll", "30"], 0).output))
    watcher.start()
    wait_for(lambda: "world" in controller.started and watcher_watches(api) > 0 and api.open_watches >= 2)
    api.expire_watches()
    wait_for(lambda: api.gone_served >= 2)
    controller.release_hold("world")
    watcher.join(60)
    assert done and "succeeded" in done[0].splitlines()[-1]


def test_unschedulable_stage_is_explained_then_cancel_and_resume(api, kube, kubeconfig, release, start_sequencer):
    controller = JobController(api, {"world": "unschedulable"})
    thread, result = start_sequencer()
    wait_for(lambda: api.get("pods", "demo-world-0-0") is not None and "world.message" in status(api))
    out = invoke(["cluster", "status", RELEASE], 0).output
    assert "Insufficient" in out and "Run demo is in progress." in out
    rows = json.loads(invoke(["cluster", "status", RELEASE, "--json"], 0).output)["stages"]
    assert rows[0]["stage"] == "world" and rows[0]["state"] == "Pending" and rows[0]["pods"] == "1/0/0"
    assert rows[0]["reason"] == "cannot be scheduled: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu. " \
                                "preemption: 0/3 nodes are available."
    assert rows[-1]["stage"] == "(sequencer)"

    out = invoke(["cancel", RELEASE], 0).output
    assert "suspended demo-sequencer, demo-world" in out
    thread.join(30)
    assert result == [EXIT_RUN_FAILED]
    assert api.get("jobs", "demo-world")["spec"]["suspend"] is True
    invoke(["watch", RELEASE], 1)
    assert "Run demo was cancelled" in invoke(["cluster", "status", RELEASE], 1).output

    # resume: the sequencer Job is unsuspended; here the "pod" of that Job is our sequencer thread again
    controller.outcomes["world"] = "succeed"
    api.update("jobs", "demo-world", lambda j: j.pop("status", None))  # suspending reset the Job's progress
    out = invoke(["resume", RELEASE], 0).output
    assert "unsuspended the sequencer Job" in out
    assert api.get("jobs", "demo-sequencer")["spec"]["suspend"] is False
    thread, result = start_sequencer()
    thread.join(30)
    assert result == [EXIT_SUCCEEDED] and status(api)["run.state"] == "Succeeded"


def test_resume_recreates_the_failed_stage_and_skips_completed_ones(api, kube, kubeconfig, release, start_sequencer):
    controller = JobController(api, {"eem": "oom"})
    thread, result = start_sequencer()
    thread.join(30)
    assert result == [EXIT_RUN_FAILED]
    api.update("jobs", "demo-sequencer", lambda j: j["status"].update(
        active=0, failed=1, conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]))
    old_uid = api.get("jobs", "demo-eem")["metadata"]["uid"]

    controller.outcomes["eem"] = "succeed"  # e.g. after raising eem.resources.memory
    out = invoke(["resume", RELEASE], 0).output
    assert "re-created the Job of failed stage eem" in out and "re-created the sequencer Job" in out
    eem = api.get("jobs", "demo-eem")
    assert eem["metadata"]["uid"] != old_uid and eem["spec"]["suspend"] is True and "status" not in eem
    assert "selector" not in eem["spec"]
    thread, result = start_sequencer()
    thread.join(30)
    assert result == [EXIT_SUCCEEDED]
    assert controller.started == STAGES + ["eem"]  # world and tpe-train did not run again
    invoke(["resume", RELEASE], 1)  # nothing left to resume: one error line, exit 1


def test_logs_follow_streams_until_the_pod_ends(api, kube, kubeconfig, release, start_sequencer):
    controller = JobController(api, {"world": "hold"})
    start_sequencer()
    wait_for(lambda: "world" in controller.started and api.get("pods", "demo-world-0-0") is not None)
    wait_for(lambda: api.get("pods", "demo-world-0-0")["status"]["phase"] == "Running")
    threading.Timer(0.5, controller.release_hold, args=("world",)).start()
    out = invoke(["logs", RELEASE, "world", "--follow"], 0).output
    assert out.splitlines() == ["world shard demo-world-0-0 starting", "world done"]


def test_unknown_release_is_one_clear_error(api, kubeconfig):
    out = invoke(["watch", "nope"], 1).output
    assert "no Jobs of release 'nope' in namespace 'posesyn'" in out
