"""Export throughput (samples/s, MB/s) and peak memory of `posesyn export`, both formats, on a demo-sized set.

    make demo                                          # once: the demo run's synthetic set (~19k frames)
    .venv/bin/python benchmarks/export_throughput.py   # or --run RUN.yaml for another run

Each format runs in a fresh process, which reports its peak resident memory before the export (imports done)
and after: the difference is what the export itself held. Streaming means it stays flat while the set on disk
is far larger.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import json, resource, sys, time
from posesyn_core.export.run import export_run
from posesyn_core.pipeline import load_run_config
run = load_run_config(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
index = export_run(run, sys.argv[2], sys.argv[3], shard_size=int(sys.argv[4]))
seconds = time.perf_counter() - t
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "exported": index["exported"], "rss_before_kb": before, "rss_after_kb": after}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=None, help="run whose set is exported (default: examples/demo.yaml)")
    parser.add_argument("--shard-size", type=int, default=1000)
    args = parser.parse_args()

    from posesyn_core.pipeline import load_run_config
    from posesyn_core.storage import open_store

    run_yaml = args.run or str(REPO / "examples" / "demo.yaml")
    run = load_run_config(Path(run_yaml))
    store = open_store(run.root)
    if not store.exists("filter/dataset/info.json"):
        message = f"{run.root}: no synthetic set; run the pipeline first (`make demo` for examples/demo.yaml)"
        if args.run is None:  # `make bench` on a fresh clone: say so, do not fail the other benchmarks
            print(f"export_throughput skipped: {message}")
            return
        sys.exit(message)
    frames = store.read_json("filter/dataset/info.json")["num_samples"]
    size_mb = sum(p.stat().st_size for p in Path(run.root.removeprefix("file://"), "filter", "dataset").rglob("*")
                  if p.is_file()) / 2**20  # fmt: skip
    print(f"set: {frames} frames, {size_mb:.0f} MB on disk ({run.root}/filter/dataset), shards of {args.shard_size}")
    for fmt in ("webdataset", "coco3d"):
        out = Path(tempfile.mkdtemp(prefix=f"posesyn-export-{fmt}-"))
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, run_yaml, fmt, out.as_uri(), str(args.shard_size)],
                              capture_output=True, text=True, check=True, cwd=REPO)  # fmt: skip
        wall = time.perf_counter() - t
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
        held = (r["rss_after_kb"] - r["rss_before_kb"]) / 1024
        print(f"  {fmt:<10} {r['exported'] / r['seconds']:7.0f} samples/s  {written / r['seconds']:6.1f} MB/s written "
              f"({written:.0f} MB)  peak RSS {r['rss_after_kb'] / 1024:.0f} MB, of which the export {held:.0f} MB "
              f"({wall:.1f} s with start-up)")  # fmt: skip
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
