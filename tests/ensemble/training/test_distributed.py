"""DistributedDataParallel over gloo with 2 processes on this machine.

The ranks must end with identical weights (heads and text lexicon), and match one process trained with the same global
batch within TOLERANCE (the only difference is the floating-point order of the gradient sum:
measured here at about 1e-7 after 48 AdamW steps).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from ensemble import AdPolicyEnsemble, ModelConfig, build_ensemble
from ensemble.pretrained import stored_with_heads
from ensemble.training.train import TrainSettings, train
from tests.ensemble.training.train_data import keyword_ads, text_config, write_jsonl

TOLERANCE = 1e-5
WORLD = 2
# 96 ads, global batch 16: 6 steps an epoch, each rank taking 8 ads of the same order
SETTINGS = TrainSettings(epochs=8, patience=100, batch_size=16, lr=3e-3, progress=False)


def _worker(rank: int, init: str, out: str, config: dict[str, Any], data: list[list[dict]]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=WORLD)
    try:
        model = build_ensemble(ModelConfig.from_json(config), seed=0)
        result = train(model, data[0], data[1], SETTINGS, cache_dir=Path(out) / "cache")
        save_file(trained_state(result.model), f"{out}/rank{rank}.safetensors")
        summary = {**result.summary(), "history": result.history}
        Path(f"{out}/rank{rank}.json").write_text(json.dumps(summary))
    finally:
        dist.destroy_process_group()


def trained_state(model: AdPolicyEnsemble) -> dict[str, torch.Tensor]:
    """The weights training changes: the heads and the text lexicon."""
    stored = stored_with_heads(model)
    return {k: v.contiguous() for k, v in model.state_dict().items() if stored(k)}


def test_two_ranks_agree_and_match_one_process(tiny_bert_dir, tmp_path) -> None:
    config = text_config(tiny_bert_dir, lexicon_dim=8)
    data = [keyword_ads(96, seed=1), keyword_ads(32, seed=2, prefix="val")]
    args = (str(tmp_path / "init"), str(tmp_path), config.to_json(), data)
    mp.spawn(_worker, args=args, nprocs=WORLD, join=True)
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(WORLD)]
    for name, tensor in ranks[0].items():
        assert torch.equal(tensor, ranks[1][name]), name
    summary = json.loads((tmp_path / "rank0.json").read_text())
    assert summary["world_size"] == WORLD
    assert summary["max_rank_difference"] == 0.0
    assert summary["epochs_run"] == SETTINGS.epochs

    model = build_ensemble(config, seed=0)
    single = train(model, data[0], data[1], SETTINGS, cache_dir=tmp_path / "cache")
    state = trained_state(single.model)
    assert any(".lexicon." in k for k in state)
    difference = max(float((state[k] - v).abs().max()) for k, v in ranks[0].items())
    assert difference <= TOLERANCE
    for ours, theirs in zip(single.history, summary["history"], strict=True):
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-5)
    print(f"DDP vs one process: max weight difference {difference:.2e}")


@pytest.mark.slow
def test_torchrun_launches_the_train_command(tiny_bert_dir, tmp_path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(text_config(tiny_bert_dir).to_json()))
    train_file = write_jsonl(keyword_ads(64, seed=1), tmp_path / "train.jsonl")
    val_file = write_jsonl(keyword_ads(32, seed=2, prefix="val"), tmp_path / "val.jsonl")
    out = tmp_path / "ckpt"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    command += ["-m", "ensemble.cli", "train", "--config", str(config), "--data", str(train_file)]
    command += ["--val", str(val_file), "--out", str(out), "--epochs", "3", "--batch-size", "16"]
    command += ["--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    training = json.loads((out / "config.json").read_text())["checkpoint"]["training"]
    assert training["world_size"] == 2
    assert training["max_rank_difference"] == 0.0
    assert "max weight difference between ranks 0" in done.stdout
