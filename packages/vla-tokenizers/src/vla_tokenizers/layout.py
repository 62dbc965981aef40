"""`VocabLayout`: one vocabulary, contiguous id ranges per modality, saved as `vocab_layout.json`.

Order of the ranges (sizes from `LayoutConfig`, text and special from the text tokenizer)::

    text          byte-level BPE (trained, or an adopted Qwen tokenizer.json: 151643 ids)
    special       Qwen's added tokens in Qwen's order (ids kept), then this stack's span markers
    vision        image/video codes of the visual codec (reserved: no codec yet)
    audio         audio codec codes (reserved: no codec yet)
    ipa           IPA symbol inventory (fitted from phonemizer output)
    action        uniform bins shared by every action dimension
    action_fast   FAST tokens (BPE over scaled DCT coefficients)
    action_space  which fitted action space (dimension list) an action span uses
    mesh_coord    quantised OBJ vertex coordinates (bins per axis)
    mesh_index    OBJ face vertex indices
    x3d           X3D structure tokens (node and field names, generic markers)
    number        quantised numbers (see numbers.py)
    camera        the rig's camera ids
    time          quantised timestamps (time_step_s each)
    frame         frame indices
    reserved      padding up to a multiple of pad_to_multiple (never produced)

The modality of a token follows from its id alone (`modality_of`), which is how token shards
carry modality without a side channel.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from vla_tokenizers.numbers import NumberCodec
from vla_tokenizers.specials import SpecialDef

LAYOUT_VERSION = 1
LAYOUT_FILE = "vocab_layout.json"

MODALITIES: tuple[str, ...] = (
    "text",
    "special",
    "vision",
    "audio",
    "ipa",
    "action",
    "3d",
    "number",
    "camera",
    "time",
    "reserved",
)
MODALITY_CODE = {m: i for i, m in enumerate(MODALITIES)}

DEFAULT_CAMERAS = (
    "front",
    "front_left",
    "front_right",
    "back",
    "back_left",
    "back_right",
)  # as vla-data rigs


class LayoutConfig(BaseModel):
    """Sizes of the non-text ranges (fixed before any fitting, so ids are stable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vision_codes: int = Field(65536, ge=1)
    audio_codes: int = Field(16384, ge=1)
    ipa_symbols: int = Field(512, ge=16)
    action_bins: int = Field(256, ge=2)
    action_fast_vocab: int = Field(1024, ge=64)
    action_spaces: int = Field(64, ge=1)
    mesh_bins: int = Field(64, ge=2)
    mesh_max_vertices: int = Field(4096, ge=3)
    number_int_max: int = Field(1024, ge=16)
    number_digits: int = Field(3, ge=1, le=5)
    number_exp_range: int = Field(12, ge=1, le=300)
    cameras: tuple[str, ...] = DEFAULT_CAMERAS
    time_steps: int = Field(2048, ge=2)
    time_step_s: float = Field(0.04, gt=0)
    frames: int = Field(2048, ge=2)
    pad_to_multiple: int = Field(128, ge=1)

    @property
    def number_codec(self) -> NumberCodec:
        return NumberCodec(self.number_int_max, self.number_digits, self.number_exp_range)


class TokenRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    modality: str
    start: int = Field(ge=0)
    size: int = Field(ge=0)
    names: list[str] | None = None

    @property
    def end(self) -> int:
        return self.start + self.size

    def __contains__(self, token_id: int) -> bool:
        return self.start <= token_id < self.end


class SpecialToken(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    content: str
    id: int = Field(ge=0)
    special: bool = True


class LayoutError(ValueError):
    pass


class VocabLayout(BaseModel):
    """Id ranges of the unified vocabulary; validated to be contiguous and to cover `vocab_size`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layout_version: int = LAYOUT_VERSION
    vocab_size: int
    text_size: int
    config: LayoutConfig
    specials: list[SpecialToken]
    ranges: list[TokenRange]

    _by_name: dict[str, TokenRange] = PrivateAttr(default_factory=dict)
    _ids: dict[str, int] = PrivateAttr(default_factory=dict)
    _starts: np.ndarray = PrivateAttr(default=None)
    _codes: np.ndarray = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> VocabLayout:
        if self.layout_version != LAYOUT_VERSION:
            raise ValueError(
                f"layout_version {self.layout_version} is not supported (this is {LAYOUT_VERSION})"
            )
        pos, seen = 0, set()
        for r in self.ranges:
            if r.name in seen:
                raise ValueError(f"range {r.name!r} appears twice")
            seen.add(r.name)
            if r.modality not in MODALITY_CODE:
                raise ValueError(f"range {r.name!r} has unknown modality {r.modality!r}")
            if r.start != pos:
                raise ValueError(
                    f"range {r.name!r} starts at {r.start}, expected {pos} (gap or overlap)"
                )
            if r.names is not None and len(r.names) != r.size:
                raise ValueError(f"range {r.name!r} has {len(r.names)} names for {r.size} ids")
            pos = r.end
        if pos != self.vocab_size:
            raise ValueError(f"ranges cover {pos} ids but vocab_size is {self.vocab_size}")
        for need in ("text", "special"):
            if need not in seen:
                raise ValueError(f"layout has no {need!r} range")
        text = next(r for r in self.ranges if r.name == "text")
        if text.start != 0 or text.size != self.text_size:
            raise ValueError("text range must start at 0 and span text_size ids")
        special = next(r for r in self.ranges if r.name == "special")
        if [s.id for s in self.specials] != list(range(special.start, special.end)):
            raise ValueError("special token ids must fill the special range in order")
        if [s.content for s in self.specials] != special.names:
            raise ValueError("special range names disagree with the special tokens")
        return self

    def model_post_init(self, _context) -> None:
        self._by_name = {r.name: r for r in self.ranges}
        ids: dict[str, int] = {}
        for r in self.ranges:
            if r.names is not None and r.name != "special":
                for i, n in enumerate(r.names):
                    ids[f"{r.name}:{n}"] = r.start + i
        for s in self.specials:
            ids[s.content] = s.id
        self._ids = ids
        self._starts = np.array([r.start for r in self.ranges if r.size], dtype=np.int64)
        self._codes = np.array(
            [MODALITY_CODE[r.modality] for r in self.ranges if r.size], dtype=np.uint8
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VocabLayout) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    # ---- construction -----------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        text_size: int,
        specials: Sequence[SpecialDef],
        config: LayoutConfig | None = None,
        x3d_names: Sequence[str] | None = None,
    ) -> VocabLayout:
        """Lay out every range after a text vocabulary of `text_size` ids and `specials`."""
        from vla_tokenizers.x3d import default_x3d_names

        config = config or LayoutConfig()
        x3d_names = list(x3d_names) if x3d_names is not None else default_x3d_names()
        plan: list[tuple[str, str, int, list[str] | None]] = [
            ("text", "text", text_size, None),
            ("special", "special", len(specials), [s.content for s in specials]),
            ("vision", "vision", config.vision_codes, None),
            ("audio", "audio", config.audio_codes, None),
            ("ipa", "ipa", config.ipa_symbols, None),
            ("action", "action", config.action_bins, None),
            ("action_fast", "action", config.action_fast_vocab, None),
            ("action_space", "action", config.action_spaces, None),
            ("mesh_coord", "3d", config.mesh_bins, None),
            ("mesh_index", "3d", config.mesh_max_vertices, None),
            ("x3d", "3d", len(x3d_names), x3d_names),
            ("number", "number", config.number_codec.size, None),
            ("camera", "camera", len(config.cameras), list(config.cameras)),
            ("time", "time", config.time_steps, None),
            ("frame", "time", config.frames, None),
        ]
        ranges, pos = [], 0
        for name, modality, size, names in plan:
            ranges.append(
                TokenRange(name=name, modality=modality, start=pos, size=size, names=names)
            )
            pos += size
        pad = -pos % config.pad_to_multiple
        ranges.append(TokenRange(name="reserved", modality="reserved", start=pos, size=pad))
        pos += pad
        return cls(
            vocab_size=pos,
            text_size=text_size,
            config=config,
            specials=[
                SpecialToken(content=s.content, id=text_size + i, special=s.special)
                for i, s in enumerate(specials)
            ],
            ranges=ranges,
        )

    # ---- lookups ------------------------------------------------------------------------------

    def range(self, name: str) -> TokenRange:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"layout has no range {name!r}") from None

    def id_of(self, token: str) -> int:
        """Id of a special token (`<|endoftext|>`) or a named token (`camera:front`, `x3d:Shape`)."""
        try:
            return self._ids[token]
        except KeyError:
            raise KeyError(f"layout has no token {token!r}") from None

    def has_token(self, token: str) -> bool:
        return token in self._ids

    def modality_of(self, ids) -> np.ndarray:
        """Modality code (index into `MODALITIES`) of every id; vectorised, any shape."""
        return self._codes[self._range_pos(ids)]

    def modality_names(self, ids) -> list[str]:
        return [MODALITIES[c] for c in np.asarray(self.modality_of(ids)).ravel()]

    def range_of(self, ids) -> np.ndarray:
        """Index into `ranges_nonempty` of every id (vectorised)."""
        return self._range_pos(ids)

    @property
    def ranges_nonempty(self) -> list[TokenRange]:
        return [r for r in self.ranges if r.size]

    def _range_pos(self, ids) -> np.ndarray:
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            bad = arr[(arr < 0) | (arr >= self.vocab_size)].ravel()[0]
            raise LayoutError(
                f"token id {int(bad)} is outside the vocabulary [0, {self.vocab_size})"
            )
        return np.searchsorted(self._starts, arr, side="right") - 1

    def token_name(self, token_id: int) -> str:
        """Readable name of a non-text id (`<|action_17|>`, `<|camera:front|>`, special content)."""
        token_id = int(token_id)
        r = self.ranges_nonempty[int(self._range_pos(token_id))]
        local = token_id - r.start
        if r.name == "special":
            return r.names[local]  # type: ignore[index]
        if r.names is not None:
            return f"<|{r.name}:{r.names[local]}|>"
        if r.name == "number":
            return f"<|num:{self.config.number_codec.token_name(local)}|>"
        return f"<|{r.name}_{local}|>"

    # ---- disk -------------------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        from vla_data.dataset import write_atomic

        write_atomic(path, self.to_json().encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> VocabLayout:
        from pydantic import ValidationError

        try:
            return cls.model_validate_json(Path(path).read_bytes())
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise LayoutError(
                f"{path}: invalid vocab layout at {loc or '<root>'}: {err['msg']}"
            ) from None

    def summary(self) -> dict[str, list[int]]:
        """{range name: [start, end)} for printing."""
        return {r.name: [r.start, r.end] for r in self.ranges}
