"""The embedded runner: every stage of a run, in order, each in its own subprocess, on this machine.

Why subprocesses: a stage that crashes, leaks memory or holds a GPU context cannot affect the next one, and the
child runs exactly what a Kubernetes pod runs (`posesyn stage run`, i.e. `execute_stage`). The parent draws a
progress display from events the child writes to an inherited pipe (`POSESYN_PROGRESS_FD`), keeps each
child's log in `<root>/_logs/<stage>.log` (local roots; S3 roots get the log uploaded there) and ends with a
summary table.

The parent holds the root's lease (`posesyn_core.lease`) for the whole run and its children write under it; a
child dies with its parent, so a killed run leaves no orphan writing beside the next one. Each child's output
passes through the parent, which keeps its last lines: a stage that fails because the disk is full is still
reported in words when its log file could not be written.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from posesyn_core.errors import EXIT_FAIL, EXIT_OK, ConfigError, os_error_message
from posesyn_core.lease import TOKEN_ENV, Lease
from posesyn_core.pipeline import RunConfigBase
from posesyn_core.stages import STARTED, SUCCESS, fingerprint, input_fingerprints, read_marker
from posesyn_core.storage import LocalStore, S3Store, Store, join

log = logging.getLogger("posesyn.runner")


@dataclass
class StepResult:
    stage: str
    status: str  # done | skipped | failed
    seconds: float
    exit_code: int
    manifest: dict | None
    log: str
    tail: list[str]  # the child's last output lines, as shown on failure


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


class _LogTee(threading.Thread):
    """Copies the child's output into its log file and keeps the last lines in memory. A log that cannot be
    written (a full disk) is noted once and skipped; the run goes on and the lines stay available."""

    def __init__(self, stream, log_path: Path, keep: int = 200):  # noqa: ANN001
        super().__init__(daemon=True)
        self.stream, self.log_path = stream, log_path
        self.lines: deque[str] = deque(maxlen=keep)
        self.write_error: str | None = None

    def run(self) -> None:
        try:
            log_file = open(self.log_path, "w")  # noqa: SIM115
        except OSError as e:
            log_file, self.write_error = None, os_error_message(e) or str(e)
        for raw in self.stream:
            line = raw.decode("utf-8", errors="replace")
            self.lines.append(line.rstrip("\n"))
            if log_file is not None:
                try:
                    log_file.write(line)
                    log_file.flush()
                except OSError as e:
                    self.write_error = os_error_message(e, f"log {self.log_path}") or str(e)
                    log_file = None
        if log_file is not None:
            try:
                log_file.close()
            except OSError as e:
                self.write_error = os_error_message(e, f"log {self.log_path}") or str(e)


def run_step(config_path: Path, run: RunConfigBase, store: Store, stage: str, force: bool, progress: Progress,
             lease: Lease) -> StepResult:  # fmt: skip
    task = progress.add_task(stage, total=None, unit="")
    read_fd, write_fd = os.pipe()
    cmd = [sys.executable, "-m", "posesyn_core.cli", "stage", "run", stage, str(config_path)]
    if force:
        cmd.append("--force")
    env = {**os.environ, "POSESYN_PROGRESS_FD": str(write_fd), "POSESYN_LOG_FORMAT": "json",
           TOKEN_ENV: lease.token, "POSESYN_PARENT_PID": str(os.getpid())}  # fmt: skip
    # A local lease's locked file goes to the child too: the root stays locked until the last writer is gone.
    keep_fds = (write_fd,) if lease.fd is None else (write_fd, lease.fd)
    log_path = _log_path(store, stage)
    started = time.monotonic()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, pass_fds=keep_fds)
    os.close(write_fd)
    tee = _LogTee(child.stdout, log_path)
    tee.start()
    reader = _ProgressReader(read_fd, progress, task)
    reader.start()
    while True:
        try:
            code = child.wait(timeout=1.0)
            break
        except subprocess.TimeoutExpired:
            if lease.lost.is_set():  # another run took the root over: this one must stop writing now
                child.terminate()
    tee.join(timeout=10)
    reader.join(timeout=5)
    seconds = time.monotonic() - started
    if not isinstance(store, LocalStore) and tee.write_error is None:
        store.upload(log_path, join("_logs", f"{stage}.log"))
    manifest = read_marker(store, join(stage, SUCCESS)) if code == EXIT_OK else None
    status = "failed" if code != EXIT_OK else (reader.result or "done")
    progress.update(task, description=f"{stage} [{'red' if code else 'green'}]{status}[/]")
    if code == EXIT_OK and progress.tasks[task].total is None:
        progress.update(task, total=1, completed=1)
    tail = tail_errors(tee.lines)
    if code < 0:
        tail.append(f"the stage process was killed by signal {-code} ({_signal_name(-code)})")
    if tee.write_error:
        tail.append(f"(its log file could not be written: {tee.write_error})")
    return StepResult(stage, status, seconds, code if code >= 0 else EXIT_FAIL, manifest, str(log_path), tail)


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown"


def tail_errors(lines: Iterable[str], n: int = 12) -> list[str]:
    """The last lines of a child's output, JSON records shown as their message (and traceback)."""
    shown: deque[str] = deque(maxlen=n)
    for raw in lines:
        try:
            rec = json.loads(raw)
            exc = f"\n{rec['exc']}" if "exc" in rec else ""
            shown.append(f"{rec.get('level', '')}: {rec.get('msg', '')}{exc}")
        except (json.JSONDecodeError, AttributeError, TypeError):
            shown.append(raw.rstrip())
    return list(shown)


def clean_leftovers(store: Store) -> None:
    """Temp files and open multipart uploads of writers that were killed: invisible to readers, but they hold
    storage. Called with the root's lease held, so none of them can belong to a live writer."""
    swept = store.sweep_temp_files() if isinstance(store, LocalStore) else 0
    aborted = store.abort_incomplete_uploads() if isinstance(store, S3Store) else 0
    if swept or aborted:
        log.info("cleaned up after a killed run", extra={"fields": {"temp_files": swept, "uploads": aborted}})


def run_pipeline(config_path: Path, run: RunConfigBase, stages: list[str], lease: Lease, force: bool = False,
                 console: Console | None = None) -> list[StepResult]:  # fmt: skip
    """Run `stages` in order under `lease` (held on the run's root); stop at the first failure. Returns one result
    per attempted stage."""
    console = console or Console(stderr=True)
    store = lease.store
    clean_leftovers(store)
    results: list[StepResult] = []
    columns = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), TextColumn("eta"),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        for stage in stages:
            result = run_step(config_path, run, store, stage, force, progress, lease)
            results.append(result)
            if result.exit_code != EXIT_OK or lease.lost.is_set():
                break
    console.print(summary_table(results))
    failed = [r for r in results if r.exit_code != EXIT_OK]
    if failed:
        r = failed[0]
        console.print(f"[red]stage {r.stage} failed (exit {r.exit_code}); log: {r.log}[/]")
        for line in r.tail:
            console.print(f"  {line}", markup=False, highlight=False)
    if lease.lost.is_set():
        console.print(f"[red]the lease on {store.url} was taken over by another run: stopped[/]")
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
