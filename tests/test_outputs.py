"""The shared output-safety mechanisms (data_prep.outputs): guard, owned folders, run identity, locks."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from data_prep.outputs import (
    OWNER_FILE,
    OutputRefused,
    ResumeError,
    RunIdentity,
    check_finished,
    exclusive,
    guard_output,
    in_progress,
    replace_dir,
    resume_or_start,
)


def test_guard_refuses_an_output_that_is_contains_or_lies_inside_an_input(tmp_path):
    manifest = tmp_path / "data" / "train.jsonl"
    manifest.parent.mkdir()
    manifest.write_text("{}\n")
    model = tmp_path / "exp" / "m1"
    model.mkdir(parents=True)
    with pytest.raises(OutputRefused, match="is the input"):
        guard_output(manifest, [manifest])
    with pytest.raises(OutputRefused, match="contains the input"):
        guard_output(tmp_path / "data", [manifest])
    with pytest.raises(OutputRefused, match="contains the input"):
        guard_output(tmp_path / "exp", [model])
    with pytest.raises(OutputRefused, match="lies inside the input"):
        guard_output(model / "soup", [model])
    link = tmp_path / "alias.jsonl"
    link.symlink_to(manifest)
    with pytest.raises(OutputRefused, match="is the input"):
        guard_output(link, [manifest])
    # siblings, names that are not paths and None are fine
    assert guard_output(tmp_path / "exp" / "m2", [model, "whisper-base", None, manifest]) == (tmp_path / "exp" / "m2")


def test_replace_dir_replaces_only_folders_the_toolkit_made(tmp_path):
    users = tmp_path / "mine"
    users.mkdir()
    (users / "notes.txt").write_text("keep me")
    tmp = tmp_path / ".new"
    tmp.mkdir()
    (tmp / "w.bin").write_bytes(b"1")
    with pytest.raises(OutputRefused, match="did not write"):
        replace_dir(tmp, users, "soup")
    assert (users / "notes.txt").read_text() == "keep me" and (tmp / "w.bin").exists()
    out = replace_dir(tmp, tmp_path / "made", "soup")
    assert (out / OWNER_FILE).is_file() and (out / "w.bin").read_bytes() == b"1"
    again = tmp_path / ".again"
    again.mkdir()
    (again / "w.bin").write_bytes(b"2")
    replace_dir(again, out, "soup")  # ours: replaced
    assert (out / "w.bin").read_bytes() == b"2"
    legacy = tmp_path / "best"
    legacy.mkdir()
    (legacy / "asr_adapt.json").write_text("{}")
    last = tmp_path / ".last"
    last.mkdir()
    replace_dir(last, legacy, "train")  # a model folder a trainer exported
    empty = tmp_path / "empty"
    empty.mkdir()
    fresh = tmp_path / ".fresh"
    fresh.mkdir()
    replace_dir(fresh, empty, "soup")


def test_run_identity_names_what_differs_and_force_starts_afresh(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("a\n")
    ident_file = tmp_path / "out.run.json"
    first = RunIdentity.of("decode", {"manifest": manifest, "model": "whisper-base"}, {"num_beams": 1})
    assert resume_or_start(ident_file, first, has_state=False) is False
    assert resume_or_start(ident_file, first, has_state=True) is True
    other_model = RunIdentity.of("decode", {"manifest": manifest, "model": "other"}, {"num_beams": 4})
    with pytest.raises(ResumeError) as e:
        resume_or_start(ident_file, other_model, has_state=True)
    assert "input model" in str(e.value) and "setting num_beams (1 -> 4)" in str(e.value) and "--force" in str(e.value)
    manifest.write_text("b\n")  # same path, other content
    changed = RunIdentity.of("decode", {"manifest": manifest, "model": "whisper-base"}, {"num_beams": 1})
    with pytest.raises(ResumeError, match="input manifest"):
        resume_or_start(ident_file, changed, has_state=True)
    assert resume_or_start(ident_file, changed, has_state=True, force=True) is False
    assert resume_or_start(ident_file, changed, has_state=True) is True  # recorded when forced
    (tmp_path / "other.run.json").unlink(missing_ok=True)
    with pytest.raises(ResumeError, match="recorded no identity"):
        resume_or_start(tmp_path / "none.run.json", changed, has_state=True)


def _hold(path, ready, release):
    with exclusive(path, "prepare"):
        ready.set()
        release.wait(10)


def test_a_second_run_on_a_locked_output_is_refused_and_a_dead_holder_frees_it(tmp_path):
    out = tmp_path / "data"
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(out, ready, release))
    holder.start()
    assert ready.wait(10)
    with pytest.raises(OutputRefused, match="another run is writing it \\(prepare, pid"):
        with exclusive(out, "prepare"):
            pass
    holder.kill()  # a kill -9 releases the lock with the process
    holder.join()
    with exclusive(out, "prepare"):
        pass


def test_a_torn_finish_leaves_its_mark(tmp_path):
    with pytest.raises(RuntimeError):
        with in_progress(tmp_path):
            raise RuntimeError("killed")
    with pytest.raises(OutputRefused, match="half-written"):
        check_finished(tmp_path)
    os.remove(tmp_path / ".in-progress")
    with in_progress(tmp_path):
        pass
    check_finished(tmp_path)


def _hold_and_fork_a_lingering_child(path, ready, child_pid):
    import time

    with exclusive(path, "prepare"):
        pid = os.fork()
        if pid == 0:  # a worker, or the plotting process, that outlives its parent
            time.sleep(30)
            os._exit(0)
        child_pid.value = pid
        ready.set()
        time.sleep(30)


def test_a_forked_child_does_not_keep_the_lock_of_its_killed_parent(tmp_path):
    import signal

    out = tmp_path / "data"
    ctx = multiprocessing.get_context("fork")
    ready, child_pid = ctx.Event(), ctx.Value("i", 0)
    holder = ctx.Process(target=_hold_and_fork_a_lingering_child, args=(out, ready, child_pid))
    holder.start()
    assert ready.wait(10)
    try:
        with pytest.raises(OutputRefused, match="another run is writing it"):
            with exclusive(out, "prepare"):
                pass
        holder.kill()
        holder.join()
        with exclusive(out, "prepare"):  # the child lives on, without the lock
            os.kill(child_pid.value, 0)
    finally:
        os.kill(child_pid.value, signal.SIGKILL)
