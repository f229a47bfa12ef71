"""Resumable per-utterance work (decode, rescore): kill, torn line, resume, order, unreadable audio."""

from __future__ import annotations

import pytest

from data_prep.manifest import read_manifest
from pipeline.decode.hyps import Hypothesis, read_hyps, write_hyps
from pipeline.decode.resumable import partial_path, read_records, run_resumable
from pipeline.testing.tiny import write_tiny_corpus


class Killed(Exception):
    pass


def test_a_killed_run_resumes_without_redoing_finished_batches(tmp_path):
    root = write_tiny_corpus(tmp_path / "data", n_train=7, n_dev=0)
    utts = read_manifest(root / "train.jsonl")
    (root / utts[3].audio).unlink()  # unreadable: reported, not fatal
    out = tmp_path / "exp" / "hyps.jsonl"
    seen: list[str] = []
    calls = []

    def work(batch, waves, kill_at_call=None):
        assert all(w.ndim == 1 and len(w) > 0 for w in waves)
        calls.append(len(batch))
        if len(calls) == kill_at_call:
            raise Killed
        seen.extend(u.id for u in batch)
        return [Hypothesis(id=u.id, text=f"text of {u.id}") for u in batch]

    def run(**kw):
        done = read_records(partial_path(out), Hypothesis.from_json)
        return run_resumable(utts, root, out, lambda b, w: work(b, w, **kw), write_hyps,
                             done=done, batch_size=2, desc="test")  # fmt: skip

    with pytest.raises(Killed):
        run(kill_at_call=2)  # the first batch is written, then the run dies
    assert not out.exists()
    first = list(read_records(partial_path(out), Hypothesis.from_json))
    assert first == seen and len(first) >= 1
    with open(partial_path(out), "a", encoding="utf-8") as f:
        f.write('{"id": "train006", "te')  # a line torn by the kill

    seen.clear()
    records, errors = run()
    assert sorted(seen) == sorted(u.id for u in utts if u.id not in first and u.id != utts[3].id)
    assert [r.id for r in records] == [u.id for u in utts if u.id != utts[3].id]  # manifest order
    assert len(errors) == 1 and errors[0].startswith(f"{utts[3].id}: ")
    assert [h.id for h in read_hyps(out)] == [r.id for r in records]
    assert not partial_path(out).exists()
