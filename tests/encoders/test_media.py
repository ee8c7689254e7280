"""Reading and decoding media: every accepted form, every refusal naming its field."""

from __future__ import annotations

import base64
import io
import struct
import warnings
import zlib
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from encoders.audio import AudioPreparer, AudioSettings
from encoders.base import InputError
from encoders.media import (
    WARNINGS,
    MediaLimits,
    decode_audio,
    decode_image,
    decode_video,
    read_media,
)
from encoders.video import VideoModelEncoder, VideoPreparer, VideoSettings
from ensemble import samples
from tests.wavfile import wav_bytes

LIMITS = MediaLimits()


def _png(width: int = 40, height: int = 30) -> bytes:
    return samples.png_bytes(samples.banner(width, height))


def test_read_media_accepts_every_form(tmp_path) -> None:
    data = _png()
    (tmp_path / "a.png").write_bytes(data)
    b64 = base64.b64encode(data).decode()
    forms = [
        data,
        "a.png",
        {"path": "a.png"},
        {"base64": b64},
        f"data:image/png;base64,{b64}",
    ]
    for value in forms:
        assert (
            read_media(value, "image", base_dir=tmp_path, allow_paths=True, limits=LIMITS) == data
        )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"base64": "not base64!!"}, "invalid base64"),
        ({"base64": 12}, "must be a string"),
        ({"url": "http://example.com/a.png"}, "got keys"),
        (42, "got int"),
        ("missing.png", "cannot read"),
        ("data:image/png,abc", "base64-encoded"),
        (b"", "empty"),
    ],
)
def test_read_media_refusals_name_the_field(tmp_path, value, message) -> None:
    with pytest.raises(InputError, match=message) as info:
        read_media(value, "image", base_dir=tmp_path, allow_paths=True, limits=LIMITS)
    assert info.value.field == "image"


def test_paths_are_refused_when_not_allowed(tmp_path) -> None:
    (tmp_path / "a.png").write_bytes(_png())
    with pytest.raises(InputError, match="not accepted here"):
        read_media("a.png", "image", base_dir=tmp_path, allow_paths=False, limits=LIMITS)


def test_oversized_payload_is_413() -> None:
    limits = MediaLimits(max_image_bytes=100)
    with pytest.raises(InputError) as info:
        read_media(b"x" * 101, "image", base_dir=None, allow_paths=False, limits=limits)
    assert info.value.status == 413
    with pytest.raises(InputError, match="exceeds"):
        read_media(
            {"base64": "QUFB" * 100}, "image", base_dir=None, allow_paths=False, limits=limits
        )


def test_decode_image_converts_and_refuses_bombs() -> None:
    img = decode_image(samples.png_bytes(Image.new("L", (50, 20), 128)), LIMITS)
    assert img.mode == "RGB"
    assert img.size == (50, 20)
    with pytest.raises(InputError, match="pixels exceeds") as info:
        decode_image(_png(100, 100), MediaLimits(max_pixels=5000))
    assert info.value.status == 413
    with pytest.raises(InputError, match="cannot decode image"):
        decode_image(b"GIF89a garbage", LIMITS)


@pytest.mark.parametrize(
    ("scale", "dtype", "fmt"),
    [
        (257, np.uint16, "PNG"),
        (257, np.uint16, "TIFF"),
        (1 / 255, np.float32, "TIFF"),
        (1, np.int32, "TIFF"),
    ],
)
def test_deep_grey_images_decode_to_the_same_pixels_as_8_bit(scale, dtype, fmt) -> None:
    """A 16-bit PNG (or a float / 32-bit TIFF) of a picture decodes to that picture's 8-bit
    pixels: Pillow's own conversion clips every value above 255 to white."""
    import io

    grey = np.asarray(samples.banner(64, 48).convert("L"))
    buf = io.BytesIO()
    Image.fromarray((grey.astype(np.float64) * scale).astype(dtype)).save(buf, fmt)
    img = decode_image(buf.getvalue(), LIMITS)
    assert img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img)[..., 0], grey)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3", ".m4a"])
