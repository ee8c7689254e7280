"""The shipped default model: calibrated text heads over MiniLM with its top layers fine-tuned,
that reproduce their recorded metrics.

The default is built by the README's commands (convert Davidson + HateXplain, train, evaluate
with ``--record``); CI does not train it. The shipped weights are checked against what was
recorded on the 30 % Davidson hold-out (RAW tweets) when they were built, on a fixed sample of
256 hold-out tweets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ensemble import from_pretrained
from ensemble.batch import AdPreparer
from ensemble.model import AdPolicyEnsemble
from ensemble.samples import SAMPLE_TEXTS
from ensemble.scoring import DEFAULT_DIR, Scorer
from ensemble.training.data import THREE_CLASS_RULE
from ensemble.training.evaluate import measure, score_ads
from ensemble.training.textdata import davidson_ads, hatecheck_ads
from ensemble.training.textsets import behaviour, benign_ads, idiom_ads

TEXT_POLICIES = ("offensive_language", "hate_speech")


def _record() -> dict:
    return json.loads((DEFAULT_DIR / "evaluation.json").read_text())


def test_shipped_default_is_small_calibrated_and_recorded() -> None:
    config = json.loads((DEFAULT_DIR / "config.json").read_text())
    assert config["checkpoint"]["weights"] == "heads"
    text = config["encoders"]["text"]
    # social-v3, the training form, + spelling repair (v4) + masked profanity read (v5)
    assert text["normalizer"] == "social-v5"
    tuned = text["tuned_layers"]
    # heads + MiniLM's fine-tuned top layers (~7 MB each), never its embeddings or lower layers
    assert (DEFAULT_DIR / "model.safetensors").stat().st_size < 8_000_000 * tuned
    stored = load_file(str(DEFAULT_DIR / "model.safetensors"))
    layers = {k.split(".")[5] for k in stored if k.startswith("encoders.text.model.encoder.")}
    assert layers == {str(i) for i in range(6 - tuned, 6)}
    assert not any(k.startswith("encoders.text.model.embeddings.") for k in stored)
    policies = {p["name"]: p for p in config["policies"]}
    record = _record()
    for name in TEXT_POLICIES:
        assert policies[name]["calibrated"]
        assert 0 < policies[name]["threshold"] < 1
        assert record["metrics"]["policies"][name]["threshold"] == policies[name]["threshold"]
    assert record["class_rule"] == "three-class"
    assert record["metrics"]["n"] == 7435  # the whole hold-out
    # decisions fitted by `adpolicy calibrate` on the Davidson validation split
    fitted = config["checkpoint"]["decisions"]
    assert (fitted["block_precision"], fitted["allow_miss_rate"], fitted["delta"]) == (
        0.95,
        0.02,
        0.1,
    )
    for name in TEXT_POLICIES:
        assert policies[name]["calibration"]["method"] in ("temperature", "isotonic")
        assert policies[name]["band"]["guarantee"]["calibration_size"] == fitted["data"]["n"]
    for name in ("flashing", "loudness", "low_quality_image"):
        assert policies[name]["band"]["method"] == "margin"


@pytest.mark.slow
def test_shipped_heads_reproduce_the_recorded_holdout_sample(shared_dir) -> None:
    holdout = davidson_ads(shared_dir / "data" / "davidson" / "labeled_data.csv")["test"]
    ads = {ad["id"]: ad for ad in holdout}  # raw tweets, as recorded
    recorded = _record()["sample"]
    sample = [ads[i] for i in recorded["ids"]]  # a KeyError: the sample left the hold-out
    assert len(sample) == 256
    model = from_pretrained(DEFAULT_DIR)
    scores, applicable = score_ads(model, sample, progress=False)
    config = model.config
    assert config is not None
    thresholds = [p.threshold for p in config.policies]
    ours = measure(config.policy_names, thresholds, scores, applicable, sample, THREE_CLASS_RULE)
    want = recorded["metrics"]
    assert ours.classes is not None
    assert ours.classes["confusion"] == want["classes"]["confusion"]
    assert ours.classes["macro_f1"] == pytest.approx(want["classes"]["macro_f1"], abs=1e-9)
    for name in TEXT_POLICIES:
        got, expected = ours.metrics[name], want["policies"][name]
        assert got["confusion"] == expected["confusion"]
        for key in ("pr_auc", "roc_auc", "ece", "brier"):
            assert got[key] == pytest.approx(expected[key], abs=1e-4), key


def _flags(ads: list[dict]) -> dict[str, np.ndarray]:
    """The shipped default's flag of each text policy for ``ads``: [N] bool per policy."""
    model = from_pretrained(DEFAULT_DIR)
    scores, _ = score_ads(model, ads, progress=False)
    config = model.config
    assert config is not None
    names = config.policy_names
    return {
        name: scores[:, names.index(name)] >= config.policies[names.index(name)].threshold
        for name in TEXT_POLICIES
    }


