"""Prepared splits as a Hugging Face ``DatasetDict`` on disk (``datasets.load_from_disk`` reads it).

Each split manifest (``train``, ``dev`` as ``validation``, ``test``) becomes a
split with the columns ``id``, ``audio`` (an ``Audio(sampling_rate=16000)``
feature holding each utterance's samples, as :meth:`Utterance.load_audio` gives
them, as 16-bit FLAC bytes: what the prepared cache holds, bit for bit),
``text`` (normalized), ``text_raw``, ``speaker``, ``duration`` and
``language``; an empty manifest gives no split. Utterances are encoded and written an Arrow batch at a time (a
split never sits in memory whole), to a memory-mapped file that ``datasets``
then saves; the folder is built aside and swapped in whole
(:func:`data_prep.outputs.replace_dir`): ``--out`` may not be, contain or lie
inside the data folder, and only a folder this toolkit made is replaced.

``prepare --format hf --src OUT`` imports such a folder again (``validation``
becomes ``dev``).
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import soundfile as sf

from data_prep.audio import TARGET_SR
from data_prep.manifest import Utterance, read_manifest
from data_prep.outputs import check_finished, check_replaceable, exclusive, guard_output, replace_dir
from data_prep.splits import SPLITS

#: manifest split -> the dataset's split name (Hugging Face calls dev "validation")
DATASET_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
#: utterances per Arrow batch written
BATCH = 64
COMMAND = "export-dataset"


class DatasetExportError(ValueError):
    """Nothing to export (no split manifests), or the ``datasets`` library cannot be used."""


def _datasets():
    try:
        import datasets
        import pyarrow
    except ImportError as e:
        raise DatasetExportError(f"export-dataset needs the datasets library (and pyarrow): {e}") from e
    return datasets, pyarrow


def features():
    """The dataset's columns and their types."""
    datasets, _ = _datasets()
    v = datasets.Value
    return datasets.Features({
        "id": v("string"), "audio": datasets.Audio(sampling_rate=TARGET_SR, decode=True), "text": v("string"),
        "text_raw": v("string"), "speaker": v("string"), "duration": v("float64"), "language": v("string"),
    })


def flac_bytes(utt: Utterance, data_dir: Path) -> bytes:
    """An utterance's samples as a 16-bit FLAC file's bytes."""
    buf = io.BytesIO()
    sf.write(buf, utt.load_audio(data_dir), TARGET_SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _batches(utts: list[Utterance], data_dir: Path) -> Iterator[dict[str, list]]:
    for k in range(0, len(utts), BATCH):
        chunk = utts[k : k + BATCH]
        yield {
            "id": [u.id for u in chunk],
            "audio": [{"bytes": flac_bytes(u, data_dir), "path": f"{u.id}.flac"} for u in chunk],
            "text": [u.text for u in chunk],
            "text_raw": [u.text_raw for u in chunk],
            "speaker": [u.speaker for u in chunk],
            "duration": [float(u.duration) for u in chunk],
            "language": [u.language for u in chunk],
        }


def _write_arrow(path: Path, utts: list[Utterance], data_dir: Path, feats) -> None:
    """The split as an Arrow stream file, a batch at a time."""
    _, pa = _datasets()
    schema = feats.arrow_schema
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for batch in _batches(utts, data_dir):
            writer.write_batch(pa.RecordBatch.from_pydict(batch, schema=schema))


def export_dataset(data: str | Path, out: str | Path) -> Path:
    """Write the split manifests of the prepared folder ``data`` as a DatasetDict at ``out``."""
    datasets, _ = _datasets()
    data, out = Path(data).resolve(), Path(out).resolve()
    guard_output(out, [data])
    check_finished(data, f"--data {data}")
    present = [s for s in SPLITS if (data / f"{s}.jsonl").is_file()]
    if not present:
        raise DatasetExportError(f"--data {data}: no split manifests ({', '.join(f'{s}.jsonl' for s in SPLITS)}); "
                                 "run prepare first")
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    feats = features()
    with exclusive(out, COMMAND), tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as work:
        work = Path(work)
        splits = {}
        for split in present:
            utts = read_manifest(data / f"{split}.jsonl")
            if not utts:  # datasets cannot load a split saved with no rows
                print(f"note: {split}.jsonl has no utterances: the dataset has no {DATASET_SPLITS[split]} split")
                continue
            arrow = work / f"{split}.arrow"
            _write_arrow(arrow, utts, data, feats)
            splits[DATASET_SPLITS[split]] = datasets.Dataset.from_file(
                str(arrow), info=datasets.DatasetInfo(features=feats), in_memory=False)
        built = work / "dataset"
        datasets.DatasetDict(splits).save_to_disk(str(built))
        del splits  # the memory-mapped files are removed with the work folder
        replace_dir(built, out, COMMAND)
    return out
