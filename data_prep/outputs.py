"""Output safety for every command that writes: nothing written over an input, no two runs mixed.

Four mechanisms, one place (``prepare``, ``merge``, ``decode``, ``rescore``,
``pseudo-label``, ``lm``, ``train``, ``soup`` all go through them):

- :func:`guard_output` refuses an output path that is, contains or lies inside
  one of the command's inputs (symlinks resolved), before any work starts:
  ``decode --manifest M --out M`` or ``soup --models X/a X/b --out X`` would
  otherwise destroy what they read.
- :func:`replace_dir` swaps a finished directory in atomically, and only over
  a directory the toolkit made (it carries :data:`OWNER_FILE`, or is a model
  directory a trainer exported): a user's folder is never replaced.
- :class:`RunIdentity` + :func:`resume_or_start`: a resumable output records
  what made it (its inputs' fingerprints and the settings); a rerun over
  unfinished work of another identity is refused with a message that names what
  differs, unless ``--force`` asks to start afresh.
- :func:`exclusive` takes a lock per output (released by the kernel when the
  process dies, so a ``kill -9`` leaves no stale lock), and
  :func:`in_progress` marks a folder whose files are being replaced, so a torn
  finish is detected by :func:`check_finished` instead of read as a whole run.

Errors are :class:`OutputRefused` (an unusable output) and :class:`ResumeError`
(unfinished work of another run); their messages are one line naming the path,
and the CLI prints them with exit status 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Marks a directory that a command of this toolkit wrote whole (so it may replace it).
OWNER_FILE = ".asr-adapt-output.json"
#: Present in a folder while a command replaces its files; a torn finish leaves it behind.
IN_PROGRESS_FILE = ".in-progress"
#: Files whose presence marks a model directory the trainers export (written before OWNER_FILE existed).
_MODEL_DIR_MARKERS = ("asr_adapt.json", "ctc_config.json")
#: Files up to this size are fingerprinted by content, larger ones by size and modification time.
CONTENT_HASH_LIMIT = 64 << 20


class OutputRefused(ValueError):
    """An output path that must not be written: it is an input, a folder the toolkit did not make, or
    another run is writing it."""


class ResumeError(ValueError):
    """Unfinished work of another run (other inputs or settings) where this run would continue."""


# ----------------------------------------------------------------------------------- guard


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def guard_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], *, flag: str = "--out") -> Path:
    """Refuse ``out`` when it is, contains or lies inside one of ``inputs``; returns ``out`` resolved.

    ``inputs`` may hold ``None`` and names that are not paths (a hub id): those are skipped.
    """
    target = _resolved(out)
    for raw in inputs:
        if raw is None or str(raw) == "":
            continue
        if not Path(raw).exists():
            continue
        src = _resolved(raw)
        if target == src:
            raise OutputRefused(f"{flag} {out}: is the input {raw} itself; write to another path")
        if src.is_relative_to(target):
            raise OutputRefused(f"{flag} {out}: contains the input {raw}; writing there would replace it")
        if src.is_dir() and target.is_relative_to(src):
            raise OutputRefused(f"{flag} {out}: lies inside the input {raw}; write outside it")
    return target


def guard_outputs(outs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike | None], *,
                  flag: str = "--out") -> None:  # fmt: skip
    """:func:`guard_output` for every file a command writes beside others (a hyps file and its N-best,
    rejects and partial files; a score's results): none may be or lie inside an input."""
    inputs = list(inputs)
    for out in outs:
        guard_output(out, inputs, flag=flag)


# ----------------------------------------------------------------------------------- directories


def made_by_toolkit(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is one the toolkit wrote whole (it may be replaced), or is empty."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    if not any(folder.iterdir()):
        return True
    return any((folder / name).is_file() for name in (OWNER_FILE, *_MODEL_DIR_MARKERS))


def mark_owner(folder: str | os.PathLike, command: str) -> None:
    """Record in ``folder`` that ``command`` wrote it (done by :func:`replace_dir` for every folder it swaps in)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OWNER_FILE).write_text(json.dumps({"command": command}) + "\n", encoding="utf-8")


def check_replaceable(out: str | os.PathLike, *, flag: str = "--out") -> None:
    """Raise :class:`OutputRefused` unless ``out`` is absent or a directory the toolkit may replace."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputRefused(f"{flag} {out}: exists and is not a folder; remove it or choose another path")
    if out.exists() and not made_by_toolkit(out):
        raise OutputRefused(f"{flag} {out}: is a folder this toolkit did not write (no {OWNER_FILE}); "
                          "it would be replaced whole: choose a new or empty folder")  # fmt: skip


def build_dir(out: str | os.PathLike) -> Path:
    """Where a whole output directory is built before :func:`replace_dir` swaps it in: ``.<name>.tmp``
    beside ``out``, emptied of what a killed run left there (not created). Call it holding the
    output's lock (:func:`exclusive`)."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def replace_dir(tmp: str | os.PathLike, out: str | os.PathLike, command: str) -> Path:
    """Put the finished directory ``tmp`` at ``out``, replacing a directory the toolkit made.

    The old directory is moved aside first and removed last, so a reader sees the old or the
    new directory, and a crash leaves at least one of them (``.<name>.old``) whole.
    """
    tmp, out = Path(tmp), Path(out)
    check_replaceable(out)
    mark_owner(tmp, command)
    old = out.with_name(f".{out.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------------- atomic files


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(path: str | os.PathLike) -> None:
    """Remove the temporary files :func:`atomic_write_text` left beside ``path`` when a kill cut a write short.

    Only while holding the output's lock (:func:`data_prep.outputs.exclusive`): another run's may be in use.
    """
    path = Path(path)
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------- run identity


def fingerprint(path_or_name: str | os.PathLike) -> str:
    """A short hash of a file (its content, or size and mtime when large) or a directory (every file below);
    a name that is not a path (a registry or hub id) is returned as it is."""
    path = Path(path_or_name)
    if not path.exists():
        return str(path_or_name)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(str(f.relative_to(path) if f != path else f.name).encode() + b"\0")
        if st.st_size <= CONTENT_HASH_LIMIT:
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        else:
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class RunIdentity:
    """What makes a run's output what it is: the command, its inputs' fingerprints and its settings."""

    command: str
    inputs: dict[str, str] = field(default_factory=dict)  # role (e.g. "manifest", "model") -> fingerprint
    settings: dict[str, Any] = field(default_factory=dict)  # JSON values

    @classmethod
    def of(cls, command: str, inputs: Mapping[str, str | os.PathLike | Iterable | None],
           settings: Mapping[str, Any]) -> RunIdentity:  # fmt: skip
        """Fingerprint ``inputs`` (a path, a list of paths, a name or None each)."""
        prints: dict[str, str] = {}
        for role, value in inputs.items():
            if value is None:
                continue
            if isinstance(value, (str, os.PathLike)):
                prints[role] = fingerprint(value)
            else:
                prints[role] = ",".join(fingerprint(v) for v in value)
        return cls(command, prints, json.loads(json.dumps(dict(settings), default=str)))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> RunIdentity:
        return cls(str(d.get("command", "")), dict(d.get("inputs") or {}), dict(d.get("settings") or {}))

    def differences(self, other: RunIdentity) -> list[str]:
        """What differs from ``other``, as ``input <role>`` / ``setting <key> (<theirs> -> <ours>)`` phrases."""
        out = []
        if self.command != other.command:
            out.append(f"command ({other.command} -> {self.command})")
        for role in sorted(set(self.inputs) | set(other.inputs)):
            if self.inputs.get(role) != other.inputs.get(role):
                out.append(f"input {role}")
        flat_self, flat_other = _flatten(self.settings), _flatten(other.settings)
        for key in sorted(set(flat_self) | set(flat_other)):
            if flat_self.get(key) != flat_other.get(key):
                out.append(f"setting {key} ({flat_other.get(key)!r} -> {flat_self.get(key)!r})")
        return out


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            flat.update(_flatten(v, key + "."))
        else:
            flat[key] = v
    return flat


def read_identity(path: str | os.PathLike) -> RunIdentity | None:
    """The identity stored at ``path``; None when there is none (or it is unreadable: a torn write)."""
    try:
        return RunIdentity.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def write_identity(path: str | os.PathLike, identity: RunIdentity) -> None:
    atomic_write_text(path, json.dumps(identity.to_json(), indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def check_resume(saved: RunIdentity | None, identity: RunIdentity, *, has_state: bool, force: bool = False,
                 what: str, state: str = "unfinished work", record: str = "") -> bool:  # fmt: skip
    """Whether this run (``identity``) may continue ``state`` that a run of identity ``saved`` left (``has_state``).

    Returns True to continue it, False to start afresh (the caller then discards or replaces it). Raises
    :class:`ResumeError` when it was made by another identity, or by a run that recorded none (``saved`` None;
    ``record``: where it would be), and ``force`` is not set. Records nothing: see :func:`resume_or_start`.
    """
    if not has_state:
        return False
    if saved is None:
        if not force:
            raise ResumeError(f"{what}: {state} of a run that recorded no identity"
                              f"{f' ({record} missing)' if record else ''}; rerun with --force to start afresh")  # fmt: skip
        return False
    diffs = identity.differences(saved)
    if diffs and not force:
        raise ResumeError(f"{what}: {state} of another run: {'; '.join(diffs)}; rerun with the same inputs and "
                          "settings, or with --force to start afresh")  # fmt: skip
    return not diffs


def resume_or_start(identity_file: str | os.PathLike, identity: RunIdentity, *, has_state: bool,
                    force: bool = False, what: str = "") -> bool:  # fmt: skip
    """Decide whether this run may continue the unfinished work (``has_state``) beside ``identity_file``.

    Returns True to resume it, False to start afresh (the caller then discards its state). Raises
    :class:`ResumeError` when the work was made by another identity (or by an unrecorded run) and
    ``force`` is not set (see :func:`check_resume`). The present identity is recorded either way.
    """
    identity_file = Path(identity_file)
    resume = check_resume(read_identity(identity_file), identity, has_state=has_state, force=force,
                          what=what or str(identity_file), record=str(identity_file))  # fmt: skip
    write_identity(identity_file, identity)
    return resume


# ----------------------------------------------------------------------------------- locks and markers


def lock_path(out: str | os.PathLike) -> Path:
    """The lock file of an output (file or folder): a hidden sibling, so a swapped folder keeps it."""
    out = Path(out)
    return out.with_name(f".{out.name}.lock")


#: Lock files this process holds, by descriptor. A forked child (a prepare worker, the plotting process)
#: closes its copies at once: a flock belongs to the open file, so a child outliving its killed parent
#: would otherwise hold the lock on and refuse the rerun.
_held_locks: set[int] = set()


def _drop_inherited_locks() -> None:
    for fd in _held_locks:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held_locks.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


@contextlib.contextmanager
def exclusive(out: str | os.PathLike, command: str) -> Iterator[None]:
    """Hold the lock of ``out`` for the block; another run holding it is an :class:`OutputRefused`."""
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        if e.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        raise OutputRefused(f"{out}: another run is writing it ({holder}); wait for it to finish") from None
    _held_locks.add(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{command}, pid {os.getpid()}".encode(), 0)
        yield
    finally:
        if fd in _held_locks:  # not in a forked child, which closed its copy at the fork
            _held_locks.discard(fd)
            os.close(fd)  # releases the lock; the file stays (removing it would race a waiting run)


@contextlib.contextmanager
def in_progress(folder: str | os.PathLike) -> Iterator[None]:
    """Mark ``folder`` as being written for the block; an exception or a kill leaves the mark."""
    marker = Path(folder) / IN_PROGRESS_FILE
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"pid {os.getpid()}\n", encoding="utf-8")
    yield
    marker.unlink(missing_ok=True)


def check_finished(folder: str | os.PathLike, what: str | os.PathLike | None = None) -> None:
    """Raise :class:`OutputRefused` when ``folder`` holds the mark of an unfinished write."""
    if (Path(folder) / IN_PROGRESS_FILE).exists():
        raise OutputRefused(f"{what or folder}: its folder was left half-written by a run that did not finish "
                          f"({Path(folder) / IN_PROGRESS_FILE}); rerun the command that writes it")  # fmt: skip
