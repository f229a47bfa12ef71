"""``system.json``: what a system directory holds and how it decodes (schema in :mod:`pipeline.system`).

Every path in it is relative to the system directory, so the folder can be copied
anywhere. ``provenance`` says where the parts were copied from; loading never reads it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from data_prep.outputs import atomic_write_text

#: The description of a system directory, at its root.
SYSTEM_FILE = "system.json"
#: Version of system.json's schema. A loader refuses other versions (a newer toolkit's export).
SCHEMA_VERSION = 1
#: The kinds of system: one model decoded plainly, or candidates of several models rescored.
KINDS = ("decoder", "rescored")


class SystemSpecError(ValueError):
    """A system directory that cannot be loaded; the message (one line) names the file."""


@dataclass(frozen=True)
class FusionSpec:
    """A character LM inside the decoders' beam search (:class:`pipeline.decode.fusion.Fusion`)."""

    weight: float
    bonus: float = 0.0
    top_k: int = 128
    length_penalty: float = 0.0
    max_rate: float = 0.0  # characters per second of audio a hypothesis may hold (0: no ceiling)

    def fusion(self, char_arpa: str | os.PathLike):
        """The :class:`pipeline.decode.fusion.Fusion` these settings describe, with the LM ``char_arpa``."""
        from pipeline.decode.fusion import Fusion

        return Fusion(char_arpa, self.weight, self.bonus, self.top_k, self.length_penalty, self.max_rate)


@dataclass(frozen=True)
class SearchSpec:
    """How the system searches."""

    beams: int = 1  # Whisper beam width (a "rescored" system: of the N-best search)
    nbest: int = 1  # candidates kept from each decoder's beam ("rescored")
    ctc_proposals: int = 0  # CTC (+ word LM beam) texts added as candidates ("rescored")
    batch_size: int = 8  # clips per search: the one the system was evaluated with
    language_token: str | None = None  # forced language token; None: each decoder's trained one, else ``language``
    fusion: FusionSpec | None = None  # "rescored" only
    tail_silence_s: float = 0.0  # silence appended to every clip before the search (SearchOptions.tail_silence_s)


@dataclass(frozen=True)
class Provenance:
    """Where the system came from, for the record and the model card (never read when loading)."""

    toolkit_version: str = ""
    recipe: str = ""  # the command that trained it
    sources: dict[str, str] = field(default_factory=dict)  # part -> the path it was copied from
    rate_from: str | None = None  # the manifest whose speaking rate capped the fused search (``max_rate``)
    rate_margin: float | None = None


@dataclass(frozen=True)
class SystemSpec:
    """The content of ``system.json``; paths are relative to the system directory."""

    kind: str  # "decoder" | "rescored"
    name: str  # the system's name (the experiment it was exported from)
    language: str  # ISO 639 code of the data: the transcripts' normalization, the decoders' fallback prompt
    decoders: list[str]  # model folders; a "decoder" system has one (Whisper or CTC checkpoint)
    search: SearchSpec = field(default_factory=SearchSpec)
    ctc: str | None = None  # CTC checkpoint folder (its vocab.json is the CTC vocabulary)
    lm: str | None = None  # word LM folder: lm.arpa + lm.json (the CTC beam search's weights)
    char_lm: str | None = None  # character LM (ARPA file)
    weights: str | None = None  # the chosen rescoring weights ("rescored")
    text_rules: str | None = None  # the text normalization rules the data was prepared with (YAML)
    ct2: str | None = None  # the first decoder as a CTranslate2 model (``export --with-ct2``): ``--speed fast``
    provenance: Provenance = field(default_factory=Provenance)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict:
        d = asdict(self)
        if d["ct2"] is None:  # absent unless written: a toolkit that predates the field still reads the file
            del d["ct2"]
        return {"schema_version": d.pop("schema_version"), **d}

    @classmethod
    def from_json(cls, d: dict) -> SystemSpec:
        search = dict(d.get("search") or {})
        if search.get("fusion"):
            search["fusion"] = FusionSpec(**search["fusion"])
        spec = cls(**{**d, "decoders": [str(x) for x in d["decoders"]], "search": SearchSpec(**search),
                      "provenance": Provenance(**(d.get("provenance") or {}))})  # fmt: skip
        if spec.kind not in KINDS:
            raise ValueError(f"kind {spec.kind!r} is not one of {', '.join(KINDS)}")
        if not spec.decoders or (spec.kind == "decoder" and len(spec.decoders) != 1):
            raise ValueError(f"a {spec.kind} system needs {'one decoder' if spec.kind == 'decoder' else 'decoders'}")
        outside = [p for p in spec.parts() if Path(p).is_absolute() or ".." in Path(p).parts]
        if outside:  # a system is one folder: nothing it loads may lie elsewhere
            raise ValueError(f"{', '.join(outside)} lie(s) outside the system directory")
        return spec

    def parts(self) -> list[str]:
        """Every file or folder the system loads, relative to its directory."""
        parts = (*self.decoders, self.ctc, self.lm, self.char_lm, self.weights, self.text_rules, self.ct2)
        return [p for p in parts if p]


def is_system_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a system directory (it holds ``system.json``)."""
    return (Path(path) / SYSTEM_FILE).is_file()


def write_spec(folder: str | os.PathLike, spec: SystemSpec) -> Path:
    path = Path(folder) / SYSTEM_FILE
    atomic_write_text(path, json.dumps(spec.to_json(), ensure_ascii=False, indent=1) + "\n")
    return path


def read_spec(folder: str | os.PathLike) -> SystemSpec:
    """The ``system.json`` of ``folder``, checked: a version this toolkit reads, every part present.

    Raises :class:`SystemSpecError` (one line naming the file).
    """
    path = Path(folder) / SYSTEM_FILE
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SystemSpecError(f"{path}: cannot read the system description ({e})") from e
    version = d.get("schema_version") if isinstance(d, dict) else None
    if version != SCHEMA_VERSION:
        raise SystemSpecError(f"{path}: system schema version {version!r} is not supported: this toolkit reads "
                              f"version {SCHEMA_VERSION} (export the system again, or use the toolkit that "
                              "exported it)")  # fmt: skip
    try:
        spec = SystemSpec.from_json(d)
    except (KeyError, TypeError, ValueError) as e:
        raise SystemSpecError(f"{path}: not a system description ({e})") from e
    missing = [p for p in spec.parts() if not (Path(folder) / p).exists()]
    if missing:
        raise SystemSpecError(f"{path}: names {', '.join(missing)}, missing from {folder}; copy the whole folder")
    return spec
