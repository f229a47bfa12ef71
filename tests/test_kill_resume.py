"""Fault injection: ``decode`` and ``rescore`` killed (SIGKILL) at seeded random points, twice, then rerun,
write byte for byte what an uninterrupted run writes, and leave nothing of the kills behind."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from tree_fixtures import tree_digest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
KILLED_RUN = Path(__file__).with_name("killed_run.py")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny Whisper, four dev clips and a word LM."""
    from pipeline.lm.build import build_ngram_lm
    from pipeline.testing.tiny import save_tiny_whisper, write_tiny_corpus

    root = tmp_path_factory.mktemp("kill")
    data = write_tiny_corpus(root / "data", n_train=2, n_dev=4)
    model = save_tiny_whisper(root / "model", seed=2)
    lm = build_ngram_lm(["ab ba", "aab bb ab", "ba ba"], 2, root / "lm" / "lm.arpa")
    return root, model, data, lm


def command_line(command: str, model: Path, data: Path, lm: Path, out: Path) -> list[str]:
    common = ["--model", str(model), "--manifest", str(data / "dev.jsonl"), "--out", str(out), "--batch-size", "1"]
    if command == "decode":
        return ["decode", *common]
    return ["rescore", *common, "--lm", str(lm), "--beams", "2", "--nbest", "2", "--tune"]


def run(argv: list[str], kill_at: int = 0, torn: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(KILLED_RUN), str(kill_at), str(int(torn)), "--", *argv],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip


def written(folder: Path) -> dict[str, bytes]:
    """Every file of an output folder but the locks (they name the process that held them)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.suffix != ".lock"}


def run_here(argv: list[str], monkeypatch) -> int:
    """Run ``argv`` in this process, as the killed runs' driver runs it; returns its fsync points."""
    from killed_run import Points, stop_clocks

    from pipeline.cli import main

    points = Points()
    with monkeypatch.context() as m:
        stop_clocks(m.setattr)
        m.setattr(os, "fsync", points.fsync)
        assert main(argv) == 0
    return points.count


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("command", ["decode", "rescore"])
def test_a_run_killed_twice_at_random_points_reruns_to_the_uninterrupted_outputs(assets, tmp_path, monkeypatch,
                                                                                 command):  # fmt: skip
    root, model, data, lm = assets
    inputs = tree_digest(root)
    points = run_here(command_line(command, model, data, lm, tmp_path / "ref" / "hyps.jsonl"), monkeypatch)

    out = tmp_path / "exp" / "hyps.jsonl"
    # Anywhere in the first run (its identity, a batch, a final file), early in the resumed one. This seed
    # kills decode in its second batch's line, then in the resumed run's identity record; rescore in its
    # last final file (hyps.jsonl), then in nbest.jsonl as the resumed run writes it again.
    rng = random.Random(f"{command} 18")
    for most in (points, 2):
        kill_at, torn = rng.randint(1, most), rng.random() < 0.5
        killed = run(command_line(command, model, data, lm, out), kill_at, torn)
        assert killed.returncode == -9, (kill_at, torn, killed.stderr)
    run_here(command_line(command, model, data, lm, out), monkeypatch)
    assert written(out.parent) == written(tmp_path / "ref")  # no partial, identity or temporary file left
    assert tree_digest(root) == inputs
