"""Are the explanations faithful, and what does one cost? (``ensemble.explain``)

Text: a random sample of the labelled texts is scored; on each text a policy flags (at least
``--min-words`` words, at most ``--per-policy`` per policy), the 3 words of highest attribution
are deleted together, and so are 3 words drawn at random. A case counts when deleting the top 3
lowers the policy's score more than deleting the random 3 (a tie does not count).

Image (``low_quality_image``): generated scenes (:func:`ensemble.samples.partly_blurred`: a
640 x 480 banner, soft enough to pass, with a random rectangle of at least 5 x 5 of the map's
7 x 7 cells blurred by 3 px) that the model flags. Two deletions of the top 3 cells against 3
random cells: ``occlude`` fills the cells as the map did (the same occluder, all three at
once); ``restore`` puts back the scene's own pixels, the fix a designer would make.

Cost: the wall time of each ad's explanation (the unaltered copy and every deletion through the
model, tokenizing / preparing included), per ad.

    python -m benchmarks.explain_faithfulness --texts runs/davidson/test.jsonl [--sample 600]
        [--per-policy 150] [--images 40] [--model CHECKPOINT] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.common import Report, markdown_table, percentile
from ensemble import samples
from ensemble.explain import Explainer, grid_boxes, occlude, occluder
from ensemble.reader import read_ads
from ensemble.scoring import load

TOP = 3
BLURRED = 5  # the blurred rectangle spans at least 5 x 5 cells of the 7 x 7 map
FAITHFULNESS_HEADER = (
    "modality",
    "policy",
    "deletion",
    "cases",
    "top 3 beat random 3",
    "mean drop, top 3",
    "mean drop, random 3",
)
COST_HEADER = ("explanation", "ads", "variants per ad", "ms per ad (mean)", "p50", "p90")


def top_and_random(
    attribution: Sequence[float | None], rng: random.Random
) -> tuple[list[int], list[int]]:
    """The ``TOP`` indices of highest attribution and ``TOP`` drawn at random (None left out)."""
    known = [i for i, a in enumerate(attribution) if a is not None]
    ranked = sorted(known, key=lambda i: -float(attribution[i]))  # type: ignore[arg-type]
    return ranked[:TOP], rng.sample(known, TOP)


def without(words: Sequence[str], drop: Sequence[int]) -> str:
    return " ".join(w for i, w in enumerate(words) if i not in set(drop))


def summary(modality: str, policy: str, deletion: str, drops: list[tuple[float, float]]) -> dict:
    top = [t for t, _ in drops]
    rand = [r for _, r in drops]
    return {
        "modality": modality,
        "policy": policy,
        "deletion": deletion,
        "cases": len(drops),
        "share": sum(t > r for t, r in drops) / max(len(drops), 1),
        "mean_drop_top": float(np.mean(top)) if top else 0.0,
        "mean_drop_random": float(np.mean(rand)) if rand else 0.0,
    }


def text_faithfulness(
    explainer: Explainer, path: Path, args: argparse.Namespace, rng: random.Random
) -> tuple[list[dict[str, Any]], list[dict[str, float]]]:
    """Per text policy, the top-3 vs random-3 deletions; and the cost of each explanation."""
    records = [r for r in read_ads(path) if r.error is None]
    chosen = rng.sample(records, min(args.sample, len(records)))
    texts = {r.id: r.ad.get("text") for r in chosen}
    flagged: dict[str, list[tuple[str, str]]] = {}
    for scored in explainer.scorer.iter_scored(chosen, on_error="skip"):
        text = texts[scored.row["id"]]
        if not isinstance(text, str) or len(text.split()) < args.min_words:
            continue
        for policy in scored.row["flags"]:
            if policy in explainer.policies["text"].values():
                flagged.setdefault(policy, []).append((scored.row["id"], text))
    explained: dict[str, dict[str, Any]] = {}
    results = []
    for policy, cases in sorted(flagged.items()):
        j = explainer.scorer.policy_names.index(policy)
        drops = []
        for ad_id, text in cases[: args.per_policy]:
            if ad_id not in explained:
                explained[ad_id] = explainer.text(ad_id, text)
            explanation = explained[ad_id]
            words = explanation["words"]
            top, rand = top_and_random(explanation["attribution"][policy], rng)
            base = explanation["score"][policy]
            after = explainer.modality_scores(
                "text", ad_id, [without(words, top), without(words, rand)]
            )[:, j]
            drops.append((base - float(after[0]), base - float(after[1])))
        results.append(summary("text", policy, "delete words", drops))
    costs = [{"ms": e["ms"], "variants": e["variants"]} for e in explained.values()]
    return results, costs


def image_faithfulness(
    explainer: Explainer, args: argparse.Namespace, rng: random.Random
) -> tuple[list[dict[str, Any]], list[dict[str, float]]]:
    """``low_quality_image``: occlude / restore the top-3 vs random-3 cells of flagged images."""
    policy = "low_quality_image"
    j = explainer.scorer.policy_names.index(policy)
    threshold = explainer.scorer.config.policies[j].threshold
    g = explainer.settings.grid
    drops: dict[str, list[tuple[float, float]]] = {"occlude cells": [], "restore cells": []}
    costs = []
    for seed in range(args.images):
        cells = grid_boxes((640, 480), g)
        r0, c0 = rng.randint(0, g - BLURRED), rng.randint(0, g - BLURRED)
        r1, c1 = rng.randint(r0 + BLURRED, g), rng.randint(c0 + BLURRED, g)
        box = (*cells[r0 * g + c0][:2], *cells[(r1 - 1) * g + c1 - 1][2:])
        image, scene = samples.partly_blurred(640, 480, box, seed=seed)
        explanation = explainer.image(f"image-{seed}", image)
        base = explanation["score"][policy]
        if base < threshold:
            continue
        costs.append({"ms": explanation["ms"], "variants": explanation["variants"]})
        top, rand = top_and_random(np.ravel(explanation["attribution"][policy]).tolist(), rng)
        filler = occluder(image, explainer.settings.occluder, cells[0])

        variants = [
            replaced(image, source, [cells[k] for k in chosen])
            for source in (filler, scene)
            for chosen in (top, rand)
        ]
        after = explainer.modality_scores("image", f"image-{seed}", variants)[:, j].tolist()
        drops["occlude cells"].append((base - after[0], base - after[1]))
        drops["restore cells"].append((base - after[2], base - after[3]))
    return [summary("image", policy, name, d) for name, d in drops.items()], costs


def replaced(
    image: Image.Image, source: Image.Image, boxes: list[tuple[int, int, int, int]]
) -> Image.Image:
    """``image`` with every box taken from ``source``."""
    for box in boxes:
        image = occlude(image, source, box)
    return image


def cost_row(name: str, costs: list[dict[str, float]]) -> list[Any]:
    ms = [c["ms"] for c in costs]
    if not ms:
        return [name, 0, "-", "-", "-", "-"]
    variants = float(np.mean([c["variants"] for c in costs]))
    return [name, len(ms), variants, float(np.mean(ms)), percentile(ms, 0.5), percentile(ms, 0.9)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=Path, required=True, help="labelled texts (JSONL)")
    parser.add_argument("--model", help="checkpoint directory (default: the embedded model)")
    parser.add_argument("--sample", type=int, default=600, help="texts scored at random")
    parser.add_argument("--per-policy", type=int, default=150, help="flagged texts per policy")
    parser.add_argument("--min-words", type=int, default=4, help="shorter texts are left out")
    parser.add_argument("--images", type=int, default=40, help="generated images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", help="results file name (default: explain_faithfulness)")
    args = parser.parse_args()
    report = Report("explain_faithfulness", args.results)
    explainer = Explainer(load(args.model, batch_size=32, workers=1))
    rng = random.Random(args.seed)
    text_results, text_costs = text_faithfulness(explainer, args.texts, args, rng)
    image_results, image_costs = image_faithfulness(explainer, args, rng)
    results = text_results + image_results
    report.print(
        f"{args.sample} random texts of {args.texts.name}, the flagged ones with at least "
        f"{args.min_words} words (at most {args.per_policy} per policy); {args.images} "
        "generated partly blurred images, the flagged ones. A case counts when deleting the "
        f"top {TOP} lowers the score more than deleting {TOP} at random:\n"
    )
    keys = ("modality", "policy", "deletion", "cases", "share")
    rows = [[r[k] for k in keys] + [r["mean_drop_top"], r["mean_drop_random"]] for r in results]
    report.print(markdown_table(FAITHFULNESS_HEADER, rows))
    report.print("\nCost of one explanation (wall time per ad, this machine):\n")
    costs = [
        cost_row("text (words deleted one by one)", text_costs),
        cost_row(
            f"image ({explainer.settings.grid} x {explainer.settings.grid} occlusion)", image_costs
        ),
    ]
    report.print(markdown_table(COST_HEADER, costs))
    report.save(
        {
            "faithfulness": results,
            "cost": [dict(zip(COST_HEADER, row, strict=True)) for row in costs],
            "settings": vars(args) | {"texts": str(args.texts)},
        }
    )


if __name__ == "__main__":
    main()
