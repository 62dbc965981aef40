"""`VLAProcessor`: a `Sample` -> one interleaved id sequence (with per-token modality) and back.

Template (one document per sample; `T` is text BPE, every other name is a single token)::

    document := span+ <|endoftext|>
    text     := T+                                                  plain text
    ipa      := <|ipa_start|> (IPA | T)* <|ipa_end|>                IPA symbols, text for unknowns
    visual   := <|vision_start|> [camera] [time] [frame] (<|image_pad|> | <|video_pad|>) VISION* <|vision_end|>
    audio    := <|audio_start|> <|audio_pad|> AUDIO* <|audio_end|>
    actions  := <|action_start|> (<|action_bins|> | <|action_fast|>) space NUMBER(steps) payload <|action_end|>
    mesh     := <|mesh_start|> (see mesh.py) <|mesh_end|>
    x3d      := <|x3d_start|> (see x3d.py) <|x3d_end|>
    blend    := <|blend_start|> T* <|blend_end|>                    Blender script as code text

Per sample modality (one handler each, see `Handler`):

- text: the `txt` payload. With IPA on (`ipa="flagged"` and `meta.ipa_fallback`, or `ipa="all"`)
  the text is cut into sentences and each sentence's text span is followed by its IPA span.
- audio: an audio span, then the transcript (if any) as text (IPA as for text).
- image: a visual span (`<|image_pad|>`).
- actions: an action span over `actions.npy` with `meta.dims` (bins, or FAST with
  `actions="fast"`).
- rig: see `RigHandler` (per tick without a video codec, per tubelet with one).

Visual and audio spans are **unfilled** unless the bundle carries learned codecs
(`bundle.with_codecs(video, audio)`): the span holds only its pad token, which marks what
belongs there; a codec appends its `vision`/`audio` range codes after the pad token. Camera (rig
camera id) and quantised time / frame tokens precede the pad token when the caller knows them.

Codec encoding is deferred and batched: handlers hand media (image, tubelet, waveform) to the
`SpanWriter`, and `finish` (or `prepare`, once more than `media_batch_bytes` of media wait)
encodes all waiting media of equal shape in batches through `VisionEncoder` / `AudioEncoder`,
on CUDA when torch sees a GPU, else on the CPU. `encode_batch` and the token-shard workers (256
samples per `finish`) therefore batch across samples.

Decoding (`decode`) parses the spans back: text exactly, IPA exactly, actions within a bin,
meshes within quantisation, X3D to an equivalent document.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Literal, Protocol

import numpy as np

from vla_tokenizers import specials as sp

IpaMode = Literal["off", "flagged", "all"]
ActionMode = Literal["bins", "fast"]

_SENTENCE = re.compile(r".+?(?:[.!?;。！？；]+[\"'”’」』)]*\s*|\n+|$)", re.S)


class ProcessorError(ValueError):
    pass


def split_sentences(text: str) -> list[str]:
    """Cut text into sentences (terminal punctuation plus following space, or line ends).

    The pieces concatenate back to `text` exactly.
    """
    return [m.group(0) for m in _SENTENCE.finditer(text) if m.group(0)]


# ---- decoded spans ---------------------------------------------------------------------------


@dataclass
class TextSpan:
    text: str
    kind: str = "text"


@dataclass
class SpecialSpan:
    token: str
    kind: str = "special"


@dataclass
class IpaSpan:
    ipa: str
    kind: str = "ipa"


@dataclass
class VisualSpan:
    pad: str  # "image" or "video"
    camera: str | None = None
    time_s: float | None = None
    frame: int | None = None
    codes: np.ndarray | None = None  # None: unfilled
    kind: str = "visual"


@dataclass
class AudioSpan:
    codes: np.ndarray | None = None  # None: unfilled
    kind: str = "audio"


@dataclass
class ActionSpan:
    values: np.ndarray
    dims: list[str]
    mode: str
    kind: str = "actions"


@dataclass
class MeshSpan:
    mesh: object  # mesh.Mesh
    kind: str = "mesh"


@dataclass
class X3DSpan:
    xml: str
    kind: str = "x3d"


@dataclass
class BlendSpan:
    script: str
    kind: str = "blend"


@dataclass
class DecodedSample:
    spans: list = field(default_factory=list)
    eos: bool = False

    @property
    def text(self) -> str:
        """All text spans joined (with IPA interleaving: the original text)."""
        return "".join(s.text for s in self.spans if s.kind == "text")

    def of(self, kind: str) -> list:
        return [s for s in self.spans if s.kind == kind]

    @property
    def ipa(self) -> list[str]:
        return [s.ipa for s in self.of("ipa")]


@dataclass(eq=False)
class _Media:
    """Media waiting for its codec (`VLAProcessor.encode_media` fills `ids`, drops `data`)."""

    kind: str  # "video" (clip (T, H, W, 3) uint8) | "audio" (mono float waveform)
    data: np.ndarray | None
    ids: list[int] | None = None

    @property
    def nbytes(self) -> int:
        return 0 if self.data is None else int(self.data.nbytes)


@dataclass
class Encoding:
    """One document: ids, and spans as (kind, start, end) over them."""

    ids: np.ndarray
    spans: list[tuple[str, int, int]]
    _layout: object = field(repr=False, default=None)
    warnings: list[str] = field(default_factory=list)  # e.g. IPA wanted but no espeak voice

    @property
    def modality(self) -> np.ndarray:
        """Modality code per token (index into `layout.MODALITIES`), derived from the ids."""
        return self._layout.modality_of(self.ids)

    def __len__(self) -> int:
        return int(self.ids.size)


# ---- writing -----------------------------------------------------------------------------------


class SpanWriter:
    """What handlers write to: one method per span kind. Text is batch-encoded at the end."""

    def __init__(self, proc: VLAProcessor):
        self.p = proc
        self.parts: list[list[int] | str | _Media] = []
        self.span_parts: list[tuple[str, int, int]] = []
        self.warnings: list[str] = []
        self.media: list[_Media] = []

    def _media(self, kind: str, data: np.ndarray) -> _Media:
        m = _Media(kind, data)
        self.media.append(m)
        return m

    def _span(self, kind: str, *parts: list[int] | str | _Media) -> None:
        start = len(self.parts)
        self.parts.extend(parts)
        self.span_parts.append((kind, start, len(self.parts)))

    def _id(self, token: str) -> int:
        return self.p.layout.id_of(token)

    def text(self, text: str) -> None:
        if text:
            self._span("text", text)

    def text_ipa(self, text: str, language: str | None, ipa: bool) -> None:
        """Text, with each sentence followed by its IPA span when `ipa` and a voice exists."""
        lang = language or self.p.ipa_language
        if ipa and text and not lang:
            self.warnings.append("no IPA: sample has no language and no ipa_language is set")
        if not ipa or not text or not lang:
            self.text(text)
            return
        from vla_tokenizers.ipa import IpaError, phonemize

        pieces = split_sentences(text)
        try:
            ipas = phonemize(pieces, lang)
        except IpaError:
            self.warnings.append(f"no IPA: espeak-ng has no voice for {lang!r}")
            self.text(text)
            return
        for piece, ipa_text in zip(pieces, ipas, strict=True):
            self.text(piece)
            if ipa_text:
                self.ipa(ipa_text)

    def ipa(self, ipa_text: str) -> None:
        b = self.p.bundle
        self._span("ipa", [self._id(sp.IPA_START), *b.ipa.encode(ipa_text), self._id(sp.IPA_END)])

    def visual(
        self,
        pad: Literal["image", "video"] = "image",
        camera: str | None = None,
        time_s: float | None = None,
        frame: int | None = None,
        codes: Sequence[int] | None = None,
        clip: np.ndarray | None = None,
    ) -> None:
        """A visual span; `codes` are local vision ids, or `clip` (T, H, W, 3) uint8 is encoded
        by the bundle's video codec when the writer is finished (batched with other media)."""
        lay = self.p.layout
        ids = [self._id(sp.VISION_START)]
        if camera is not None:
            if not lay.has_token(f"camera:{camera}"):
                raise ProcessorError(f"unknown camera {camera!r} (layout has {lay.config.cameras})")
            ids.append(lay.id_of(f"camera:{camera}"))
        if time_s is not None:
            ids.append(self.p.time_id(time_s))
        if frame is not None:
            ids.append(self.p.frame_id(frame))
        ids.append(self._id(sp.IMAGE_PAD if pad == "image" else sp.VIDEO_PAD))
        if codes is not None:
            ids += _codes(lay.range("vision"), codes)
        if clip is None:
            self._span("visual", ids + [self._id(sp.VISION_END)])
        else:
            self._span("visual", ids, self._media("video", clip), [self._id(sp.VISION_END)])

    def audio(self, codes: Sequence[int] | None = None, wave: np.ndarray | None = None) -> None:
        """An audio span; `codes` are local audio ids, or `wave` (mono float at the codec's
        rate) is encoded by the bundle's audio codec when the writer is finished."""
        ids = [self._id(sp.AUDIO_START), self._id(sp.AUDIO_PAD)]
        if codes is not None:
            ids += _codes(self.p.layout.range("audio"), codes)
        if wave is None:
            self._span("audio", ids + [self._id(sp.AUDIO_END)])
        else:
            self._span("audio", ids, self._media("audio", wave), [self._id(sp.AUDIO_END)])

    def actions(
        self, values: np.ndarray, dims: Sequence[str], mode: ActionMode | None = None
    ) -> None:
        b, lay = self.p.bundle, self.p.layout
        mode = mode or self.p.action_mode
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(dims) or values.shape[0] == 0:
            raise ProcessorError(f"actions of shape {values.shape} do not match dims {list(dims)}")
        space = b.action_stats.space_index(dims)
        head = [
            self._id(sp.ACTION_START),
            self._id(sp.ACTION_BINS if mode == "bins" else sp.ACTION_FAST),
            lay.range("action_space").start + space,
            *b.number_ids_int(values.shape[0]),
        ]
        if mode == "bins":
            body = (b.actions.encode(values, dims) + lay.range("action").start).ravel().tolist()
        else:
            if b.fast is None:
                raise ProcessorError("this bundle has no fitted FAST action tokenizer")
            body = [lay.range("action_fast").start + t for t in b.fast.encode(values, dims)]
        self._span("actions", head + body + [self._id(sp.ACTION_END)])

    def mesh_obj(self, data: bytes | str) -> None:
        self._span(
            "mesh",
            [self._id(sp.MESH_START), *self.p.bundle.obj.encode(data), self._id(sp.MESH_END)],
        )

    def x3d(self, data: bytes | str) -> None:
        self._span(
            "x3d", [self._id(sp.X3D_START), *self.p.bundle.x3d.encode(data), self._id(sp.X3D_END)]
        )

    def blend(self, script: str) -> None:
        self._span("blend", [self._id(sp.BLEND_START)], script, [self._id(sp.BLEND_END)])