def test_decode_audio_formats(tmp_path, suffix) -> None:
    wave = samples.tone(1.0, rate=22_050, freqs=(440.0,), amplitude=0.5, channels=2)
    path = samples.write_audio(tmp_path / f"a{suffix}", wave, 22_050)
    clip = decode_audio(path.read_bytes(), LIMITS)
    assert clip.sample_rate == 22_050
    assert clip.samples.shape[0] == 2
    assert abs(clip.duration - 1.0) < 0.1  # lossy codecs pad a few frames
    rms = float(np.sqrt(np.mean(clip.samples**2)))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


@pytest.mark.parametrize(("container", "subtype"), [("WAV", "GSM610"), ("WAV", "G721_32")])
def test_telephony_codecs_libsndfile_cannot_seek_in_are_decoded_whole(container, subtype) -> None:
    """GSM 6.10 and G.721 in a WAV (voicemail, telephony exports) are files libsndfile
    cannot seek in: read in one call they raised a ValueError, an internal error."""
    out = io.BytesIO()
    wave = samples.tone(3.0, rate=8000, freqs=(440.0,), amplitude=0.5)
    soundfile.write(out, wave, 8000, format=container, subtype=subtype)
    clip = decode_audio(out.getvalue(), LIMITS)
    assert clip.sample_rate == 8000
    assert clip.duration == pytest.approx(3.0, abs=0.05)
    rms = float(np.sqrt(np.mean(clip.samples**2)))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_decode_audio_refuses_corrupt_and_too_long(tmp_path) -> None:
    with pytest.raises(InputError, match="cannot decode audio") as info:
        decode_audio(b"RIFF\x00\x00\x00\x00WAVEgarbage", LIMITS)
    assert info.value.field == "audio"
    path = samples.write_audio(tmp_path / "long.wav", samples.tone(3.0, rate=8000), 8000)
    with pytest.raises(InputError, match="exceeds the limit of 2 s"):
        decode_audio(path.read_bytes(), MediaLimits(max_seconds=2))


@pytest.mark.parametrize("suffix", [".m4a", ".aac"])
def test_audio_of_exactly_the_limit_is_taken_whole_despite_encoder_padding(
    tmp_path, suffix
) -> None:
    """An AAC encoder pads a 2.0 s clip to whole frames (it decodes longer than 2 s): it is no
    longer refused as over a 2 s limit; the padding past it is cut, with a warning."""
    limits = MediaLimits(max_seconds=2)
    path = samples.write_audio(tmp_path / f"two{suffix}", samples.tone(2.0, rate=48_000), 48_000)
    clip = decode_audio(path.read_bytes(), limits)
    assert clip.samples.shape[1] == 96_000
    (warning,) = clip.warnings
    assert warning.startswith("audio: its last ")
    assert warning.endswith(" ms, past the 2 s limit, not scored")
    longer = samples.write_audio(tmp_path / f"x{suffix}", samples.tone(2.2, rate=48_000), 48_000)
    with pytest.raises(InputError, match="exceeds the limit of 2 s"):
        decode_audio(longer.read_bytes(), limits)


def test_audio_preparer_crops_pads_and_records_length(tmp_path) -> None:
    settings = AudioSettings(clip_seconds=1.0)
    preparer = AudioPreparer(settings)
    short = decode_audio(
        samples.write_audio(
            tmp_path / "s.wav", samples.tone(0.5, rate=48_000), 48_000
        ).read_bytes(),
        LIMITS,
    )
    out = preparer.prepare(short)
    assert out["waveform"].shape == (8_000 + settings.guard_samples,)  # collation pads it
    assert int(out["length"]) == 8_000
    assert out["waveform"][8_100:].abs().max() == 0
    long = decode_audio(
        samples.write_audio(tmp_path / "l.wav", samples.tone(2.0, rate=8_000), 8_000).read_bytes(),
        LIMITS,
    )
    assert int(preparer.prepare(long)["length"]) == 16_000


