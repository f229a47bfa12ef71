"""The stage runner shared by the recipes: ranges, .done markers, --force, failures."""

import subprocess
from pathlib import Path

STAGES = Path(__file__).resolve().parents[1] / "recipes" / "lib" / "stages.sh"


def run_script(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    script = f"""
set -euo pipefail
source "{STAGES}"
EXP="{tmp_path}/exp"
parse_stage_args "$@"
run_stage 1 first bash -c 'echo x >> "{tmp_path}/first.log"'
run_stage 2 second bash -c 'echo x >> "{tmp_path}/second.log"'
run_stage 3 fails false
"""
    return subprocess.run(["bash", "-c", script, "run.sh", *args], capture_output=True, text=True)


def count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_stage_range_markers_and_force(tmp_path):
    r = run_script(tmp_path, "--stop-stage", "2")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "exp/.done/stage1.first").exists() and (tmp_path / "exp/.done/stage2.second").exists()
    assert count(tmp_path / "first.log") == 1 and count(tmp_path / "second.log") == 1

    r = run_script(tmp_path, "--stop-stage", "2")  # both done already: nothing reruns
    assert r.returncode == 0 and "done already" in r.stdout
    assert count(tmp_path / "first.log") == 1

    r = run_script(tmp_path, "--stage", "2", "--stop-stage", "2", "--force")
    assert r.returncode == 0
    assert count(tmp_path / "first.log") == 1 and count(tmp_path / "second.log") == 2


def test_failed_stage_stops_without_marker(tmp_path):
    r = run_script(tmp_path, "--stage", "3")
    assert r.returncode != 0
    assert "stage 3 (fails) failed" in r.stderr
    assert not (tmp_path / "exp/.done/stage3.fails").exists()


def test_unknown_argument_is_refused(tmp_path):
    r = run_script(tmp_path, "--stgae", "1")
    assert r.returncode == 2 and "unknown argument" in r.stderr