def _codes(r, codes) -> list[int]:
    c = np.asarray(codes, dtype=np.int64)
    if c.size and (c.min() < 0 or c.max() >= r.size):
        raise ProcessorError(f"{r.name} codes must lie in [0, {r.size})")
    return (c + r.start).tolist()


# ---- handlers ----------------------------------------------------------------------------------


class Handler(Protocol):
    """Turns one Sample modality into spans. A new modality is one class like these."""

    modality: str

    def encode(self, sample, w: SpanWriter) -> None: ...


def _payload(sample, part: str) -> bytes:
    try:
        return sample.payloads[part]
    except KeyError:
        raise ProcessorError(f"sample {sample.key!r} has no {part!r} payload") from None


def _utf8(sample, part: str) -> str:
    try:
        return _payload(sample, part).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProcessorError(f"sample {sample.key!r}: part {part!r} is not UTF-8 ({e})") from None


class TextHandler:
    modality = "text"

    def encode(self, sample, w: SpanWriter) -> None:
        meta = sample.meta
        w.text_ipa(_utf8(sample, "txt"), meta.language, w.p.wants_ipa(meta.ipa_fallback))


class AudioHandler:
    modality = "audio"

    def encode(self, sample, w: SpanWriter) -> None:
        encoder = w.p.audio_encoder()
        if encoder is None or "flac" not in sample.payloads:
            w.audio()  # unfilled until the bundle carries an audio codec
        else:
            from vla_tokenizers.codecs.data import decode_audio

            try:
                wave = decode_audio(
                    sample.payloads["flac"], encoder.sample_rate, f"sample {sample.key!r}"
                )
            except ValueError as e:
                raise ProcessorError(str(e)) from None
            w.audio(wave=wave)
        transcript = sample.meta.transcript
        if transcript:
            w.text_ipa(transcript, getattr(sample.meta, "language", None), w.p.wants_ipa(False))


