"""`posesyn export RUN.yaml --format webdataset|coco3d --out URL`."""

from __future__ import annotations

from pathlib import Path

import click

from posesyn_core.export.run import DEFAULT_JOINT_SETS, FORMATS


@click.command("export")
@click.argument("run_yaml", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="webdataset: tar shards of image + JSON; coco3d: COCO-style annotations.json + images.")
@click.option("--out", "out_url", required=True, help="Where to write: a local folder or s3://bucket/prefix.")
@click.option("--shard-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Samples per shard (tar file, or annotation part): the unit of resume.")
@click.option("--include-real", is_flag=True, help="Also export the real datasets of the fine-tune mix.")
@click.option("--joint-sets", default=",".join(DEFAULT_JOINT_SETS), show_default=True,
              help="Joint sets of the labels (smpl24 only when retarget fitted SMPL).")
@click.option("--force", is_flag=True, help="Replace an export with other settings at --out.")
def export_cmd(run_yaml: Path, fmt: str, out_url: str, shard_size: int, include_real: bool, joint_sets: str,
               force: bool) -> None:  # fmt: skip
    """Export a run's synthetic set (the frames `finetune` trains on) for other trainers.

    Per sample: the image, 2D/3D joints in each joint set, body-model parameters and shape, camera intrinsics and
    extrinsics, the hard pose it was made for, caption, motion id, frame index and filter error. Streams the
    set, resumes at shard granularity, and reports (skipped.jsonl) every frame whose image is missing or corrupt.

    \b
    Examples:
      posesyn export examples/demo.yaml --format webdataset --out runs/demo-wds
      posesyn export run.yaml --format coco3d --out s3://bucket/exports/run1 --include-real
    """
    from rich.progress import Progress

    from posesyn_core.export.run import export_run
    from posesyn_core.pipeline import load_run_config

    run = load_run_config(run_yaml)
    if "://" not in out_url:
        Path(out_url).mkdir(parents=True, exist_ok=True)
        out_url = Path(out_url).resolve().as_uri()
    with Progress(transient=True) as bar:
        task = bar.add_task(f"export {fmt}", total=None)
        index = export_run(run, fmt, out_url, shard_size, include_real, tuple(joint_sets.split(",")), force,
                           progress=lambda n: bar.advance(task, n))  # fmt: skip
    click.echo(f"{index['exported']} samples exported to {out_url} in {len(index['shards'])} shards; "
               f"{index['skipped']} skipped" + (" (skipped.jsonl says why)" if index["skipped"] else ""))
