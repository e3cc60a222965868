"""Kubernetes access for the launcher and the sequencer, and what a stage's Job and Pods mean in plain words.

Lifecycle of a stage on the cluster (the chart renders one Job per stage, created suspended):

    Job suspended ──sequencer patches suspend=false──▶ Job active: pods Pending ─▶ Running ─▶ Succeeded/Failed
        ▲                                                  │ (Unschedulable: no node has the GPU/memory asked for;
        └── `posesyn cancel` suspends it again             │  ImagePullBackOff: the image cannot be pulled)
                                                           ▼
                     Job condition Complete (all completions succeeded) or Failed (backoffLimit, deadline,
                     podFailurePolicy on exit codes 2/3: config or data error, retrying cannot help)

Why Job *conditions* and not pod phases decide: a Job retries failed pods (backoffLimit) and runs several shard
pods (Indexed completion), so one failed pod does not fail the stage, and pods are deleted by TTL or when the
Job is suspended; only the Job controller's `Complete`/`Failed` conditions are final. Pods are read to explain
*why* a stage waits or failed: pod phase alone says "Pending", the `PodScheduled` condition and the
`FailedScheduling` event say "0/3 nodes are available: 3 Insufficient nvidia.com/gpu".

Everything here works on the API's JSON (dicts), so the state mapping is tested on realistic objects and the
API calls go through the official `kubernetes` client (in-cluster config, else kubeconfig).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from posesyn_core.errors import PosesynError

log = logging.getLogger("posesyn.launch")

# Labels the chart puts on every stage Job and its pods (see helm/posesyn/templates/_helpers.tpl).
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
STAGE = "posesyn.ai/stage"
STAGE_INDEX = "posesyn.ai/stage-index"
RUN = "posesyn.ai/run"
QUEUE_ANNOTATION = "posesyn.ai/queue-name"  # Kueue: the sequencer sets this queue label instead of unsuspending
KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
JOB_NAME = "batch.kubernetes.io/job-name"  # set by the Job controller on its pods
SEQUENCER = "sequencer"
STATUS = "status"

TRANSIENT_HTTP = frozenset({429, 500, 502, 503, 504})
GONE = 410  # a watch's resourceVersion is too old: re-list, then watch again


class KubeError(PosesynError):
    """A Kubernetes API call that failed for good. Carries the HTTP status and the API server's own message."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class KubeUnavailable(KubeError):
    """The API server stayed unreachable (connection errors, 5xx, 429) past the retry deadline."""


def api_error(exc: Exception, action: str) -> KubeError:
    """Turn an `ApiException` into a KubeError with the server's message (the JSON `Status.message`)."""
    status = getattr(exc, "status", None)
    message = getattr(exc, "reason", None) or str(exc)
    body = getattr(exc, "body", None)
    if body:
        try:
            message = json.loads(body).get("message") or message
        except (ValueError, AttributeError):
            message = str(body)[:300]
    return KubeError(f"Kubernetes API: {action}: {message} (HTTP {status})", status=status)


def is_transient(exc: Exception) -> bool:
    """Worth retrying: throttling, server errors, broken connections. Not 4xx: retrying a 403 cannot help."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_HTTP or not exc.status  # status 0: the client's own transport error
    return isinstance(exc, HTTPError | ConnectionError | TimeoutError)


F = TypeVar("F", bound=Callable[..., Any])


def k8s_retry(deadline_s: float = 120.0, base_s: float = 0.25, cap_s: float = 8.0) -> Callable[[F], F]:
    """Retry an API call on transient failures with jittered exponential backoff until `deadline_s` has passed.

    Anything else (403, 404, 409, 422) is raised at once as a KubeError carrying the server's message; running
    out of time raises KubeUnavailable. Jitter keeps many sequencers from hammering a recovering API server in
    lockstep.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            from kubernetes.client.exceptions import ApiException

            start, attempt = time.monotonic(), 0
            while True:
                try:
                    return fn(*args, **kwargs)
                except Exception as e:
                    if not is_transient(e):
                        if isinstance(e, ApiException):
                            raise api_error(e, fn.__name__) from None
                        raise
                    left = deadline_s - (time.monotonic() - start)
                    if left <= 0:
                        msg = api_error(e, fn.__name__) if isinstance(e, ApiException) else e
                        raise KubeUnavailable(
                            f"Kubernetes API unreachable for {deadline_s:.0f}s ({fn.__name__}): {msg}"
                        ) from None
                    delay = min(cap_s, base_s * 2**attempt) * random.uniform(0.5, 1.0)
                    log.warning("kubernetes API call failed, retrying", extra={"fields": {"call": fn.__name__,
                                "error": str(e)[:200], "retry_in_s": round(delay, 2)}})
                    time.sleep(min(delay, left))
                    attempt += 1

        return call  # type: ignore[return-value]

    return decorate