class ImageHandler:
    """An image: its codes when the bundle carries a video codec (the image centre-cropped to a
    multiple of the codec's spatial factor, one static tubelet), else an unfilled span."""

    modality = "image"

    def encode(self, sample, w: SpanWriter) -> None:
        encoder = w.p.vision_encoder()
        if encoder is None:
            w.visual("image")
            return
        part = next((k for k in ("jpg", "png", "webp") if k in sample.payloads), None)
        if part is None:
            raise ProcessorError(f"sample {sample.key!r}: no jpg/png/webp part to encode")
        from PIL import Image

        try:
            with Image.open(io.BytesIO(sample.payloads[part])) as im:
                rgb = np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as e:
            raise ProcessorError(f"sample {sample.key!r}: undecodable {part} ({e})") from None
        f = encoder.codec.config.spatial_factor
        h, w_ = rgb.shape[0] // f * f, rgb.shape[1] // f * f
        if h == 0 or w_ == 0:
            raise ProcessorError(f"sample {sample.key!r}: image smaller than {f}x{f}")
        top, left = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w_) // 2
        crop = np.ascontiguousarray(rgb[top : top + h, left : left + w_])
        w.visual("image", clip=crop[None])


class ActionsHandler:
    modality = "actions"

    def encode(self, sample, w: SpanWriter) -> None:
        try:
            values = np.load(io.BytesIO(_payload(sample, "actions.npy")), allow_pickle=False)
        except ValueError as e:
            raise ProcessorError(f"sample {sample.key!r}: unreadable actions.npy ({e})") from None
        w.actions(values, sample.meta.dims)


