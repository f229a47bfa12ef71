"""No command writes over its inputs or mixes two runs: soup, export, decode, rescore, pseudo-label.

Each refusal is exit status 2 with one error line, and leaves every file outside ``--out`` as it was.
"""

from __future__ import annotations

import json
import os

import pytest
from tree_fixtures import tree_digest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from data_prep.manifest import read_manifest  # noqa: E402
from data_prep.outputs import OWNER_FILE, OutputRefused, lock_path  # noqa: E402
from pipeline.cli import main  # noqa: E402
from pipeline.decode.hyps import Hypothesis, read_hyps, write_hyps  # noqa: E402
from pipeline.decode.resumable import identity_path, partial_path  # noqa: E402
from pipeline.testing.tiny import save_tiny_whisper, write_tiny_corpus  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def one_error_line(capsys, command: str) -> str:
    """The command's stderr, which must be a single ``<command>: error: ...`` line; returns it."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), lines
    return lines[0]


def without_lock(digest: dict[str, str], out) -> dict[str, str]:
    """``digest`` less the lock file the shared mechanism keeps beside ``out`` (a command's own)."""
    return {k: v for k, v in digest.items() if not k.endswith(lock_path(out).name)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two tiny Whispers of one layout (other weights) and a tiny corpus with train and dev manifests."""
    root = tmp_path_factory.mktemp("safety")
    models = [save_tiny_whisper(root / "models" / f"m{i}", seed=2 + i) for i in (0, 1)]
    return models, write_tiny_corpus(root / "data", n_train=4, n_dev=3)


# ----------------------------------------------------------------------------------- 1: soup


def test_soup_into_the_folder_of_its_models_is_refused_and_everything_is_left_alone(tiny, tmp_path, capsys):
    import shutil

    (m1, m2), _ = tiny
    x = tmp_path / "X"
    for m in (m1, m2):
        shutil.copytree(m, x / m.name)
    (x / "notes.txt").write_text("unrelated\n")
    before = tree_digest(tmp_path)
    assert main(["soup", "--models", str(x / "m0"), str(x / "m1"), "--out", str(x)]) == 2
    assert "contains the input" in one_error_line(capsys, "soup")
    assert tree_digest(tmp_path) == before  # both models, the notes, and nothing new beside X

    mine = tmp_path / "mine"  # a folder this toolkit did not write is never replaced whole
    mine.mkdir()
    (mine / "keep.txt").write_text("mine\n")
    before = tree_digest(tmp_path)
    assert main(["soup", "--models", str(x / "m0"), str(x / "m1"), "--out", str(mine)]) == 2
    assert "did not write" in one_error_line(capsys, "soup")
    assert tree_digest(tmp_path) == before

    out = x / "soup"  # beside the models: written, and nothing else changes
    before = tree_digest(tmp_path, skip=out)
    assert main(["soup", "--models", str(x / "m0"), str(x / "m1"), "--out", str(out)]) == 0
    assert (out / "model.safetensors").is_file() and (out / OWNER_FILE).is_file()
    assert without_lock(tree_digest(tmp_path, skip=out), out) == before


def test_export_replaces_only_a_model_folder_the_toolkit_wrote(tmp_path):
    from pipeline.testing.tiny import build_tiny_whisper
    from pipeline.train.export import export_model

    model, processor = build_tiny_whisper(seed=1)
    info = {"language": "sa", "step": 1}
    best = export_model(model, processor, tmp_path / "best", info)
    assert (best / OWNER_FILE).is_file() and (best / "asr_adapt.json").is_file()
    export_model(model, processor, best, {**info, "step": 2})  # its own: replaced whole
    assert json.loads((best / "asr_adapt.json").read_text())["step"] == 2
    users = tmp_path / "users"
    users.mkdir()
    (users / "thesis.tex").write_text("years of work\n")
    before = tree_digest(tmp_path)
    with pytest.raises(OutputRefused, match="did not write"):
        export_model(model, processor, users, info)
    assert {k: v for k, v in tree_digest(tmp_path).items() if not k.startswith(".users.tmp")} == before


# ----------------------------------------------------------------------------------- 5: another run's partial


class Killed(BaseException):
    """A run stopped after its first batch (what a kill leaves: the partial file and its identity)."""


def _killed_after_first_batch(monkeypatch, argv: list[str]) -> None:
    import tqdm

    import pipeline.decode.resumable as resumable

    class DiesAfterOneBatch(tqdm.tqdm):
        def update(self, n=1):  # called once a batch's records are synced to the partial file
            raise Killed

    with monkeypatch.context() as m:
        m.setattr(resumable, "tqdm", DiesAfterOneBatch)
        with pytest.raises(Killed):
            main(argv)


@pytest.mark.parametrize("command", ["decode", "rescore"])
def test_a_rerun_with_another_model_refuses_the_partial_of_the_first(tiny, tmp_path, capsys, monkeypatch, command):
    (m1, m2), data = tiny
    out = tmp_path / "exp" / "hyps.jsonl"
    resumable_out = out if command == "decode" else out.parent / "nbest.jsonl"
    partial, identity = partial_path(resumable_out), identity_path(resumable_out)
    search = ["--num-beams", "1"] if command == "decode" else ["--beams", "2", "--nbest", "2"]
    args = [command, "--manifest", str(data / "dev.jsonl"), "--out", str(out), "--batch-size", "1", *search]
    _killed_after_first_batch(monkeypatch, [*args, "--model", str(m1)])
    assert partial.is_file() and identity.is_file()
    capsys.readouterr()
    before = tree_digest(tmp_path)
    assert main([*args, "--model", str(m2)]) == 2
    error = one_error_line(capsys, command)
    assert f"{partial}: unfinished work of another run: input model" in error and "--force" in error
    assert tree_digest(tmp_path) == before  # the partial, its identity and the inputs as they were

    assert main([*args, "--model", str(m2), "--force"]) == 0  # afresh: every hypothesis the second model's
    clean = tmp_path / "clean" / "hyps.jsonl"
    assert main([*args[:3], "--out", str(clean), *args[5:], "--model", str(m2)]) == 0
    assert [h.text for h in read_hyps(out)] == [h.text for h in read_hyps(clean)]
    assert not partial.exists() and not identity.exists()

    _killed_after_first_batch(monkeypatch, [*args, "--model", str(m1)])  # the same run resumes
    assert main([*args, "--model", str(m1)]) == 0 and len(read_hyps(out)) == 3


# ----------------------------------------------------------------------------------- 6: out over an input


def test_decode_over_its_own_manifest_is_refused_and_the_manifest_kept(tiny, tmp_path, capsys):
    import shutil

    (m1, _), data = tiny
    shutil.copytree(data, tmp_path / "data")
    manifest = tmp_path / "data" / "dev.jsonl"
    before = tree_digest(tmp_path)
    rc = main(["decode", "--model", str(m1), "--manifest", str(manifest), "--out", str(manifest)])
    assert rc == 2 and "is the input" in one_error_line(capsys, "decode")
    assert tree_digest(tmp_path) == before


def test_pseudo_label_into_the_prepared_folder_is_refused(tiny, tmp_path, capsys):
    import shutil

    _, data = tiny
    shutil.copytree(data, tmp_path / "data")
    sa = tmp_path / "data"
    write_hyps(tmp_path / "exp" / "dev.jsonl", [Hypothesis(u.id, u.text) for u in read_manifest(sa / "dev.jsonl")])
    args = ["pseudo-label", "--labeled", str(sa / "train.jsonl"), "--unlabeled", str(sa / "dev.jsonl"),
            "--hyps", str(tmp_path / "exp" / "dev.jsonl"), "--lang", "sa"]  # fmt: skip
    before = tree_digest(tmp_path)
    assert main([*args, "--out", str(sa)]) == 2
    assert "contains the input" in one_error_line(capsys, "pseudo-label")
    assert tree_digest(tmp_path) == before  # train.jsonl has no dev clip in it

    # a folder of manifests it did not write (no inputs inside): refused too, unless forced
    other = tmp_path / "other"
    shutil.copytree(sa, other)
    labeled = tmp_path / "labeled.jsonl"
    labeled.write_text((sa / "train.jsonl").read_text().replace('"audio/', f'"{sa}/audio/'))
    before = tree_digest(tmp_path)
    mixed = ["pseudo-label", "--labeled", str(labeled), "--unlabeled", str(sa / "dev.jsonl"),
             "--hyps", str(tmp_path / "exp" / "dev.jsonl"), "--lang", "sa", "--out", str(other)]  # fmt: skip
    assert main(mixed) == 2
    assert "recorded no identity" in one_error_line(capsys, "pseudo-label")
    assert without_lock(tree_digest(tmp_path), other) == before  # checked under the lock of --out

    out = tmp_path / "st"  # a folder of its own: written, and a rerun of other settings is refused
    assert main([*args, "--out", str(out)]) == 0
    assert len(read_manifest(out / "train.jsonl")) > 4  # the labeled clips and accepted dev clips
    capsys.readouterr()
    before = tree_digest(tmp_path)
    assert main([*args, "--out", str(out), "--max-repeats", "5"]) == 2
    assert "setting max_repeats (3 -> 5)" in one_error_line(capsys, "pseudo-label")
    assert tree_digest(tmp_path) == before
    assert main([*args, "--out", str(out), "--max-repeats", "5", "--force"]) == 0


# ----------------------------------------------------------------------------------- the other commands' --out


def test_lm_and_report_refuse_an_out_over_what_they_read(tiny, tmp_path, capsys):
    import shutil

    from pipeline.report.build import report
    from pipeline.score.scorer import score

    _, data = tiny
    shutil.copytree(data, tmp_path / "data")
    train = tmp_path / "data" / "train.jsonl"
    before = tree_digest(tmp_path)
    assert main(["lm", "--train", str(train), "--out", str(tmp_path / "data")]) == 2  # the LM over its text
    assert "contains the input" in one_error_line(capsys, "lm")
    assert tree_digest(tmp_path) == before

    hyps = tmp_path / "exp" / "sa" / "sys" / "dev" / "hyps.jsonl"
    write_hyps(hyps, [Hypothesis(u.id, u.text) for u in read_manifest(tmp_path / "data" / "dev.jsonl")])
    score(tmp_path / "data" / "dev.jsonl", hyps, n_resamples=10)
    before = tree_digest(tmp_path)
    results = hyps.parent / "results.json"  # the report's summary would replace the results it reads
    with pytest.raises(OutputRefused, match="is the input"):
        report([results], hyps.parent, n_resamples=10)
    assert tree_digest(tmp_path) == before
    report([tmp_path / "exp"], tmp_path / "exp" / "report", n_resamples=10)  # a report inside the experiments
