"""Hugging Face datasets on disk: a ``save_to_disk`` folder, or a folder of Parquet / Arrow files.

Input rows are the dataset's rows, file by file in a fixed order, read in small
Arrow batches (the dataset never sits in memory whole). The audio column holds
the Audio feature's storage, ``{bytes, path}``: a row with bytes is audio
*embedded* in its data file (:class:`EmbeddedAudio`; the bytes are read again,
one row at a time, when the row is processed, and a row whose bytes do not
decode is an ``unreadable_audio`` reject naming the file and the row); a row
with only a path names an audio file, resolved against the data file's folder.

Columns: ``--audio-column`` (default ``audio``); the transcript is
``--text-column``, else the first column the data has of ``sentence`` (Common
Voice), ``transcription`` (FLEURS), ``text``, ``transcript``; the speaker is
``--speaker-column``, else the first of ``client_id`` (Common Voice),
``speaker_id``, ``speaker`` (none: no speaker). A row's id is the stem of its
audio path, else ``<data file stem>-<row>``.

Splits: a ``save_to_disk`` DatasetDict names its splits (``dataset_dict.json``);
in a folder of files a split is the first folder or file-name prefix that is a
split name (``train/``, ``data/train-00000-of-00002.parquet``). ``validation``
becomes ``dev``. Without ``--split`` the train, validation (or dev) and test
splits are imported when the dataset has any, else every file; ``--split NAME``
imports that split only (e.g. Common Voice's ``validated``, then unsplit).

Rows are named ``file:N`` with N counted from 1 like lines, the file's row N-1
(``dataset[N-1]`` for a one-file split).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from data_prep.importers.base import CorpusError, EmbeddedAudio, RawRow, Row, malformed, rel, resolve
from data_prep.manifest import Source

TEXT_COLUMNS = ("sentence", "transcription", "text", "transcript")
SPEAKER_COLUMNS = ("client_id", "speaker_id", "speaker")
DATA_SUFFIXES = (".parquet", ".arrow")
#: a dataset's split name -> the manifest's
STANDARD_SPLITS = {"train": "train", "validation": "dev", "dev": "dev", "test": "test"}
#: split names a data file's path is recognized by (Common Voice's other splits included)
SPLIT_NAMES = (*STANDARD_SPLITS, "other", "invalidated", "validated")
#: rows per Arrow batch read by the importer (the audio column's bytes are in it)
BATCH_ROWS = 64


@dataclass(frozen=True)
class HFColumns:
    """Which columns and split of a Hugging Face dataset to import (None: detected, see the module doc)."""

    audio: str = "audio"
    text: str | None = None
    speaker: str | None = None
    split: str | None = None


def _arrow():
    try:
        import pyarrow
        import pyarrow.compute  # noqa: F401
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as e:
        raise CorpusError(f"--format hf needs pyarrow, which cannot be imported: {e}") from e
    return pyarrow


def _split_of(relpath: str) -> str:
    """The split name a data file's path gives ("" if none)."""
    parts = Path(relpath).with_suffix("").parts
    for part in parts:
        m = re.match(r"([A-Za-z]+)(?:$|[-_.])", part)
        if m and m.group(1) in SPLIT_NAMES:
            return m.group(1)
    return ""


