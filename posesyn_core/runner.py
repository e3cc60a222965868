"""The embedded runner: every stage of a run, in order, each in its own subprocess, on this machine.

Why subprocesses: a stage that crashes, leaks memory or holds a GPU context cannot affect the next one, and the
child runs exactly what a Kubernetes pod runs (`posesyn stage run`, i.e. `execute_stage`). The parent draws a
progress display from events the child writes to an inherited pipe (`POSESYN_PROGRESS_FD`), keeps each
child's log in `<root>/_logs/<stage>.log` (local roots; S3 roots get the log uploaded there) and ends with a
summary table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from posesyn_core.errors import EXIT_OK, ConfigError
from posesyn_core.pipeline import RunConfigBase
from posesyn_core.stages import STARTED, SUCCESS, fingerprint, input_fingerprints, read_marker
from posesyn_core.storage import LocalStore, Store, join, open_store


@dataclass
class StepResult:
    stage: str
    status: str  # done | skipped | failed
    seconds: float
    exit_code: int
    manifest: dict | None
    log: str


def select_stages(run: RunConfigBase, start: str | None = None, only: str | None = None) -> list[str]:
    stages = list(run.stages or [])
    for flag, name in (("--from", start), ("--only", only)):
        if name is not None and name not in stages:
            raise ConfigError(f"{flag} {name}: not a stage of this run; its stages are {stages}")
    if only:
        return [only]
    if start:
        return stages[stages.index(start) :]
    return stages


def stage_states(run: RunConfigBase, store: Store) -> list[dict]:
    """Per stage: done (up to date), stale (done with other config/inputs), partial, or pending."""
    rows = []
    for name in run.stages or []:
        spec = type(run).registry[name]
        manifest = read_marker(store, join(name, SUCCESS))
        try:
            current = fingerprint(spec, run, input_fingerprints(spec, run, store))
        except ConfigError:
            current = None  # an upstream stage is not done yet
        if manifest:
            state = "done" if manifest["fingerprint"] == current else "stale"
        elif store.exists(join(name, STARTED)) or any(True for _ in store.list(join(name, "shards"))):
            state = "partial"
        else:
            state = "pending"
        rows.append({"stage": name, "state": state, "manifest": manifest})
    return rows


class _ProgressReader(threading.Thread):
    """Reads the child's JSON progress events and moves the bar."""

    def __init__(self, fd: int, progress: Progress, task: int):
        super().__init__(daemon=True)
        self.file = os.fdopen(fd, "r")
        self.progress, self.task = progress, task
        self.result: str | None = None

    def run(self) -> None:
        for line in self.file:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "result" in event:
                self.result = event["result"]
                continue
            self.progress.update(self.task, total=event.get("total"), completed=event.get("done", 0),
                                 unit=event.get("unit", ""))  # fmt: skip


def _log_path(store: Store, stage: str) -> Path:
    if isinstance(store, LocalStore):
        path = store.root / "_logs" / f"{stage}.log"
    else:
        path = Path(tempfile.gettempdir()) / "posesyn-logs" / f"{stage}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def run_step(config_path: Path, run: RunConfigBase, store: Store, stage: str, force: bool,
             progress: Progress) -> StepResult:  # fmt: skip
    task = progress.add_task(stage, total=None, unit="")
    read_fd, write_fd = os.pipe()
    cmd = [sys.executable, "-m", "posesyn_core.cli", "stage", "run", stage, str(config_path)]
    if force:
        cmd.append("--force")
    env = {**os.environ, "POSESYN_PROGRESS_FD": str(write_fd), "POSESYN_LOG_FORMAT": "json"}
    log_path = _log_path(store, stage)
    started = time.monotonic()
    with open(log_path, "w") as log:
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, pass_fds=(write_fd,))
    os.close(write_fd)
    reader = _ProgressReader(read_fd, progress, task)
    reader.start()
    code = child.wait()
    reader.join(timeout=5)
    seconds = time.monotonic() - started
    if not isinstance(store, LocalStore):
        store.upload(log_path, join("_logs", f"{stage}.log"))
    manifest = read_marker(store, join(stage, SUCCESS)) if code == EXIT_OK else None
    status = "failed" if code != EXIT_OK else (reader.result or "done")
    progress.update(task, description=f"{stage} [{'red' if code else 'green'}]{status}[/]")
    if code == EXIT_OK and progress.tasks[task].total is None:
        progress.update(task, total=1, completed=1)
    return StepResult(stage, status, seconds, code, manifest, str(log_path))


def tail_errors(log_path: str, n: int = 12) -> list[str]:
    """The last lines of a child's log, JSON records shown as their message (and traceback)."""
    lines: deque[str] = deque(maxlen=n)
    with open(log_path, errors="replace") as f:
        for raw in f:
            try:
                rec = json.loads(raw)
                exc = f"\n{rec['exc']}" if "exc" in rec else ""
                lines.append(f"{rec.get('level', '')}: {rec.get('msg', '')}{exc}")
            except (json.JSONDecodeError, AttributeError):
                lines.append(raw.rstrip())
    return list(lines)


def run_pipeline(config_path: Path, run: RunConfigBase, stages: list[str], force: bool = False,
                 console: Console | None = None) -> list[StepResult]:  # fmt: skip
    """Run `stages` in order; stop at the first failure. Returns one result per attempted stage."""
    console = console or Console(stderr=True)
    store = open_store(run.root)
    results: list[StepResult] = []
    columns = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), TextColumn("eta"),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        for stage in stages:
            result = run_step(config_path, run, store, stage, force, progress)
            results.append(result)
            if result.exit_code != EXIT_OK:
                break
    console.print(summary_table(results))
    failed = [r for r in results if r.exit_code != EXIT_OK]
    if failed:
        r = failed[0]
        console.print(f"[red]stage {r.stage} failed (exit {r.exit_code}); log: {r.log}[/]")
        for line in tail_errors(r.log):
            console.print(f"  {line}", markup=False, highlight=False)
    return results


def summary_table(results: list[StepResult]) -> Table:
    table = Table(title="run summary")
    for col in ("stage", "status", "seconds", "counts", "rejected"):
        table.add_column(col)
    for r in results:
        counts = ", ".join(f"{k}={v}" for k, v in (r.manifest or {}).get("counts", {}).items())
        colour = {"done": "green", "skipped": "cyan", "failed": "red"}.get(r.status, "white")
        table.add_row(r.stage, f"[{colour}]{r.status}[/]", f"{r.seconds:.1f}", counts[:80],
                      str((r.manifest or {}).get("rejected", "")))  # fmt: skip
    return table
