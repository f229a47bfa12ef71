"""The report renders from fake experiments: every section, self-contained HTML, Markdown table."""

from __future__ import annotations

import base64
import json
import random
import re
from pathlib import Path

import pytest

from data_prep.manifest import Utterance
from pipeline.cli import main
from pipeline.decode.hyps import Hypothesis
from pipeline.report.build import report
from pipeline.report.collect import CollectError, collect
from pipeline.report.screenshot import find_browser, screenshot
from pipeline.score.results import read_results, write_results
from pipeline.score.scorer import score_utterances

WORDS = ["रामः", "वनं", "गच्छति", "एषः", "कः", "चषकः", "अहं", "बालकः", "पठति", "जलम्"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _utts(n: int, seed: int, prefix: str) -> list[Utterance]:
    rng = random.Random(seed)
    return [Utterance(id=f"{prefix}{i:03d}", audio="x.flac", duration=1.0 + i % 9, language="sa",
                      speaker=f"spk{i % 2}", text=" ".join(rng.choice(WORDS) for _ in range(3 + i % 5)))
            for i in range(n)]


def _write(root: Path, utts, system: str, kind: str, testset: str, p_err: float, seed: int) -> None:
    rng = random.Random(seed)
    hyps = {u.id: Hypothesis(u.id, " ".join("गलत" if rng.random() < p_err else w for w in u.text.split()),
                             seconds=0.3 * u.duration) for u in utts}
    r = score_utterances(utts, hyps, "sa", system=system, kind=kind, testset=testset, n_resamples=100).results
    write_results(root / "sa" / system / testset / "results.json", r)


def _log(path: Path, scale: float) -> None:
    rows = [{"step": s, "epoch": s / 20, "train_loss": scale / (1 + s / 10), "lr": 1e-4,
             **({"dev_cer": 0.5 / (1 + s / 20), "dev_wer": 0.9 / (1 + s / 20)} if s % 20 == 0 else {})}
            for s in range(0, 101, 10)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture()
def expdir(tmp_path: Path) -> Path:
    """zeroshot + finetuned + scratch (identical to finetuned) on test; zeroshot + finetuned on a shifted set."""
    root = tmp_path / "exp"
    test, shifted = _utts(40, 0, "t"), _utts(40, 1, "s")
    _write(root, test, "zeroshot", "zeroshot", "test", 0.9, 1)
    _write(root, test, "ft", "finetuned", "test", 0.2, 2)
    _write(root, test, "scratch", "scratch", "test", 0.2, 2)  # same errors as ft: no gain from pretraining
    _write(root, shifted, "zeroshot", "zeroshot", "test_shifted", 0.9, 3)
    _write(root, shifted, "ft", "finetuned", "test_shifted", 0.45, 4)
    _log(root / "sa" / "ft" / "log.jsonl", 2.0)
    _log(root / "sa" / "scratch" / "log.jsonl", 6.0)
    return root


def test_report_has_every_section(expdir, tmp_path):
    out = tmp_path / "report"
    html_path = report([expdir], out, title="Demo", n_resamples=200)
    html = html_path.read_text(encoding="utf-8")
    for needle in ("Transfer verdict", "Gain over the zero-shot model", "NEGATIVE TRANSFER", "Domain shift",
                   "Results", "Error rates", "Error types", "Per speaker", "WER against utterance duration",
                   "Training curves", "Same budget: 100 steps each", "Method"):
        assert needle in html, needle
    # Self-contained: five embedded PNGs, nothing fetched from elsewhere.
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(imgs) == 5 and all(base64.b64decode(b)[:8] == PNG_MAGIC for b in imgs)
    assert not re.search(r'(src|href)="(?!data:)', html) and "<script" not in html and "<link" not in html
    md = (out / "report.md").read_text(encoding="utf-8")
    for slug in re.findall(r"\]\(([\w.-]+\.png)\)", md):
        assert (out / slug).read_bytes()[:8] == PNG_MAGIC
    assert "NEGATIVE TRANSFER" in md and "| ft | finetuned | test | sa | 40 |" in md
    summary = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert summary["type"] == "report_summary" and len(summary["systems"]) == 5
    assert any(v.get("negative_transfer") for v in summary["verdict"])


def test_report_skips_its_own_summary_and_finds_logs(expdir):
    report([expdir], expdir / "sa" / "report", n_resamples=50)  # summary now lies inside expdir
    exps = collect([expdir])
    assert len(exps) == 5
    logs = {x.results.system: x.log_path for x in exps}
    assert logs["ft"] is not None and logs["ft"].name == "log.jsonl" and logs["zeroshot"] is None


def test_report_without_logs_or_scratch_says_so(tmp_path):
    root = tmp_path / "exp"
    _write(root, _utts(20, 0, "t"), "zeroshot", "zeroshot", "test", 0.9, 1)
    html = report([root / "sa" / "zeroshot" / "test" / "results.json"], tmp_path / "r", n_resamples=50).read_text()
    assert "No fine-tuned system on test (sa)" in html
    assert "No log.jsonl with training records was found" in html


def test_duplicate_system_is_an_error(expdir, tmp_path):
    r = read_results(expdir / "sa" / "ft" / "test" / "results.json")
    write_results(tmp_path / "other" / "results.json", r)
    with pytest.raises(CollectError, match="is also in"):
        collect([expdir, tmp_path / "other"])


def test_markdown_table_cli(expdir, capsys):
    assert main(["report", str(expdir), "--markdown-table"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| System | Kind | Test set |") and len(out) == 2 + 5
    assert main(["report", str(expdir / "nothing-here")]) == 2  # neither --out nor --markdown-table


@pytest.mark.skipif(find_browser() is None, reason="no chromium installed")
def test_screenshot_renders(expdir, tmp_path):
    html = report([expdir], tmp_path / "r", n_resamples=50)
    png = screenshot(html, tmp_path / "shot.png", width=800, height=600)
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
