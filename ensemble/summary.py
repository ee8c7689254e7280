"""The summary of a scoring run, kept as rows go by (memory flat in the number of ads)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ensemble.rows import Row

SHOWN_ADS = 50  # the first ads are listed one by one
SHOWN_ERRORS = 10  # then the first errors among the others


@dataclass
class PolicyTally:
    scored: int = 0
    flagged: int = 0
    review: int = 0
    block: int = 0
    top: float | None = None
    untrained: int = 0
    not_applicable: int = 0

    def merge(self, other: PolicyTally) -> None:
        """Add another run's tally of the same policy."""
        self.scored += other.scored
        self.flagged += other.flagged
        self.review += other.review
        self.block += other.block
        self.untrained += other.untrained
        self.not_applicable += other.not_applicable
        if other.top is not None:
            self.top = max(other.top, self.top or 0.0)


@dataclass
class Summary:
    """Counts of a run: ads, errors, warnings, per-policy tallies; the first ads and the
    first errors after them, one line each.

    Attributes:
        policies: The policies to tally, in order.
        skipped: Ads left out because the output already held them (``--resume``).
    """

    policies: Sequence[str]
    ads: int = 0
    errors: int = 0
    warned: int = 0
    skipped: int = 0
    error_fields: Counter[str] = field(default_factory=Counter)
    shown: list[str] = field(default_factory=list)
    shown_failed: list[bool] = field(default_factory=list)
    tallies: dict[str, PolicyTally] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tallies = {name: PolicyTally() for name in self.policies}

    def add(self, row: Row) -> None:
        self.ads += 1
        self.warned += bool(row["warnings"])
        failed = row["status"] != "ok"
        self._show(_line(row), failed, self.ads)
        if failed:
            self.errors += 1
            self.error_fields.update(e["field"] for e in row.get("errors", []))
            return
        for name, entry in row.get("policies", {}).items():
            tally = self.tallies.get(name)
            if tally is None:
                continue
            if entry["status"] == "scored":
                tally.scored += 1
                tally.flagged += bool(entry["flag"])
                tally.review += entry.get("decision") == "review"
                tally.block += entry.get("decision") == "block"
                tally.top = max(entry["score"], tally.top or 0.0)
            elif entry["status"] == "untrained":
                tally.untrained += 1
            else:
                tally.not_applicable += 1

    def _show(self, line: str, failed: bool, position: int) -> None:
        """Keep the line of the ad at ``position`` (from 1; -1 past ``SHOWN_ADS``) if shown."""
        first = 0 < position <= SHOWN_ADS
        if first or (failed and len(self.shown) < SHOWN_ADS + SHOWN_ERRORS):
            self.shown.append(line)
            self.shown_failed.append(failed)

    def merge(self, later: Summary) -> None:
        """Add the summary of the ads that came after these (a distributed run summarises each
        block on its own and merges the blocks in file order): the same counts, tallies and
        lines shown as if every row had gone through :meth:`add` here."""
        for position, (line, failed) in enumerate(
            zip(later.shown, later.shown_failed, strict=True)
        ):
            # past its first SHOWN_ADS lines, a summary shows errors only, all past SHOWN_ADS
            self._show(line, failed, self.ads + 1 + position if position < SHOWN_ADS else -1)
        self.ads += later.ads
        self.errors += later.errors
        self.warned += later.warned
        self.skipped += later.skipped
        self.error_fields.update(later.error_fields)
        for name, other in later.tallies.items():
            self.tallies.setdefault(name, PolicyTally()).merge(other)

    def table(self, seconds: float) -> str:
        """The ads shown, then per policy how many ads were scored, flagged, sent to review
        and blocked."""
        lines = [
            f"{'ad':<24} {'status':<7} {'decision':<8} scores (* flagged) / errors",
            *self.shown,
            "",
        ]
        lines += [
            f"{'policy':<22} {'scored':>7} {'flagged':>7} {'review':>7} {'block':>7} "
            f"{'max score':>9}  untrained    n/a"
        ]
        for name, t in self.tallies.items():
            top = "-" if t.top is None else f"{t.top:.3f}"
            lines.append(
                f"{name:<22} {t.scored:>7} {t.flagged:>7} {t.review:>7} {t.block:>7} "
                f"{top:>9}  {t.untrained:>9} {t.not_applicable:>6}"
            )
        if self.errors:
            fields = ", ".join(f"{f} {n}" for f, n in self.error_fields.most_common())
            lines += ["", f"errors by field: {fields}"]
        rate = self.ads / seconds if seconds > 0 else 0.0
        resumed = f", {self.skipped} already in the output" if self.skipped else ""
        lines.append(
            f"\n{self.ads} ads, {self.errors} with errors, {self.warned} with warnings{resumed}, "
            f"{seconds:.1f} s ({rate:.1f} ads/s)"
        )
        return "\n".join(lines)


def _line(row: Row) -> str:
    """One ad: its decision and the score of each policy it was scored on (``*``: flagged),
    or its errors."""
    if row["status"] == "ok":
        detail = ", ".join(
            f"{name} {e['score']:.2f}{'*' if e['flag'] else ''}"
            for name, e in row.get("policies", {}).items()
            if e["status"] == "scored"
        )
    else:
        detail = "; ".join(f"{e['field']}: {e['error']}" for e in row.get("errors", []))
    warned = f"  [warnings: {'; '.join(row['warnings'])}]" if row["warnings"] else ""
    decision = row.get("decision", "-")
    return f"{row['id']:<24} {row['status']:<7} {decision:<8} {detail[:300]}{warned}"