def test_decode_video_samples_uniformly(tmp_path) -> None:
    def frame_at(i: int) -> np.ndarray:
        return np.full((48, 64, 3), i * 8, np.uint8)  # brightness encodes the frame index

    path = samples.write_video(tmp_path / "v.mp4", frame_at, frames=30, fps=10)
    preparer = VideoPreparer(VideoSettings(num_frames=4, frame_size=32), ((0.0,) * 3, (1.0,) * 3))
    (out,), info = decode_video(path.read_bytes(), [preparer], LIMITS)
    assert info.num_frames == 30
    assert info.fps == pytest.approx(10.0)
    frames = out["frames"]
    assert frames.shape == (4, 3, 32, 32)
    centre = frames[:, :, 16, 16].mean(dim=1) * 255 / 8  # picks 0, 10, 19, 29
    assert torch.allclose(centre, torch.tensor([0.0, 10.0, 19.0, 29.0]), atol=1.0)


def test_decode_video_refuses_corrupt_and_too_long(tmp_path) -> None:
    preparer = VideoPreparer(VideoSettings(), VideoModelEncoder.mean_std)
    with pytest.raises(InputError, match="cannot decode video"):
        decode_video(b"\x00\x00\x00\x18ftypmp42garbage", [preparer], LIMITS)
    path = samples.write_video(
        tmp_path / "v.mp4", samples.moving_square(64, 48, fps=10), frames=30, fps=10
    )
    with pytest.raises(InputError, match=r"duration 3\.0 s exceeds") as info:
        decode_video(path.read_bytes(), [preparer], MediaLimits(max_seconds=2))
    assert info.value.status == 413


@pytest.mark.parametrize(
    ("name", "codec", "fps"), [("s.h264", "libx264", 60), ("s.m2v", "mpeg2video", 30)]
)
def test_a_raw_elementary_stream_runs_at_its_own_declared_rate(tmp_path, name, codec, fps) -> None:
    """A raw H.264 or MPEG-2 stream states no duration or frame count, and its demuxer
    reports 25 fps whatever the stream is: its sequence header's rate is the one to count a
    strobe's flashes per second with."""
    strobe = lambda i: np.full((32, 32, 3), 255 * (i % 2), np.uint8)  # noqa: E731
    path = samples.write_video(tmp_path / name, strobe, frames=fps, fps=fps, codec=codec)
    preparer = VideoPreparer(VideoSettings(num_frames=4, frame_size=32), ((0.0,) * 3, (1.0,) * 3))
    _, info = decode_video(path.read_bytes(), [preparer], LIMITS)
    assert (info.fps, info.num_frames, info.seconds) == (pytest.approx(fps), fps, None)


def test_a_video_stating_no_duration_is_refused_past_the_limit_not_cut(tmp_path) -> None:
    """Without a stated duration the limit is found while decoding; such a video is refused
    as any longer video is (413), not scored on its first seconds with a warning: a strobe
    after the cut would go unseen."""
    grey = lambda i: np.full((32, 32, 3), 128, np.uint8)  # noqa: E731
    path = samples.write_video(tmp_path / "long.h264", grey, frames=60, fps=60)
    preparer = VideoPreparer(VideoSettings(num_frames=4, frame_size=32), ((0.0,) * 3, (1.0,) * 3))
    with pytest.raises(InputError, match=r"duration 0\.533 s exceeds the limit of 0\.5 s") as info:
        decode_video(path.read_bytes(), [preparer], MediaLimits(max_seconds=0.5))
    assert (info.value.field, info.value.status) == ("video", 413)


