from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest

from vla_data.sample import ActionsMeta, AudioMeta, ImageMeta, Sample, TextMeta
from vla_tokenizers.ipa import phonemize
from vla_tokenizers.layout import MODALITIES
from vla_tokenizers.processor import Mesh3DHandler, ProcessorError, split_sentences
from vla_tokenizers.testing import ACTION_DIMS, MIXED, drives


def text_sample(text: str, **meta) -> Sample:
    return Sample.create(
        id="doc.1",
        source="file:///x.jsonl#L1",
        license="cc0",
        meta=TextMeta(chars=len(text), **meta),
        payloads={"txt": text.encode()},
    )


def actions_sample(values: np.ndarray, dims: list[str]) -> Sample:
    buf = io.BytesIO()
    np.save(buf, values.astype(np.float32))
    return Sample.create(
        id="drive",
        source="file:///d.npy",
        license="cc0",
        meta=ActionsMeta(dims=dims, steps=len(values), dtype="float32", rate_hz=10),
        payloads={"actions.npy": buf.getvalue()},
    )


@pytest.mark.parametrize("text", MIXED)
def test_text_sample_round_trip(bundle, text):
    proc = bundle.processor()
    enc = proc.encode(text_sample(text))
    assert enc.ids[-1] == bundle.layout.id_of("<|endoftext|>")
    assert [k for k, _, _ in enc.spans] == ["text"]
    mods = [MODALITIES[m] for m in enc.modality]
    assert mods == ["text"] * (len(enc) - 1) + ["special"]
    dec = proc.decode(enc.ids)
    assert dec.eos and dec.text == text


def test_sentence_split_is_lossless():
    for text in [*MIXED, "A. B! C? 你好。再见！\n\nEnd", "no punctuation", "..."]:
        assert "".join(split_sentences(text)) == text
    assert split_sentences("One. Two! 三。四") == ["One. ", "Two! ", "三。", "四"]


def test_ipa_interleaves_text_then_ipa_under_the_flag(bundle):
    text = "你食咗飯未呀？我哋一陣去飲茶啦。"
    flagged = text_sample(text, language="yue", ipa_fallback=True)
    enc = bundle.processor().encode(flagged)
    assert [k for k, _, _ in enc.spans] == ["text", "ipa", "text", "ipa"]
    dec = bundle.processor().decode(enc.ids)
    assert dec.text == text  # the text comes back exactly
    assert dec.ipa == phonemize(split_sentences(text), "yue")  # and so does each IPA span
    # not flagged -> no IPA; ipa="off" -> none even when flagged; ipa="all" -> always
    assert [
        k for k, _, _ in bundle.processor().encode(text_sample(text, language="yue")).spans
    ] == ["text"]
    assert [k for k, _, _ in bundle.processor(ipa="off").encode(flagged).spans] == ["text"]
    en = text_sample("Hello there. How are you?")
    kinds = [k for k, _, _ in bundle.processor(ipa="all", ipa_language="en").encode(en).spans]
    assert kinds == ["text", "ipa", "text", "ipa"]
    # IPA wanted but impossible is reported, not silently dropped
    wu = bundle.processor().encode(text_sample("侬好。", language="wuu", ipa_fallback=True))
    assert [k for k, _, _ in wu.spans] == ["text"] and "no voice for 'wuu'" in wu.warnings[0]
    anon = bundle.processor(ipa="all").encode(en)
    assert "no language" in anon.warnings[0]


def test_audio_and_image_spans_are_marked_and_unfilled(bundle):
    proc = bundle.processor()
    lay = bundle.layout
    audio = Sample.create(
        id="a",
        source="file:///a.wav",
        license="cc0",
        meta=AudioMeta(
            sample_rate=16000,
            channels=1,
            duration_s=1.0,
            source_sample_rate=16000,
            source_codec="pcm_s16le",
            transcript="Turn left here.",
        ),
        payloads={"flac": b"fLaC"},
    )
    enc = proc.encode(audio)
    assert enc.ids[:3].tolist() == [
        lay.id_of(t) for t in ("<|audio_start|>", "<|audio_pad|>", "<|audio_end|>")
    ]
    dec = proc.decode(enc.ids)
    assert dec.spans[0].kind == "audio" and dec.spans[0].codes is None
    assert dec.text == "Turn left here."
    image = Sample.create(
        id="i",
        source="file:///i.jpg",
        license="cc0",
        meta=ImageMeta(width=4, height=4, mode="RGB", format="JPEG"),
        payloads={"jpg": b"\xff\xd8"},
    )
    enc = proc.encode(image)
    names = [lay.token_name(i) for i in enc.ids]
    assert names == ["<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|endoftext|>"]
    vis = proc.decode(enc.ids).spans[0]
    assert vis.kind == "visual" and vis.pad == "image" and vis.codes is None


