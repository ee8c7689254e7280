"""Length buckets: texts tokenized unpadded, each batch padded to the smallest bucket that holds
its longest text, ads grouped by bucket, and scores equal to the model padding every text."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from encoders.base import bucket_of, length_buckets
from ensemble import ModelConfig, build_ensemble
from ensemble.batch import AdPreparer
from ensemble.model import AdPolicyEnsemble
from ensemble.scoring import Scorer

WORDS = [
    "sale",
    "shoes",
    "coffee",
    "free",
    "delivery",
    "today",
    "new",
    "summer",
    "offer",
    "best",
    "price",
    "city",
    "hotel",
]


def text_config(tiny_bert_dir: Path, buckets: list[int]) -> ModelConfig:
    text = {"type": "hf_text", "model_dir": str(tiny_bert_dir), "max_length": 64}
    return ModelConfig.from_json(
        {
            "name": "buckets",
            "version": "test",
            "encoders": {"text": {**text, "buckets": buckets}},
            "policies": [
                {"name": "offensive_language", "heads": ["text"], "calibrated": True},
                {"name": "hate_speech", "heads": ["text"], "calibrated": True},
            ],
        }
    )


@pytest.fixture(scope="module")
def model(tiny_bert_dir: Path) -> AdPolicyEnsemble:
    return build_ensemble(text_config(tiny_bert_dir, [8, 16, 32]), seed=0)


def texts(count: int, seed: int = 0) -> list[dict[str, str]]:
    """Ads of 1 to 80 words (some past max_length, so truncated), shuffled."""
    rng = random.Random(seed)
    return [
        {"id": f"ad-{i}", "text": " ".join(rng.choices(WORDS, k=rng.randint(1, 80)))}
        for i in range(count)
    ]


class Recorder:
    """The model, noting the shape of every input of every forward pass."""

    def __init__(self, model: AdPolicyEnsemble) -> None:
        self.model = model
        self.passes: list[dict[str, tuple[int, ...]]] = []

    def __call__(self, *inputs: Tensor) -> Sequence[Tensor]:
        names = self.model.input_names
        self.passes.append({n: tuple(x.shape) for n, x in zip(names, inputs, strict=True)})
        return self.model(*inputs)

    @property
    def widths(self) -> list[int]:
        """The token width of each pass."""
        return [shapes["text.input_ids"][1] for shapes in self.passes]


def recording_scorer(model: AdPolicyEnsemble, **options: Any) -> tuple[Scorer, Recorder]:
    recorder = Recorder(model)
    scorer = Scorer(
        recorder, config=model.config, measurement_names=model.measurement_names, **options
    )
    return scorer, recorder


def test_buckets_are_checked_and_end_at_the_longest() -> None:
    assert length_buckets([16, 32, 64, 128], 128, "buckets") == (16, 32, 64, 128)
    assert length_buckets([16, 32, 64, 128], 48, "buckets") == (16, 32, 48)
    assert length_buckets([], 128, "buckets") == (128,)
    for bad in ([32, 16], [16, 16], [0, 16]):
        with pytest.raises(ValueError, match="buckets"):
            length_buckets(bad, 128, "buckets")
    assert [bucket_of(n, (16, 32, 64)) for n in (1, 16, 17, 64, 65)] == [16, 16, 32, 64, 64]


def test_a_batch_is_padded_to_the_bucket_of_its_longest_text(model: AdPolicyEnsemble) -> None:
    preparer = AdPreparer(model.config)
    short = preparer.prepare({"text": "coffee"})
    long = preparer.prepare({"text": " ".join(["delivery"] * 20)})
    huge = preparer.prepare({"text": " ".join(["coffee"] * 300)})
    assert short.tensors["text.input_ids"].shape[0] == 3  # [CLS] coffee [SEP], unpadded
    assert huge.tensors["text.input_ids"].shape[0] == 64  # truncated to max_length
    position = model.input_names.index("text.input_ids")
    widths = [
        preparer.collate(batch).inputs[position].shape[1]
        for batch in ([short], [short, long], [short, huge])
    ]
    assert widths == [8, 32, 64]
    assert [preparer.bucket_key(a) for a in (short, long, huge)] == [(8, 8), (32, 32), (64, 64)]
    mask = preparer.collate([short, long]).inputs[position + 1]
    assert mask[0].tolist() == [1, 1, 1] + [0] * 29  # padding is masked


def test_bucketed_scores_equal_scores_padded_to_max_length(
    model: AdPolicyEnsemble, tiny_bert_dir: Path
) -> None:
    ads = texts(40)
    bucketed = Scorer(model, batch_size=8).score(ads)
    padded_preparer = AdPreparer(text_config(tiny_bert_dir, [64]))
    padded = Scorer(model, batch_size=8, sort_window=1, preparer=padded_preparer).score(ads)
    assert [r["id"] for r in bucketed] == [a["id"] for a in ads]
    for got, want in zip(bucketed, padded, strict=True):
        for name, result in want["policies"].items():
            assert got["policies"][name]["score"] == pytest.approx(result["score"], abs=1e-5)
            assert got["policies"][name]["flag"] == result["flag"]


def test_no_text_is_padded_to_a_longer_bucket_and_a_sorted_window_fills_the_passes(
    model: AdPolicyEnsemble,
) -> None:
    """Short and long texts alternate: each batch of 4 runs as two passes (2 short at 8
    tokens, 2 long at 64) without a window; a window of 4 batches makes 4 full passes."""
    rng = random.Random(1)
    short = [" ".join(rng.choices(WORDS, k=2)) for _ in range(8)]
    long = [" ".join(rng.choices(WORDS, k=40)) for _ in range(8)]
    ads = [
        {"id": str(i), "text": t}
        for i, t in enumerate(x for p in zip(short, long, strict=False) for x in p)
    ]
    unsorted, seen_unsorted = recording_scorer(model, batch_size=4, sort_window=1)
    sorted_, seen_sorted = recording_scorer(model, batch_size=4, sort_window=4)
    rows = sorted_.score(ads)
    assert [r["id"] for r in rows] == [a["id"] for a in ads]  # input order kept
    for got, want in zip(rows, unsorted.score(ads), strict=True):
        for name, result in want["policies"].items():
            assert got["policies"][name]["score"] == pytest.approx(result["score"], abs=1e-5)
    assert seen_unsorted.widths == [8, 64] * 4
    assert seen_sorted.widths == [8, 8, 64, 64]


def test_a_server_batch_runs_once_per_bucket_shortest_first(model: AdPolicyEnsemble) -> None:
    scorer, seen = recording_scorer(model)
    preparer = scorer.preparer
    ads = [*texts(31, seed=2), {"id": "long", "text": " ".join(["offer"] * 70)}]
    prepared = [preparer.prepare(a) for a in ads]
    scored = scorer.score_by_bucket(prepared)
    assert [s.row["id"] for s in scored] == [a["id"] for a in ads]
    buckets = sorted({preparer.bucket_key(p)[0] for p in prepared})
    assert seen.widths == buckets
    with torch.inference_mode():
        alone = scorer.score_prepared(prepared[-1:])[0]
    assert scored[-1].scores is not None
    assert alone.scores is not None
    torch.testing.assert_close(scored[-1].scores, alone.scores, atol=1e-5, rtol=0)


def test_an_empty_pack_has_the_length_of_a_bucket() -> None:
    """A text-only batch gives the analyzers zero rows, at their first bucket's length, or at
    the longest where a single traced graph pads them (it was traced at that length)."""
    from ensemble.config import load_config
    from export.artifact import fixed_lengths

    config = load_config("default")
    text_only = [AdPreparer(config).prepare({"id": "a", "text": "summer sale"})]
    for overrides, frames, samples in (
        ({}, 300, 5 * 48_000),
        (fixed_lengths(config, "torchscript"), 3600, 60 * 48_000),
    ):
        preparer = AdPreparer(config, overrides=overrides)
        inputs = dict(zip(preparer.input_names, preparer.collate(text_only).inputs, strict=False))
        assert inputs["video_flash.grid"].shape == (0, frames, 4, 16, 16)
        assert inputs["audio_loudness.waveform"].shape == (0, samples, 2)


def text_and_loudness(tiny_bert_dir: Path) -> ModelConfig:
    """A tiny text encoder beside the loudness analyzer, one policy each."""
    text = {"type": "hf_text", "model_dir": str(tiny_bert_dir), "max_length": 64}
    return ModelConfig.from_json(
        {
            "name": "text-and-loudness",
            "version": "1",
            "encoders": {"text": text, "loudness": {"type": "loudness"}},
            "policies": [
                {"name": "offensive_language", "heads": ["text"]},
                {"name": "loudness", "heads": ["loudness"]},
            ],
        }
    )


def test_a_batch_without_text_gives_the_text_encoder_one_row_no_ad_reads(
    tiny_bert_dir: Path, sample_media: Path
) -> None:
    """Hugging Face attention cannot run on no rows: an empty text pack gets one placeholder
    row, which no ad's index points to, so the ads score as they do beside texts."""
    config = text_and_loudness(tiny_bert_dir)
    scorer = Scorer(build_ensemble(config, seed=0).eval())
    preparer = scorer.preparer
    audio = preparer.prepare({"id": "a", "audio": str(sample_media / "calm_voiceover.wav")})
    text_ad = preparer.prepare({"id": "t", "text": "summer sale on sandals"})
    for batch, index in (([audio], [0]), ([audio, text_ad], [0, 1])):
        inputs = dict(zip(preparer.input_names, preparer.collate(batch).inputs, strict=True))
        assert inputs["text.input_ids"].shape[0] == 1  # the placeholder, or the text's own row
        assert inputs["index.text"].tolist() == index
    with torch.inference_mode():
        alone = scorer.score_prepared([audio])[0]
        beside = scorer.score_prepared([audio, text_ad])[0]
    assert alone.scores is not None
    assert beside.scores is not None
    torch.testing.assert_close(alone.scores, beside.scores, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("overrides", "passes"),
    [
        ({"loudness": {"buckets": []}}, [(0, 2), (1, 1), (1, 1), (1, 1)]),  # 60 s each, as traced
        ({}, [(0, 2), (3, 1)]),  # three clips of the 10 s bucket: a sixth of a minute each
    ],
)
def test_a_graph_pass_gets_at_most_analyzer_rows_minutes_of_analyzer_input(
    tiny_bert_dir: Path,
    sample_media: Path,
    overrides: dict[str, dict[str, Any]],
    passes: list[tuple[int, int]],
) -> None:
    """A traced analyzer runs its whole batch at once: the scorer cuts a bucket of ads with
    audio into passes of ``analyzer_rows`` minutes of input, leaves text-only ads whole,
    and the scores are those of one pass."""
    config = text_and_loudness(tiny_bert_dir)
    model = build_ensemble(config, seed=0).eval()
    recorder = Recorder(model)
    preparer = AdPreparer(config, allow_paths=True, overrides=overrides)
    names = model.measurement_names
    limited = Scorer(
        recorder, config=config, measurement_names=names, preparer=preparer, analyzer_rows=1
    )
    whole = Scorer(model, preparer=preparer)
    clips = ("calm_voiceover.wav", "loud_jingle.mp3", "calm_voiceover.wav")
    ads = [{"id": f"a{i}", "audio": str(sample_media / c)} for i, c in enumerate(clips)]
    ads += [{"id": "t0", "text": "summer sale"}, {"id": "t1", "text": "fresh bread"}]
    prepared = [preparer.prepare(a) for a in ads]
    assert preparer.apart_load(prepared[0]) == (1.0 if overrides else 10 / 60)
    assert preparer.apart_load(prepared[-1]) == 0.0
    got = limited.score_by_bucket(prepared)
    rows = [(p["loudness.waveform"][0], p["text.input_ids"][0]) for p in recorder.passes]
    assert sorted(rows) == passes
    want = whole.score_by_bucket(prepared)
    assert [g.row["id"] for g in got] == [a["id"] for a in ads]
    for g, w in zip(got, want, strict=True):
        assert g.scores is not None
        assert w.scores is not None
        torch.testing.assert_close(g.scores, w.scores, atol=1e-6, rtol=0)
        assert g.row["measurements"] == w.row["measurements"]
