"""Stopping and restarting a run on the cluster: `posesyn cancel` and `posesyn resume`.

Cancel marks the run Cancelled in its status ConfigMap first (so a sequencer about to start the next stage
sees it), then suspends the sequencer Job and every unfinished stage Job: Kubernetes deletes the pods of a
suspended Job, so GPUs are freed at once, and nothing is lost that a resume needs (finished shards and stages
have their `_SUCCESS` markers in storage).

Resume re-creates each failed stage Job from its own live spec (suspended, without the fields the Job
controller owns), re-creates or unsuspends the sequencer, and the sequencer carries on from what the cluster
says: completed stages are skipped, the re-created stage runs again and skips its own completed shards.
"""

from __future__ import annotations

import copy
import time

from posesyn_core.launch.kube import (
    COMPONENT,
    INSTANCE,
    KUEUE_QUEUE,
    STATUS,
    Kube,
    KubeError,
    RunSnapshot,
    StageJob,
    now_rfc3339,
    snapshot,
)

# Labels the Job controller adds to a Job and its pod template; a re-created Job must not carry them.
CONTROLLER_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid", "job-name", "batch.kubernetes.io/job-name")


def status_configmap_name(kube: Kube, release: str) -> str | None:
    cm = kube.find_configmap(f"{INSTANCE}={release},{COMPONENT}={STATUS}")
    return cm["metadata"]["name"] if cm else None


def mark_run(kube: Kube, release: str, state: str, message: str) -> None:
    """Record the run state where the sequencer and `watch` read it (if the sequencer created it already)."""
    name = status_configmap_name(kube, release)
    if name:
        kube.patch_configmap_data(name, {"run.state": state, "run.message": message, "run.updated": now_rfc3339()})


def cancel_run(kube: Kube, release: str) -> list[str]:
    """Cancel a run; returns the names of the Jobs suspended."""
    snap = snapshot(kube, release)
    if snap.has_succeeded:
        raise KubeError(f"run {release!r} already succeeded: nothing to cancel")
    mark_run(kube, release, "Cancelled", "Cancelled by posesyn cancel")
    suspended = []
    for job in ([snap.sequencer] if snap.sequencer else []) + snap.stages:
        if job.is_done:
            continue
        if job.queue:  # take it out of its Kueue queue too, or Kueue would admit (unsuspend) it later
            kube.patch_job(job.name, {"metadata": {"labels": {KUEUE_QUEUE: None}}, "spec": {"suspend": True}})
            suspended.append(job.name)
        elif not job.is_suspended:
            kube.patch_job(job.name, {"spec": {"suspend": True}})
            suspended.append(job.name)
    return suspended


def fresh_job(job: dict, suspend: bool) -> dict:
    """A new Job with the same spec as `job`, less what the API server and the Job controller own
    (status, uid, resourceVersion, the generated selector and controller labels) and less the Kueue queue
    label (the sequencer sets it again on the stage's turn)."""
    meta = job["metadata"]
    spec = copy.deepcopy(job["spec"])
    if not spec.get("manualSelector"):
        spec.pop("selector", None)
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    template_meta["labels"] = {k: v for k, v in (template_meta.get("labels") or {}).items()
                               if k not in CONTROLLER_LABELS}
    spec["suspend"] = suspend
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in CONTROLLER_LABELS and k != KUEUE_QUEUE}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": meta["name"], "labels": labels, "annotations": meta.get("annotations") or {}},
            "spec": spec}


def delete_and_wait(kube: Kube, name: str, timeout_s: float = 60.0) -> None:
    """Delete a Job and wait until its name is free (deletion is asynchronous)."""
    kube.delete_job(name)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            kube.get_job(name)
        except KubeError as e:
            if e.status == 404:
                return
            raise
        if time.monotonic() > deadline:
            raise KubeError(f"Job {name} is still being deleted after {timeout_s:.0f}s; try again later")
        time.sleep(0.5)


def recreate_job(kube: Kube, job: StageJob, suspend: bool) -> None:
    """Delete a finished Job and create it again from its own spec (Job pod templates are immutable)."""
    body = fresh_job(job.job, suspend)
    delete_and_wait(kube, job.name)
    kube.create_job(body)


def resume_run(kube: Kube, release: str) -> list[str]:
    """Restart a failed or cancelled run from where it stopped; returns what was done, one line each."""
    snap: RunSnapshot = snapshot(kube, release)
    if snap.has_succeeded:
        raise KubeError(f"run {release!r} already succeeded: nothing to resume")
    failed = [s for s in snap.stages if s.has_failed]
    seq = snap.sequencer
    if seq is None:
        raise KubeError(f"release {release!r} has no sequencer Job (sequencer.enabled=false, or it was deleted "
                        f"after ttlSecondsAfterFinished): run `posesyn submit` again; completed stages are skipped")
    if not failed and not snap.cancelled and not seq.is_done and not seq.is_suspended:
        raise KubeError(f"run {release!r} is still running: nothing to resume (posesyn watch {release})")
    done = []
    mark_run(kube, release, "Resuming", "Resumed by posesyn resume")
    for stage in failed:
        recreate_job(kube, stage, suspend=True)
        done.append(f"re-created the Job of failed stage {stage.stage} (suspended until its turn)")
    if seq.is_done:
        recreate_job(kube, seq, suspend=False)
        done.append("re-created the sequencer Job")
    elif seq.is_suspended:
        kube.patch_job(seq.name, {"spec": {"suspend": False}})
        done.append("unsuspended the sequencer Job")
    return done
