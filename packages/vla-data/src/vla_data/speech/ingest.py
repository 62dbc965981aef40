"""What `vla-data ingest` adds to an audio sample: transcript, language, IPA layer, signal checks.

`speech_fields(url, raw, config)` returns the `AudioMeta` updates for the audio file at `url`
with bytes `raw`: its transcript sidecar (see `transcripts`), the transcript's language (the
sidecar's, else `config.transcript_language`; `auto` asks the shipped language-ID model), the
`IpaLayer` (when `config.ipa` and espeak-ng has a voice; otherwise the issue `no_ipa_voice` or
`no_language`), and `SpeechChecks` (when `config.speech_checks`). A sidecar that cannot be used
raises `TranscriptError`, which the audio reader turns into a quarantine record.
"""

from __future__ import annotations

from typing import Any

from vla_data.speech.transcripts import TranscriptError, find_transcript

__all__ = ["TranscriptError", "speech_fields"]


def _detect_language(text: str) -> str | None:
    from vla_data.classify import load_default_lid

    label = load_default_lid().identify(text).label
    return label or None


def speech_fields(url: str, raw: bytes, config: Any) -> dict[str, Any]:
    """AudioMeta updates (`transcript`, `language`, `ipa`, `speech`) for one audio file."""
    updates: dict[str, Any] = {}
    extra_issues: list[str] = []
    transcript = find_transcript(url)
    if transcript is not None:
        updates["transcript"] = transcript.text
        language = transcript.language or getattr(config, "transcript_language", None)
        if language == "auto":
            language = _detect_language(transcript.text) if transcript.text.strip() else None
        updates["language"] = language
        if getattr(config, "ipa", True):
            if not language:
                extra_issues.append("no_language")
            else:
                from vla_data.speech.ipa import IpaError, ipa_layer

                try:
                    updates["ipa"] = ipa_layer(transcript.text, language)
                except IpaError:
                    extra_issues.append("no_ipa_voice")
    if getattr(config, "speech_checks", True):
        from vla_data.speech.checks import check_audio

        checks = check_audio(raw)
        if extra_issues:
            checks = checks.model_copy(update={"issues": checks.issues + extra_issues})
        updates["speech"] = checks
    return updates