class Mesh3DHandler:
    """3D samples by payload part: `obj` -> mesh span, `x3d` -> X3D span, `blend.py` -> script,
    `txt` (a caption) first. Register it under the modality name vla-data gives 3D samples:
    `processor.register(Mesh3DHandler("mesh"))`."""

    def __init__(self, modality: str = "mesh"):
        self.modality = modality

    def encode(self, sample, w: SpanWriter) -> None:
        parts = sample.payloads
        if "txt" in parts:
            w.text(_utf8(sample, "txt"))
        if "blend.py" in parts:
            w.blend(_utf8(sample, "blend.py"))
        if "x3d" in parts:
            w.x3d(parts["x3d"])
        if "obj" in parts:
            w.mesh_obj(parts["obj"])


RIG_FILLED_WARNING = (
    "rig video: frames dropped inside a tubelet were filled by repeating the camera's nearest frame"
)


class RigHandler:
    """A synchronised driving rig (vla-data `rig` samples; `frames.npy` columns in
    `vla_data.rig.layout.CAMERAS` order).

    Without a video codec: for every reference tick, one unfilled video span per camera that has
    a frame at that tick (camera, time since the rig's start, frame index), then that tick's
    action step. A camera without a frame at a tick (dropped or missing) has no span there.

    With a video codec (`bundle.with_codecs(video)`): the reference ticks are cut into blocks of
    the codec's temporal factor (4 ticks by default); per block, one video span per camera in
    CAMERAS order holds that camera's tubelet codes — the frames decoded from `<camera>.mp4`
    with PyAV and resized to the processor's `video_size` (whole frame, no crop) — headed by the
    camera token, the block's first tick's time since the rig's start and the index of the frame
    in the tubelet's first position; then **one action span with the block's ticks** (steps =
    ticks in the block). Order: ``[cam_1 .. cam_6 tubelet k] [actions of ticks of k] ...``.
    A frame dropped inside a block (-1 in `frames.npy`) is filled by repeating the camera's
    nearest frame in that block (the earlier one on a tie) and the encoding gets the warning
    `RIG_FILLED_WARNING`; a camera with no frame in a whole block has no span there; a short
    last block is padded by repeating its last frame (see `codecs.tokens.rig_tubelets`).
    Tubelets of all cameras and blocks (and of other samples in the batch) are encoded
    together in `VLAProcessor.finish`.
    """

    modality = "rig"

    def encode(self, sample, w: SpanWriter) -> None:
        def array(part: str) -> np.ndarray:
            try:
                return np.load(io.BytesIO(_payload(sample, part)), allow_pickle=False)
            except ValueError as e:
                raise ProcessorError(f"sample {sample.key!r}: unreadable {part} ({e})") from None

        ticks, frames, actions = array("timestamps.npy"), array("frames.npy"), array("actions.npy")
        from vla_data.rig.layout import CAMERAS as cameras  # frames.npy's column order

        if frames.shape != (len(ticks), len(cameras)) or len(actions) != len(ticks):
            raise ProcessorError(
                f"sample {sample.key!r}: {len(ticks)} ticks but frames {frames.shape}, "
                f"actions {actions.shape} for cameras {cameras}"
            )
        encoder = w.p.vision_encoder()
        if encoder is not None:
            self._tubelets(sample, w, encoder, ticks, frames, actions, cameras)
            return
        for t, tick in enumerate(ticks):
            time_s = (int(tick) - int(ticks[0])) / 1e6
            for c, camera in enumerate(cameras):
                if frames[t, c] >= 0:
                    w.visual("video", camera=camera, time_s=time_s, frame=int(frames[t, c]))
            w.actions(actions[t : t + 1], sample.meta.action_dims)

    @staticmethod
    def _tubelets(sample, w: SpanWriter, encoder, ticks, frames, actions, cameras) -> None:
        from vla_tokenizers.codecs.data import decode_video_frames
        from vla_tokenizers.codecs.tokens import rig_tubelets

        blocks = rig_tubelets(frames, encoder.codec.config.temporal_factor)
        decoded: dict[int, dict[int, np.ndarray]] = {}
        for c, camera in enumerate(cameras):
            wanted = {int(i) for b in blocks if c in b.frames for i in b.frames[c]}
            if not wanted:
                continue
            where = f"sample {sample.key!r}: {camera}.mp4"
            try:
                decoded[c] = decode_video_frames(
                    _payload(sample, f"{camera}.mp4"), wanted, w.p.video_size, where
                )
            except ValueError as e:
                raise ProcessorError(str(e)) from None
        filled = 0
        for b in blocks:
            time_s = (int(ticks[b.start]) - int(ticks[0])) / 1e6
            for c, idx in b.frames.items():
                clip = np.stack([decoded[c][int(i)] for i in idx])
                w.visual("video", camera=cameras[c], time_s=time_s, frame=int(idx[0]), clip=clip)
                filled += b.filled[c]
            w.actions(actions[b.start : b.stop], sample.meta.action_dims)
        if filled:
            w.warnings.append(RIG_FILLED_WARNING)


