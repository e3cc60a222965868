"""`posesyn tpe ...` commands (the lead wires `tpe` into the main group)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("tpe", context_settings={"help_option_names": ["-h", "--help"]})
def tpe() -> None:
    """The target pose estimator: export checkpoints for other tools."""


@tpe.command("export")
@click.argument("checkpoint")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript"]), default="onnx", show_default=True,
              help="Output format (the external-estimator contract: images (B, 3, S, S) in [0, 1] -> joints3d, cam).")
def export(checkpoint: str, out: Path, fmt: str) -> None:
    """Export a PoseSyn TPE checkpoint (local path or URL) as ONNX or TorchScript.

    The file can be plugged back in as `estimator: {kind: onnx, path: OUT}` (crop size and padding are
    embedded). Example: posesyn tpe export runs/demo/finetune/model.pt tpe.onnx
    """
    from posesyn_core.errors import ConfigError
    from posesyn_core.storage import open_store
    from posesyn_core.tpe.data import resolve_file
    from posesyn_core.tpe.inference import export_onnx, export_torchscript
    from posesyn_core.tpe.model import model_from_checkpoint
    from posesyn_core.tpe.train import load_torch

    if "://" in checkpoint:
        store, key = resolve_file(open_store("file:///"), checkpoint)
    else:
        path = Path(checkpoint).resolve()
        store, key = open_store(path.parent.as_uri()), path.name
    if not store.exists(key):
        raise ConfigError(f"{checkpoint}: no such checkpoint")
    try:
        model = model_from_checkpoint(load_torch(store, key), checkpoint)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    (export_onnx if fmt == "onnx" else export_torchscript)(model, out)
    click.echo(f"wrote {out}")
