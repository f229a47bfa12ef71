"""Snapshots of a folder tree, for tests that prove a command left its inputs alone."""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_digest(root: str | Path, *, skip: str | Path | None = None) -> dict[str, str]:
    """Every file below ``root`` (symlinks as their target text) by relative path -> sha256.

    ``skip``: a folder (or file) below ``root`` left out, e.g. the command's own ``--out``, with the
    lock file the output-safety mechanism keeps beside it (:func:`data_prep.outputs.lock_path`).
    """
    from data_prep.outputs import lock_path

    root = Path(root)
    skipped = Path(skip).resolve() if skip is not None else None
    lock = lock_path(skipped) if skipped is not None else None
    digest: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        if skipped is not None and (p.resolve() == skipped or p.resolve().is_relative_to(skipped) or p == lock
                                    or p.resolve() == lock):
            continue
        rel = str(p.relative_to(root))
        if p.is_symlink():
            digest[rel] = "link:" + str(p.readlink())
        elif p.is_file():
            digest[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return digest
