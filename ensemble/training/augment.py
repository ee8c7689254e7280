"""Training augmentation against the known failure modes of a slur-heavy tweet classifier.

General methods, each producing labelled rows (``meta.augment`` names the method):

- ``identity_swap``: counterfactual copies of training rows that name an identity group, the
  group swapped for another (same label: an attack on any group is an attack, a neutral
  mention of any group is neutral), after Dixon et al. (2018) and Garg et al. (2019).
- ``identity_benign``: neutral and positive sentences and ad copy naming a group: normal.
- ``counter_speech``: negated hate and speech against hate: normal.
- ``hate_template``: explicit derogation, dehumanisation and threats against groups,
  women and disabled people included (under-represented in the sources): hate.
- ``spelling``: copies of hateful and offensive rows whose most class-indicative words
  (highest log-odds against normal rows, counted on the training rows themselves) are
  misspelt: inserted spaces, dropped, swapped or doubled letters: same label.

The templates, word lists and spelling operations here are written apart from the evaluation
sets of :mod:`ensemble.training.textsets` (other sentences, other products); the group names overlap,
as they must.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from encoders.textnorm import social_v1

# (adjective, plural noun) per group.
GROUPS = (
    ("black", "black people"), ("white", "white people"), ("asian", "asians"),
    ("latino", "latinos"), ("hispanic", "hispanics"), ("mexican", "mexicans"),
    ("arab", "arabs"), ("muslim", "muslims"), ("jewish", "jews"), ("christian", "christians"),
    ("hindu", "hindus"), ("sikh", "sikhs"), ("buddhist", "buddhists"), ("gay", "gay men"),
    ("lesbian", "lesbians"), ("bisexual", "bisexual people"), ("transgender", "trans people"),
    ("queer", "queer people"), ("female", "women"), ("male", "men"),
    ("disabled", "disabled people"), ("blind", "blind people"), ("deaf", "deaf people"),
    ("autistic", "autistic people"), ("immigrant", "immigrants"), ("refugee", "refugees"),
    ("african", "africans"), ("chinese", "chinese people"), ("indian", "indians"),
    ("native american", "native americans"), ("elderly", "elderly people"),
    ("nigerian", "nigerians"), ("korean", "koreans"), ("polish", "poles"),
    ("irish", "irish people"), ("pakistani", "pakistanis"), ("somali", "somalis"),
)  # fmt: skip
_BENIGN = (
    "my {adj} neighbour helped me fix the fence today",
    "{noun} have every right to be here",
    "so proud of the {adj} students who graduated this year",
    "i love how welcoming {noun} were when we visited",
    "we are hiring and welcome applications from {noun}",
    "{adj} owned bakery opening downtown this weekend",
    "a documentary about {adj} history airs tonight",
    "my best friend is {adj} and she is the kindest person i know",
    "{noun} contribute so much to our community",
    "new cookbook celebrating {adj} family recipes now available",
    "the festival showcased {adj} musicians and artists",
    "support group for {noun} meets every thursday evening",
    "shop our collection designed with {noun} in mind",
    "free consultation for {adj} entrepreneurs starting a business",
    "our clinic offers care tailored to {noun}",
    "being {adj} is nothing to be ashamed of",
    "{noun} are people just like everyone else",
    "join our {adj} book club for coffee and conversation",
    "discount on travel packages for {adj} families this summer",
    "the panel included several {adj} scientists",
)
_COUNTER = (
    "no {noun} deserve to be treated like that",
    "saying {noun} are animals is disgusting and wrong",
    "i will never accept people calling {noun} vermin",
    "hating {noun} makes no sense at all",
    "stop spreading lies that {noun} are criminals",
    "it is not true that {noun} are stupid",
    "anyone who wants to hurt {noun} should be ashamed",
    "{noun} are not a threat to anyone",
    "i dont think {noun} should be kicked out of the country",
    "there is nothing wrong with being {adj}",
    "people who say {noun} are inferior are just bigots",
    "violence against {noun} has to stop",
)
_HATE = (
    "{noun} are subhuman filth",
    "i despise {noun} they are worthless",
    "{noun} are vermin and should be wiped out",
    "all {noun} should be deported or worse",
    "{noun} are a disease on this country",
    "never trust {noun} they are all liars and thieves",
    "{noun} should not be allowed to breed",
    "i want every one of the {noun} dead",
    "{noun} are disgusting animals",
    "we need to get rid of {noun} for good",
    "the world would be better without {noun}",
    "{noun} are too stupid to be treated as equals",
)
_HATE_WOMEN = (
    "women are too dumb to vote and should stay in the kitchen",
    "females are worthless unless they obey a man",
    "women deserve to be beaten when they talk back",
    "every woman is a lying manipulative whore",
    "girls like her should be put in their place by force",
    "women are inferior and should have no rights",
)
_HATE_DISABLED = (
    "disabled people are a burden and should be put down",
    "retards like him should not be allowed in public",
    "people in wheelchairs are useless parasites",
    "autistic kids are defective and should be locked away",
    "cripples should not be allowed to have children",
    "mentally ill people are subhuman freaks",
)
_SPELLING_OPS = ("space", "drop", "swap", "double")


def _mentions(text: str, phrase: str) -> bool:
    return re.search(rf"\b{re.escape(phrase)}\b", text) is not None


def _swap_identity(ads: Sequence[Mapping[str, Any]], rng: random.Random, limit: int) -> list[dict]:
    words = {noun.split()[0]: noun for _, noun in GROUPS if " " not in noun}
    words.update({adj: adj for adj, _ in GROUPS if " " not in adj})
    plural = [noun for _, noun in GROUPS if " " not in noun]
    adjectives = [adj for adj, _ in GROUPS if " " not in adj]
    out = []
    for ad in rng.sample(list(ads), len(ads)):
        text = social_v1(ad["text"])
        tokens = text.split()
        hits = [i for i, t in enumerate(tokens) if t in words]
        if not hits:
            continue
        i = rng.choice(hits)
        pool = plural if tokens[i] in plural else adjectives
        tokens[i] = rng.choice([w for w in pool if w != tokens[i]])
        out.append(_row(f"{ad['id']}-swap", " ".join(tokens), ad["meta"]["class"], "identity_swap"))
        if len(out) >= limit:
            break
    return out


def _indicative_words(
    ads: Sequence[Mapping[str, Any]], top: int = 80, least: int = 20
) -> list[str]:
    """Words with the highest smoothed log-odds in hateful/offensive rows against normal rows."""
    bad: Counter[str] = Counter()
    good: Counter[str] = Counter()
    for ad in ads:
        words = set(social_v1(ad["text"]).split())
        (good if ad["meta"]["class"] == "normal" else bad).update(words)
    nb, ng = sum(bad.values()), sum(good.values())
    odds = {
        w: math.log((bad[w] + 1) / nb) - math.log((good[w] + 1) / ng)
        for w in bad
        if bad[w] >= least and len(w) >= 4 and w.isalpha()
    }
    return sorted(odds, key=odds.__getitem__, reverse=True)[:top]


def misspell(word: str, op: str, rng: random.Random) -> str:
    """One spelling variant of ``word`` (kept readable: the first letter stays)."""
    i = rng.randrange(1, len(word) - 1)
    if op == "space":
        return word[:i] + " " + word[i:]
    if op == "drop":
        return word[:i] + word[i + 1 :]
    if op == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i] + word[i:]


def _spelling(ads: Sequence[Mapping[str, Any]], rng: random.Random, limit: int) -> list[dict]:
    words = set(_indicative_words(ads))
    out = []
    for ad in rng.sample(list(ads), len(ads)):
        if ad["meta"]["class"] == "normal":
            continue
        tokens = social_v1(ad["text"]).split()
        hits = [i for i, t in enumerate(tokens) if t in words]
        if not hits:
            continue
        for i in hits:
            tokens[i] = misspell(tokens[i], rng.choice(_SPELLING_OPS), rng)
        out.append(_row(f"{ad['id']}-spell", " ".join(tokens), ad["meta"]["class"], "spelling"))
        if len(out) >= limit:
            break
    return out


def _templated(
    templates: Sequence[str], cls: str, kind: str, rng: random.Random, per: int
) -> list[dict]:
    out = []
    for t, template in enumerate(templates):
        for g, (adj, noun) in enumerate(rng.sample(GROUPS, min(per, len(GROUPS)))):
            text = template.format(adj=adj, noun=noun)
            out.append(_row(f"aug-{kind}-{t}-{g}", text, cls, kind))
    return out


def _row(ad_id: str, text: str, cls: str, kind: str) -> dict[str, Any]:
    labels = {
        "hate": {"hate_speech": 1, "offensive_language": 1},
        "offensive": {"hate_speech": 0, "offensive_language": 1},
        "normal": {"hate_speech": 0, "offensive_language": 0},
    }[cls]
    return {
        "id": ad_id,
        "text": text,
        "labels": dict(labels),
        "meta": {"class": cls, "augment": kind},
    }


def augmentations(ads: Sequence[Mapping[str, Any]], *, seed: int = 42) -> list[dict[str, Any]]:
    """Augmented training rows for ``ads`` (training rows with ``meta.class``), deterministic.

    Returns about 7,000 rows: see the module docstring for the methods.
    """
    rng = random.Random(seed)
    out = _swap_identity(ads, rng, limit=1500)
    out += _spelling(ads, rng, limit=1500)
    out += _templated(_BENIGN, "normal", "identity_benign", rng, per=len(GROUPS))
    out += _templated(_COUNTER, "normal", "counter_speech", rng, per=30)
    out += _templated(_HATE, "hate", "hate_template", rng, per=20)
    for k, text in enumerate(_HATE_WOMEN + _HATE_DISABLED):
        for r in range(5):  # the same sentence a few times: these targets are rare in the sources
            out.append(_row(f"aug-hate-target-{k}-{r}", text, "hate", "hate_template"))
    return out