def test_camera_and_time_tokens_around_visual_spans(bundle):
    proc = bundle.processor()
    w = proc.writer()
    w.visual("video", camera="front_left", time_s=1.24, frame=31)
    w.visual("image", camera="back", time_s=0.0, codes=[5, 7, 65535])
    enc = proc.finish([w])[0]
    mods = [MODALITIES[m] for m in enc.modality]
    assert mods[:5] == ["special", "camera", "time", "time", "special"]
    assert "vision" in mods
    a, b = proc.decode(enc.ids).spans
    assert (a.pad, a.camera, a.frame, a.codes) == ("video", "front_left", 31, None)
    assert a.time_s == pytest.approx(1.24)
    assert b.camera == "back" and b.codes.tolist() == [5, 7, 65535]
    with pytest.raises(ProcessorError, match="unknown camera"):
        proc.writer().visual(camera="roof")
    with pytest.raises(ProcessorError, match="outside the time range"):
        proc.writer().visual(time_s=1e6)


@pytest.mark.parametrize("mode", ["bins", "fast"])
def test_actions_sample_round_trip(bundle, mode):
    values, dims = drives(n=1, steps=45, seed=11)[0]
    proc = bundle.processor(actions=mode)
    enc = proc.encode(actions_sample(values, dims))
    dec = proc.decode(enc.ids)
    span = dec.spans[0]
    assert span.kind == "actions" and span.mode == mode and span.dims == ACTION_DIMS
    assert span.values.shape == values.shape
    lo, hi = bundle.action_stats.bounds(dims)
    inside = (values >= lo) & (values <= hi)
    bound = bundle.action_stats.bin_width(dims) if mode == "bins" else bundle.fast.error_bound(dims)
    err = np.abs(span.values - values.astype(np.float32))
    assert (err[inside] <= np.broadcast_to(bound, values.shape)[inside] + 1e-5).all()


def test_3d_handler_and_blender_script(bundle):
    proc = bundle.processor()
    proc.register(Mesh3DHandler("mesh"))
    script = (
        "import bpy\nbpy.ops.mesh.primitive_cube_add(size=2, location=(0, 0, 1))\n# 立方体 🧊\n"
    )
    obj = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\n"
    x3d = '<X3D><Scene><Shape><Box size="1 2 3"/></Shape></Scene></X3D>'
    sample = SimpleNamespace(
        key="m1",
        meta=SimpleNamespace(modality="mesh"),
        payloads={
            "txt": b"A cube.",
            "blend.py": script.encode(),
            "x3d": x3d.encode(),
            "obj": obj.encode(),
        },
    )
    enc = proc.encode(sample)
    assert [k for k, _, _ in enc.spans] == ["text", "blend", "x3d", "mesh"]
    kind, s, e = enc.spans[1]
    inner = enc.ids[s + 1 : e - 1]
    assert (inner < bundle.layout.text_size).all()  # Blender script = text BPE inside the span
    dec = proc.decode(enc.ids)
    assert dec.text == "A cube."
    assert dec.of("blend")[0].script == script
    assert 'size="1 2 3"' in dec.of("x3d")[0].xml
    mesh = dec.of("mesh")[0].mesh
    assert mesh.faces == [[0, 1, 2], [0, 1, 3]]
    assert (
        np.abs(mesh.vertices - np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])).max() < 1e-9
    )


def test_new_modality_is_one_small_handler(bundle):
    class LidarHandler:  # what a new modality's handler looks like
        modality = "lidar"

        def encode(self, sample, w):
            for i, cam in enumerate(bundle.layout.config.cameras):
                w.visual("video", camera=cam, time_s=0.0, frame=i)
            w.actions(*drives(n=1, steps=10)[0])

    proc = bundle.processor()
    sample = SimpleNamespace(key="r", meta=SimpleNamespace(modality="lidar"), payloads={})
    with pytest.raises(ProcessorError, match="no handler for modality 'lidar'"):
        proc.encode(sample)
    proc.register(LidarHandler())
    dec = proc.decode(proc.encode(sample).ids)
    assert [s.camera for s in dec.of("visual")] == list(bundle.layout.config.cameras)
    assert dec.of("actions")[0].values.shape == (10, 4)


def test_batch_equals_single_and_documents_split(bundle):
    proc = bundle.processor()
    samples = [text_sample(t) for t in MIXED] + [actions_sample(*drives(n=1, seed=2)[0])]
    batch = proc.encode_batch(samples)
    for s, e in zip(samples, batch, strict=True):
        assert e.ids.tolist() == proc.encode(s).ids.tolist()
    docs = proc.decode_documents(np.concatenate([e.ids for e in batch]))
    assert [d.text for d in docs[:-1]] == MIXED


def test_bad_sequences_raise(bundle):
    proc = bundle.processor()
    lay = bundle.layout
    with pytest.raises(ProcessorError, match="no closing token"):
        proc.decode([lay.id_of("<|ipa_start|>"), 5])
    with pytest.raises(ProcessorError, match="outside any span"):
        proc.decode([lay.range("action").start])
    bad = text_sample("x").model_copy()
    bad._payloads = {"txt": b"\xff\xfe"}
    with pytest.raises(ProcessorError, match="not UTF-8"):
        proc.encode(bad)