def _json_file(path: Path, key: str) -> list:
    """The list ``key`` of a ``save_to_disk`` JSON file (refused, naming the file, when it is not one)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError) as e:
        raise CorpusError(f"{path}: not a datasets save_to_disk file ({type(e).__name__}: {e})") from e
    if not isinstance(value, list):
        raise CorpusError(f"{path}: no {key!r} list (not a datasets save_to_disk file)")
    return value


def _state_files(folder: Path) -> list[Path]:
    """The Arrow files of one ``save_to_disk`` Dataset folder, in order."""
    files = _json_file(folder / "state.json", "_data_files")
    if not all(isinstance(f, dict) and isinstance(f.get("filename"), str) for f in files):
        raise CorpusError(f"{folder / 'state.json'}: a '_data_files' entry without a 'filename'")
    return [folder / f["filename"] for f in files]


def data_files(root: Path) -> list[tuple[Path, str]]:
    """Every data file of the dataset with the split (dataset name) it belongs to, in order."""
    if (root / "dataset_dict.json").is_file():
        splits = _json_file(root / "dataset_dict.json", "splits")
        return [(f, split) for split in splits for f in _state_files(root / split)]
    if (root / "state.json").is_file():
        return [(f, "") for f in _state_files(root)]
    files = sorted(p for p in root.rglob("*") if p.suffix in DATA_SUFFIXES and p.is_file())
    if not files:
        raise CorpusError(f"{root}: no save_to_disk dataset (dataset_dict.json, state.json) and no "
                          f"{' or '.join(DATA_SUFFIXES)} files (not a Hugging Face dataset)")
    found = [(f, _split_of(rel(str(f), str(root)))) for f in files]
    order = {name: i for i, name in enumerate(SPLIT_NAMES)}  # train, dev, test first, as every importer reads
    return sorted(found, key=lambda fs: (order.get(fs[1], len(order)), str(fs[0])))


def chosen_files(root: Path, split: str | None) -> list[tuple[Path, str]]:
    """The data files to import with their manifest split (see the module doc for ``split``)."""
    files = data_files(root)
    names = {s for _, s in files}
    if split is not None:
        if split not in names:
            raise CorpusError(f"{root}: no split {split!r}; the dataset has {', '.join(sorted(names)) or 'none'}")
        return [(f, STANDARD_SPLITS.get(split, "")) for f, s in files if s == split]
    if names & set(STANDARD_SPLITS):
        return [(f, STANDARD_SPLITS[s]) for f, s in files if s in STANDARD_SPLITS]
    return [(f, "") for f, _ in files]


def open_batches(path: Path, columns: list[str]) -> Iterator:
    """The record batches of a Parquet or Arrow (IPC stream or file) data file, these columns only."""
    pa = _arrow()
    if path.suffix == ".parquet":
        yield from pa.parquet.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns)
        return
    with pa.memory_map(str(path)) as source:  # mapped: a batch's buffers are read when used
        try:
            reader = pa.ipc.open_stream(source)
            batches = iter(reader)
        except pa.ArrowInvalid:
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        for batch in batches:
            yield batch.select(columns)


def schema_names(path: Path) -> list[str]:
    """The column names of a data file."""
    pa = _arrow()
    if path.suffix == ".parquet":
        return list(pa.parquet.ParquetFile(path).schema_arrow.names)
    with pa.memory_map(str(path)) as source:
        try:
            return list(pa.ipc.open_stream(source).schema.names)
        except pa.ArrowInvalid:
            return list(pa.ipc.open_file(source).schema.names)


def _column(names: list[str], given: str | None, candidates: tuple[str, ...], what: str, path: Path
            ) -> str | None:  # fmt: skip
    if given is not None:
        if given not in names:
            raise CorpusError(f"{path}: no {what} column {given!r}; columns: {', '.join(names)}")
        return given
    return next((c for c in candidates if c in names), None)


@dataclass(frozen=True)
class _FileColumns:
    audio: str
    text: str
    speaker: str | None


def file_columns(path: Path, columns: HFColumns) -> _FileColumns:
    """The columns of one data file to read (refused, naming the file, when audio or text is missing)."""
    names = schema_names(path)
    audio = _column(names, columns.audio, (), "audio", path)
    text = _column(names, columns.text, TEXT_COLUMNS, "text", path)
    if text is None:
        raise CorpusError(f"{path}: no transcript column (one of {', '.join(TEXT_COLUMNS)}; "
                          f"--text-column names another); columns: {', '.join(names)}")
    speaker = _column(names, columns.speaker, SPEAKER_COLUMNS, "speaker", path)
    return _FileColumns(audio, text, speaker)  # type: ignore[arg-type]


def _audio_value(value) -> tuple[bytes | None, str | None]:
    """(bytes, path) of one audio cell: an Audio struct, plain bytes or a path string."""
    if isinstance(value, dict):
        return value.get("bytes"), value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), None
    if isinstance(value, str):
        return None, value
    return None, None


def _audio_cells(column) -> tuple[list[bool], list[str | None]]:
    """(has bytes, path) of each cell of an audio column, without copying its bytes out of Arrow."""
    pa = _arrow()
    pc = pa.compute
    t = column.type
    if pa.types.is_struct(t):
        data = column.field("bytes") if t.get_field_index("bytes") >= 0 else None
        paths = column.field("path").to_pylist() if t.get_field_index("path") >= 0 else [None] * len(column)
        valid = column.is_valid().to_pylist()
        has = [False] * len(column) if data is None else pc.fill_null(pc.binary_length(data), 0).to_pylist()
        return [bool(v and h) for v, h in zip(valid, has)], [p if v else None for v, p in zip(valid, paths)]
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return [bool(n) for n in pc.fill_null(pc.binary_length(column), 0).to_pylist()], [None] * len(column)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return [False] * len(column), column.to_pylist()
    return [False] * len(column), [None] * len(column)


def _row(src: Source, path: Path, index: int, text, speaker, audio: tuple[bool, str | None], cols: _FileColumns,
         split: str) -> Row:  # fmt: skip
    if not isinstance(text, str):
        return malformed(src, f"{cols.text!r} is {text!r:.80}, not a string")
    has_bytes, audio_path = audio
    if not has_bytes and not audio_path:
        return malformed(src, f"{cols.audio!r} holds no audio (neither bytes nor a path)", text_raw=text)
    name = Path(audio_path).stem if audio_path else f"{path.stem}-{index}"
    common = dict(id=name, text_raw=text, source=src, split=split,
                  speaker="" if speaker is None else str(speaker).strip())
    if has_bytes:
        return RawRow(audio=str(path), embedded=EmbeddedAudio(cols.audio, index), **common)
    return RawRow(audio=resolve(path.parent, audio_path), **common)


def import_hf(root: str | Path, columns: HFColumns = HFColumns()) -> Iterator[Row]:
    """Yield one row per dataset row of the chosen split(s)."""
    root = Path(root)
    for path, split in chosen_files(root, columns.split):
        with _unreadable_file(path):
            cols = file_columns(path, columns)
            batches = open_batches(path, [c for c in dict.fromkeys([cols.audio, cols.text, cols.speaker]) if c])
            yield from _file_rows(root, path, batches, cols, split)


def _file_rows(root: Path, path: Path, batches: Iterator, cols: _FileColumns, split: str) -> Iterator[Row]:
    name = rel(str(path), str(root))
    index = 0
    for batch in batches:
        texts = batch.column(cols.text).to_pylist()
        speakers = batch.column(cols.speaker).to_pylist() if cols.speaker else [None] * batch.num_rows
        for text, speaker, audio in zip(texts, speakers, zip(*_audio_cells(batch.column(cols.audio)))):
            yield _row(Source(name, index + 1), path, index, text, speaker, audio, cols, split)
            index += 1


@contextlib.contextmanager
def _unreadable_file(path: Path) -> Iterator[None]:
    """A data file pyarrow cannot read (damaged, cut short, not Parquet or Arrow) as a CorpusError naming it:
    its rows cannot be counted, so the corpus cannot be imported with every row accounted for."""
    pa = _arrow()
    try:
        yield
    except (pa.ArrowException, OSError) as e:
        raise CorpusError(f"{path}: not a readable {path.suffix[1:]} data file ({type(e).__name__}: {e})") from e


# -- reading one row's audio (in the workers that process the rows) --

_open: dict = {}  # the last data file read: {"key": (path, column), "reader": _Rows}


class _Rows:
    """Random access to one column of a data file, a row group (Parquet) or batch (Arrow) held at a time."""

    def __init__(self, path: str, column: str):
        pa = _arrow()
        self.path, self.column = path, column
        if path.endswith(".parquet"):
            self.parquet = pa.parquet.ParquetFile(path)
            meta = self.parquet.metadata
            sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        else:
            self.parquet = None
            self.batches = list(open_batches(Path(path), [column]))  # memory-mapped: no audio read yet
            sizes = [b.num_rows for b in self.batches]
        self.starts = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        self.held: tuple[int, object] | None = None

    def __getitem__(self, index: int):
        part = bisect.bisect_right(self.starts, index) - 1
        if not 0 <= index < self.starts[-1]:
            raise IndexError(f"{self.path}: no row {index} (the file has {self.starts[-1]})")
        if self.held is None or self.held[0] != part:
            column = (self.parquet.read_row_group(part, columns=[self.column]) if self.parquet is not None
                      else self.batches[part]).column(0)
            self.held = (part, column)
        return self.held[1][index - self.starts[part]].as_py()


def read_embedded(path: str, audio: EmbeddedAudio) -> bytes:
    """The audio bytes of row ``audio.index`` of ``path``'s column ``audio.column``."""
    key = (path, audio.column)
    if _open.get("key") != key:
        _open.clear()
        _open["reader"] = _Rows(path, audio.column)
        _open["key"] = key
    data, _ = _audio_value(_open["reader"][audio.index])
    if not data:
        raise ValueError("the row holds no audio bytes")
    return data
