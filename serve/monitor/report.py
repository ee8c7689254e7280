"""The drift and quality report: production capture records against a baseline.

Per policy score and per input statistic: population stability index (PSI), Jensen-Shannon
distance and a two-sample Kolmogorov-Smirnov test; per policy the flag rate, per modality the
presence rate, and the error rate, each with a two-proportion z-test; with labels, accuracy,
precision, recall and F1 per policy against the baseline's.

All p-values of one report (KS tests and rate tests) form one family, adjusted with
Benjamini-Hochberg. When nothing drifted, every null hypothesis is true and BH's false
discovery rate equals the chance of any false alarm, so ``alpha`` bounds the false-page rate of
a scheduled job, as Holm would; when something did drift, BH rejects more of the other
drifted quantities than Holm (which guards against any false rejection among them), and those
are what an engineer needs to find the cause. BH's guarantee assumes independent or positively
dependent tests; ours are over different quantities, or over quantities of the same ads that
shift together. Holm would be the choice if every report had to be right about every metric.

A check is judged only when both sides have at least ``min_samples`` values: below that the
numbers are reported, never turned into a violation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

from encoders.base import MODALITIES
from serve.monitor.drift import (
    Distribution,
    benjamini_hochberg,
    bin_counts,
    js_distance,
    ks_test,
    proportion_test,
    psi,
)
from serve.monitor.observe import Observations
from serve.monitor.quality import Labels, labelled_metrics

REPORT_FORMAT = 1


@dataclass(frozen=True)
class Thresholds:
    """When a change is a violation. Defaults, and why (see also the README):

    Attributes:
        psi: PSI above this is a shift (the industry's "significant shift" line; with
            ``min_samples`` values on 10 decile bins, PSI without drift stays below 0.15).
        js: Jensen-Shannon distance (base 2) above this. For small shifts JS^2 ~ PSI / 5.6,
            so 0.2 sits at about the same place as PSI 0.2; 0.1 would fire on sampling noise
            at a few hundred values.
        alpha: Benjamini-Hochberg adjusted p-value below which a test rejects.
        ks_statistic: KS statistic also needed: with the traffic of a day the p-value alone
            flags shifts too small to matter.
        flag_rate_change: Absolute change of a policy's flag rate (0.05 = 5 points).
        presence_change: Absolute change of a modality's presence rate.
        error_rate_change: Increase of the share of ads that failed preparation.
        min_samples: Values each side needs before a check is judged.
        f1_drop: Fall of a policy's F1 from the baseline's (with labels).
        min_labelled: Labelled, scored ads each side needs before F1 is judged.
    """

    psi: float = 0.2
    js: float = 0.2
    alpha: float = 0.01
    ks_statistic: float = 0.1
    flag_rate_change: float = 0.05
    presence_change: float = 0.1
    error_rate_change: float = 0.05
    min_samples: int = 200
    f1_drop: float = 0.1
    min_labelled: int = 100

    def with_overrides(self, pairs: Sequence[str]) -> Thresholds:
        """A copy with ``NAME=VALUE`` overrides (e.g. ``["psi=0.25", "min_samples=50"]``).

        Raises:
            ValueError: An unknown name or a value that is not a number.
        """
        types = {f.name: f.type for f in fields(self)}
        changes: dict[str, Any] = {}
        for pair in pairs:
            name, sep, value = pair.partition("=")
            if not sep or name not in types:
                raise ValueError(
                    f"bad threshold {pair!r}; expected NAME=VALUE, NAME in {sorted(types)}"
                )
            changes[name] = int(value) if types[name] in (int, "int") else float(value)
        return replace(self, **changes)


def _distribution(
    baseline: Mapping[str, Any] | None, values: list[float], min_samples: int
) -> dict[str, Any]:
    base = Distribution.from_json(baseline) if baseline else None
    out: dict[str, Any] = {
        "baseline_count": base.count if base else 0,
        "count": len(values),
        "judged": base is not None and base.count >= min_samples and len(values) >= min_samples,
    }
    if base and values:
        counts = bin_counts(values, base.edges)
        statistic, p = ks_test(base.sample, values)
        out.update(
            psi=psi(base.counts, counts),
            js=js_distance(base.counts, counts),
            ks_statistic=statistic,
            p=p,
            bins={"edges": base.edges, "baseline": base.counts, "production": counts.tolist()},
        )
    return out


def _rate(hits_a: int, total_a: int, hits_b: int, total_b: int, min_samples: int) -> dict[str, Any]:
    rate_a = hits_a / total_a if total_a else None
    rate_b = hits_b / total_b if total_b else None
    return {
        "baseline": rate_a,
        "production": rate_b,
        "change": rate_b - rate_a if rate_a is not None and rate_b is not None else None,
        "p": proportion_test(hits_a, total_a, hits_b, total_b),
        "judged": total_a >= min_samples and total_b >= min_samples,
    }


def _checks(report: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every check of the report (distributions and rates), in a fixed order."""
    for policy in report["policies"].values():
        yield from (policy, policy["flag_rate"])
    yield from report["inputs"].values()
    yield from report["presence"].values()
    yield report["errors"]


