"""Cluster commands: submit, watch, logs, cancel, resume, `cluster status`, and the in-cluster `sequence`.

`posesyn status RUN.yaml` is the local view (which stages' outputs are in storage); `posesyn cluster status
RELEASE` is the cluster's view (Jobs, pods, why something waits). Register with `LAUNCH_COMMANDS`.
Exit codes: 0 success; 1 the run failed or was cancelled; 2 bad config or arguments; 130 detached (Ctrl-C).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from posesyn_core.errors import EXIT_FAIL, EXIT_OK

EXIT_DETACHED = 130


def kube_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Shared options: which namespace and kubeconfig context to talk to."""
    f = click.option("--context", default=None, help="kubeconfig context (default: the current one).")(f)
    return click.option("-n", "--namespace", default=None,
                        help="Namespace (default: the context's, or the pod's own in a cluster).")(f)


def release_argument(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.argument("release")(f)


def connect(namespace: str | None, context: str | None):  # noqa: ANN201
    from posesyn_core.launch.kube import Kube

    return Kube.connect(namespace, context)


@click.command("submit")
@click.argument("run_yaml", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-f", "--values", "values_files", multiple=True, type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="Chart values file merged over the run's (repeatable, later wins).")
@click.option("-n", "--namespace", default=None, help="Namespace to install into (default: the context's).")
@click.option("--release", default=None, help="Helm release name (default: the run's name).")
@click.option("--dry-run", is_flag=True, help="Print the manifests Helm would apply; touch nothing.")
@click.option("--force", is_flag=True, help="Replace the release even if it is still running.")
def submit_cmd(run_yaml: Path, values_files: tuple[Path, ...], namespace: str | None, release: str | None,
               dry_run: bool, force: bool) -> None:
    """Run a synthesis run on Kubernetes: validate RUN_YAML, then install (or upgrade) its Helm release.

    The chart creates one suspended Job per stage and a sequencer Job that resumes them in order, so the run
    completes even if this machine goes away. Re-submitting skips stages already complete.

    \b
    Examples:
      posesyn submit run.yaml -f gpu-cluster.yaml -n posesyn
      posesyn submit run.yaml --dry-run > manifests.yaml
    """
    from posesyn_core.launch.submit import submit

    release, namespace, out = submit(run_yaml, list(values_files), release, namespace, dry_run, force)
    if dry_run:
        click.echo(out, nl=False)
        return
    click.echo(f"submitted release {release} in namespace {namespace}")
    click.echo(f"  watch:  posesyn watch {release} -n {namespace}")
    click.echo(f"  logs:   posesyn logs {release} [STAGE] --follow -n {namespace}")
    click.echo(f"  cancel: posesyn cancel {release} -n {namespace}")


@click.command("watch")
@release_argument
@kube_options
@click.option("--poll", default=5.0, show_default=True, help="Seconds between refreshes when no Job changes.")
def watch_cmd(release: str, namespace: str | None, context: str | None, poll: float) -> None:
    """Follow a run live: per stage its state, shards done, pods pending/running/failed, elapsed time, and why
    it waits or failed. Exits 0 when the run succeeds, 1 when it fails; Ctrl-C detaches (the run goes on).

    \b
    Example:
      posesyn watch demo -n posesyn
    """
    from posesyn_core.launch.watch import summary, watch_run

    console = Console()
    try:
        snap = watch_run(connect(namespace, context), release, console, poll_s=poll)
    except KeyboardInterrupt:
        click.echo(f"\ndetached; the run goes on (posesyn watch {release} to follow it again)", err=True)
        sys.exit(EXIT_DETACHED)
    console.print(summary(snap), highlight=False, markup=False, soft_wrap=True)
    sys.exit(EXIT_OK if snap.has_succeeded else EXIT_FAIL)


@click.command("logs")
@release_argument
@click.argument("stage", required=False)
@kube_options
@click.option("-f", "--follow", is_flag=True, help="Stream the logs as they are written.")
@click.option("--tail", type=int, default=None, help="Only the last N lines of each pod.")
def logs_cmd(release: str, stage: str | None, namespace: str | None, context: str | None, follow: bool,
             tail: int | None) -> None:
    """Print the logs of a stage's pods (all shards; default: the running or failed stage). STAGE may be
    "sequencer".

    \b
    Examples:
      posesyn logs demo animate --follow
      posesyn logs demo sequencer --tail 50
    """
    from posesyn_core.launch.watch import show_logs

    try:
        code = show_logs(connect(namespace, context), release, stage, follow, tail, click.echo)
    except KeyboardInterrupt:
        code = EXIT_OK
    sys.exit(code)


@click.command("cancel")
@release_argument
@kube_options
def cancel_cmd(release: str, namespace: str | None, context: str | None) -> None:
    """Stop a run: suspend the sequencer and every unfinished stage Job (their pods are deleted). Completed
    work stays in storage; `posesyn resume` continues from there.

    \b
    Example:
      posesyn cancel demo
    """
    from posesyn_core.launch.control import cancel_run

    suspended = cancel_run(connect(namespace, context), release)
    click.echo(f"cancelled run {release}; suspended {', '.join(suspended) or 'nothing (nothing was running)'}")


@click.command("resume")
@release_argument
@kube_options
def resume_cmd(release: str, namespace: str | None, context: str | None) -> None:
    """Restart a failed or cancelled run from the stage where it stopped: the failed stage's Job is re-created
    and the sequencer carries on; completed stages and shards are skipped.

    \b
    Example:
      posesyn resume demo && posesyn watch demo
    """
    from posesyn_core.launch.control import resume_run

    for what in resume_run(connect(namespace, context), release):
        click.echo(what)
    click.echo(f"resumed run {release}: posesyn watch {release}")


@click.group("cluster")
def cluster_group() -> None:
    """A run's state on the cluster (`posesyn status RUN.yaml` shows the outputs in storage)."""


@cluster_group.command("status")
@release_argument
@kube_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def cluster_status_cmd(release: str, namespace: str | None, context: str | None, as_json: bool) -> None:
    """Show a run's stages on the cluster once. Exits 1 when the run failed or was cancelled.

    \b
    Example:
      posesyn cluster status demo --json
    """
    from posesyn_core.launch.kube import snapshot
    from posesyn_core.launch.watch import rows, summary, table

    snap = snapshot(connect(namespace, context), release)
    if as_json:
        click.echo(json.dumps({"release": release, "run": {k.removeprefix("run."): v for k, v in
                                                           snap.status_data.items() if k.startswith("run.")},
                               "stages": rows(snap)}, indent=2))
    else:
        console = Console()
        console.print(table(snap))
        console.print(summary(snap), highlight=False, markup=False, soft_wrap=True)
    sys.exit(EXIT_FAIL if snap.has_failed or snap.cancelled else EXIT_OK)


@click.command("sequence")
@click.option("--release", required=True, help="Helm release whose stage Jobs to run.")
@click.option("--namespace", default=None, help="Namespace (default: the pod's own).")
@click.option("--stages", required=True, help="Comma-separated stages, in the order to run them.")
@click.option("--status-configmap", required=True, help="ConfigMap to record the run's status in.")
@click.option("--watch-timeout", default=60, show_default=True, help="Re-list a waited-for Job this often (s).")
@click.option("--config", "run_yaml", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The run YAML: check its storage root and hold the root's lease for the release while running.")
def sequence_cmd(release: str, namespace: str | None, stages: str, status_configmap: str,
                 watch_timeout: int, run_yaml: Path | None) -> None:
    """Run a release's stage Jobs one after another (what the chart's sequencer Job runs in the cluster).

    Exit codes: 0 every stage succeeded; 1 a stage failed, the run was cancelled or its storage is unusable;
    2 another run holds the storage root; 75 the API server stayed unreachable (restarting is safe: state is
    read back from the cluster).

    \b
    Example:
      posesyn sequence --release demo --stages world,tpe-train --status-configmap demo-posesyn-status
    """
    from posesyn_core.errors import ConfigError
    from posesyn_core.launch.kube import Kube, KubeUnavailable
    from posesyn_core.launch.sequencer import EXIT_API_UNAVAILABLE, Sequencer

    order = [s.strip() for s in stages.split(",") if s.strip()]
    if not order:
        raise ConfigError("--stages: name at least one stage")
    try:
        sequencer = Sequencer(Kube.connect(namespace), release, order, status_configmap, watch_timeout)
        if run_yaml is None:
            code = sequencer.run()
        else:
            from posesyn_core.pipeline import load_run_config
            from posesyn_core.storage import open_store

            code = sequencer.run_holding(open_store(load_run_config(run_yaml).root))
    except KubeUnavailable as e:
        click.echo(f"error: {e}", err=True)
        code = EXIT_API_UNAVAILABLE
    sys.exit(code)


LAUNCH_COMMANDS = [submit_cmd, watch_cmd, logs_cmd, cancel_cmd, resume_cmd, cluster_group, sequence_cmd]
