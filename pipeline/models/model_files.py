"""A model folder whose files cannot be read is one error line naming the file, not a traceback.

Every loader (:func:`pipeline.models.whisper.load_whisper`,
:func:`pipeline.models.ctc.load_ctc_model`, the wav2vec2 ones) calls
:func:`check_model_dir` before handing the folder to transformers or
safetensors, whose errors for a file cut short (a copy interrupted, a full disk)
name no file ("Error while deserializing header: incomplete metadata"), and
wraps the loading in :func:`model_errors` for what the check cannot see.
:class:`ModelFileError` is an ``OSError`` with the file as ``filename``, which
every command prints as ``<command>: error: FILE: PROBLEM`` (exit status 2).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path


class ModelFileError(OSError):
    """A model file or folder that cannot be loaded; ``filename`` names it, ``strerror`` says why."""

    def __init__(self, path: str | os.PathLike, problem: str):
        super().__init__(None, problem, os.fspath(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"

    @classmethod
    def from_message(cls, path: str | os.PathLike, message: str) -> ModelFileError:
        """From an error message that may start with the path already (``"PATH: problem"``)."""
        return cls(path, message.removeprefix(f"{os.fspath(path)}: "))


def check_model_dir(folder: str | os.PathLike) -> None:
    """Raise :class:`ModelFileError` for the first file of ``folder`` that cannot be read: a
    ``*.safetensors`` whose header does not parse or that is shorter than its header says, a
    ``*.json`` that is not JSON. Reads only the headers of the weights (milliseconds)."""
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="numpy"):
                pass
        except (SafetensorError, OSError) as e:
            raise ModelFileError(path, f"not a readable safetensors file ({e}); is it cut short?") from e
    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_bytes())
        except ValueError as e:  # also not UTF-8
            raise ModelFileError(path, f"not valid JSON ({e}); is it cut short?") from e
        except OSError as e:
            raise ModelFileError(path, f"cannot be read ({e.strerror or e})") from e


@contextlib.contextmanager
def model_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn what loading ``path`` raises without naming a file into :class:`ModelFileError` naming it."""
    from safetensors import SafetensorError

    try:
        yield
    except ModelFileError:
        raise
    except SafetensorError as e:
        raise ModelFileError(path, f"not a readable safetensors file ({e})") from e
    except json.JSONDecodeError as e:
        raise ModelFileError(path, f"a file is not valid JSON ({e})") from e
    except OSError as e:
        if e.filename is not None:
            raise
        raise ModelFileError.from_message(path, str(e).strip().splitlines()[0] if str(e).strip() else repr(e)) from e
