"""The in-cluster sequencer: resumes a release's suspended stage Jobs one after another.

The chart creates every stage Job suspended, so `helm install` alone runs the whole pipeline even when the
submitting laptop goes away, and no GPU pod is scheduled before its turn. The sequencer (its own small Job)
walks the stages in order:

    for each stage:  Succeeded -> skip      Failed -> record, stop (later Jobs stay suspended), exit 1
                     Suspended -> resume it (spec.suspend=false; with Kueue: set its queue label instead, and
                                  Kueue unsuspends it on admission), then wait for Complete/Failed

It keeps no state of its own: everything is read back from the cluster, so a restarted sequencer (node loss,
eviction, `posesyn resume`) skips completed stages and waits on the running one instead of starting it again.
Progress is written to the release's status ConfigMap (`run.state`, `<stage>.state`, `<stage>.message`, ...),
which `posesyn watch` and `kubectl get cm -o yaml` show.

Waiting uses a watch from the list's resourceVersion; when the API server says the version is gone (HTTP 410,
after compaction or a long disconnect) the sequencer re-lists and watches again from the new version.

With the run config (`--config`, as the chart passes it) the sequencer first checks the run's storage and takes
the root's lease for the release (`posesyn_core.lease`, owner `release:<namespace>/<release>`) and renews it until
the run ends, so no other release or laptop run writes the same root meanwhile; a restarted sequencer pod takes
its own release's lease back at once. A root held by someone else fails the run at once, naming the holder.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from posesyn_core.launch.kube import (
    COMPONENT,
    GONE,
    INSTANCE,
    JOB_NAME,
    KUEUE_QUEUE,
    QUEUE_ANNOTATION,
    STAGE,
    STATUS,
    TRANSIENT_HTTP,
    Kube,
    KubeError,
    StageJob,
    now_rfc3339,
    pod_states,
)

if TYPE_CHECKING:
    from posesyn_core.lease import Lease
    from posesyn_core.storage import Store

log = logging.getLogger("posesyn.sequencer")

EXIT_SUCCEEDED = 0
EXIT_RUN_FAILED = 1  # a stage failed or the run was cancelled: restarting the sequencer changes nothing
EXIT_ROOT_HELD = 2  # another run holds the storage root: restarting changes nothing until it is released
EXIT_API_UNAVAILABLE = 75  # EX_TEMPFAIL: the API server stayed unreachable; restarting the sequencer is safe


class RunStopped(Exception):
    """The run cannot go on (a stage failed, the run was cancelled); the message says why."""


@dataclass
class Sequencer:
    kube: Kube
    release: str
    stages: list[str]
    status_configmap: str
    watch_timeout_s: int = 60  # re-list at least this often (refreshes pod-level reasons in the status)
    lease: Lease | None = None  # the run root's lease, held (and renewed) while the sequencer runs

    def owner(self) -> str:
        """The lease owner: the release, so a restarted sequencer pod reclaims its own lease."""
        return f"release:{self.kube.namespace}/{self.release}"

    # 1. reading state ----------------------------------------------------------------------------------------
    def selector(self, stage: str) -> str:
        return f"{INSTANCE}={self.release},{STAGE}={stage}"

    def status_data(self) -> dict[str, str]:
        return self.kube.get_configmap(self.status_configmap).get("data") or {}

    def cancelled(self) -> bool:
        return self.status_data().get("run.state") == "Cancelled"

    def stage_job(self, stage: str) -> tuple[StageJob | None, str]:
        """The stage's Job with its pods (for the reason), or None when it is gone; and the list's version."""
        jobs, rv = self.kube.list_jobs(self.selector(stage))
        if len(jobs) > 1:
            raise KubeError(f"release {self.release!r} has {len(jobs)} Jobs for stage {stage!r}; expected one")
        if not jobs:
            return None, rv
        pods = self.kube.list_pods(f"{JOB_NAME}={jobs[0]['metadata']['name']}")
        return StageJob(jobs[0], pod_states(self.kube, pods)), rv

    # 2. recording state --------------------------------------------------------------------------------------
    def record(self, key: str, state: str, message: str, **times: str) -> None:
        data = {f"{key}.state": state, f"{key}.message": message, **{f"{key}.{k}": v for k, v in times.items()}}
        self.kube.patch_configmap_data(self.status_configmap, data)
        log.info(message, extra={"fields": {"what": key, "state": state}})

    # 3. acting -----------------------------------------------------------------------------------------------
    def start(self, job: StageJob) -> None:
        """Let a suspended stage Job run: unsuspend it, or hand it to its Kueue queue (Kueue unsuspends it)."""
        queue = (job.job["metadata"].get("annotations") or {}).get(QUEUE_ANNOTATION)
        if queue:
            self.kube.patch_job(job.name, {"metadata": {"labels": {KUEUE_QUEUE: queue}}})
        else:
            self.kube.patch_job(job.name, {"spec": {"suspend": False}})

    def wait(self, stage: str) -> StageJob:
        """Block until the stage's Job is Complete or Failed (or the run is cancelled); returns its last state."""
        last_status = ""
        while True:
            current, rv = self.stage_job(stage)
            if current is None:
                raise RunStopped(f"the Job of stage {stage} was deleted while it ran")
            if current.is_done:
                return current
            if current.status != last_status:  # pod-level reasons ("cannot be scheduled: ...") into the status
                last_status = current.status
                self.record(stage, current.state, current.status)
            if current.is_suspended and self.cancelled():
                raise RunStopped("the run was cancelled")
            self.check_lease()
            try:
                for kind, obj in self.kube.watch_jobs(self.selector(stage), rv, self.watch_timeout_s):
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        raise RunStopped(f"the Job of stage {stage} was deleted while it ran")
                    seen = StageJob(obj)
                    if seen.is_done or seen.is_suspended:
                        break  # re-read with pods (for the reason) at the top of the loop
            except KubeError as e:
                if e.status == GONE:
                    log.info("watch expired (HTTP 410): re-listing", extra={"fields": {"stage": stage}})
                elif e.status in TRANSIENT_HTTP or e.status is None:
                    log.warning("watch interrupted, re-listing", extra={"fields": {"error": str(e)}})
                    time.sleep(1.0)
                else:
                    raise

    def check_lease(self) -> None:
        if self.lease is not None and self.lease.lost.is_set():
            raise RunStopped(f"lost the lease on {self.lease.store.url} to another run (could not renew it)")

    def run_stage(self, stage: str, recorded: dict[str, str]) -> None:
        self.check_lease()
        job, _ = self.stage_job(stage)
        if job is None:
            if recorded.get(f"{stage}.state") == "Succeeded":  # its Job was cleaned up (ttlSecondsAfterFinished)
                return
            raise RunStopped(f"release {self.release!r} has no Job for stage {stage!r} (was it deleted?)")
        if job.has_succeeded:
            if recorded.get(f"{stage}.state") != "Succeeded":
                self.record(stage, "Succeeded", job.status, finished=now_rfc3339())
            return
        if not job.has_failed:
            if job.is_suspended:
                if self.cancelled():
                    raise RunStopped("the run was cancelled")
                self.start(job)
                self.record(stage, "Running", f"Stage {stage} started", started=now_rfc3339())
            else:
                log.info("stage already running: waiting for it", extra={"fields": {"stage": stage}})
            job = self.wait(stage)
        if job.has_failed:
            self.record(stage, "Failed", job.status, finished=now_rfc3339())
            raise RunStopped(job.status)
        self.record(stage, "Succeeded", job.status, finished=now_rfc3339())

    def ensure_status_configmap(self) -> dict[str, str]:
        """The status recorded so far; creates the (empty) status ConfigMap on the sequencer's first start."""
        try:
            return self.status_data()
        except KubeError as e:
            if e.status != 404:
                raise
        labels = {INSTANCE: self.release, COMPONENT: STATUS, "app.kubernetes.io/name": "posesyn",
                  "app.kubernetes.io/managed-by": "posesyn-sequencer"}
        self.kube.create_configmap(self.status_configmap, labels, {})
        return {}

    def run(self) -> int:
        """Sequence every stage; returns the process exit code."""
        recorded = self.ensure_status_configmap()
        if recorded.get("run.state") == "Cancelled":
            log.info("run is cancelled: nothing to do (posesyn resume restarts it)")
            return EXIT_RUN_FAILED
        self.record("run", "Running", f"Running stages {', '.join(self.stages)}")
        try:
            for stage in self.stages:
                self.run_stage(stage, recorded)
        except RunStopped as e:
            cancelled = self.cancelled()
            if not cancelled:
                self.record("run", "Failed", str(e), finished=now_rfc3339())
            later = self.stages[self.stages.index(stage) + 1:]
            log.error("run stopped", extra={"fields": {"reason": str(e), "not_started": later}})
            return EXIT_RUN_FAILED
        self.record("run", "Succeeded", f"All {len(self.stages)} stages succeeded", finished=now_rfc3339())
        return EXIT_SUCCEEDED

    def run_holding(self, store: Store) -> int:
        """`run` with the storage root checked and its lease held for the release."""
        from posesyn_core.errors import PosesynError
        from posesyn_core.lease import LeaseHeld, holding

        with ExitStack() as held:
            try:
                self.lease = held.enter_context(holding(store, owner=self.owner()))
            except PosesynError as e:  # held by another run, or storage unusable: say so where `watch` looks
                self.ensure_status_configmap()
                self.record("run", "Failed", str(e), finished=now_rfc3339())
                return EXIT_ROOT_HELD if isinstance(e, LeaseHeld) else EXIT_RUN_FAILED
            return self.run()
