"""Special-token strings: Qwen's (same strings, same order) followed by this stack's span markers.

A trained text tokenizer gets Qwen3's special tokens in Qwen's order right after its BPE vocabulary,
so a layout built on an adopted Qwen `tokenizer.json` keeps every Qwen id (151643 `<|endoftext|>`
...) and only appends the span markers below. `special` mirrors Qwen3's `tokenizer_config.json`:
`<tool_call>`, `<think>` and friends are added tokens but not "special" (they survive
`skip_special_tokens`).
"""

from __future__ import annotations

from typing import NamedTuple


class SpecialDef(NamedTuple):
    content: str
    special: bool = True


# Qwen2.5 / Qwen3 added tokens, ids 151643.. in a stock Qwen tokenizer, in this order.
QWEN_SPECIALS: tuple[SpecialDef, ...] = (
    SpecialDef("<|endoftext|>"),
    SpecialDef("<|im_start|>"),
    SpecialDef("<|im_end|>"),
    SpecialDef("<|object_ref_start|>"),
    SpecialDef("<|object_ref_end|>"),
    SpecialDef("<|box_start|>"),
    SpecialDef("<|box_end|>"),
    SpecialDef("<|quad_start|>"),
    SpecialDef("<|quad_end|>"),
    SpecialDef("<|vision_start|>"),
    SpecialDef("<|vision_end|>"),
    SpecialDef("<|vision_pad|>"),
    SpecialDef("<|image_pad|>"),
    SpecialDef("<|video_pad|>"),
    SpecialDef("<tool_call>", False),
    SpecialDef("</tool_call>", False),
    SpecialDef("<|fim_prefix|>", False),
    SpecialDef("<|fim_middle|>", False),
    SpecialDef("<|fim_suffix|>", False),
    SpecialDef("<|fim_pad|>", False),
    SpecialDef("<|repo_name|>", False),
    SpecialDef("<|file_sep|>", False),
    SpecialDef("<tool_response>", False),
    SpecialDef("</tool_response>", False),
    SpecialDef("<think>", False),
    SpecialDef("</think>", False),
)

# Span markers of this stack (all special: never produced from raw text).
EOS = "<|endoftext|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
AUDIO_START, AUDIO_END, AUDIO_PAD = "<|audio_start|>", "<|audio_end|>", "<|audio_pad|>"
IPA_START, IPA_END = "<|ipa_start|>", "<|ipa_end|>"
ACTION_START, ACTION_END = "<|action_start|>", "<|action_end|>"
ACTION_BINS, ACTION_FAST = "<|action_bins|>", "<|action_fast|>"
MESH_START, MESH_END = "<|mesh_start|>", "<|mesh_end|>"
MESH_VERTICES, MESH_FACES, MESH_FACE_END = (
    "<|mesh_vertices|>",
    "<|mesh_faces|>",
    "<|mesh_face_end|>",
)
X3D_START, X3D_END = "<|x3d_start|>", "<|x3d_end|>"
BLEND_START, BLEND_END = "<|blend_start|>", "<|blend_end|>"

VLA_SPECIALS: tuple[SpecialDef, ...] = tuple(
    SpecialDef(s)
    for s in (
        AUDIO_START,
        AUDIO_END,
        AUDIO_PAD,
        IPA_START,
        IPA_END,
        ACTION_START,
        ACTION_END,
        ACTION_BINS,
        ACTION_FAST,
        MESH_START,
        MESH_END,
        MESH_VERTICES,
        MESH_FACES,
        MESH_FACE_END,
        X3D_START,
        X3D_END,
        BLEND_START,
        BLEND_END,
    )
)

ALL_SPECIALS: tuple[SpecialDef, ...] = QWEN_SPECIALS + VLA_SPECIALS