@pytest.mark.slow
def test_shipped_default_rarely_flags_benign_ad_copy_naming_a_group() -> None:
    ads = benign_ads()
    for name, flagged in _flags(ads).items():
        assert flagged.mean() <= 0.02, name
        for group in {ad["meta"]["group"] for ad in ads}:
            rows = [i for i, ad in enumerate(ads) if ad["meta"]["group"] == group]
            assert flagged[rows].mean() <= 0.05, (name, group)


@pytest.mark.slow
def test_shipped_default_rarely_flags_ad_copy_that_only_looks_offensive() -> None:
    """ "Killer prices", "we exterminate rats", "Black Friday": at most 1 line in 20 flagged."""
    ads = idiom_ads()
    for name, flagged in _flags(ads).items():
        texts = [ads[i]["text"] for i in np.flatnonzero(flagged)]
        assert len(texts) <= len(ads) / 20, (name, texts)


@pytest.mark.slow
def test_shipped_default_passes_every_behavioural_functionality() -> None:
    """The generated HateCheck-style set (never trained on): the 3-class prediction is right
    for at least 60 % of each functionality's tests."""
    tests = behaviour()
    flags = _flags(tests)
    hate, offensive = flags["hate_speech"], flags["offensive_language"]
    by_function: dict[str, list[bool]] = {}
    for i, ad in enumerate(tests):
        predicted = "hate" if hate[i] else "offensive" if offensive[i] else "normal"  # the rule
        by_function.setdefault(ad["meta"]["functionality"], []).append(
            predicted == ad["meta"]["class"]
        )
    accuracy = {name: sum(hits) / len(hits) for name, hits in by_function.items()}
    assert all(value >= 0.6 for value in accuracy.values()), accuracy


# HateCheck (Röttger et al. 2021; README, "HateCheck"), measured 2026-12-06 on the shipped
# default (run L, social-v4): its accuracy per functionality, `hate_speech` flagged <=> hateful.
HATECHECK_MEASURED = {
    "derog_neg_emote_h": 0.829, "derog_neg_attrib_h": 0.721, "derog_dehum_h": 0.893,
    "derog_impl_h": 0.807, "threat_dir_h": 0.895, "threat_norm_h": 0.979, "slur_h": 0.576,
    "slur_homonym_nh": 0.933, "slur_reclaimed_nh": 0.926, "profanity_h": 0.793,
    "profanity_nh": 1.0, "ref_subs_clause_h": 0.9, "ref_subs_sent_h": 0.639,
    "negate_pos_h": 0.807, "negate_neg_nh": 0.774, "phrase_question_h": 0.636,
    "phrase_opinion_h": 0.88, "ident_neutral_nh": 0.802, "ident_pos_nh": 0.899,
    "counter_quote_nh": 0.751, "counter_ref_nh": 0.872, "target_obj_nh": 0.892,
    "target_indiv_nh": 0.754, "target_group_nh": 0.726, "spell_char_swap_h": 0.902,
    "spell_char_del_h": 0.714, "spell_space_del_h": 0.823, "spell_space_add_h": 0.803,
    "spell_leet_h": 0.734,
}  # fmt: skip


@pytest.mark.slow
def test_shipped_default_holds_its_hatecheck_accuracy() -> None:
    """HateCheck's 3 728 cases, written by others and never trained on: no functionality may
    lose more than 2 points (2-3 cases) against what the README reports, nor the whole suite
    more than 1."""
    cases = hatecheck_ads()
    hate = _flags(cases)["hate_speech"]
    right = hate == np.array([ad["meta"]["class"] == "hate" for ad in cases])
    names = np.array([ad["meta"]["functionality"] for ad in cases])
    accuracy = {name: float(right[names == name].mean()) for name in HATECHECK_MEASURED}
    assert right.mean() >= 0.810 - 0.01
    low = {k: v for k, v in accuracy.items() if v < HATECHECK_MEASURED[k] - 0.02}
    assert not low, low


