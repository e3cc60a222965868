"""`posesyn submit RUN.yaml`: validate a run config and install (or upgrade) its Helm release.

Real Helm does the work: the `helm` CLI when it is on PATH, else the Helm v4 Go SDK embedded in
`helm-python-sdk`. Both render the same chart (`helm/posesyn`) with the same values, so `--dry-run` prints
exactly the manifests an install applies.

Re-submitting a release: Job pod templates are immutable, so the release's existing Jobs (stage Jobs and the
sequencer) are deleted first and the upgrade creates them again; stages whose outputs are complete for the
same config are skipped by their `_SUCCESS` markers, so nothing finished runs twice. A release that is still
running is left alone unless `--force`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from posesyn_core.config import read_yaml
from posesyn_core.errors import ConfigError
from posesyn_core.launch.control import delete_and_wait, mark_run
from posesyn_core.launch.kube import RUN, Kube, KubeError, release_selector, snapshot


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's values coalescing for maps: override wins key by key, nested maps merge, lists replace."""
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def submit_values(run: Any, values_files: list[Path]) -> dict[str, Any]:
    """The chart values of a run: derived from the run config, then each `-f` file merged over in order."""
    from posesyn_core.launch.chart import values_for_run

    values = values_for_run(run)
    for path in values_files:
        values = deep_merge(values, read_yaml(path))
    return values


def chart_for(run: Any, workdir: Path) -> Path:
    """The chart directory: the packaged chart, or a copy generated for plugin stages when the run has any."""
    from posesyn_core.launch.chart import CHART_DIR, prepared_chart

    return prepared_chart(workdir, type(run)) if run.plugins else CHART_DIR


class Helm(Protocol):
    def template(self, chart: Path, release: str, namespace: str, values: dict[str, Any]) -> str: ...

    def upgrade_install(self, chart: Path, release: str, namespace: str, values: dict[str, Any]) -> str: ...


@dataclass
class HelmCli:
    """The `helm` binary (what most clusters' users already trust and configure)."""

    binary: str

    def _run(self, *args: str, values: dict[str, Any]) -> str:
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(values, f)  # JSON is YAML: helm reads it as a values file
            f.flush()
            proc = subprocess.run([self.binary, *args, "-f", f.name], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ConfigError(f"helm {args[0]}: {proc.stderr.strip()}")
        return proc.stdout

    def template(self, chart: Path, release: str, namespace: str, values: dict[str, Any]) -> str:
        return self._run("template", release, str(chart), "--namespace", namespace, values=values)

    def upgrade_install(self, chart: Path, release: str, namespace: str, values: dict[str, Any]) -> str:
        return self._run("upgrade", "--install", release, str(chart), "--namespace", namespace, values=values)


class HelmSdk:
    """The Helm Go SDK through `helm-python-sdk` (no binary needed; same engine as `helm`)."""

    def template(self, chart: Path, release: str, namespace: str, values: dict[str, Any]) -> str:
        import helm_python as helm

        try:
            with helm.Chart.load(chart) as c:
                rendered = c.render(values=values, name=release, namespace=namespace, is_install=True)
        except helm.HelmError as e:
            raise ConfigError(f"helm chart {chart}: {e}") from None
        docs = [f"---\n# Source: {name}\n{text.strip()}\n" for name, text in sorted(rendered.items())
                if text.strip() and not name.endswith("NOTES.txt")]
        return "".join(docs)

    def upgrade_install(self, chart: Path, release: str, namespace: str, values: dict[str, Any]) -> str:
        import helm_python as helm

        try:
            with helm.Config(namespace=namespace) as cfg:
                exists = bool(cfg.list(all_states=True, name_filter=f"^{release}$"))
                action = cfg.upgrade if exists else cfg.install
                result = action(str(chart), release, values, namespace=namespace)
        except helm.HelmError as e:
            raise KubeError(f"helm {'upgrade' if exists else 'install'} {release}: {e}") from None
        return (result.get("info") or {}).get("notes") or ""


def helm_backend() -> Helm:
    binary = shutil.which("helm")
    return HelmCli(binary) if binary else HelmSdk()


def check_release(kube: Kube, release: str, run_name: str, force: bool) -> list[str]:
    """Refuse to replace a running release (or one holding another run) unless forced; returns the names of
    the release's Jobs, which the caller deletes before upgrading."""
    jobs, _ = kube.list_jobs(release_selector(release))
    if not jobs:
        return []
    runs = {(j["metadata"].get("labels") or {}).get(RUN) for j in jobs} - {None}
    if runs and runs != {run_name} and not force:
        raise ConfigError(f"release {release!r} holds run {sorted(runs)[0]!r}, not {run_name!r}: choose another "
                          f"--release, or --force to replace it")
    snap = snapshot(kube, release)
    if not snap.is_done and not force:
        busy = next((s.stage for s in snap.stages if s.is_running or s.is_waiting), "the sequencer")
        raise ConfigError(f"release {release!r} is still running ({busy}): `posesyn cancel {release}` first, or "
                          f"--force to replace it (its completed stages are kept)")
    return [j["metadata"]["name"] for j in jobs]


def submit(run_yaml: Path, values_files: list[Path], release: str | None, namespace: str | None,
           dry_run: bool, force: bool, helm: Helm | None = None) -> tuple[str, str, str]:
    """Validate, render and (unless dry_run) install. Returns (release, namespace, output): the manifests for a
    dry run, else Helm's release notes."""
    from posesyn_core.pipeline import load_run_config

    # 1. Check inputs: the run config is validated before anything touches the cluster.
    run = load_run_config(run_yaml)
    release = release or run.name
    values = submit_values(run, values_files)
    helm = helm or helm_backend()
    with tempfile.TemporaryDirectory() as tmp:
        chart = chart_for(run, Path(tmp))
        # 2. Render: the chart's schema and validations reject bad values here, naming the key.
        if dry_run:
            return release, namespace or "default", helm.template(chart, release, namespace or "default", values)
        helm.template(chart, release, namespace or "default", values)
        # 3. Make room: the release's old Jobs go (templates are immutable), unless it is still running.
        kube = Kube.connect(namespace)
        run_name = values.get("run", {}).get("name") or run.name  # a values file may rename the run
        for name in check_release(kube, release, run_name, force):
            delete_and_wait(kube, name)
        mark_run(kube, release, "Pending", f"Submitted {run_yaml.name}")
        # 4. Install or upgrade.
        notes = helm.upgrade_install(chart, release, kube.namespace, values)
    return release, kube.namespace, notes
