"""What a stage's Job and Pods mean, on JSON shaped like a real API server's, and the retry policy."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from posesyn_core.launch.kube import KubeError, KubeUnavailable, PodState, StageJob, k8s_retry


def job(status: dict | None = None, suspend: bool = False, completions: int = 1, **spec) -> dict:
    return {"metadata": {"name": "demo-posesyn-animate", "labels": {"posesyn.ai/stage": "animate"},
                         "annotations": {"posesyn.ai/stage-index": "7"}},
            "spec": {"suspend": suspend, "completions": completions, "backoffLimit": 3, **spec},
            "status": status or {}}


def pod(phase: str, containers: list[dict] | None = None, conditions: list[dict] | None = None) -> dict:
    return {"metadata": {"name": "demo-posesyn-animate-0-x7k2p", "annotations": {
                "batch.kubernetes.io/job-completion-index": "0"}},
            "spec": {"containers": [{"name": "stage", "resources": {"limits": {"memory": "16Gi"}}}]},
            "status": {"phase": phase, "conditions": conditions or [], "containerStatuses": containers or []}}


def failed(reason: str, message: str = "") -> dict:
    return {"conditions": [{"type": "FailureTarget", "status": "True", "reason": reason},
                           {"type": "Failed", "status": "True", "reason": reason, "message": message,
                            "lastTransitionTime": "2026-03-01T10:05:00Z"}],
            "startTime": "2026-03-01T10:00:00Z", "failed": 4}


def test_suspended_job_is_waiting_for_its_turn():
    s = StageJob(job(suspend=True))
    assert (s.is_suspended, s.is_done, s.is_running, s.is_waiting) == (True, False, False, False)
    assert s.status == "Stage animate is suspended (waiting for its turn)"
    assert s.index == 7


def test_job_handed_to_kueue_is_queued():
    j = job(suspend=True)
    j["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "gpu-batch"
    s = StageJob(j)
    assert s.state == "Queued" and s.is_suspended and not s.is_waiting
    assert s.status == "Stage animate is queued in Kueue queue gpu-batch (waiting for admission: quota or capacity)"


def test_unschedulable_pod_is_explained_with_the_scheduler_event():
    p = pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}])
    events = [{"reason": "Scheduled", "message": "irrelevant"},
              {"reason": "FailedScheduling", "lastTimestamp": "2026-03-01T10:00:01Z", "message": "old"},
              {"reason": "FailedScheduling", "lastTimestamp": "2026-03-01T10:00:09Z",
               "message": "0/3 nodes are available: 1 node(s) had untolerated taint {gpu: true}, 2 Insufficient "
                          "nvidia.com/gpu. preemption: 0/3 nodes are available."}]
    s = StageJob(job({"active": 1, "startTime": "2026-03-01T10:00:00Z"}), [PodState(p, events)])
    assert s.is_waiting and not s.is_running and s.state == "Pending"
    assert s.reason == (None, "cannot be scheduled: 0/3 nodes are available: 1 node(s) had untolerated taint "
                              "{gpu: true}, 2 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available.")
    assert s.pods_in("Pending") == 1


def test_image_pull_backoff():
    p = pod("Pending", [{"name": "stage", "image": "registry.local/posesyn-animate:0.1.0", "state": {"waiting": {
        "reason": "ImagePullBackOff", "message": 'Back-off pulling image "registry.local/posesyn-animate:0.1.0"'}}}])
    _, why = StageJob(job({"active": 1}), [PodState(p)]).reason
    assert why.startswith("cannot pull image registry.local/posesyn-animate:0.1.0: Back-off pulling image")


def test_crash_loop_names_the_memory_key_after_an_oom_kill():
    p = pod("Running", [{"name": "stage", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                         "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}])
    s = StageJob(job({"active": 1}), [PodState(p)])
    assert s.reason == (137, "keeps crashing (CrashLoopBackOff): ran out of memory: raise animate.resources.memory "
                             "(now 16Gi)")


def test_backoff_limit_reached_after_oom_kills():
    p = pod("Failed", [{"name": "stage", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}])
    s = StageJob(job(failed("BackoffLimitExceeded", "Job has reached the specified backoff limit")), [PodState(p)])
    assert s.has_failed and s.is_done and not s.is_waiting
    assert s.reason == (137, "failed 4 times (backoffLimit reached); last attempt ran out of memory: raise "
                             "animate.resources.memory (now 16Gi)")
    assert s.status.startswith("Stage animate failed: failed 4 times")
    assert s.elapsed_s() == 300.0


def test_config_error_exit_2_says_do_not_retry():
    p = pod("Failed", [{"name": "stage", "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}])
    s = StageJob(job(failed("PodFailurePolicy", "Container stage for pod x failed with exit code 2 matching "
                                                "FailJob rule at index 0")), [PodState(p)])
    assert s.reason == (2, "config or usage error: fix the run config (see the logs), do not retry")


def test_deadline_exceeded():
    s = StageJob(job(failed("DeadlineExceeded", "Job was active longer than specified deadline"),
                     activeDeadlineSeconds=86400))
    assert "ran longer than its deadline (activeDeadlineSeconds=86400)" in s.reason[1]


def test_indexed_job_counts_shards_and_pods():
    pods = [pod("Succeeded"), pod("Running", [{"name": "stage", "state": {"running": {}}}]), pod("Pending")]
    s = StageJob(job({"active": 2, "succeeded": 3, "startTime": "2026-03-01T10:00:00Z"}, completions=8,
                     completionMode="Indexed"), [PodState(p) for p in pods])
    assert s.is_running and (s.shards_done, s.shards_total) == (3, 8)
    assert (s.pods_in("Pending"), s.pods_in("Running"), s.pods_in("Succeeded")) == (1, 1, 1)
    assert s.status == "Stage animate is running, 3/8 shards done"


def test_complete_job():
    s = StageJob(job({"succeeded": 1, "startTime": "2026-03-01T10:00:00Z", "completionTime": "2026-03-01T10:01:30Z",
                      "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                     {"type": "Complete", "status": "True"}]}))
    assert s.has_succeeded and s.state == "Succeeded" and s.elapsed_s() == 90.0 and s.reason == (None, "")


def test_retry_retries_transient_errors_only():
    calls = []

    @k8s_retry(deadline_s=5, base_s=0.01)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ApiException(status=503, reason="Service Unavailable")
        return "ok"

    assert flaky() == "ok" and len(calls) == 3

    @k8s_retry(deadline_s=5, base_s=0.01)
    def forbidden() -> None:
        calls.append(2)
        e = ApiException(status=403, reason="Forbidden")
        e.body = '{"kind":"Status","message":"jobs.batch \\"x\\" is forbidden: User \\"u\\" cannot patch"}'
        raise e

    with pytest.raises(KubeError, match=r'forbidden: User "u" cannot patch \(HTTP 403\)') as err:
        forbidden()
    assert err.value.status == 403 and calls.count(2) == 1

    @k8s_retry(deadline_s=0.1, base_s=0.01)
    def down() -> None:
        raise ConnectionRefusedError("connection refused")

    with pytest.raises(KubeUnavailable, match="unreachable"):
        down()