@pytest.mark.slow
def test_hate_anywhere_in_a_long_ad_is_found() -> None:
    """A text past ``max_length`` (128 tokens) is scored on windows over all of it: a hateful
    sentence at its start, middle or end is flagged, the benign copy alone is not."""
    copy = (
        "Visit our new showroom downtown for the best deals on sofas, beds and dining sets. "
        "Free delivery within 20 miles, financing available, and friendly staff to help. "
    ) * 3
    hate = "Muslims are disgusting vermin and should be wiped out. "
    texts = [copy + copy, hate + copy + copy, copy + hate + copy, copy + copy + hate]
    flags = _flags([{"id": str(i), "text": t} for i, t in enumerate(texts)])
    assert flags["hate_speech"].tolist() == [False, True, True, True]


@pytest.fixture(scope="module")
def default_model() -> AdPolicyEnsemble:
    return from_pretrained(DEFAULT_DIR)


def _raw_scores(model: AdPolicyEnsemble, texts: list[str], normalizer: str) -> torch.Tensor:
    """The model's raw scores of ``texts`` with its text normalised by ``normalizer``: [N, P]."""
    assert model.config is not None
    preparer = AdPreparer(model.config, overrides={"text": {"normalizer": normalizer}})
    scorer = Scorer(model, preparer=preparer, batch_size=16)
    scored = scorer.iter_scored({"id": str(i), "text": t} for i, t in enumerate(texts))
    return torch.stack([s.scores for s in scored if s.scores is not None])


@pytest.mark.slow
def test_the_lookalike_reading_leaves_the_scores_of_ascii_text_as_they_were(
    default_model: AdPolicyEnsemble,
) -> None:
    """``social-v3`` replaced ``social-v2`` in the shipped config without retraining: every
    ASCII text (the example ads, the sample copy, the idioms, a slice of the behavioural set)
    scores exactly as under ``social-v2``."""
    examples = Path(__file__).parents[2] / "examples" / "ads.jsonl"
    ads = [json.loads(line) for line in examples.read_text().splitlines() if line.strip()]
    texts = [ad["text"] for ad in ads if "text" in ad] + list(SAMPLE_TEXTS)
    texts += [ad["text"] for ad in idiom_ads() + behaviour()[::20]]
    assert all(t.isascii() for t in texts)
    assert len(texts) > 100
    v3, v2 = (_raw_scores(default_model, texts, n) for n in ("social-v3", "social-v2"))
    assert torch.equal(v3, v2)


BENT = (  # (correct spelling, the same bent by one slip or a left-out space)
    ("Gay people are disgusting", "Gay people are disgsuting"),
    ("I hate women", "I haet women"),
    ("Black people are worthless trash", "Black people are worthles trash"),
    ("Disabled people deserve to suffer", "Disabled people deserve tosuffer"),
    ("Jews are a plague on this country", "Jews are a plauge on this country"),
    ("Kill all the immigrants", "Kill all the immigrnats"),
    ("Typical Muslim behaviour", "Typical Muslimbehaviour"),
)


@pytest.mark.slow
def test_social_v4_scores_a_bent_spelling_as_the_correct_one_and_copy_as_before(
    default_model: AdPolicyEnsemble,
) -> None:
    """``social-v4`` replaced ``social-v3`` in the shipped config without retraining: a word
    bent by one slip or run into the next scores as its correct spelling (under ``social-v3``
    it scored otherwise), and the ordinary copy of the ``social-v3`` test keeps every flag."""
    correct, bent = ([pair[i] for pair in BENT] for i in (0, 1))
    want = _raw_scores(default_model, correct, "social-v4")
    assert torch.equal(_raw_scores(default_model, bent, "social-v4"), want)
    assert not torch.equal(_raw_scores(default_model, bent, "social-v3"), want)
    examples = Path(__file__).parents[2] / "examples" / "ads.jsonl"
    ads = [json.loads(line) for line in examples.read_text().splitlines() if line.strip()]
    texts = [ad["text"] for ad in ads if "text" in ad] + list(SAMPLE_TEXTS)
    texts += [ad["text"] for ad in idiom_ads() + behaviour()[::20]]
    assert default_model.config is not None
    thresholds = torch.tensor([p.threshold for p in default_model.config.policies])
    v4, v3 = (
        _raw_scores(default_model, texts, n) >= thresholds for n in ("social-v4", "social-v3")
    )
    assert torch.equal(v4, v3)


