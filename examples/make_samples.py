"""Generate the media of the sample ads in examples/ads.jsonl (deterministic, ~2 MB).

Run by `make demo` / `make test`; skipped when the files already exist (use --force to redo).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ensemble import samples

MEDIA = Path(__file__).parent / "media"


def make(force: bool = False) -> list[Path]:
    MEDIA.mkdir(parents=True, exist_ok=True)

    def wanted(name: str) -> Path | None:
        path = MEDIA / name
        return path if force or not path.exists() else None

    made = []
    if p := wanted("sharp_banner.png"):
        samples.banner(1200, 628, seed=1).save(p)
        made.append(p)
    if p := wanted("blurry_banner.jpg"):
        samples.banner(1200, 628, seed=2, blur=6.0).save(p, quality=90)
        made.append(p)
    if p := wanted("tiny_banner.png"):
        samples.banner(300, 250, seed=4).save(p)
        made.append(p)
    if p := wanted("calm_voiceover.wav"):  # about -24 LUFS: the ATSC A/85 target
        made.append(samples.write_audio(p, samples.speech_like(8, amplitude=0.2, seed=7), 48_000))
    if p := wanted("loud_jingle.mp3"):
        made.append(
            samples.write_audio(
                p, samples.tone(6, freqs=(880, 1320), amplitude=0.9, channels=2, noise=0.1), 44_100
            )
        )
    if p := wanted("strobe.mp4"):
        made.append(
            samples.write_video(
                p, samples.flashing_frames(320, 180, fps=30, hz=6), frames=90, fps=30
            )
        )
    if p := wanted("calm.mp4"):
        made.append(
            samples.write_video(p, samples.moving_square(320, 180, fps=30), frames=90, fps=30)
        )
    if p := wanted("corrupt.png"):
        p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
        made.append(p)
    return made


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
