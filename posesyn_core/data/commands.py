"""`posesyn data import coco|mpii SRC DEST`: convert a real 2D dataset into the pose-dataset format.

DEST is a folder, `file:///abs/path` or `s3://bucket/prefix`; quarantined annotations are listed in
`DEST/rejected.jsonl`. Exit code 3 (EXIT_DATA) when more than `--max-bad-fraction` of them are quarantined.
"""

from __future__ import annotations

from pathlib import Path

import click

from posesyn_core.data.import2d import ImportOptions


def _store_for(dest: str):  # noqa: ANN202
    from posesyn_core.storage import open_store

    if "://" not in dest:
        path = Path(dest).resolve()
        path.mkdir(parents=True, exist_ok=True)
        dest = path.as_uri()
    return open_store(dest)


def import_options(f):  # noqa: ANN001, ANN201
    """Options shared by every importer."""
    options = [
        click.option("--images", "image_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Image folder (default: SRC's folder, or SRC/../images for MPII's annot/)."),
        click.option("--name", default=None, help="Dataset name written to info.json (default: the format)."),
        click.option("--crop-scale", default=1.3, show_default=True, help="Saved crop = person box x this."),
        click.option("--max-side", default=512, show_default=True, help="Downscale crops to this long side (px)."),
        click.option("--part-size", default=1000, show_default=True, help="Samples per dataset part."),
        click.option("--max-bad-fraction", default=0.5, show_default=True,
                     help="Fail (exit 3) when more annotations than this fraction are quarantined."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


def _report(summary: dict, dest: str) -> None:
    click.echo(f"{summary['accepted']} samples written to {dest}; {summary['rejected']} quarantined")
    for reason, n in sorted(summary["reasons"].items()):
        click.echo(f"  {n:6d}  {reason}")


@click.group("data")
def data_group() -> None:
    """Dataset tools: import real 2D datasets into the pose-dataset format."""


@data_group.group("import")
def import_group() -> None:
    """Convert a COCO or MPII dataset (annotations + images) into a pose dataset."""


@import_group.command("coco")
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dest")
@import_options
@click.option("--detections", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A detector's keypoints (COCO keypoint results JSON) on SRC's images, imported instead of SRC's "
              "labels: for EEM on a photo set without 2D labels.")  # fmt: skip
@click.option("--min-score", type=float, default=0.0, show_default=True,
              help="--detections: keep person detections scoring at least this.")  # fmt: skip
@click.option("--min-keypoint-score", type=float, default=0.2, show_default=True,
              help="--detections: a keypoint scoring at least this counts as visible.")  # fmt: skip
def import_coco_cmd(src: Path, dest: str, image_dir: Path | None, name: str | None, crop_scale: float,
                    max_side: int, part_size: int, max_bad_fraction: float, detections: Path | None,
                    min_score: float, min_keypoint_score: float) -> None:  # fmt: skip
    """Import COCO keypoints: SRC is person_keypoints_*.json (only its `images` with --detections).

    \b
    Examples:
      posesyn data import coco annotations/person_keypoints_val2017.json data/coco-val --images val2017
      posesyn data import coco annotations/person_keypoints_val2017.json data/coco-val-det --images val2017 \\
        --detections detector_keypoints_val2017_results.json --min-score 0.5
    """
    from posesyn_core.data.coco import import_coco

    opts = ImportOptions(crop_scale=crop_scale, max_side=max_side, part_size=part_size)
    summary = import_coco(src, image_dir or src.parent, _store_for(dest), "", name or ("coco-detections" if
                          detections else "coco"), opts, max_bad_fraction, detections, min_score,
                          min_keypoint_score)  # fmt: skip
    _report(summary, dest)


@import_group.command("mpii")
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dest")
@import_options
@click.option("--zero-based", is_flag=True, help="Coordinates are already 0-based (default: MATLAB 1-based).")
def import_mpii_cmd(src: Path, dest: str, image_dir: Path | None, name: str | None, crop_scale: float,
                    max_side: int, part_size: int, max_bad_fraction: float, zero_based: bool) -> None:  # fmt: skip
    """Import MPII from its JSON conversion: SRC is annot/train.json (HRNet) or mpii_annotations.json (bearpaw).

    \b
    Example:
      posesyn data import mpii mpii/annot/train.json data/mpii-train --images mpii/images
    """
    from posesyn_core.data.mpii import import_mpii

    default_images = src.parent.parent / "images" if src.parent.name == "annot" else src.parent
    opts = ImportOptions(crop_scale=crop_scale, max_side=max_side, part_size=part_size)
    summary = import_mpii(src, image_dir or default_images, _store_for(dest), "", name or "mpii", opts,
                          max_bad_fraction, one_based=not zero_based)  # fmt: skip
    _report(summary, dest)