def _tested(report: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every check of the report that holds a p-value, in a fixed order."""
    return (e for e in _checks(report) if "p" in e)


def _violation(
    check: str, scope: str, name: str, value: float, limit: float, detail: str
) -> dict[str, Any]:
    return {
        "check": check,
        "scope": scope,
        "name": name,
        "value": value,
        "threshold": limit,
        "message": f"{scope} {name}: {detail}",
    }


def _distribution_violations(
    scope: str, name: str, entry: Mapping[str, Any], t: Thresholds
) -> list[dict[str, Any]]:
    if not entry["judged"] or "p" not in entry:
        return []
    d, p = entry["ks_statistic"], entry["p_adjusted"]
    checks = (
        ("psi", entry["psi"], t.psi, entry["psi"] > t.psi, f"PSI {entry['psi']:.3f} > {t.psi}"),
        ("js", entry["js"], t.js, entry["js"] > t.js, f"JS distance {entry['js']:.3f} > {t.js}"),
        (
            "ks",
            p,
            t.alpha,
            p < t.alpha and d > t.ks_statistic,
            f"KS D={d:.3f} > {t.ks_statistic}, BH-adjusted p={p:.2g} < {t.alpha}",
        ),
    )
    return [
        _violation(check, scope, name, value, limit, detail)
        for check, value, limit, hit, detail in checks
        if hit
    ]


def _rate_violation(
    check: str, scope: str, name: str, entry: Mapping[str, Any], limit: float, alpha: float
) -> list[dict[str, Any]]:
    """A violation when a judged rate moved more than ``limit`` (errors: rose) and the
    adjusted p-value says it is not noise."""
    change = entry["change"]
    if not entry["judged"] or change is None or entry["p_adjusted"] >= alpha:
        return []
    moved = change if check == "error_rate" else abs(change)
    if moved <= limit:
        return []
    detail = (
        f"{check.replace('_', ' ')} {entry['baseline']:.3f} -> {entry['production']:.3f} "
        f"(change {change:+.3f}, limit {limit}, BH-adjusted p={entry['p_adjusted']:.2g})"
    )
    return [_violation(check, scope, name, change, limit, detail)]


def _labelled(
    baseline: Mapping[str, Any], obs: Observations, labels: Labels, t: Thresholds
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per policy the baseline's and production's metrics and the F1 drop; the violations."""
    base = baseline.get("labelled") or {}
    out, found = {}, []
    for policy, metrics in labelled_metrics(obs.scored_ads, labels).items():
        before: dict[str, Any] = base.get(policy) or {}
        f1_before, f1_now = before.get("f1"), metrics["f1"]
        drop = f1_before - f1_now if f1_before is not None and f1_now is not None else None
        judged = drop is not None and min(before["n"], metrics["n"]) >= t.min_labelled
        out[policy] = {
            "baseline": before or None,
            "production": metrics,
            "f1_drop": drop,
            "judged": judged,
        }
        if judged and drop is not None and drop > t.f1_drop:
            detail = f"F1 {f1_before:.3f} -> {f1_now:.3f} (drop {drop:.3f} > {t.f1_drop})"
            found.append(_violation("f1_drop", "policy", policy, drop, t.f1_drop, detail))
    return out, found


def _sections(baseline: Mapping[str, Any], obs: Observations, n: int) -> dict[str, Any]:
    """The policies, inputs, presence and errors sections, before the p-value adjustment."""
    policies = {}
    for policy in sorted(set(baseline["policies"]) | set(obs.scores)):
        base = baseline["policies"].get(policy)
        values = obs.scores.get(policy, [])
        entry = _distribution(base["scores"] if base else None, values, n)
        flagged, count = (base["flagged"], base["scores"]["count"]) if base else (0, 0)
        entry["flag_rate"] = _rate(flagged, count, obs.flagged[policy], len(values), n)
        policies[policy] = entry
    inputs = {
        stat: _distribution(baseline["inputs"].get(stat), obs.inputs.get(stat, []), n)
        for stat in sorted(set(baseline["inputs"]) | set(obs.inputs))
    }
    scored = baseline["scored"]
    presence = {
        m: _rate(round(baseline["presence"][m] * scored), scored, obs.present[m], obs.scored, n)
        for m in MODALITIES
    }
    errors = _rate(baseline["errors"], baseline["records"], obs.errors, obs.records, n)
    return {"policies": policies, "inputs": inputs, "presence": presence, "errors": errors}


def _violations(report: Mapping[str, Any], t: Thresholds) -> list[dict[str, Any]]:
    found = []
    for policy, entry in report["policies"].items():
        found += _distribution_violations("policy", policy, entry, t)
        found += _rate_violation(
            "flag_rate", "policy", policy, entry["flag_rate"], t.flag_rate_change, t.alpha
        )
    for stat, entry in report["inputs"].items():
        found += _distribution_violations("input", stat, entry, t)
    for m, entry in report["presence"].items():
        found += _rate_violation("presence_rate", "modality", m, entry, t.presence_change, t.alpha)
    found += _rate_violation(
        "error_rate", "errors", "all", report["errors"], t.error_rate_change, t.alpha
    )
    return found


def _notes(baseline: Mapping[str, Any], obs: Observations) -> list[str]:
    """What the reader should know that is not a violation (other models, new policies)."""
    expected = f"{baseline['model']['name']} {baseline['model']['version']}"
    notes = [
        f"{model} scored {count} records; the baseline is of {expected}"
        for model, count in obs.models.items()
        if model != expected
    ]
    notes += [
        f"policy {p} is not in the baseline" for p in obs.scores if p not in baseline["policies"]
    ]
    return notes


def compare(
    baseline: Mapping[str, Any],
    obs: Observations,
    *,
    thresholds: Thresholds | None = None,
    labels: Labels | None = None,
) -> dict[str, Any]:
    """The report of production records against a baseline.

    Args:
        baseline: From :func:`serve.monitor.baseline.summarize` (or a manifest's ``baseline``).
        obs: The production capture records, gathered.
        thresholds: Violation thresholds (default: :class:`Thresholds`).
        labels: Ad id -> policy -> 0/1 for some production ads (None: no quality check).

    Returns:
        A JSON-serialisable report: ``policies`` / ``inputs`` (PSI, JS, KS, bins; policies
        also ``flag_rate``), ``presence``, ``errors``, ``labelled``, ``notes``,
        ``violations`` (each with ``check``, ``scope``, ``name``, ``value``, ``threshold``,
        ``message``), ``judged`` (whether any check had enough values to be judged) and
        ``ok`` (some check judged, no violation).
    """
    t = thresholds or Thresholds()
    report: dict[str, Any] = {
        "report_format": REPORT_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "baseline": {
            k: baseline.get(k) for k in ("model", "created", "source", "records", "errors")
        },
        "production": {
            "records": obs.records,
            "errors": obs.errors,
            "first": obs.first,
            "last": obs.last,
            "models": dict(obs.models),
        },
        "thresholds": asdict(t),
        "correction": "benjamini-hochberg",
        **_sections(baseline, obs, t.min_samples),
    }
    tested = list(_tested(report))
    for entry, adjusted in zip(tested, benjamini_hochberg([e["p"] for e in tested]), strict=True):
        entry["p_adjusted"] = adjusted
    violations = _violations(report, t)
    notes = _notes(baseline, obs)
    report["labelled"] = None
    if labels:
        report["labelled"], found = _labelled(baseline, obs, labels, t)
        violations += found
        if not baseline.get("labelled"):
            notes.append("the baseline has no labelled metrics: build it from labelled data")
    judged = any(e["judged"] for e in _checks(report))
    if not judged:
        notes.append(
            f"no check could be judged: each needs {t.min_samples} values on both sides "
            f"(baseline {baseline['records']} records, production {obs.records}); the numbers "
            "are shown, but no verdict"
        )
    report.update(notes=notes, violations=violations, judged=judged, ok=judged and not violations)
    return report
