"""Audio: decode any container PyAV knows, resample, and store as FLAC; pair a transcript
sidecar and add its IPA layer and the signal checks (see `vla_data.speech`)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO

import av

from vla_data.ingest.base import FileContext, Record
from vla_data.sample import AudioMeta
from vla_data.speech.ingest import TranscriptError, speech_fields

_LAYOUTS = {1: "mono", 2: "stereo"}


def transcode_to_flac(data: bytes, rate: int, channels: int | None) -> tuple[bytes, AudioMeta]:
    """Decode the first audio stream, resample to `rate` (and `channels`), encode as FLAC."""
    with av.open(io.BytesIO(data), mode="r") as src:
        if not src.streams.audio:
            raise ValueError("no audio stream")
        stream = src.streams.audio[0]
        src_rate = stream.codec_context.sample_rate or stream.rate
        src_channels = stream.codec_context.channels or 1
        out_channels = channels or min(src_channels, 2)
        layout = _LAYOUTS.get(out_channels, f"{out_channels}c")
        resampler = av.AudioResampler(format="s16", layout=layout, rate=rate)
        out = io.BytesIO()
        samples = 0
        with av.open(out, mode="w", format="flac") as dst:
            enc = dst.add_stream("flac", rate=rate, layout=layout)
            enc.format = "s16"

            def push(frames) -> None:
                nonlocal samples
                for frame in frames:
                    frame.pts = None
                    samples += frame.samples
                    for packet in enc.encode(frame):
                        dst.mux(packet)

            for frame in src.decode(stream):
                push(resampler.resample(frame))
            push(resampler.resample(None))
            if samples == 0:
                raise ValueError("no audio samples decoded")
            for packet in enc.encode(None):
                dst.mux(packet)
        meta = AudioMeta(
            sample_rate=rate,
            channels=out_channels,
            duration_s=samples / rate,
            source_sample_rate=src_rate,
            source_codec=stream.codec_context.name,
        )
    return out.getvalue(), meta


def read_audio(ctx: FileContext, f: IO[bytes]) -> Iterator[Record]:
    """One record per file: the FLAC re-encoding plus rate, channels and duration."""
    raw = f.read()
    rid = ctx.name
    if not raw:
        yield ctx.bad(rid, "", "empty file", raw)
        return
    try:
        flac, meta = transcode_to_flac(raw, ctx.config.audio_rate, ctx.config.audio_channels)
    except (av.FFmpegError, ValueError, OSError) as e:
        yield ctx.bad(rid, "", f"undecodable audio: {e}", raw)
        return
    try:  # transcript sidecar, IPA layer, signal checks (vla_data.speech)
        meta = meta.model_copy(update=speech_fields(ctx.url, raw, ctx.config))
    except TranscriptError as e:
        yield ctx.bad(rid, "", f"{ctx.name}: {e}", raw)
        return
    except (av.FFmpegError, ValueError, OSError) as e:
        yield ctx.bad(rid, "", f"undecodable audio (speech checks): {e}", raw)
        return
    yield ctx.sample(rid, "", meta, {"flac": flac})
