"""Scoring on Ray Data: the blocks, the parts read by THE reader, and a local Ray (2 CPUs)
giving the local command's rows, even with an actor killed mid-run."""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from ensemble.cli import main
from ensemble.cli.score import EXIT_AD_ERRORS
from ensemble.distributed import (
    block_records,
    plan_blocks,
    read_results,
    score_dataset,
)
from ensemble.model import AdPolicyEnsemble
from ensemble.pretrained import save_pretrained
from ensemble.reader import read_ads
from ensemble.rows import Row
from ensemble.scoring import load
from ensemble.summary import SHOWN_ADS, Summary

REPO = Path(__file__).resolve().parents[2]
HOSTILE = [
    b"\xff\xfe not utf-8",
    b'{"id": "cut", "text": "half',
    b"[1, 2, 3]",
    b'{"id": "typed", "text": 42}',
    b'{"text": "no id here"}',
    b'{"id": "typo", "txt": "unknown field"}',
    b"",
    b'{"id": "surrogate", "text": "\\ud800"}',
]


@pytest.fixture(scope="module")
def ray_local() -> Any:
    """One local Ray for the module: 2 CPUs, no dashboard."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def checkpoint(small_model: AdPolicyEnsemble, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ray-checkpoint")
    save_pretrained(small_model, out)
    return out


@pytest.fixture
def mixed_ads(sample_media: Path, tmp_path: Path) -> Path:
    """The sample ads (media, two broken) between hostile lines, beside a copy of the media."""
    shutil.copytree(sample_media, tmp_path / "media")
    samples = (sample_media.parent / "ads.jsonl").read_bytes().splitlines()
    lines = [line for pair in zip(samples, HOSTILE * 2, strict=False) for line in pair]
    path = tmp_path / "ads.jsonl"
    path.write_bytes(b"\n".join(lines))  # no newline after the last line
    return path


def same_rows(ray_rows: list[Row], local_rows: list[Row]) -> None:
    """Same ids in order, scores within 1e-6, everything else equal."""
    assert [r["id"] for r in ray_rows] == [r["id"] for r in local_rows]
    for ours, theirs in zip(ray_rows, local_rows, strict=True):
        assert ours.keys() == theirs.keys()
        for name, entry in theirs.get("policies", {}).items():
            other = ours["policies"][name]
            assert other["score"] == pytest.approx(entry["score"], abs=1e-6)
            assert {**other, "score": 0} == {**entry, "score": 0}
        rest = {k: v for k, v in theirs.items() if k not in ("policies", "modalities")}
        assert {k: ours[k] for k in rest} == rest  # type: ignore[literal-required]


@pytest.mark.parametrize("per_block", [1, 3, 100])
def test_blocks_read_by_the_reader_are_the_file(mixed_ads: Path, per_block: int) -> None:
    whole = list(read_ads(mixed_ads))
    blocks = plan_blocks(mixed_ads, per_block)
    lines = mixed_ads.read_bytes().count(b"\n") + 1
    assert len(blocks) == -(-lines // per_block)
    parts = [r for block in blocks for r in block_records(block)]
    assert [(r.id, r.ad, str(r.error)) for r in parts] == [
        (r.id, r.ad, str(r.error)) for r in whole
    ]


def test_a_utf16_file_is_one_block_with_the_local_readers_one_error(tmp_path: Path) -> None:
    """Cut in lines, a UTF-16 file of 3 ads gave 4 rows on Ray ("not UTF-8", then "not valid
    JSON" thrice) where the local reader gives one error naming the encoding."""
    path = tmp_path / "ads.jsonl"
    lines = "\n".join(f'{{"id": "a{i}", "text": "tea"}}' for i in range(3))
    path.write_bytes(lines.encode("utf-16"))
    [block] = plan_blocks(path, 1)
    parts = [(r.id, str(r.error)) for r in block_records(block)]
    assert parts == [(r.id, str(r.error)) for r in read_ads(path)]
    [(_, error)] = parts
    assert "UTF-16 or UTF-32" in error


def test_parquet_blocks_are_row_ranges(tmp_path: Path) -> None:
    path = tmp_path / "ads.parquet"
    ads = [{"id": f"p{i}" if i % 4 else None, "text": f"ad {i}"} for i in range(25)]
    pq.write_table(pa.Table.from_pylist(ads), path, row_group_size=7)
    blocks = plan_blocks(path, 10)
    assert [(b["start"], b["stop"]) for b in blocks] == [(0, 10), (10, 20), (20, 25)]
    parts = [r for block in blocks for r in block_records(block)]
    assert [r.id for r in parts] == [r.id for r in read_ads(path)]
    assert parts[4].id == "row-5"


def test_merged_summaries_are_the_whole_run() -> None:
    rng = random.Random(0)
    rows: list[Row] = []
    for i in range(130):
        if rng.random() < 0.3:
            rows.append(
                {
                    "id": f"bad-{i}",
                    "status": "error",
                    "model": {"name": "m", "version": "1"},
                    "warnings": [],
                    "http_status": 400,
                    "errors": [{"field": rng.choice(["text", "image"]), "error": "bad"}],
                }
            )
        else:
            score = rng.random()
            rows.append(
                {
                    "id": f"ok-{i}",
                    "status": "ok",
                    "model": {"name": "m", "version": "1"},
                    "warnings": ["w"] if score > 0.9 else [],
                    "flags": ["p"] if score > 0.5 else [],
                    "policies": {"p": {"score": score, "flag": score > 0.5, "status": "scored"}},
                }
            )
    whole = Summary(["p"])
    for row in rows:
        whole.add(row)
    for cuts in ([0, 130], [0, 20, 49, 51, 130], [0, *range(7, 130, 7), 130]):
        merged = Summary(["p"])
        for start, stop in itertools.pairwise(cuts):
            block = Summary(["p"])
            for row in rows[start:stop]:
                block.add(row)
            merged.merge(block)
        assert merged == whole
    assert len(whole.shown) > SHOWN_ADS


def test_the_cluster_config_follows_rays_schema() -> None:
    ray = pytest.importorskip("ray")
    jsonschema = pytest.importorskip("jsonschema")
    schema = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    config = yaml.safe_load((REPO / "examples" / "ray-cluster.yaml").read_text())
    jsonschema.validate(config, json.loads(schema.read_text()))


def test_the_local_command_does_not_import_ray(checkpoint: Path, tmp_path: Path) -> None:
    ads = tmp_path / "ads.jsonl"
    ads.write_text('{"id": "a", "text": "fresh coffee"}\n')
    probe = (
        "import sys; from ensemble.cli import main; "
        "code = main(sys.argv[1:]); assert 'ray' not in sys.modules, 'ray imported'; print(code)"
    )
    command = ["score", str(ads), "-o", str(tmp_path / "r.jsonl"), "--model", str(checkpoint)]
    done = subprocess.run(
        [sys.executable, "-c", probe, *command, "--no-progress"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("0")


def test_ray_engine_gives_the_local_rows(
    ray_local: Any, checkpoint: Path, mixed_ads: Path, tmp_path: Path, capsys
) -> None:
    local_out, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    common = [str(mixed_ads), "--model", str(checkpoint), "--no-progress", "--batch-size", "4"]
    assert main(["score", *common, "-o", str(local_out)]) == EXIT_AD_ERRORS
    local_printed = capsys.readouterr().out
    ray_args = ["--engine", "ray", "--actors", "2", "--ads-per-block", "5"]
    assert main(["score", *common, "-o", str(ray_out), *ray_args]) == EXIT_AD_ERRORS
    ray_printed = capsys.readouterr().out
    local_rows = [json.loads(line) for line in local_out.read_text().splitlines()]
    ray_rows = list(read_results(ray_out))
    same_rows(ray_rows, local_rows)  # type: ignore[arg-type]
    assert sorted(p.name for p in ray_out.iterdir()) == [f"part-{i:06d}.jsonl" for i in range(5)]
    errors = {r["id"]: r["errors"] for r in ray_rows if r["status"] == "error"}
    assert errors["line-2"] == [
        {"field": "ad", "error": "line 2: not UTF-8 (byte 0: invalid start byte)"}
    ]
    assert errors["missing-file"][0]["field"] == "audio"
    assert "line-10" in {r["id"] for r in ray_rows}  # the id-less ad, numbered in the file
    # the summary: the same table but for the time line
    assert local_printed.split("\n\n")[:-1] == ray_printed.split("\n\n")[:-1]
    assert (
        main(["score", *common, "-o", str(ray_out), *ray_args]) == 4
    )  # never mixed with old parts


def actor_cpu_ticks() -> dict[int, int]:
    """The scoring actors' processes (Ray titles them after the class) and their CPU ticks."""
    ticks = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"ScoreBlocks" in (entry / "cmdline").read_bytes():
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                ticks[int(entry.name)] = int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            continue
    return ticks


def test_an_actor_killed_mid_run_loses_and_repeats_nothing(
    ray_local: Any, checkpoint: Path, sample_media: Path, tmp_path: Path
) -> None:
    shutil.copytree(sample_media, tmp_path / "media")
    ads = [
        {"id": f"ad-{i}" if i % 9 else None, "text": f"coffee {i}", "video": "media/calm.mp4"}
        for i in range(60)
    ]
    source = tmp_path / "ads.parquet"
    pq.write_table(pa.Table.from_pylist(ads), source, row_group_size=25)
    dataset = score_dataset(source, model=checkpoint, actors=2, ads_per_block=2, batch_size=2)
    rows: list[dict[str, Any]] = []
    killed: list[int] = []
    seen: set[int] = set()
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        rows += cast(pa.Table, batch).select(["block", "row"]).to_pylist()
        before = actor_cpu_ticks()
        time.sleep(0.1)
        after = actor_cpu_ticks()
        seen.update(after)
        busy = [pid for pid, ticks in after.items() if ticks > before.get(pid, ticks)]
        if not killed and busy:  # the first rows are out: the actors are scoring
            os.kill(busy[0], signal.SIGKILL)
            killed.append(busy[0])
            blocks_when_killed = len({r["block"] for r in rows})
    assert killed, "no actor was busy to kill"
    assert blocks_when_killed < 10  # of 30: the killed actor had blocks in flight
    assert len(seen) == 3  # Ray restarted it, and its blocks ran on the new process
    rows.sort(key=lambda r: r["block"])  # blocks arrive in any order; rows in order within
    results = [json.loads(r["row"]) for r in rows]
    ids = [r["id"] for r in results]
    assert len(ids) == len(set(ids)) == 60
    assert ids == [r.id for r in read_ads(source)]
    same_rows(results, load(checkpoint).score_file(source))


def test_a_remote_file_of_ads_reads_its_media_from_uris(
    ray_local: Any, checkpoint: Path, sample_media: Path, tmp_path: Path
) -> None:
    """The ads file named by a pyarrow URI (``file://`` here, ``s3://`` on a cluster) has no
    folder for media paths: its ads name media by URI, which the actors read; a path is
    refused, naming the field. Media URIs score as the same files given by path."""
    image, audio = sample_media / "sharp_banner.png", sample_media / "calm_voiceover.wav"
    ads = [
        {"id": "by-uri", "image": image.as_uri(), "audio": {"path": audio.as_uri()}},
        {"id": "by-path", "image": "media/sharp_banner.png"},
    ]
    source = tmp_path / "ads.jsonl"
    source.write_text("\n".join(json.dumps(ad) for ad in ads))
    dataset = score_dataset(source.as_uri(), model=checkpoint, actors=1)
    rows = [json.loads(r["row"]) for r in sorted(dataset.take_all(), key=lambda r: r["block"])]
    assert [r["status"] for r in rows] == ["ok", "error"]
    assert rows[1]["errors"][0]["field"] == "image"
    by_path = {"id": "by-uri", "image": str(image), "audio": str(audio)}
    same_rows(rows[:1], load(checkpoint, any_path=True).score([by_path]))