class _Pipe(io.RawIOBase):
    """A write-only stream that cannot seek: what a live recorder writes Matroska to."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.data += bytes(b)
        return len(b)


def test_a_matroska_video_stating_no_duration_keeps_its_rate_and_its_limit() -> None:
    """Matroska states no frame count or track duration, and its H.264 header a 1/1000 time
    base: the raw-stream rule read such files at 1000 fps, so a 3 s live-written MKV passed a
    2 s limit whole. Only raw elementary streams are timed by their sequence header."""
    pipe = _Pipe()
    with av.open(pipe, "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=Fraction(30))
        stream.width = stream.height = 32
        stream.pix_fmt, stream.options = "yuv420p", {"preset": "ultrafast"}
        stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(90):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 128, np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(i * 1000 / 30), Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    preparer = VideoPreparer(VideoSettings(num_frames=4, frame_size=32), ((0.0,) * 3, (1.0,) * 3))
    _, info = decode_video(bytes(pipe.data), [preparer], LIMITS)
    assert (info.fps, info.num_frames, info.seconds) == (pytest.approx(30.0), 90, None)
    with pytest.raises(InputError, match=r"exceeds the limit of 2 s"):
        decode_video(bytes(pipe.data), [preparer], MediaLimits(max_seconds=2))


def test_an_animation_as_video_is_scored_as_its_image_is_and_a_cut_one_plays_what_decoded() -> None:
    """A 16-bit grey PNG as video came out white (Pillow's clipping conversion: the image
    path scales it); a GIF cut short was refused whole where FFmpeg had played its frames;
    600 frames of 100 ms were refused as over 60 s (float sums)."""
    preparer = VideoPreparer(VideoSettings(num_frames=4, frame_size=32), ((0.0,) * 3, (1.0,) * 3))
    deep = io.BytesIO()
    Image.fromarray(np.full((32, 32), 32_768, np.uint16)).save(deep, "PNG")
    (out,), _ = decode_video(deep.getvalue(), [preparer], LIMITS)
    assert float(out["frames"].mean()) == pytest.approx(128 / 255, abs=0.01)
    frames = [Image.new("L", (32, 32), 8 * (i % 30)) for i in range(600)]
    whole = io.BytesIO()
    frames[0].save(whole, "GIF", save_all=True, append_images=frames[1:], duration=100)
    _, info = decode_video(whole.getvalue(), [preparer], LIMITS)  # exactly the 60 s limit
    assert (info.num_frames, info.seconds, info.warnings) == (600, pytest.approx(60.0), ())
    (out,), info = decode_video(whole.getvalue()[: len(whole.getvalue()) // 3], [preparer], LIMITS)
    assert 100 < info.num_frames < 300
    [warning] = info.warnings
    assert warning.startswith(f"video: decoding stopped after {info.num_frames} frames")


def test_an_animation_too_big_for_pillow_is_refused_as_video_too() -> None:
    """A GIF whose header claims 30000 x 30000 frames, sent as video, is refused (413) as it
    is as an image, not failed as an internal error."""
    gif = b"GIF89a" + struct.pack("<HH", 30_000, 30_000) + b"\x00\x00\x00,"
    gif += struct.pack("<HHHH", 0, 0, 30_000, 30_000) + b"\x00\x02\x02D\x01\x00;"
    preparer = VideoPreparer(VideoSettings(num_frames=4, frame_size=32), ((0.0,) * 3, (1.0,) * 3))
    with pytest.raises(InputError, match="exceed the limit") as info:
        decode_video(gif, [preparer], LIMITS)
    assert (info.value.field, info.value.status) == ("video", 413)


def _matroska(
    path: Path, videos: Sequence[tuple[int, Callable[[int], np.ndarray]]], audio_s: float = 0.0
) -> bytes:
    """A Matroska file: a 10 fps 32x32 video track per (frames, frame_at) of ``videos``, then
    a silent AAC track of ``audio_s`` (Matroska's track headers state no duration)."""
    with av.open(str(path), "w", format="matroska") as out:
        tracks = []
        for frames, frame_at in videos:
            stream = out.add_stream("mpeg4", rate=10)
            stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
            tracks.append((stream, frames, frame_at))
        audio = out.add_stream("aac", rate=8000, layout="mono") if audio_s else None
        for stream, frames, frame_at in tracks:
            for i in range(frames):
                frame = av.VideoFrame.from_ndarray(frame_at(i), format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, 10)
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        if audio is not None:
            size = audio.codec_context.frame_size or 1024
            for start in range(0, int(audio_s * 8000), size):
                block = av.AudioFrame.from_ndarray(np.zeros((1, size), np.float32), "fltp", "mono")
                block.sample_rate, block.pts = 8000, start
                out.mux(audio.encode(block))
            out.mux(audio.encode(None))
    return path.read_bytes()


def test_a_matroska_video_is_as_long_as_its_own_track_not_its_longer_audio(tmp_path) -> None:
    grey = lambda i: np.full((32, 32, 3), 8 * i, np.uint8)  # noqa: E731
    data = _matroska(tmp_path / "v.webm", [(10, grey)], audio_s=3.0)
    preparer = VideoPreparer(VideoSettings(num_frames=4, frame_size=32), ((0.0,) * 3, (1.0,) * 3))
    _, info = decode_video(data, [preparer], MediaLimits(max_seconds=2))
    assert (info.num_frames, info.seconds, info.warnings) == (10, pytest.approx(1.0), ())


def test_the_longest_video_track_is_analysed_not_a_still_before_it(tmp_path) -> None:
    still = lambda i: np.zeros((32, 32, 3), np.uint8)  # noqa: E731
    strobe = lambda i: np.full((32, 32, 3), 255 * (i % 2), np.uint8)  # noqa: E731
    data = _matroska(tmp_path / "v.mkv", [(1, still), (20, strobe)])
    preparer = VideoPreparer(VideoSettings(num_frames=4, frame_size=32), ((0.0,) * 3, (1.0,) * 3))
    (out,), info = decode_video(data, [preparer], LIMITS)
    assert info.num_frames == 20
    assert out["frames"].amax() > 0.5  # the strobe's white frames, not the black still


def test_a_data_uri_scheme_is_case_insensitive_and_a_long_path_is_shortened(tmp_path) -> None:
    data = _png()
    payload = base64.b64encode(data).decode()
    for scheme in ("DATA:", "Data:"):
        uri = f"{scheme}image/png;BASE64,{payload}"
        assert read_media(uri, "image", base_dir=tmp_path, allow_paths=True, limits=LIMITS) == data
    with pytest.raises(InputError, match=r"cannot read 'x{100}\.\.\.x{100}' \(5000 characters\)"):
        read_media("x" * 5000, "image", base_dir=tmp_path, allow_paths=True, limits=LIMITS)


def test_a_plain_base64_string_is_media_where_paths_are_not_accepted() -> None:
    data = _png()
    value = base64.b64encode(data).decode()
    assert read_media(value, "image", base_dir=None, allow_paths=False, limits=LIMITS) == data


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("../outside.png", "outside the folder of the ads file"),
        ("/etc/hostname", "outside the folder of the ads file"),
        ("https://example.com/a.png", "URLs are not fetched"),
        ("a\x00.png", "NUL"),
        ("  ", "empty"),
    ],
)
def test_offline_paths_stay_in_the_folder_of_the_file(tmp_path, path, problem) -> None:
    folder = tmp_path / "ads"
    folder.mkdir()
    (tmp_path / "outside.png").write_bytes(_png())
    with pytest.raises(InputError, match=problem):
        read_media(path, "image", base_dir=folder, allow_paths=True, limits=LIMITS)
    if "outside" in problem:  # unless any path is allowed
        read_media(path, "image", base_dir=folder, allow_paths=True, limits=LIMITS, any_path=True)