MASKED = (  # written for this test: (masked, plain) profanity in ad copy
    ("Our prices are so low it's f*cking ridiculous.", "Our prices are so low it's fucking ridiculous."),
    ("Sh*t, that's cheap: 2 for 1 burgers", "Shit, that's cheap: 2 for 1 burgers"),
    ("Stop being a lazy a**hole and book your gym induction.", "Stop being a lazy asshole and book your gym induction."),
)  # fmt: skip
STARRED = ("**NEW** 5* rated spa weekend for two", "Ad*Vantage points on every order")


@pytest.mark.slow
def test_social_v5_scores_masked_profanity_as_the_word_and_leaves_starred_copy(
    default_model: AdPolicyEnsemble,
) -> None:
    """``social-v5`` replaced ``social-v4`` in the shipped config without retraining: masked
    profanity scores as the word it hides, flagged offensive and not hate (under ``social-v4``
    its bare remains, ``fcking``, ``sht``, were flagged for nothing); starred copy that hides
    no word scores as before."""
    assert default_model.config is not None
    masked, plain = ([pair[i] for pair in MASKED] for i in (0, 1))
    v5 = _raw_scores(default_model, masked, "social-v5")
    assert torch.equal(v5, _raw_scores(default_model, plain, "social-v5"))
    thresholds = torch.tensor([p.threshold for p in default_model.config.policies])
    columns = [default_model.config.policy_names.index(n) for n in TEXT_POLICIES]
    assert (v5 >= thresholds)[:, columns].tolist() == [[True, False]] * len(MASKED)
    assert not (_raw_scores(default_model, masked, "social-v4") >= thresholds)[:, columns].any()
    starred = [_raw_scores(default_model, list(STARRED), n) for n in ("social-v5", "social-v4")]
    assert torch.equal(*starred)


LOOKALIKE = (  # (Latin spelling, the same with look-alike letters)
    ("Muslims are disgusting vermin", "Mu\u0455l\u0456ms \u0430re d\u0456sgusting vermin"),
    ("I hate all gays", "I h\u0430t\u0435 \u0430ll g\u0430ys"),
    ("kill all the niggers", "k\u0456ll \u0430ll the n\u0456gg\u0435rs"),
    ("Jews are a plague", "J\u0435ws \u0430re \u0430 pl\u0430gu\u0435"),
    ("HATE TRANNIES", "\u0397\u0391\u03a4\u0395 \u03a4R\u0391NNI\u0395S"),  # Greek capitals
    ("fuck you bitch", "f\u00fcck y\u043eu b\u0456tch"),
)


@pytest.mark.slow
def test_a_lookalike_spelling_scores_as_its_latin_spelling(
    default_model: AdPolicyEnsemble,
) -> None:
    latin, spelled = ([pair[i] for pair in LOOKALIKE] for i in (0, 1))
    want = _raw_scores(default_model, latin, "social-v3")
    assert torch.equal(_raw_scores(default_model, spelled, "social-v3"), want)
    assert default_model.config is not None
    hate = default_model.config.policy_names.index("hate_speech")
    before = _raw_scores(default_model, spelled, "social-v2")  # what the look-alikes evaded
    assert (before[:, hate] < want[:, hate]).all()


HARM_KEPT = (  # charity and public-service copy: a harm nobody should suffer
    "No child should go to bed hungry. Donate to our food bank today.",
    "No refugee family should have to sleep in the cold. Give now.",
    "Children should not go hungry.",
    "No one should die because they couldn't afford insulin.",
    "Nobody should be left behind. Adult literacy classes start Monday.",
    "No pet should be abandoned. Adopt, don't shop.",
    "Immigrants should not live in fear. Free legal consultations every Friday.",
)
HARM_WISHED = (  # the same harms wished on a group
    "Let the immigrants starve.",
    "Black people should suffer.",
    "Jews deserve to die.",
    "Muslims should be sent back where they came from.",
)


@pytest.mark.slow
def test_a_harm_kept_from_people_is_not_hate_and_the_same_harm_wished_on_them_is() -> None:
    """Run T flagged "Children should not go hungry." at hate_speech 0.99: it read "should not"
    + a harm as hate. The default since run L reads what is wished, not the negation."""
    flags = _flags([{"id": str(i), "text": t} for i, t in enumerate(HARM_KEPT + HARM_WISHED)])
    kept = len(HARM_KEPT)
    assert not flags["hate_speech"][:kept].any()
    assert not flags["offensive_language"][:kept].any()
    assert flags["hate_speech"][kept:].all()
