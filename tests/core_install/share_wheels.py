"""Let a second virtual environment use the heavy wheels (torch, torchvision, triton, NVIDIA's CUDA libraries) that
`make test`'s environment already installed, instead of installing 6 GB again.

Run with the *main* environment's Python:  python tests/core_install/share_wheels.py .venv-core

It links each heavy distribution's top-level folders and its .dist-info into ``<target>/shared-wheels/`` and adds
that folder to the target's ``sys.path`` with a ``.pth`` file. pip in the target then sees those distributions as
installed and installs only what is missing. Nothing else of the main environment (no test extras) is shared.
"""
from __future__ import annotations

import importlib.metadata as md
import re
import sys
import sysconfig
from pathlib import Path

# What is heavy: PyTorch, its vision library and compiler, and the CUDA runtime packages of a CUDA build.
HEAVY = re.compile(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*)$")


def heavy_entries() -> set[Path]:
    """Top-level files/folders (under site-packages) of every heavy distribution installed here."""
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    entries: set[Path] = set()
    for dist in md.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if not HEAVY.match(name):
            continue
        for file in dist.files or []:
            path = Path(dist.locate_file(file)).resolve()
            if path.is_relative_to(site):  # skip scripts in bin/ and the like
                entries.add(site / path.relative_to(site).parts[0])
    return entries


def main(target: str) -> None:
    venv = Path(target).resolve()
    python = venv / "bin" / "python"
    if not python.exists():
        sys.exit(f"{venv} is not a virtual environment (no bin/python): create it with `python -m venv {target}`")
    shared = venv / "shared-wheels"
    shared.mkdir(exist_ok=True)
    wanted = {p.name: p for p in heavy_entries()}
    for old in shared.iterdir():  # drop links to what the main environment no longer has
        if old.name not in wanted:
            old.unlink()
    for name, source in sorted(wanted.items()):
        link = shared / name
        if link.is_symlink() and link.resolve() == source:
            continue
        if link.is_symlink():
            link.unlink()
        link.symlink_to(source)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = venv / "lib" / version / "site-packages"
    if not site.is_dir():
        sys.exit(f"{site} does not exist: the target must use the same Python version ({version}) as this one")
    (site / "mmcore-shared-wheels.pth").write_text(f"{shared}\n", encoding="utf-8")
    print(f"shared {len(wanted)} entries of the heavy wheels with {venv}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
