"""Writing result rows as JSONL, CSV or Parquet (chosen by the file suffix)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ensemble.postprocess import flatten

FORMATS = (".jsonl", ".json", ".csv", ".parquet")


def write_results(results: Sequence[dict[str, Any]], output: str | Path) -> Path:
    """Write results; JSONL keeps the nested form, CSV and Parquet one flat row per ad."""
    path = Path(output)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"unsupported output format {suffix!r}; use one of {FORMATS}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".jsonl", ".json"):
        with path.open("w") as f:
            for result in results:
                f.write(json.dumps(result) + "\n")
        return path
    import pandas as pd

    frame = pd.DataFrame([flatten(r) for r in results])
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path
