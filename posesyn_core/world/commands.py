"""`posesyn world ...` commands (the lead wires `world` into the main group)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("world", context_settings={"help_option_names": ["-h", "--help"]})
def world() -> None:
    """The mini-world (lab/wild pose datasets, motions) built by the `world` stage."""


@world.command("preview")
@click.argument("run_yaml", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=Path("world-preview.png"),
              show_default=True, help="PNG to write.")  # fmt: skip
@click.option("--count", "-n", type=click.IntRange(1, 512), default=16, show_default=True,
              help="Samples per dataset.")  # fmt: skip
@click.option("--dataset", "-d", "datasets", multiple=True, default=("lab3d", "wild2d"), show_default=True,
              type=click.Choice(["lab3d", "lab3d_test", "wild2d", "wild_test"]), help="World datasets to show.")
def preview(run_yaml: Path, out: Path, count: int, datasets: tuple[str, ...]) -> None:
    """Write a contact sheet of world samples with their 2D keypoints drawn.

    Example: posesyn world preview examples/demo.yaml -o preview.png -n 24 -d wild2d
    """
    from posesyn_core.pipeline import load_run_config
    from posesyn_core.storage import open_store
    from posesyn_core.world.preview import write_preview

    run = load_run_config(run_yaml)
    path = write_preview(open_store(run.root), out, count, datasets)
    click.echo(f"wrote {path}")