def test_a_media_folder_behind_a_symbolic_link_is_refused_naming_where_it_leads(
    tmp_path, monkeypatch
) -> None:
    """A path written inside the ads folder that a symbolic link takes outside it is refused
    as any path outside is, and the error shows where the link leads (the user sees a path
    inside their folder and must learn why it is "outside")."""
    shared = tmp_path / "shared-media"
    shared.mkdir()
    (shared / "banner.png").write_bytes(_png())
    folder = tmp_path / "ads"
    folder.mkdir()
    (folder / "media").symlink_to(shared, target_is_directory=True)
    with pytest.raises(InputError) as info:
        read_media("media/banner.png", "image", base_dir=folder, allow_paths=True, limits=LIMITS)
    assert info.value.problem == (
        f"'media/banner.png' leads through a symbolic link to "
        f"{str(shared.resolve() / 'banner.png')!r}, which is outside the folder of the ads file (allow it with --allow-any-path)"
    )
    with pytest.raises(InputError, match=r"^image: '\.\./x\.png' is outside the folder"):
        read_media("../x.png", "image", base_dir=folder, allow_paths=True, limits=LIMITS)
    monkeypatch.chdir(tmp_path)  # the ads folder named relatively, as `adpolicy score ads/...`
    with pytest.raises(InputError, match=r"^image: '\.\./x\.png' is outside the folder"):
        read_media("../x.png", "image", base_dir=Path("ads"), allow_paths=True, limits=LIMITS)
    read_media(
        "media/banner.png", "image", base_dir=folder, allow_paths=True, limits=LIMITS, any_path=True
    )


