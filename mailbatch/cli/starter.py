"""``mailbatch init``: write the starter job (package data under ``mailbatch/cli/starter/``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from mailbatch.errors import StateError, UsageError

__all__ = ["JOB_FILE", "init", "starter_files"]

log = logging.getLogger(__name__)

JOB_FILE = "job.yaml"


def starter_files() -> Iterator[tuple[str, bytes]]:
    """Each starter file as (relative path with '/', content), in a stable order."""
    yield from sorted(_walk(files("mailbatch.cli") / "starter", ""),
                      key=lambda item: (item[0] != JOB_FILE, item[0].count("/"), item[0]))


def _walk(folder: Traversable, prefix: str) -> Iterator[tuple[str, bytes]]:
    for entry in folder.iterdir():
        if entry.name.startswith((".", "__")):  # __pycache__, editor droppings
            continue
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            yield from _walk(entry, f"{name}/")
        else:
            yield name, entry.read_bytes()


def init(folder: str | Path) -> list[Path]:
    """Write the starter job into ``folder`` (created if needed); returns the files written.

    Refuses, writing nothing, if any of the files already exists: init never overwrites.
    """
    folder = Path(folder)
    content = list(starter_files())
    if not content:
        raise StateError("the starter files are missing from this installation of mailbatch; "
                         "reinstall it")
    existing = [name for name, _ in content if (folder / name).exists()]
    if existing:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more"
                                           if len(existing) > 3 else "")
        raise UsageError(f"{folder}: already has {shown}; init never overwrites files, so "
                         "choose a new or empty folder")
    written = []
    for name, data in content:
        path = folder / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("xb") as file:  # "x": never clobber a file created meanwhile
                file.write(data)
        except OSError as err:
            raise StateError(f"{path}: cannot write: {err.strerror}") from None
        log.info("wrote %s", path)
        written.append(path)
    return written