# --- state mapping ---------------------------------------------------------------------------------------------


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def condition(obj: dict, kind: str) -> dict | None:
    """The object's status condition of this type when its status is "True" (Jobs and Pods alike)."""
    for c in obj.get("status", {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return c
    return None


def explain_exit(exit_code: int | None, reason: str | None, stage: str, memory: str | None = None) -> str:
    """What a container's termination means for the user, naming the key to change where there is one."""
    if reason == "OOMKilled" or exit_code == 137:
        now = f" (now {memory})" if memory else ""
        return f"ran out of memory: raise {stage}.resources.memory{now}"
    if exit_code == 2:
        return "config or usage error: fix the run config (see the logs), do not retry"
    if exit_code == 3:
        return "too much bad input data (quarantine over max_bad_fraction): fix the dataset, do not retry"
    if exit_code == 143:
        return "was terminated (SIGTERM: node drain, preemption or cancel): may be transient, retry"
    return f"exited with code {exit_code}{f' ({reason})' if reason and reason != 'Error' else ''}: may be " \
           f"transient, retry with `posesyn resume`"


def unschedulable(pod: dict) -> bool:
    """Not placed on any node yet (no node fits: resources, taints, selectors, quota)."""
    return any(c.get("type") == "PodScheduled" and c.get("status") == "False"
               for c in pod.get("status", {}).get("conditions") or [])


@dataclass
class PodState:
    """One pod of a stage, with its warning events (FailedScheduling lives only there)."""

    pod: dict
    events: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.pod["metadata"]["name"]

    @property
    def phase(self) -> str:
        return self.pod.get("status", {}).get("phase", "Pending")

    @property
    def shard(self) -> int | None:
        meta = self.pod["metadata"]
        index = (meta.get("annotations") or {}).get("batch.kubernetes.io/job-completion-index")
        index = index or (meta.get("labels") or {}).get("batch.kubernetes.io/job-completion-index")
        return int(index) if index is not None else None

    @property
    def containers(self) -> list[dict]:
        status = self.pod.get("status", {})
        return (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])

    @property
    def memory_limit(self) -> str | None:
        for c in self.pod.get("spec", {}).get("containers") or []:
            limit = (c.get("resources") or {}).get("limits", {}).get("memory")
            if limit:
                return limit
        return None

    def terminated(self) -> dict | None:
        """The last non-zero termination of any container (current state first, then the previous run)."""
        for c in self.containers:
            for state in (c.get("state") or {}, c.get("lastState") or {}):
                t = state.get("terminated")
                if t and t.get("exitCode", 0) != 0:
                    return t
        return None

    def waiting(self) -> dict | None:
        for c in self.containers:
            w = (c.get("state") or {}).get("waiting")
            if w and w.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
                return {**w, "image": c.get("image")}
        return None

    def explain(self, stage: str) -> str | None:
        """Why this pod is not making progress, in plain words; None when nothing is wrong."""
        if unschedulable(self.pod):
            scheduled = next(c for c in self.pod["status"]["conditions"] if c.get("type") == "PodScheduled")
            failed = [e for e in self.events if e.get("reason") == "FailedScheduling"]
            latest = max(failed, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "", default=None)
            text = (latest or scheduled).get("message") or "no node fits"
            return f"cannot be scheduled: {text.strip()}"
        waiting = self.waiting()
        if waiting:
            reason, message = waiting.get("reason"), (waiting.get("message") or "").strip()
            if reason in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName"):
                return f"cannot pull image {waiting.get('image')}: {message or reason} (check image names and " \
                       f"imagePullSecrets)"
            if reason == "CrashLoopBackOff":
                t = self.terminated()
                why = explain_exit(t.get("exitCode"), t.get("reason"), stage, self.memory_limit) if t else ""
                return f"keeps crashing (CrashLoopBackOff){': ' + why if why else ''}"
            return f"{reason}: {message}" if message else reason
        if self.phase == "Failed":
            t = self.terminated()
            if t:
                return explain_exit(t.get("exitCode"), t.get("reason"), stage, self.memory_limit)
            status = self.pod.get("status", {})
            return f"{status.get('reason', 'Failed')}: {status.get('message', '')}".rstrip(": ")
        return None


@dataclass
class StageJob:
    """A stage's Job and its pods, mapped to the few facts a user needs: a state word, counts, and why.

    `is_done`, `is_running`, `is_waiting`, `has_failed` are the booleans the sequencer and `watch` act on;
    `status` is the one sentence shown to people; `reason` is `(exit_code, explanation)`.
    """

    job: dict
    pods: list[PodState] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.job["metadata"]["name"]

    @property
    def labels(self) -> dict[str, str]:
        return self.job["metadata"].get("labels") or {}

    @property
    def stage(self) -> str:
        return self.labels.get(STAGE) or self.labels.get(COMPONENT) or self.name

    @property
    def index(self) -> int:
        meta = self.job["metadata"]
        value = self.labels.get(STAGE_INDEX) or (meta.get("annotations") or {}).get(STAGE_INDEX)
        return int(value) if value is not None else 1_000

    @property
    def job_status(self) -> dict:
        return self.job.get("status") or {}

    @property
    def is_suspended(self) -> bool:
        return bool(self.job.get("spec", {}).get("suspend")) and not self.is_done

    @property
    def queue(self) -> str | None:
        """The Kueue queue the sequencer handed this Job to (Kueue unsuspends it on admission)."""
        return self.labels.get(KUEUE_QUEUE)

    @property
    def has_succeeded(self) -> bool:
        return condition(self.job, "Complete") is not None

    @property
    def has_failed(self) -> bool:
        return condition(self.job, "Failed") is not None

    @property
    def is_done(self) -> bool:
        return self.has_succeeded or self.has_failed

    @property
    def is_running(self) -> bool:
        return not self.is_done and not self.is_suspended and any(p.phase == "Running" for p in self.pods)

    @property
    def is_waiting(self) -> bool:
        """Started (not suspended) but no pod runs yet: scheduling, pulling images, or between retries."""
        return not self.is_done and not self.is_suspended and not self.is_running

    @property
    def state(self) -> str:
        if self.has_succeeded:
            return "Succeeded"
        if self.has_failed:
            return "Failed"
        if self.is_suspended:
            return "Queued" if self.queue else "Suspended"
        return "Running" if self.is_running else "Pending"

    @property
    def shards_total(self) -> int:
        return int(self.job.get("spec", {}).get("completions") or 1)

    @property
    def shards_done(self) -> int:
        return int(self.job_status.get("succeeded") or 0)

    def pods_in(self, phase: str) -> int:
        return sum(p.phase == phase for p in self.pods)

    @property
    def failed_attempts(self) -> int:
        return int(self.job_status.get("failed") or 0)

    def elapsed_s(self, now: datetime | None = None) -> float | None:
        start = parse_time(self.job_status.get("startTime"))
        if start is None:
            return None
        end = parse_time(self.job_status.get("completionTime"))
        failed = condition(self.job, "Failed")
        if end is None and failed:
            end = parse_time(failed.get("lastTransitionTime"))
        end = end or now or datetime.now(UTC)
        return max(0.0, (end - start).total_seconds())

    @property
    def reason(self) -> tuple[int | None, str]:
        """(exit_code, why) for a failed or stuck stage; (None, "") when there is nothing to explain."""
        failed = condition(self.job, "Failed")
        bad_pod = next((p for p in self.pods if p.phase == "Failed" and p.terminated()), None)
        exit_code = bad_pod.terminated().get("exitCode") if bad_pod else None
        if failed:
            why = bad_pod.explain(self.stage) if bad_pod else None
            kind = failed.get("reason")
            if kind == "DeadlineExceeded":
                deadline = self.job.get("spec", {}).get("activeDeadlineSeconds")
                return exit_code, f"ran longer than its deadline (activeDeadlineSeconds={deadline}): raise " \
                                  f"{self.stage}'s deadline in the chart values or give it more resources"
            if kind == "BackoffLimitExceeded":
                tries = self.failed_attempts
                return exit_code, f"failed {tries} time{'s' if tries != 1 else ''} (backoffLimit reached)" + (
                    f"; last attempt {why}" if why else f": {failed.get('message', '')}".rstrip(": "))
            return exit_code, why or f"{kind}: {failed.get('message', '')}".rstrip(": ")
        if self.is_done or self.is_suspended:
            return None, ""
        for pod in self.pods:
            if pod.phase in ("Pending", "Running", "Failed"):
                why = pod.explain(self.stage)
                if why:
                    t = pod.terminated()
                    return (t.get("exitCode") if t else None), why
        return None, ""

    @property
    def status(self) -> str:
        """One sentence: "Stage animate is pending: cannot be scheduled: 0/3 nodes are available: ..."."""
        words = {"Succeeded": "succeeded", "Failed": "failed", "Suspended": "is suspended (waiting for its turn)",
                 "Queued": f"is queued in Kueue queue {self.queue} (waiting for admission: quota or capacity)",
                 "Running": "is running", "Pending": "is pending"}[self.state]
        parts = [f"Stage {self.stage} {words}"]
        if self.shards_total > 1 and not self.is_suspended:
            parts.append(f"{self.shards_done}/{self.shards_total} shards done")
        _, why = self.reason
        return ", ".join(parts) + (f": {why}" if why else "")


def job_stage_order(job: StageJob, order: list[str]) -> tuple[int, int, str]:
    """Sort key: the release's own order (the chart's stage-index), then the pipeline order, then the name."""
    return (job.index, order.index(job.stage) if job.stage in order else len(order), job.name)


# --- API access ------------------------------------------------------------------------------------------------


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    """The namespaced API calls the launcher makes, on raw JSON, each behind `k8s_retry`.

    `Kube.connect()` uses the in-cluster service account when running in a pod, else the kubeconfig
    (`$KUBECONFIG` or `~/.kube/config`, optionally a named context).
    """

    def __init__(self, api_client: Any, namespace: str, retry_deadline_s: float = 120.0):
        from kubernetes import client

        self.api_client, self.namespace = api_client, namespace
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.retry = k8s_retry(retry_deadline_s)

    @classmethod
    def connect(cls, namespace: str | None = None, context: str | None = None, **kwargs: Any) -> Kube:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
            default_ns = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read().strip()
        except (config.ConfigException, OSError):
            try:
                path = os.environ.get("KUBECONFIG") or None  # read now: the client reads it once, at import
                config.load_kube_config(config_file=path, context=context)
                _, active = config.list_kube_config_contexts(config_file=path)
                default_ns = (active or {}).get("context", {}).get("namespace") or "default"
            except (config.ConfigException, OSError) as e:
                raise KubeError(f"no Kubernetes access: not in a pod and no usable kubeconfig ({e})") from None
        return cls(client.ApiClient(), namespace or default_ns, **kwargs)

    def _call(self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One API call returning parsed JSON (raw, so state mapping sees exactly what the server sent)."""

        def once() -> Any:
            resp = fn(*args, _preload_content=False, **kwargs)
            data = resp.data
            return json.loads(data) if data else None

        once.__name__ = action
        return self.retry(once)()

    # jobs
    def list_jobs(self, selector: str) -> tuple[list[dict], str]:
        """Jobs matching a label selector, and the list's resourceVersion (to watch from)."""
        out = self._call("list jobs", self.batch.list_namespaced_job, self.namespace, label_selector=selector)
        return out.get("items") or [], out["metadata"].get("resourceVersion", "")

    def get_job(self, name: str) -> dict:
        return self._call(f"get job {name}", self.batch.read_namespaced_job, name, self.namespace)

    def patch_job(self, name: str, body: dict) -> dict:
        return self._call(f"patch job {name}", self.batch.patch_namespaced_job, name, self.namespace, body)

    def create_job(self, body: dict) -> dict:
        return self._call("create job", self.batch.create_namespaced_job, self.namespace, body)

    def delete_job(self, name: str) -> None:
        """Delete a Job and (in the background) its pods."""
        self._call(f"delete job {name}", self.batch.delete_namespaced_job, name, self.namespace,
                   propagation_policy="Background")

    def watch_jobs(self, selector: str, resource_version: str, timeout_s: int) -> Iterator[tuple[str, dict]]:
        """(event type, Job JSON) from `resource_version` on, for at most `timeout_s`.

        Raises KubeError with status 410 when the resourceVersion expired: the caller re-lists and watches from
        the new list's version (the only correct recovery: events between the two are lost).
        """
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        stream = watch.Watch().stream(self.batch.list_namespaced_job, self.namespace, label_selector=selector,
                                      resource_version=resource_version, timeout_seconds=timeout_s,
                                      allow_watch_bookmarks=True)
        try:
            for event in stream:  # (deserialize=False would be cheaper, but breaks the client's 410 handling)
                yield event["type"], event["raw_object"]
        except ApiException as e:
            raise api_error(e, "watch jobs") from None
        except (HTTPError, ConnectionError) as e:  # connection dropped mid-stream: the caller re-lists
            raise KubeError(f"Kubernetes API: watch jobs interrupted: {e}") from None

    # pods, events, logs
    def list_pods(self, selector: str) -> list[dict]:
        return self._call("list pods", self.core.list_namespaced_pod, self.namespace,
                          label_selector=selector).get("items") or []

    def pod_events(self, pod: str) -> list[dict]:
        """A pod's events; empty when we may not read events (the PodScheduled condition says nearly as much)."""
        try:
            return self._call(f"list events of {pod}", self.core.list_namespaced_event, self.namespace,
                              field_selector=f"involvedObject.name={pod}").get("items") or []
        except KubeError as e:
            if e.status != 403:
                raise
            return []

    def pod_log(self, pod: str, tail_lines: int | None = None) -> str:
        def once() -> str:
            resp = self.core.read_namespaced_pod_log(pod, self.namespace, tail_lines=tail_lines,
                                                     _preload_content=False)
            return resp.data.decode("utf-8", errors="replace")

        once.__name__ = f"read log of {pod}"
        return self.retry(once)()

    def follow_pod_log(self, pod: str, tail_lines: int | None = None) -> Iterator[str]:
        """Lines of a pod's log as they are written, until the container exits."""
        from kubernetes.client.exceptions import ApiException

        try:
            resp = self.core.read_namespaced_pod_log(pod, self.namespace, follow=True, tail_lines=tail_lines,
                                                     _preload_content=False)
        except ApiException as e:
            raise api_error(e, f"follow log of {pod}") from None
        buffer = b""
        for chunk in resp.stream(amt=None, decode_content=False):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", errors="replace")
        if buffer:
            yield buffer.decode("utf-8", errors="replace")

    # configmaps
    def find_configmap(self, selector: str) -> dict | None:
        items = self._call("list configmaps", self.core.list_namespaced_config_map, self.namespace,
                           label_selector=selector).get("items") or []
        return items[0] if items else None

    def create_configmap(self, name: str, labels: dict[str, str], data: dict[str, str]) -> dict:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": data}
        return self._call(f"create configmap {name}", self.core.create_namespaced_config_map, self.namespace, body)

    def get_configmap(self, name: str) -> dict:
        return self._call(f"get configmap {name}", self.core.read_namespaced_config_map, name, self.namespace)

    def patch_configmap_data(self, name: str, data: dict[str, str]) -> dict:
        return self._call(f"patch configmap {name}", self.core.patch_namespaced_config_map, name,
                          self.namespace, {"data": data})


# --- the whole run as seen from the cluster ---------------------------------------------------------------------


def release_selector(release: str) -> str:
    return f"{INSTANCE}={release}"


def stage_selector(release: str) -> str:
    return f"{INSTANCE}={release},{STAGE}"


@dataclass
class RunSnapshot:
    """Every stage Job of a release (in pipeline order) with its pods, plus the sequencer Job and status data."""

    release: str
    stages: list[StageJob]
    sequencer: StageJob | None
    status_data: dict[str, str]
    resource_version: str

    @property
    def cancelled(self) -> bool:
        return self.status_data.get("run.state") == "Cancelled"

    @property
    def has_failed(self) -> bool:
        return any(s.has_failed for s in self.stages) or bool(self.sequencer and self.sequencer.has_failed
                                                               and not all(s.has_succeeded for s in self.stages))

    @property
    def has_succeeded(self) -> bool:
        return bool(self.stages) and all(s.has_succeeded for s in self.stages)

    @property
    def is_done(self) -> bool:
        return self.has_succeeded or self.has_failed or self.cancelled

    def stage(self, name: str) -> StageJob:
        for s in self.stages:
            if s.stage == name:
                return s
        raise KubeError(f"release {self.release!r} has no Job for stage {name!r} "
                        f"(stages: {', '.join(s.stage for s in self.stages) or 'none'})")


def group_pods(pods: list[dict]) -> dict[str, list[dict]]:
    by_job: dict[str, list[dict]] = {}
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        job = labels.get(JOB_NAME) or labels.get("job-name")
        if job:
            by_job.setdefault(job, []).append(pod)
    return by_job


def pod_states(kube: Kube, pods: list[dict], max_event_reads: int = 2) -> list[PodState]:
    """Pods in shard order; unschedulable ones with their events (the scheduler's full reason is only told
    there). Shards of one Job wait for the same reason, so a few event reads per refresh are enough."""
    states = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        events = []
        if unschedulable(pod) and max_event_reads > 0:
            max_event_reads -= 1
            events = kube.pod_events(pod["metadata"]["name"])
        states.append(PodState(pod, events))
    return sorted(states, key=lambda p: (p.shard or 0, p.name))


def snapshot(kube: Kube, release: str, order: list[str] | None = None) -> RunSnapshot:
    """Read the release's current state: Jobs, their pods, the events of stuck pods, the status ConfigMap."""
    jobs, rv = kube.list_jobs(release_selector(release))
    if not jobs:
        raise KubeError(f"no Jobs of release {release!r} in namespace {kube.namespace!r} (wrong --namespace?)",
                        status=404)
    pods_by_job = group_pods(kube.list_pods(release_selector(release)))

    def with_pods(job: dict) -> StageJob:
        return StageJob(job, pod_states(kube, pods_by_job.get(job["metadata"]["name"], [])))

    stage_jobs = [with_pods(j) for j in jobs if STAGE in (j["metadata"].get("labels") or {})]
    sequencer = next((with_pods(j) for j in jobs
                      if (j["metadata"].get("labels") or {}).get(COMPONENT) == SEQUENCER), None)
    from posesyn_core.pipeline import STAGES

    order = order or list(STAGES)
    stage_jobs.sort(key=lambda s: job_stage_order(s, order))
    cm = kube.find_configmap(f"{INSTANCE}={release},{COMPONENT}={STATUS}")
    return RunSnapshot(release, stage_jobs, sequencer, (cm or {}).get("data") or {}, rv)