def _wav(channels: int, frames: int = 8000) -> bytes:
    import io

    import soundfile

    out = io.BytesIO()
    soundfile.write(out, np.full((frames, channels), 0.1, np.float32), 8000, format="WAV")
    return out.getvalue()


def test_audio_warnings_and_channel_limits() -> None:
    surround = decode_audio(_wav(6), LIMITS)  # every channel kept, named in the standard order
    assert surround.samples.shape == (6, 8000)
    assert surround.warnings == ()
    assert surround.channel_names == ("FL", "FR", "FC", "LFE", "BL", "BR")
    cut = _wav(2)
    assert "could be decoded" in decode_audio(cut[: len(cut) // 2], LIMITS).warnings[0]
    assert decode_audio(cut, LIMITS).warnings == ()
    with pytest.raises(InputError, match="9 channels; 1 to 8"):
        decode_audio(_wav(9), LIMITS)


def test_a_cut_mp3_decodes_with_a_warning_of_how_much() -> None:
    """An MP3 cut in half still declares its whole length (its Xing header): the half that
    decodes is scored, and the row says only that much could be."""
    out = io.BytesIO()
    tone = np.sin(np.arange(48_000 * 10) * 2 * np.pi * 440 / 48_000).astype(np.float32)
    soundfile.write(out, 0.3 * tone, 48_000, format="MP3")
    whole = out.getvalue()
    assert decode_audio(whole, LIMITS).warnings == ()
    (warning,) = decode_audio(whole[: len(whole) // 2], LIMITS).warnings
    assert warning.startswith("audio: only 4.")
    assert warning.endswith("of the 10 seconds it declares could be decoded")


def test_transparency_is_flattened_onto_white_with_a_warning() -> None:
    clear = samples.png_bytes(Image.new("RGBA", (8, 8), (255, 0, 0, 0)))
    image = decode_image(clear, LIMITS)
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.info[WARNINGS] == ["image: transparent pixels flattened onto white"]
    assert decode_image(_png(), LIMITS).info[WARNINGS] == []


def test_a_16_bit_grey_png_with_a_transparency_key_is_flattened_onto_white() -> None:
    """PNG's tRNS can name one 16-bit grey value transparent. Scaling to 8 bits rebuilt the
    image without it: its transparent pixels were scored as the black they store, unsaid."""
    values = np.zeros((20, 30), np.uint16)
    values[:, 15:] = 40_000
    out = io.BytesIO()
    Image.fromarray(values).save(out, "PNG", transparency=0)  # mode I;16
    img = decode_image(out.getvalue(), LIMITS)
    assert img.info[WARNINGS] == ["image: transparent pixels flattened onto white"]
    pixels = np.asarray(img)
    assert (pixels[:, :15] == 255).all()  # the keyed black is white
    assert (pixels[:, 15:] == round(40_000 / 257)).all()


def test_an_animated_image_is_scored_on_its_first_frame_with_a_warning() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue", "green")]
    for fmt in ("GIF", "PNG", "WEBP"):
        out = io.BytesIO()
        frames[0].save(out, fmt, save_all=True, append_images=frames[1:], duration=100)
        image = decode_image(out.getvalue(), LIMITS)
        assert image.info[WARNINGS] == [
            "image: animated (3 frames); scored on its first (send it as video to have every "
            "frame checked, for flashing too)"
        ], fmt
        red = np.abs(np.asarray(image, np.int64) - (255, 0, 0)).max()  # WebP is lossy
        assert red <= 2, fmt  # the first frame
    out = io.BytesIO()
    frames[0].save(out, "TIFF", save_all=True, append_images=frames[1:])
    assert decode_image(out.getvalue(), LIMITS).info[WARNINGS] == [
        "image: 3 pages; scored on its first"
    ]


def test_object_store_uris_are_read_offline_and_refused_on_a_server(tmp_path) -> None:
    """An object-store URI (here ``file://``, through the same pyarrow filesystems as s3://,
    gs:// and hdfs://) is read where ``uris`` is on; a server treats it as bad base64."""
    image = tmp_path / "media" / "banner.png"
    image.parent.mkdir()
    image.write_bytes(_png())
    uri = image.as_uri()
    for value in (uri, {"path": uri}):
        got = read_media(value, "image", base_dir=None, allow_paths=False, limits=LIMITS, uris=True)
        assert got == image.read_bytes()
    with pytest.raises(InputError, match="invalid base64"):
        read_media(uri, "image", base_dir=None, allow_paths=False, limits=LIMITS)
    with pytest.raises(InputError, match="URLs are not fetched"):  # off: never opened
        read_media(uri, "image", base_dir=tmp_path, allow_paths=True, limits=LIMITS)
    missing = (tmp_path / "none.png").as_uri()
    with pytest.raises(InputError, match="not a file in its store") as info:
        read_media(missing, "image", base_dir=None, allow_paths=True, limits=LIMITS, uris=True)
    assert info.value.field == "image"
    small = MediaLimits(max_image_bytes=10)
    with pytest.raises(InputError, match="exceeds the limit of 10") as info:
        read_media(uri, "image", base_dir=None, allow_paths=True, limits=small, uris=True)
    assert info.value.status == 413


def test_a_file_uri_is_held_to_the_ads_folder_as_a_path_is(tmp_path) -> None:
    """``file://`` names a local file: outside the ads file's folder it is refused unless any
    path is allowed, as the same file named by its path is."""
    ads = tmp_path / "ads"
    (ads / "media").mkdir(parents=True)
    inside = ads / "media" / "banner.png"
    outside = tmp_path / "secret.png"
    for image in (inside, outside):
        image.write_bytes(_png())

    def read(value: object, **kwargs: bool) -> bytes:
        return read_media(
            value, "image", base_dir=ads, allow_paths=True, limits=LIMITS, uris=True, **kwargs
        )

    assert read(inside.as_uri()) == read({"path": inside.as_uri()}) == _png()
    assert read(inside) == read(Path("media/banner.png")) == _png()  # pathlib, as Python passes
    for value in (outside.as_uri(), {"path": outside.as_uri()}, str(outside), outside):
        with pytest.raises(InputError, match="outside the folder of the ads file") as info:
            read(value)
        assert info.value.field == "image"
    assert read(outside.as_uri(), any_path=True) == _png()


def test_channel_layouts_come_from_the_file() -> None:
    """A WAV's WAVE_FORMAT_EXTENSIBLE mask names its channels (a mask naming fewer channels
    than the file has gives the standard order); FLAC and OGG are read by PyAV, which names
    them in FFmpeg's order (OGG Vorbis stores 5.1 as L C R Ls Rs LFE: reordered)."""
    frames = np.zeros((4800, 6))
    frames[:, 1] = 0.5  # the file's second channel
    assert decode_audio(wav_bytes(frames, 48_000, mask=0x60F), LIMITS).layout == (
        "FL", "FR", "FC", "LFE", "SL", "SR",
    )  # fmt: skip
    assert decode_audio(wav_bytes(frames, 48_000, mask=0x3), LIMITS).layout == ()
    for fmt, layout, loud in (
        ("FLAC", ("FL", "FR", "FC", "LFE", "SL", "SR"), 1),
        ("OGG", ("FL", "FR", "FC", "LFE", "BL", "BR"), 2),  # Vorbis's second channel is C
    ):
        out = io.BytesIO()
        soundfile.write(out, frames, 48_000, format=fmt)
        clip = decode_audio(out.getvalue(), LIMITS)
        assert clip.layout == layout, fmt
        assert int(np.abs(clip.samples).max(1).argmax()) == loud, fmt


def test_eight_channels_through_pyav_decode_in_their_order() -> None:
    """7.1 FLAC goes through PyAV, whose planar 8-channel frames crashed the process; each
    channel keeps its own samples."""
    frames = np.zeros((4800, 8))
    for channel in range(8):
        frames[:, channel] = (channel + 1) / 10
    out = io.BytesIO()
    soundfile.write(out, frames, 48_000, format="FLAC")
    clip = decode_audio(out.getvalue(), LIMITS)
    assert clip.samples.shape == (8, 4800)
    assert len(clip.layout) == 8
    np.testing.assert_allclose(clip.samples.mean(1), np.arange(1, 9) / 10, atol=1e-4)


def test_wav_sizes_a_streaming_writer_leaves_are_read_as_what_is_there() -> None:
    """0xFFFFFFFF (a writer that could not seek back) decodes every sample that is there,
    without claiming a partial decode; a size past the end of an otherwise sized file is
    reported for what it is; a data size of 0 says the header declares no samples."""
    frames = np.full((4800, 2), 0.25)
    whole = decode_audio(wav_bytes(frames, 48_000), LIMITS)
    streamed = wav_bytes(frames, 48_000, data_size=0xFFFFFFFF, riff_size=0xFFFFFFFF)
    for data in (streamed, wav_bytes(frames, 48_000, data_size=0x7FFFFFF0, riff_size=0xFFFFFFFF)):
        clip = decode_audio(data, LIMITS)
        assert clip.warnings == ()
        np.testing.assert_array_equal(clip.samples, whole.samples)
    cut = decode_audio(wav_bytes(frames, 48_000, data_size=10 * 19_200), LIMITS)
    assert cut.warnings == ("audio: only 19244 of the 192044 bytes it declares could be decoded",)
    with pytest.raises(InputError, match="the WAV header declares no samples") as info:
        decode_audio(wav_bytes(frames, 48_000, data_size=0), LIMITS)
    assert info.value.field == "audio"
    assert "19200 bytes follow it" in info.value.problem
    empty = wav_bytes(frames[:0], 48_000)
    with pytest.raises(InputError) as info:
        decode_audio(empty, LIMITS)
    assert info.value.problem == "the WAV header declares no samples (its data chunk size is 0)"


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` (1-bit grey) and holds one empty IDAT: what
    a decompression bomb's header looks like, without its megabytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((10_000, 6_000), "10000x6000 pixels exceeds the limit of 50000000"),  # ours, first
        ((10_000, 9_000), "10000x9000 pixels exceeds the limit of 50000000"),  # Pillow warns
        ((20_000, 20_000), "more than 178956970 pixels exceeds the limit of 50000000"),
    ],
)
def test_oversized_images_get_our_413_whatever_pillow_says(size, message) -> None:
    """Over ``max_pixels`` but under Pillow's bound, ours; over its bound (a warning, or
    with warnings as errors a refusal), still ours; over twice its bound (Pillow's error
    before anything else is known), our words and status."""
    for strict in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("error" if strict else "ignore", Image.DecompressionBombWarning)
            with pytest.raises(InputError) as info:
                decode_image(_png_header(*size), LIMITS)
        expected = (
            message
            if not strict or size[1] == 6_000
            else message.replace("10000x9000 pixels", "more than 89478485 pixels")
        )
        assert info.value.problem == expected
        assert (info.value.field, info.value.status) == ("image", 413)


def test_unreadable_media_get_clean_messages() -> None:
    """No object repr, no FFmpeg errno: what failed, in words."""
    with pytest.raises(InputError) as info:
        decode_image(b"GIF89a but not really", LIMITS)
    assert info.value.problem == "cannot decode image: not a recognised image format"
    cut = _wav(2)[:30]  # a header cut short: neither libsndfile nor FFmpeg can read it
    with pytest.raises(InputError) as info:
        decode_audio(cut, LIMITS)
    assert info.value.problem == "cannot decode audio: invalid data found when processing input"
    with pytest.raises(InputError) as info:
        decode_video(b"\x00\x00\x00\x18ftypmp42" + bytes(40), [], LIMITS)
    assert info.value.field == "video"
    assert info.value.problem == "cannot decode video: invalid data found when processing input"
