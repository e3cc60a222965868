"""Following a run on the cluster from a terminal: `posesyn watch` (live per-stage view) and `posesyn logs`.

Both only read: detaching (Ctrl-C) never touches the run, which the in-cluster sequencer drives on its own.
The view is rebuilt from the cluster on every Job event (a watch from the last list's resourceVersion, so
nothing is polled while nothing happens) and at least every `poll_s` seconds (pod-level changes such as a pod
becoming unschedulable do not touch the Job). On a terminal it is a live table; otherwise (CI logs, pipes)
one line per stage is printed each time that stage's state, shard count, pod counts or reason changes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from rich.console import Console
from rich.live import Live
from rich.table import Table

from posesyn_core.launch.kube import (
    GONE,
    TRANSIENT_HTTP,
    Kube,
    KubeError,
    RunSnapshot,
    StageJob,
    release_selector,
    snapshot,
)

COLOURS = {"Succeeded": "green", "Failed": "red", "Running": "cyan", "Pending": "yellow", "Suspended": "dim",
           "Queued": "magenta"}


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def stage_row(job: StageJob) -> dict[str, str]:
    """The facts shown for one stage (the sequencer Job gets a row too)."""
    _, why = job.reason
    return {
        "stage": job.stage,
        "state": job.state,
        "shards": f"{job.shards_done}/{job.shards_total}",
        "pods": f"{job.pods_in('Pending')}/{job.pods_in('Running')}/{job.pods_in('Failed')}",
        "elapsed": format_duration(job.elapsed_s()),
        "reason": why,
    }


def rows(snap: RunSnapshot) -> list[dict[str, str]]:
    out = [stage_row(s) for s in snap.stages]
    if snap.sequencer is not None:
        out.append({**stage_row(snap.sequencer), "stage": "(sequencer)", "shards": ""})
    return out


def table(snap: RunSnapshot) -> Table:
    run_state = snap.status_data.get("run.state", "")
    t = Table(title=f"release {snap.release}" + (f": {run_state}" if run_state else ""), title_justify="left")
    for col in ("stage", "state", "shards", "pods P/R/F", "elapsed", "reason"):
        t.add_column(col, overflow="fold")
    for r in rows(snap):
        colour = COLOURS.get(r["state"], "white")
        t.add_row(r["stage"], f"[{colour}]{r['state']}[/]", r["shards"], r["pods"], r["elapsed"], r["reason"])
    return t


def line(r: dict[str, str]) -> str:
    text = f"{r['stage']:<14} {r['state']:<10}"
    if r["shards"]:
        text += f" shards {r['shards']:<6}"
    text += f" pods {r['pods']} (pending/running/failed) {r['elapsed']:>7}"
    return text + (f"  {r['reason']}" if r["reason"] else "")


def summary(snap: RunSnapshot) -> str:
    """The closing sentence: what happened and what to do next."""
    if snap.has_succeeded:
        total = sum(s.elapsed_s() or 0 for s in snap.stages)  # stages run one after another
        return f"Run {snap.release} succeeded: {len(snap.stages)} stages in {format_duration(total)}."
    failed = next((s for s in snap.stages if s.has_failed), None)
    if failed is not None:
        return (f"Run {snap.release} failed: {failed.status}\n"
                f"  logs:   posesyn logs {snap.release} {failed.stage}\n"
                f"  resume: posesyn resume {snap.release}   (after fixing the cause; completed work is kept)")
    if snap.cancelled:
        return f"Run {snap.release} was cancelled. Resume it with: posesyn resume {snap.release}"
    if snap.sequencer is not None and snap.sequencer.has_failed:
        return (f"Run {snap.release} stopped: the sequencer failed: {snap.sequencer.status}\n"
                f"  logs:   posesyn logs {snap.release} sequencer")
    return f"Run {snap.release} is in progress."


def wait_for_change(kube: Kube, release: str, resource_version: str, timeout_s: float) -> None:
    """Return on the first Job event of the release after `resource_version`, or after `timeout_s`.

    A 410 (the version was compacted away) or a dropped connection also returns: the caller re-lists, which is
    the recovery the API asks for.
    """
    try:
        for kind, _ in kube.watch_jobs(release_selector(release), resource_version, max(1, int(timeout_s))):
            if kind != "BOOKMARK":
                return
    except KubeError as e:
        if e.status not in (GONE, None, *TRANSIENT_HTTP):
            raise
        if e.status != GONE:
            time.sleep(1.0)


def watch_run(kube: Kube, release: str, console: Console, poll_s: float = 5.0, once: bool = False) -> RunSnapshot:
    """Show the run until it succeeds, fails or is cancelled (or once); returns the last snapshot."""
    shown: dict[str, tuple] = {}

    def print_changes(snap: RunSnapshot) -> None:
        for r in rows(snap):
            key = (r["state"], r["shards"], r["pods"], r["reason"])
            if shown.get(r["stage"]) != key:
                shown[r["stage"]] = key
                console.print(line(r), highlight=False, markup=False, soft_wrap=True)

    live = Live(console=console, auto_refresh=False) if console.is_terminal and not once else None
    if live is not None:
        live.start()
    try:
        while True:
            snap = snapshot(kube, release)
            if live is not None:
                live.update(table(snap), refresh=True)
            elif once:
                console.print(table(snap))
            else:
                print_changes(snap)
            if once or snap.is_done:
                return snap
            wait_for_change(kube, release, snap.resource_version, poll_s)
    finally:
        if live is not None:
            live.stop()


# --- logs ----------------------------------------------------------------------------------------------------


def log_target(snap: RunSnapshot, stage: str | None) -> StageJob:
    """The Job whose logs to show: the named stage ("sequencer" for the sequencer), else the running stage,
    else the failed one, else the sequencer."""
    if stage == "sequencer" and snap.sequencer is not None:
        return snap.sequencer
    if stage:
        return snap.stage(stage)
    for pick in (lambda s: s.is_running or s.is_waiting, lambda s: s.has_failed):
        found = next((s for s in snap.stages if pick(s)), None)
        if found is not None:
            return found
    if snap.sequencer is not None:
        return snap.sequencer
    raise KubeError(f"release {snap.release!r} has nothing running or failed; name a stage")


def show_logs(kube: Kube, release: str, stage: str | None, follow: bool, tail: int | None,
              emit: Callable[[str], None]) -> int:
    """Print the logs of a stage's pods (every shard, prefixed when there are several); returns 0, or 1 when
    the stage has no pods to show."""
    target = log_target(snapshot(kube, release), stage)
    pods = target.pods
    if follow:
        pods = [p for p in pods if p.phase in ("Running", "Pending")] or pods[-1:]
    if not pods:
        emit(f"{target.status}; it has no pods (yet) to show logs of.")
        return 1
    prefix = len(pods) > 1

    def label(p) -> str:  # noqa: ANN001
        return f"[{p.name}] " if prefix else ""

    if not follow:
        for p in pods:
            for text in kube.pod_log(p.name, tail_lines=tail).splitlines():
                emit(label(p) + text)
        return 0
    lines: queue.Queue[str | None] = queue.Queue()

    def pump(p) -> None:  # noqa: ANN001
        try:
            for text in kube.follow_pod_log(p.name, tail_lines=tail):
                lines.put(label(p) + text)
        except KubeError as e:
            lines.put(f"{label(p)}(log stream ended: {e})")
        finally:
            lines.put(None)

    for p in pods:
        threading.Thread(target=pump, args=(p,), daemon=True).start()
    running = len(pods)
    while running:
        text = lines.get()
        if text is None:
            running -= 1
        else:
            emit(text)
    return 0
