"""Speech: VAD and segmentation, levels and loudness, clipping/silence checks, sample-rate
normalisation, transcript pairing, and an IPA layer from phonemizer's espeak-ng backend.

- `audio.decode` / `audio.resample`: PyAV decoding to float32 and libswresample conversion;
- `vad.detect` / `vad.segment_chunks`: adaptive energy + zero-crossing VAD (`energy-zcr-v1`);
- `levels`: peak / RMS dBFS, ITU-R BS.1770-4 integrated loudness (LUFS), clipped runs;
- `checks.check_audio`: all of the above as `SpeechChecks` with named issues;
- `transcripts`: `<stem>.transcript.json` / `<stem>.lab` sidecars beside audio files;
- `ipa.ipa_layer`: the `IpaLayer` of a transcript (one espeak backend per voice per process);
- `synth.synthesize`: espeak-ng speech synthesis through ctypes (deterministic);
- `ingest.speech_fields`: what `vla-data ingest` adds to an audio sample.
"""

from vla_data.speech.audio import Decoded, decode, resample
from vla_data.speech.checks import CheckThresholds, check_audio, check_decoded
from vla_data.speech.ipa import IpaError, backend_count, espeak_voice, ipa_layer, phonemize
from vla_data.speech.levels import clipping, integrated_loudness, peak_dbfs, rms_dbfs
from vla_data.speech.transcripts import Transcript, TranscriptError, find_transcript
from vla_data.speech.vad import VadConfig, detect, segment_chunks

__all__ = [
    "CheckThresholds",
    "Decoded",
    "IpaError",
    "Transcript",
    "TranscriptError",
    "VadConfig",
    "backend_count",
    "check_audio",
    "check_decoded",
    "clipping",
    "decode",
    "detect",
    "espeak_voice",
    "find_transcript",
    "integrated_loudness",
    "ipa_layer",
    "peak_dbfs",
    "phonemize",
    "resample",
    "rms_dbfs",
    "segment_chunks",
]
