"""``python -m pipeline merge --out DIR``: combine sharded ``prepare`` runs.

Reads ``DIR/shards/I-of-N/{rows.jsonl,shard.json}``, checks that all N shards
are complete, were made with the same settings and together cover every input
row exactly once, then writes the outputs with the same function a single run
uses (:func:`data_prep.assemble.assemble`), so they are identical to it. Like
``prepare`` it holds the folder's lock and refuses a folder prepared with other
settings unless ``--force``.
"""

from __future__ import annotations

import json
from pathlib import Path

from data_prep.assemble import SplitOptions, assemble, check_prepared_with
from data_prep.manifest import ManifestError, Reject, Utterance, read_jsonl
from data_prep.outputs import exclusive
from data_prep.prepare import SHARDS_DIR, shard_dir
from data_prep.process import RowResult


class MergeError(ValueError):
    """Shards that cannot be merged; the message says which and why."""


def _result(obj: dict, where: str) -> tuple[int, RowResult]:
    try:
        if "reject" in obj:
            return int(obj["row"]), Reject.from_json(obj["reject"])
        return int(obj["row"]), [Utterance.from_json(u) for u in obj["utterances"]]
    except (KeyError, TypeError, ValueError) as e:
        raise MergeError(f"{where}: bad shard row: {e}") from e


def load_shards(out: Path) -> tuple[dict, list[RowResult]]:
    """Settings and all row results in source order, after checking the shards."""
    metas = sorted((out / SHARDS_DIR).glob("*-of-*/shard.json"))
    if not metas:
        raise MergeError(f"{out / SHARDS_DIR}: no complete shards (shard.json) found")
    infos = [json.loads(m.read_text(encoding="utf-8")) for m in metas]
    nums = {i["num_shards"] for i in infos}
    if len(nums) != 1:
        raise MergeError(f"{out / SHARDS_DIR}: shards of different --num-shards {sorted(nums)}; remove stale ones")
    num = nums.pop()
    have = {i["shard_index"] for i in infos}
    missing = sorted(set(range(num)) - have)
    if missing:
        raise MergeError(f"shards {missing} of {num} are missing or incomplete (no shard.json)")
    settings = infos[0]["settings"]
    for i in infos[1:]:
        if i["settings"] != settings:
            raise MergeError(f"shard {i['shard_index']} was prepared with different settings than shard "
                             f"{infos[0]['shard_index']}")
    results: dict[int, RowResult] = {}
    for index in range(num):
        path = shard_dir(out, index, num) / "rows.jsonl"
        try:
            for lineno, obj in read_jsonl(path):
                row, res = _result(obj, f"{path}:{lineno}")
                if row in results or row % num != index:
                    raise MergeError(f"{path}:{lineno}: row {row} does not belong to shard {index} or is repeated")
                results[row] = res
        except (OSError, ManifestError) as e:
            raise MergeError(str(e)) from e
    expected = settings["input_rows"]
    if sorted(results) != list(range(expected)):
        raise MergeError(f"shards hold {len(results)} rows, the corpus has {expected}")
    return settings, [results[i] for i in range(expected)]


def merge(out: str | Path, *, force: bool = False) -> int:
    """Merge the shards in ``out``; returns the exit status.

    ``force``: write over a folder prepared with other settings (else refused, naming what differs).
    """
    out = Path(out).resolve()
    with exclusive(out, "merge"):
        settings, results = load_shards(out)
        check_prepared_with(out, settings, force=force)
        return assemble(out, results, settings, _split_options(settings))


def _split_options(settings: dict) -> SplitOptions:
    """The split options a run recorded in its settings (see :func:`data_prep.assemble.settings_json`)."""
    s = settings["splits"]
    return SplitOptions(
        split_by=s["split_by"],
        ratios=tuple(s["ratios"]),
        seed=s["seed"],
        speakers=tuple(tuple(x) for x in s["speakers"]),
        allow_speaker_overlap=s["allow_speaker_overlap"],
        sentencepiece=s["sentencepiece"],
    )
