"""Generate the media of the sample ads in examples/ads.jsonl (deterministic, ~2 MB).

Run by `make demo` / `make test`; skipped when the files already exist (use --force to redo).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ensemble import samples

MEDIA = Path(__file__).parent / "media"


def make(force: bool = False) -> list[Path]:
    return samples.write_demo_media(MEDIA, force=force)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--force", action="store_true", help="regenerate existing files")
    args = parser.parse_args()
    made = make(args.force)
    print(
        f"{len(made)} sample media files written to {MEDIA}" if made else "sample media up to date"
    )


if __name__ == "__main__":
    main()
