"""Install a stage image's extra packages and keep only what the base image lacks (run inside the image build).

    python stage_layer.py CONTEXT DEST

Installs `CONTEXT/requirements.txt`, then `CONTEXT/requirements-nodeps.txt` with `--no-deps` (packages whose
declared dependencies conflict with what we run, e.g. PyOpenGL 3.1.10 over pyrender's 3.1.0 pin), into the base
venv, from the wheels in `CONTEXT/wheels` only. Then copies the files of every distribution that is new or has
another version than in the base into DEST, which the final image puts first on PYTHONPATH. Installing into the
venv itself (in a throwaway build stage) lets pip replace versions properly, which `pip --prefix` cannot.
"""

from __future__ import annotations

import csv
import importlib.metadata as md
import shutil
import subprocess
import sys
from pathlib import Path


def installed() -> dict[str, str]:
    return {d.metadata["Name"].lower(): d.version for d in md.distributions()}


def pip_install(context: Path, requirements: Path, *flags: str) -> None:
    if requirements.exists() and requirements.read_text().strip():
        pip = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--no-index", "--find-links"]
        subprocess.run([*pip, str(context / "wheels"), *flags, "-r", str(requirements)], check=True)


def main(context: Path, dest: Path) -> None:
    before = installed()
    pip_install(context, context / "requirements.txt")
    pip_install(context, context / "requirements-nodeps.txt", "--no-deps")
    dest.mkdir(parents=True, exist_ok=True)
    for dist in md.distributions():
        name = dist.metadata["Name"].lower()
        if before.get(name) == dist.version:
            continue
        site = Path(dist.locate_file(""))
        for row in csv.reader((dist.read_text("RECORD") or "").splitlines()):
            rel = row[0]
            if rel.startswith(".."):  # console scripts in bin/: stages never call them
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(site / rel, target)
        print(f"stage layer: {name} {dist.version}" + (f" (base has {before[name]})" if name in before else ""))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
