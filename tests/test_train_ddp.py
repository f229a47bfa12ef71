"""Two CPU processes (accelerate launch, gloo): different data, every clip once an epoch, synchronised weights,
one writer."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from pipeline.testing.tiny import save_tiny_whisper, write_tiny_corpus
from pipeline.train.data import BatchPlan

REPO = Path(__file__).resolve().parents[1]

DRIVER = r'''
import hashlib, json, sys
import torch
from pipeline.config import config_from_dict
from pipeline.train.trainer import Trainer

cfg = config_from_dict(json.loads(open(sys.argv[1]).read()))
tr = Trainer(cfg, progress=False)
tr.setup()
rank = tr.processes.process_index
init = {k: v.detach().clone() for k, v in tr.unwrapped.model.named_parameters() if v.requires_grad}
seen = []
for step in (1, 2):
    tr.train(until_step=step)
    seen.append(sorted(tr.last_batch_ids))
summary = tr.train()
h = hashlib.sha256()
changed = False
for k, v in sorted(tr.unwrapped.model.named_parameters()):
    if v.requires_grad:
        h.update(v.detach().numpy().tobytes())
        changed |= not torch.equal(v.detach(), init[k])
out = {"rank": rank, "world": tr.processes.num_processes, "seen": seen, "hash": h.hexdigest(), "changed": changed,
       "summary": summary}
open(sys.argv[2] + f".{rank}.json", "w").write(json.dumps(out))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp(tmp_path):
    torch.set_num_threads(1)
    model_dir = save_tiny_whisper(tmp_path / "model")
    data = write_tiny_corpus(tmp_path / "data", n_train=16, n_dev=2)
    out = tmp_path / "exp"
    cfg = {
        "data": {"lang": "sa", "manifests_dir": str(data)},
        "model": {"name": str(model_dir)},
        "train": {"regime": "freeze-encoder", "encoder_trainable_top_layers": 1, "lr": 3e-3, "warmup_steps": 1,
                  "max_steps": 3, "batch_seconds": 3.0, "eval_every": 3, "log_every": 1, "threads": 1},  # fmt: skip
        "augment": {"speed_perturb": [0.9, 1.0]},
        "output_dir": str(out),
    }
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    (tmp_path / "driver.py").write_text(DRIVER)
    # the documented multi-GPU command, `accelerate launch --multi_gpu --num_processes 2 ...` (torchrun
    # underneath); on CPU (where `accelerate launch --cpu` would need mpirun for several processes)
    # ACCELERATE_USE_CPU makes Accelerator pick gloo.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO),
           "ACCELERATE_USE_CPU": "true"}  # fmt: skip
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port()),
        str(tmp_path / "driver.py"), str(tmp_path / "cfg.json"), str(tmp_path / "result"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = [json.loads((tmp_path / f"result.{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in res] == [2, 2]
    for step in range(2):  # each rank trains on its own clips
        assert res[0]["seen"][step] and res[1]["seen"][step]
        assert not set(res[0]["seen"][step]) & set(res[1]["seen"][step])
    assert res[0]["changed"] and res[0]["hash"] == res[1]["hash"]  # gradients were averaged
    assert res[0]["summary"]["best_step"] == res[1]["summary"]["best_step"] == 3  # both ranks got the dev result
    # Written once, by the main process: one checkpoint holding both ranks' RNG states, one log.
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["step-0000003"]
    assert sorted(p.name for p in (out / "checkpoints" / ckpts[0]).glob("rng-*")) == ["rng-0.safetensors", "rng-1.safetensors"]
    steps = [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert (out / "best" / "model.safetensors").is_file()
    assert hashlib.sha256((out / "best" / "model.safetensors").read_bytes()).hexdigest()



def _epochs_of_rank(rank: int, port: int, out: str) -> None:
    """One of two forked processes: the processes the trainers run in (accelerate, gloo), the batch plan the
    training loop builds for them, and every rank's clips of three epochs gathered on the main process."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), ACCELERATE_USE_CPU="true")  # what torchrun sets
    AcceleratorState._reset_state(reset_partial_state=True)  # forked: not the parent's single process
    acc = Accelerator(cpu=True)
    durations = [2.0] * 31 + [1.0 + 0.37 * (i % 11) for i in range(20)]  # an odd number of batches
    plan = BatchPlan(durations, batch_seconds=6.0, max_batch_size=8, seed=5, speed_factors=[0.9, 1.0, 1.1],
                     world_size=acc.num_processes, rank=acc.process_index)
    mine = [[[it.index for it in b] for b in plan.epoch_batches(epoch)] for epoch in (0, 1, 2)]
    everyone = [None] * acc.num_processes
    torch.distributed.all_gather_object(everyone, mine)
    if acc.is_main_process:
        Path(out).write_text(json.dumps({"world": acc.num_processes, "n": len(durations), "ranks": everyone}))
    torch.distributed.destroy_process_group()


def test_two_processes_share_each_epoch_with_no_clip_twice_or_dropped(tmp_path):
    out = tmp_path / "result.json"
    torch.multiprocessing.start_processes(_epochs_of_rank, args=(_free_port(), str(out)), nprocs=2,
                                          start_method="fork")
    res = json.loads(out.read_text())
    assert res["world"] == 2
    for epoch in range(3):
        batches = [rank[epoch] for rank in res["ranks"]]
        assert len(batches[0]) == len(batches[1]) > 0  # the ranks step together
        seen = sorted(i for rank in batches for b in rank for i in b)
        assert seen == list(range(res["n"]))  # every clip once per epoch, across the two processes
