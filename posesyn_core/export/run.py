"""`export_run`: a run's synthetic set (and optionally its real fine-tuning mix) written for external trainers.

Samples are numbered in a fixed order (the synthetic set `finetune.synthetic`, then each of `finetune.real` with
`include_real`) and shard k holds numbers [k * shard_size, (k + 1) * shard_size), so a re-run knows which shards
exist and skips them without reading their images: the export resumes at shard granularity. A frame whose image
is missing or does not decode is reported (`skipped.jsonl`: id, dataset, reason) and left out; at the end
`index.json` counts exported + skipped and checks they equal the input. `export.json`, written first, holds the
settings: a different export into the same place is refused (or replaced with `force`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from posesyn_core.data.dataset import decode_image
from posesyn_core.errors import ConfigError, DataError, StorageError
from posesyn_core.export.records import (
    FitReader,
    Item,
    check_joint_sets,
    iter_dataset,
    iter_filter_errors,
    joint_set_names,
)
from posesyn_core.export.writers import WRITERS
from posesyn_core.storage import Store, join, open_store
from posesyn_core.tpe.data import resolve

FORMATS = tuple(WRITERS)
DEFAULT_JOINT_SETS = ("smpl22", "coco17", "smpl24")


def _synthetic_items(run_store: Store, location: str, fitted: dict, start: int) -> Iterator[Item]:
    """Kept synthetic frames with their fitted body (`fitted`: retarget's summary) and filter error, streamed."""
    store, prefix = resolve(run_store, location)
    fits = FitReader(run_store, fitted.get("body_model", "anny"), fitted.get("body_model_path"))
    errors = iter_filter_errors(run_store)
    info = store.read_json(join(prefix, "info.json"))
    for i, sample in enumerate(iter_dataset(store, prefix), start):
        error = None
        for sid, e in errors:  # merge: the kept frames are a subsequence of the scored ones
            if sid == sample.id:
                error = e
                break
        fit = fits(sample.meta["fit"]) if "fit" in sample.meta else None
        yield Item(i, "synthetic", store.url_for(prefix), store, prefix, sample, info["joint_set"], fit, error)


def _real_items(run_store: Store, locations: list[str], start: int) -> Iterator[Item]:
    i = start
    for location in locations:
        store, prefix = resolve(run_store, location)
        info = store.read_json(join(prefix, "info.json"))
        for sample in iter_dataset(store, prefix):
            yield Item(i, "real", store.url_for(prefix), store, prefix, sample, info["joint_set"])
            i += 1


def _image(item: Item) -> tuple[bytes | None, str | None]:
    """The frame's stored bytes when they decode, else (None, why)."""
    try:
        data = item.store.read_bytes(item.image_key)
    except StorageError as err:
        return None, f"missing image: {err}"
    try:
        decode_image(data, item.image_key)
    except DataError:
        return None, f"corrupted image ({len(data)} bytes do not decode)"
    return data, None


def export_run(
    run, fmt: str, out_url: str, shard_size: int = 1000, include_real: bool = False,
    joint_sets: tuple[str, ...] = DEFAULT_JOINT_SETS, force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict:  # fmt: skip
    """Export; returns the index (also written as `<out>/index.json`)."""
    if fmt not in WRITERS:
        raise ConfigError(f"--format: {fmt!r} is not one of {list(WRITERS)}")
    if shard_size < 1:
        raise ConfigError(f"--shard-size must be positive, got {shard_size}")
    # 1. Inputs: the fine-tune stage's synthetic set must be complete.
    run_store = open_store(run.root)
    synthetic = run.finetune.synthetic
    if synthetic is None:
        raise ConfigError("finetune.synthetic is none: this run has no synthetic set to export")
    store, prefix = resolve(run_store, synthetic)
    if not store.exists(join(prefix, "info.json")):
        raise ConfigError(f"{store.url_for(prefix)}: no complete synthetic dataset (run the pipeline through "
                          "filter first)")  # fmt: skip
    fitted = run_store.read_json("retarget/summary.json") if run_store.exists("retarget/summary.json") else {}
    joint_sets = check_joint_sets(tuple(joint_sets), fitted.get("body_model"))
    real = list(run.finetune.real) if include_real else []
    # 2. The output: a previous export with other settings is not mixed into.
    out = open_store(out_url)
    settings = {"format": fmt, "run": run.name, "root": run.root, "synthetic": synthetic, "real": real,
                "shard_size": shard_size, "joint_sets": list(joint_sets)}  # fmt: skip
    if out.exists("export.json") and out.read_json("export.json") != settings:
        if not force:
            raise ConfigError(f"{out.url_for('export.json')}: holds an export with other settings "
                              f"({out.read_json('export.json')}); use another --out, or --force to replace it")
        out.delete_prefix("")
    out.write_json("export.json", settings)
    writer = WRITERS[fmt](out, joint_sets)
    # 3. Shards in order; finished ones are skipped without reading their images.
    items = _synthetic_items(run_store, synthetic, fitted, 0)
    synthetic_count = -1

    def all_items() -> Iterator[Item]:
        nonlocal synthetic_count
        n = 0
        for n, item in enumerate(items, 1):  # noqa: B007 (n is the count after the loop)
            yield item
        synthetic_count = n
        yield from _real_items(run_store, real, n)

    total, num_shards, real_sets = 0, 0, set()
    batch: list[tuple[Item, bytes]] = []
    skipped: list[dict] = []
    current = 0

    def flush(k: int) -> None:
        nonlocal batch, skipped
        if not writer.is_done(k):
            writer.write_shard(k, batch)
            out.write_json(writer.done_key(k), {"exported": len(batch), "skipped": skipped})
        batch, skipped = [], []

    for item in all_items():
        k = item.index // shard_size
        if k != current:
            flush(current)
            current = k
        total += 1
        num_shards = k + 1
        if item.source == "real" and item.joint_set != "smpl22":
            real_sets.add(item.joint_set)
        if writer.is_done(k):
            if progress:
                progress(1)
            continue
        data, why = _image(item)
        if data is None:
            skipped.append({"id": item.sample.id, "dataset": item.dataset, "reason": why})
        else:
            batch.append((item, data))
        if progress:
            progress(1)
    if total:
        flush(current)
    writer.finish(num_shards)
    # 4. The index: every shard's counts, everything skipped, and the check that nothing was lost.
    done = [out.read_json(writer.done_key(k)) for k in range(num_shards)]
    exported = sum(d["exported"] for d in done)
    skipped_all = [s for d in done for s in d["skipped"]]
    if exported + len(skipped_all) != total:
        raise DataError(f"{out.url_for('')}: {exported} exported + {len(skipped_all)} skipped != {total} input "
                        "samples; the shards are from another export: re-run with --force")  # fmt: skip
    out.write_text("skipped.jsonl", "".join(json.dumps(s, sort_keys=True) + "\n" for s in skipped_all))
    index = {**settings, "samples": total, "exported": exported, "skipped": len(skipped_all),
             "synthetic_samples": synthetic_count, "real_samples": total - synthetic_count,
             "shards": [writer.payload_key(k) for k in range(num_shards)],
             "joint_set_names": joint_set_names(joint_sets, real_sets),
             "body_model": fitted.get("body_model"), "synthetic_fraction": run.finetune.synthetic_fraction
             if include_real else None}  # fmt: skip
    out.write_json("index.json", index)
    return index
