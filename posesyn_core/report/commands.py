"""`posesyn report RUN.yaml`: the run's report as `<root>/report/index.html` + `summary.md` + `facts.json`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("run_yaml", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--ablation-samples", type=click.IntRange(min=1), default=None,
              help="Hard samples in the MR_init ablation (default: the whole challenging set).")
def report_cmd(run_yaml: Path, ablation_samples: int | None) -> None:
    """Write a self-contained HTML report and a markdown summary of a run (and its experiment variants).

    Every number comes from the run's files: stage manifests, stage summaries, evaluate results.

    \b
    Example:
      posesyn report examples/demo.yaml
    """
    from posesyn_core.pipeline import load_run_config
    from posesyn_core.report.build import REPORT, collect, to_json
    from posesyn_core.report.render import markdown, page
    from posesyn_core.storage import join, open_store

    run = load_run_config(run_yaml)
    rep = collect(run, ablation_samples=ablation_samples)
    store = open_store(run.root)
    md = markdown(rep)
    store.write_text(join(REPORT, "summary.md"), md)
    store.write_text(join(REPORT, "facts.json"), to_json(rep))
    store.write_text(join(REPORT, "index.html"), page(rep))
    click.echo(md)
    click.echo(f"report: {store.url_for(join(REPORT, 'index.html'))}", err=True)
