"""Speech synthesis with espeak-ng's C library (from `espeakng-loader`), through ctypes.

phonemizer's espeak backend only phonemizes; the same library synthesises when driven directly:
`espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS)`, a synth callback collecting 16-bit samples,
`espeak_SetVoiceByName`, `espeak_Synth`. Output is mono int16 at the library's rate (22050 Hz).

espeak-ng keeps synthesis state in static variables that carry from one utterance to the next
(the output of a sentence depends on what was spoken before it; `espeak_Terminate` does not
reset it), so every call loads a private copy of the library (about 10 ms), which makes the
output a pure function of text, voice, rate and pitch. Calls are serialised by a lock.
"""

from __future__ import annotations

import _ctypes
import ctypes
import os
import shutil
import tempfile
import threading

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
RATE_PARAM, PITCH_PARAM = 1, 3

_LOCK = threading.Lock()
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class SynthError(RuntimeError):
    pass


def _paths() -> tuple[str, str]:
    import espeakng_loader

    data = espeakng_loader.get_data_path().rstrip("/")
    return espeakng_loader.get_library_path(), os.path.dirname(data)


def synthesize(
    text: str, voice: str = "en-us", *, words_per_minute: int = 160, pitch: int = 50
) -> tuple[np.ndarray, int]:
    """(int16 mono samples, sample rate) of `text` spoken by espeak-ng `voice`; deterministic."""
    library, data_parent = _paths()
    with _LOCK:
        folder = tempfile.mkdtemp(prefix="vla-espeak-")
        lib = None
        try:
            copy = os.path.join(folder, "libespeak-ng-private.so")
            shutil.copyfile(library, copy)
            lib = ctypes.CDLL(copy)
            lib.espeak_Initialize.argtypes = [
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int,
            ]
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            lib.espeak_Synth.argtypes = [
                ctypes.c_char_p,
                ctypes.c_size_t,
                ctypes.c_uint,
                ctypes.c_int,
                ctypes.c_uint,
                ctypes.c_uint,
                ctypes.c_void_p,
                ctypes.c_void_p,
            ]
            rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent.encode(), 0)
            if rate <= 0:
                raise SynthError(f"espeak_Initialize failed ({rate})")
            chunks: list[np.ndarray] = []

            def collect(wav, numsamples, _events):
                if numsamples > 0 and wav:
                    chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
                return 0

            callback = _CALLBACK(collect)
            lib.espeak_SetSynthCallback(callback)
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise SynthError(f"espeak-ng has no voice {voice!r}")
            lib.espeak_SetParameter(RATE_PARAM, int(words_per_minute), 0)
            lib.espeak_SetParameter(PITCH_PARAM, int(pitch), 0)
            data = text.encode("utf-8") + b"\x00"
            err = lib.espeak_Synth(
                data, len(data), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None
            )
            lib.espeak_Synchronize()
            if err != 0:
                raise SynthError(f"espeak_Synth failed ({err})")
            lib.espeak_Terminate()
        finally:
            if lib is not None:
                handle = lib._handle
                del lib
                _ctypes.dlclose(handle)
            shutil.rmtree(folder, ignore_errors=True)
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    return samples.astype(np.int16, copy=False), rate