DEFAULT_HANDLERS: tuple[Handler, ...] = (
    TextHandler(),
    AudioHandler(),
    ImageHandler(),
    ActionsHandler(),
    RigHandler(),
    Mesh3DHandler("mesh"),
)


# ---- processor ---------------------------------------------------------------------------------


class VLAProcessor:
    """Encode Samples with a `TokenizerBundle` following the module's template, and decode."""

    def __init__(
        self,
        bundle,
        *,
        ipa: IpaMode = "flagged",
        ipa_language: str | None = None,
        actions: ActionMode = "bins",
        eos: bool = True,
        handlers: Sequence[Handler] = DEFAULT_HANDLERS,
        video_size: int | Sequence[int] = 128,
        media_batch_bytes: int = 256 << 20,
    ):
        """`video_size` (H, W, or one int for square): the size rig video frames are resized to
        for the video codec (a multiple of its spatial factor; 128 is what the ``small`` codec
        is trained on). `media_batch_bytes`: encode waiting media once this much is queued."""
        if ipa not in ("off", "flagged", "all"):
            raise ValueError(f"ipa must be off, flagged or all; got {ipa!r}")
        if actions not in ("bins", "fast"):
            raise ValueError(f"actions must be bins or fast; got {actions!r}")
        self.bundle, self.layout = bundle, bundle.layout
        self.ipa_mode, self.ipa_language, self.action_mode, self.eos = (
            ipa,
            ipa_language,
            actions,
            eos,
        )
        size = (video_size, video_size) if isinstance(video_size, int) else tuple(video_size)
        if len(size) != 2 or any(int(x) < 1 for x in size):
            raise ValueError(f"video_size must be an int or (height, width), got {video_size!r}")
        self.video_size: tuple[int, int] = (int(size[0]), int(size[1]))
        video = getattr(bundle, "codecs", {}).get("video")
        if video is not None:
            f = video.config.spatial_factor
            if self.video_size[0] % f or self.video_size[1] % f:
                raise ValueError(
                    f"video_size {self.video_size} is not a multiple of the video codec's "
                    f"spatial factor {f}"
                )
        self.media_batch_bytes = int(media_batch_bytes)
        self._queued: list[_Media] = []
        self._queued_bytes = 0
        self.handlers: dict[str, Handler] = {}
        for h in handlers:
            self.register(h)
        lay = self.layout
        self._eos = lay.id_of(sp.EOS)
        self._ends = {
            lay.id_of(sp.IPA_START): lay.id_of(sp.IPA_END),
            lay.id_of(sp.VISION_START): lay.id_of(sp.VISION_END),
            lay.id_of(sp.AUDIO_START): lay.id_of(sp.AUDIO_END),
            lay.id_of(sp.ACTION_START): lay.id_of(sp.ACTION_END),
            lay.id_of(sp.MESH_START): lay.id_of(sp.MESH_END),
            lay.id_of(sp.X3D_START): lay.id_of(sp.X3D_END),
            lay.id_of(sp.BLEND_START): lay.id_of(sp.BLEND_END),
        }

    def register(self, handler: Handler) -> None:
        self.handlers[handler.modality] = handler

    def vision_encoder(self):
        """A `VisionEncoder` over the bundle's video codec (GPU when present), or None."""
        return self._encoder("video")

    def audio_encoder(self):
        """An `AudioEncoder` over the bundle's audio codec (GPU when present), or None."""
        return self._encoder("audio")

    def _encoder(self, kind: str):
        codec = getattr(self.bundle, "codecs", {}).get(kind)
        if codec is None:
            return None
        cache = self.__dict__.setdefault("_encoders", {})
        if kind not in cache:
            from vla_tokenizers.codecs.encoders import AudioEncoder, VisionEncoder

            cls = VisionEncoder if kind == "video" else AudioEncoder
            cache[kind] = cls(codec, self.layout)
        return cache[kind]

    def settings(self) -> dict:
        out = {
            "ipa": self.ipa_mode,
            "ipa_language": self.ipa_language,
            "actions": self.action_mode,
            "eos": self.eos,
            "handlers": {m: type(h).__name__ for m, h in sorted(self.handlers.items())},
        }
        if "video" in getattr(self.bundle, "codecs", {}):
            out["video_size"] = list(self.video_size)
        return out

    def wants_ipa(self, flagged: bool) -> bool:
        return self.ipa_mode == "all" or (self.ipa_mode == "flagged" and flagged)

    def time_id(self, time_s: float) -> int:
        r, step = self.layout.range("time"), self.layout.config.time_step_s
        k = int(round(time_s / step))
        if not 0 <= k < r.size:
            raise ProcessorError(
                f"timestamp {time_s}s is outside the time range [0, {r.size * step}s)"
            )
        return r.start + k

    def frame_id(self, frame: int) -> int:
        r = self.layout.range("frame")
        if not 0 <= frame < r.size:
            raise ProcessorError(f"frame index {frame} is outside [0, {r.size})")
        return r.start + int(frame)

    # ---- encode ---------------------------------------------------------------------------

    def writer(self) -> SpanWriter:
        return SpanWriter(self)

    def prepare(self, sample) -> SpanWriter:
        """Run the sample's handler; `finish` turns prepared writers into Encodings."""
        handler = self.handlers.get(str(sample.meta.modality))
        if handler is None:
            raise ProcessorError(
                f"sample {sample.key!r}: no handler for modality {sample.meta.modality!r} "
                f"(known: {sorted(self.handlers)})"
            )
        w = SpanWriter(self)
        try:
            handler.encode(sample, w)
        except ProcessorError:
            raise
        except ValueError as e:
            raise ProcessorError(f"sample {sample.key!r}: {e}") from None
        if w.media:  # bound the memory of waiting media: encode early when much is queued
            self._queued += w.media
            self._queued_bytes += sum(m.nbytes for m in w.media)
            if self._queued_bytes > self.media_batch_bytes:
                self.encode_media(self._queued)
        return w

    def encode_media(self, media: Sequence[_Media]) -> None:
        """Encode waiting media through the bundle's codecs, batched by kind and shape."""
        todo = [m for m in media if m.ids is None]
        for kind, rng in (("video", "vision"), ("audio", "audio")):
            items = [m for m in todo if m.kind == kind]
            if not items:
                continue
            encoder = self._encoder(kind)
            if encoder is None:
                raise ProcessorError(f"{kind} media to encode but the bundle has no {kind} codec")
            data = [m.data for m in items]
            local = encoder.clips(data) if kind == "video" else encoder.waves(data)
            start = self.layout.range(rng).start
            for m, ids in zip(items, local, strict=True):
                m.ids, m.data = (np.asarray(ids, dtype=np.int64) + start).tolist(), None
        self._queued = [m for m in self._queued if m.ids is None]
        self._queued_bytes = sum(m.nbytes for m in self._queued)

    def finish(self, writers: Sequence[SpanWriter]) -> list[Encoding]:
        """Resolve writers into Encodings, batch-encoding all their text and media at once."""
        self.encode_media([m for w in writers for m in w.media])
        texts = [p for w in writers for p in w.parts if isinstance(p, str)]
        encoded = iter(self.bundle.text.encode_batch(texts) if texts else [])
        out = []
        for w in writers:
            pieces = [
                p if isinstance(p, list) else p.ids if isinstance(p, _Media) else next(encoded)
                for p in w.parts
            ]
            offsets = np.cumsum([0] + [len(p) for p in pieces])
            spans = [(k, int(offsets[a]), int(offsets[b])) for k, a, b in w.span_parts]
            if self.eos:
                pieces.append([self._eos])
            ids = np.fromiter(
                chain.from_iterable(pieces), dtype=np.int64, count=sum(map(len, pieces))
            )
            out.append(Encoding(ids, spans, self.layout, w.warnings))
        return out

    def encode(self, sample) -> Encoding:
        return self.finish([self.prepare(sample)])[0]

    def encode_batch(self, samples: Sequence) -> list[Encoding]:
        return self.finish([self.prepare(s) for s in samples])

    # ---- decode ---------------------------------------------------------------------------

    def decode(self, ids) -> DecodedSample:
        """Spans of one document (stops at `<|endoftext|>`)."""
        ids = [int(i) for i in np.asarray(ids).ravel()]
        lay, b = self.layout, self.bundle
        text_size = lay.text_size
        special = lay.range("special")
        out = DecodedSample()
        run: list[int] = []

        def flush() -> None:
            if run:
                out.spans.append(TextSpan(b.text.decode(run)))
                run.clear()

        i, n = 0, len(ids)
        while i < n:
            t = ids[i]
            if t < text_size:
                run.append(t)
                i += 1
                continue
            flush()
            if t == self._eos:
                out.eos = True
                break
            if t in self._ends:
                try:
                    j = ids.index(self._ends[t], i + 1)
                except ValueError:
                    raise ProcessorError(
                        f"{lay.token_name(t)} at {i} has no closing token"
                    ) from None
                out.spans.append(self._decode_span(t, ids[i + 1 : j]))
                i = j + 1
                continue
            if t in special:
                out.spans.append(SpecialSpan(lay.token_name(t)))
                i += 1
                continue
            raise ProcessorError(f"token {t} ({lay.token_name(t)}) at {i} is outside any span")
        flush()
        return out

    def decode_documents(self, ids) -> list[DecodedSample]:
        ids = np.asarray(ids).ravel()
        cuts = np.flatnonzero(ids == self._eos)
        docs, start = [], 0
        for c in cuts:
            docs.append(self.decode(ids[start : c + 1]))
            start = c + 1
        if start < ids.size:
            docs.append(self.decode(ids[start:]))
        return docs

    def _decode_span(self, start: int, body: list[int]):
        lay, b = self.layout, self.bundle
        name = lay.token_name(start)
        if name == sp.IPA_START:
            return IpaSpan(b.ipa.decode(body))
        if name == sp.BLEND_START:
            if any(t >= lay.text_size for t in body):
                raise ProcessorError("Blender script span holds non-text tokens")
            return BlendSpan(b.text.decode(body))
        if name == sp.X3D_START:
            return X3DSpan(b.x3d.decode(body))
        if name == sp.MESH_START:
            return MeshSpan(b.obj.decode(body))
        if name == sp.AUDIO_START:
            if not body or body[0] != lay.id_of(sp.AUDIO_PAD):
                raise ProcessorError("audio span must start with <|audio_pad|>")
            return AudioSpan(_local(lay.range("audio"), body[1:]))
        if name == sp.VISION_START:
            return self._decode_visual(body)
        if name == sp.ACTION_START:
            return self._decode_actions(body)
        raise ProcessorError(f"no decoder for span {name}")

    def _decode_visual(self, body: list[int]) -> VisualSpan:
        lay = self.layout
        cam_r, time_r, frame_r = lay.range("camera"), lay.range("time"), lay.range("frame")
        span = VisualSpan(pad="")
        i = 0
        while i < len(body) and span.pad == "":
            t = body[i]
            if t in cam_r:
                span.camera = cam_r.names[t - cam_r.start]
            elif t in time_r:
                span.time_s = (t - time_r.start) * lay.config.time_step_s
            elif t in frame_r:
                span.frame = t - frame_r.start
            elif t == lay.id_of(sp.IMAGE_PAD):
                span.pad = "image"
            elif t == lay.id_of(sp.VIDEO_PAD):
                span.pad = "video"
            else:
                raise ProcessorError(f"unexpected {lay.token_name(t)} in a visual span header")
            i += 1
        if not span.pad:
            raise ProcessorError("visual span has no <|image_pad|>/<|video_pad|>")
        span.codes = _local(lay.range("vision"), body[i:])
        return span

    def _decode_actions(self, body: list[int]) -> ActionSpan:
        lay, b = self.layout, self.bundle
        if len(body) < 3:
            raise ProcessorError("action span too short")
        mode = {lay.id_of(sp.ACTION_BINS): "bins", lay.id_of(sp.ACTION_FAST): "fast"}.get(body[0])
        if mode is None:
            raise ProcessorError("action span must start with <|action_bins|> or <|action_fast|>")
        space_r = lay.range("action_space")
        if body[1] not in space_r or body[1] - space_r.start >= len(b.action_stats.spaces):
            raise ProcessorError("action span has no valid action-space token")
        dims = b.action_stats.spaces[body[1] - space_r.start]
        nr = lay.range("number")
        j = 2
        while j < len(body) and body[j] in nr:
            j += 1
        nums = lay.config.number_codec.decode([t - nr.start for t in body[2:j]])
        if len(nums) != 1 or not isinstance(nums[0], int) or nums[0] < 1:
            raise ProcessorError("action span has no step count")
        steps, payload = nums[0], body[j:]
        if mode == "bins":
            r = lay.range("action")
            local = _local(r, payload)
            if local.size != steps * len(dims):
                raise ProcessorError(
                    f"action span has {local.size} bins for {steps} steps x {len(dims)} dims"
                )
            values = b.actions.decode(local.reshape(steps, len(dims)), dims)
        else:
            if b.fast is None:
                raise ProcessorError("this bundle has no FAST action tokenizer")
            values = b.fast.decode(_local(lay.range("action_fast"), payload), dims, steps)
        return ActionSpan(values, list(dims), mode)


def _local(r, ids: Sequence[int]) -> np.ndarray | None:
    if not len(ids):
        return None if r.name in ("vision", "audio") else np.zeros(0, dtype=np.int64)
    a = np.asarray(ids, dtype=np.int64)
    if ((a < r.start) | (a >= r.end)).any():
        raise ProcessorError(f"span holds ids outside the {r.name} range")
    return a - r.start
