"""Signal checks of a recording -> `SpeechChecks` (levels, loudness, clipping, silence, VAD).

Levels, loudness and clipping are measured on the decoded source at its own rate and channel
count (resampling smooths clipped tops away); VAD runs on a mono 16 kHz copy made with PyAV's
resampler. Issues raised (thresholds in `CheckThresholds`):

- `silent`: peak below -60 dBFS, or no active segment at all;
- `mostly_silence`: active share under 10 %;
- `clipping`: at least 0.05 % of samples in clipped runs (3+ consecutive samples at >= 0.999
  of full scale);
- `too_quiet` / `too_loud`: integrated loudness under -45 LUFS or over -5 LUFS;
- `long_leading_silence` / `long_trailing_silence`: more than 3 s before the first or after the
  last active segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_data.sample import SpeechChecks
from vla_data.speech.audio import Decoded, decode, resample
from vla_data.speech.levels import clipping, integrated_loudness, peak_dbfs, rms_dbfs
from vla_data.speech.vad import VAD_NAME, VAD_RATE, VadConfig, detect


@dataclass(frozen=True)
class CheckThresholds:
    silent_peak_dbfs: float = -60.0
    mostly_silence_ratio: float = 0.10
    clipped_fraction: float = 0.0005
    clip_level: float = 0.999
    clip_run: int = 3
    too_quiet_lufs: float = -45.0
    too_loud_lufs: float = -5.0
    long_silence_s: float = 3.0


def check_decoded(
    audio: Decoded, thresholds: CheckThresholds | None = None, vad: VadConfig | None = None
) -> SpeechChecks:
    thresholds = thresholds or CheckThresholds()
    vad = vad or VadConfig()
    x = audio.samples
    duration = x.shape[1] / audio.rate
    peak, rms = peak_dbfs(x), rms_dbfs(x)
    lufs = integrated_loudness(x, audio.rate)
    fraction, runs = clipping(x, thresholds.clip_level, thresholds.clip_run)
    mono16 = resample(audio.mono(), audio.rate, VAD_RATE)
    segments = detect(mono16, VAD_RATE, vad) if peak > thresholds.silent_peak_dbfs else []
    active = sum(t - s for s, t in segments)
    ratio = min(1.0, active / duration) if duration > 0 else 0.0
    lead = segments[0][0] if segments else duration
    trail = max(0.0, duration - segments[-1][1]) if segments else duration
    issues = []
    if peak <= thresholds.silent_peak_dbfs or not segments:
        issues.append("silent")
    elif ratio < thresholds.mostly_silence_ratio:
        issues.append("mostly_silence")
    if fraction >= thresholds.clipped_fraction:
        issues.append("clipping")
    if lufs is not None and lufs < thresholds.too_quiet_lufs and "silent" not in issues:
        issues.append("too_quiet")
    if lufs is not None and lufs > thresholds.too_loud_lufs:
        issues.append("too_loud")
    if segments and lead > thresholds.long_silence_s:
        issues.append("long_leading_silence")
    if segments and trail > thresholds.long_silence_s:
        issues.append("long_trailing_silence")
    return SpeechChecks(
        peak_dbfs=round(peak, 2),
        rms_dbfs=round(rms, 2),
        loudness_lufs=None if lufs is None else round(lufs, 2),
        clipped_fraction=float(np.round(fraction, 6)),
        clipped_runs=runs,
        speech_ratio=round(ratio, 4),
        segments=segments,
        leading_silence_s=round(lead, 3),
        trailing_silence_s=round(trail, 3),
        vad=VAD_NAME,
        issues=issues,
    )


def check_audio(data: bytes, thresholds: CheckThresholds | None = None) -> SpeechChecks:
    """Decode `data` (any container PyAV reads) and check it."""
    return check_decoded(decode(data), thresholds)
