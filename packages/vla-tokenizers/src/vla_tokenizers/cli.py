"""The `vla-tok` command line (click): build, inspect, encode, roundtrip, shards."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from vla_tokenizers import __version__


def _echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _fail(message: str) -> None:
    raise click.ClickException(message)


def _iter_dataset_samples(datasets, label: str | None = None) -> Iterator:
    """Samples of dataset folders / shards, with a progress bar over shards on stderr."""
    from vla_data.shards import iter_samples
    from vla_tokenizers.token_shards import discover

    shards = discover(datasets)
    if label is None:
        for shard in shards:
            yield from iter_samples(shard.path)
        return
    with click.progressbar(shards, label=label, file=sys.stderr, show_pos=True) as bar:
        for shard in bar:
            yield from iter_samples(shard.path)


def _load_bundle(path: str, digest: str | None = None):
    from vla_tokenizers.bundle import BundleError, TokenizerBundle

    try:
        return TokenizerBundle.load(path, expect_digest=digest)
    except BundleError as e:
        _fail(str(e))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vla-tok")
def main() -> None:
    """One vocabulary for every modality: build and check tokenizer bundles, tokenise shards."""


def _load_codecs(vision: str | None, audio: str | None, config) -> list:
    """Codecs for `build --vision-codec/--audio-codec`, checked against the layout's ranges."""
    if not vision and not audio:
        return []
    from vla_tokenizers.codecs.checkpoint import CheckpointError, load_codec

    out = []
    for flag, path, kind, target, size in (
        ("--vision-codec", vision, "video", "vision", config.vision_codes),
        ("--audio-codec", audio, "audio", "audio", config.audio_codes),
    ):
        if not path:
            continue
        try:
            codec = load_codec(path)
        except CheckpointError as e:
            _fail(f"{flag}: {e}")
        if codec.config.kind != kind:
            other = "--audio-codec" if kind == "video" else "--vision-codec"
            _fail(f"{flag} {path}: holds a {codec.config.kind} codec (give it to {other})")
        q = codec.quantizer
        if q.vocab_size > size:
            _fail(
                f"{flag} {path}: the {kind} codec needs {q.vocab_size} ids ({q.depth} levels x "
                f"{q.codebook_size} codes) but the layout's {target} range has {size}; "
                f"use a codec with fewer codes or levels"
            )
        out.append(codec)
    return out


@main.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option(
    "--dataset",
    "-d",
    "datasets",
    multiple=True,
    type=click.Path(exists=True),
    help="vla-data dataset folder (or .tar shard) to fit on: text, transcripts, actions.",
)
@click.option(
    "--text",
    "text_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Extra UTF-8 text file for the BPE (one document per line).",
)
@click.option(
    "--adopt",
    type=click.Path(exists=True, dir_okay=False),
    help="Use this tokenizer.json (e.g. Qwen's) as the text part instead of training.",
)
@click.option("--vocab-size", default=32_000, show_default=True, help="BPE ids to train.")
@click.option("--min-frequency", default=2, show_default=True)
@click.option("--action-bins", default=256, show_default=True)
@click.option(
    "--fast/--no-fast", default=True, show_default=True, help="Fit the FAST action tokenizer."
)
@click.option("--fast-chunk", default=10, show_default=True, help="FAST chunk length (steps).")
@click.option("--fast-scale", default=10.0, show_default=True, help="FAST coefficient scale.")
@click.option("--mesh-bins", default=64, show_default=True, help="OBJ quantisation bins per axis.")
@click.option(
    "--vision-codec",
    type=click.Path(exists=True),
    help="Carry this video codec: a file from `vla-tok codec export`, a checkpoint or run folder.",
)
@click.option(
    "--audio-codec",
    type=click.Path(exists=True),
    help="Carry this audio codec: a file from `vla-tok codec export`, a checkpoint or run folder.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def build(
    out,
    datasets,
    text_files,
    adopt,
    vocab_size,
    min_frequency,
    action_bins,
    fast,
    fast_chunk,
    fast_scale,
    mesh_bins,
    vision_codec,
    audio_codec,
    overwrite,
) -> None:
    """Build a tokenizer bundle into OUT from dataset folders and/or text files.

    With --vision-codec / --audio-codec the bundle carries learned codecs (covered by its
    manifest), and `shards` / VLAProcessor fill image, rig video and audio spans with codes."""
    import numpy as np
    from pydantic import ValidationError

    from vla_tokenizers.bundle import BundleError, TokenizerBundle
    from vla_tokenizers.layout import LayoutConfig

    try:
        config = LayoutConfig(action_bins=action_bins, mesh_bins=mesh_bins)
    except ValidationError as e:
        err = e.errors()[0]
        _fail(f"invalid option {err['loc'][0]}: {err['msg']}")
    codecs = _load_codecs(vision_codec, audio_codec, config)  # fail before the slow part
    texts: list[str] = []
    streams: list = []
    ipa_texts: dict[str, list[str]] = {}
    try:
        for sample in _iter_dataset_samples(datasets, "read"):
            m = str(sample.meta.modality)
            if m == "text":
                t = sample.payloads["txt"].decode("utf-8")
                texts.append(t)
                lang = sample.meta.language
                if lang and len(ipa_texts.setdefault(lang, [])) < 2000:
                    ipa_texts[lang].append(t[:2000])
            elif m == "audio" and sample.meta.transcript:
                texts.append(sample.meta.transcript)
            elif m == "actions":
                values = np.load(io.BytesIO(sample.payloads["actions.npy"]), allow_pickle=False)
                streams.append((values, sample.meta.dims))
            elif m == "rig":  # its actions at the reference ticks
                values = np.load(io.BytesIO(sample.payloads["actions.npy"]), allow_pickle=False)
                streams.append((values, sample.meta.action_dims))
    except ValueError as e:
        _fail(str(e))
    for f in text_files:
        texts += [line for line in Path(f).read_text(encoding="utf-8").splitlines() if line]
    if not texts and not adopt:
        _fail("no text to train on: give --dataset with text samples, --text files, or --adopt")
    try:
        bundle = TokenizerBundle.build(
            texts or None,
            adopt=adopt,
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            layout_config=config,
            action_streams=streams,
            fast=fast,
            fast_chunk=fast_chunk,
            fast_scale=fast_scale,
            ipa_texts=ipa_texts,
        )
        if codecs:
            bundle = bundle.with_codecs(*codecs)
        digest = bundle.save(out, overwrite=overwrite)
    except ValidationError as e:
        err = e.errors()[0]
        _fail(f"invalid option {err['loc'][0]}: {err['msg']}")
    except (BundleError, ValueError) as e:
        _fail(str(e))
    click.echo(
        f"{out}: vocab {bundle.layout.vocab_size} ({bundle.layout.text_size} text BPE ids from "
        f"{len(texts)} texts), {len(streams)} action streams, "
        f"{len(bundle.stats.ipa.symbols)} IPA symbols"
        + "".join(f", {k} codec" for k in sorted(bundle.codecs))
        + f"; digest {digest}"
    )


@main.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--digest", default=None, help="Refuse unless the bundle has this digest.")
def inspect(bundle, digest) -> None:
    """Verify BUNDLE (hashes and consistency) and print its summary as JSON."""
    _echo_json(_load_bundle(bundle, digest).summary())


@main.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.argument("text", required=False)
@click.option("--ipa-language", default=None, help="Also emit IPA spans (espeak language).")
@click.option(
    "--json", "as_json", is_flag=True, help="Print ids, modalities and token names as JSON."
)
def encode(bundle, text, ipa_language, as_json) -> None:
    """Encode TEXT (or stdin) as a text sample and show ids; checks the round trip."""
    from vla_data.sample import Sample, TextMeta
    from vla_tokenizers.layout import MODALITIES

    b = _load_bundle(bundle)
    text = text if text is not None else sys.stdin.read()
    proc = b.processor(ipa="all" if ipa_language else "off", ipa_language=ipa_language)
    sample = Sample.create(
        id="cli",
        source="cli",
        license="unknown",
        meta=TextMeta(chars=len(text)),
        payloads={"txt": text.encode()},
    )
    enc = proc.encode(sample)
    lay = b.layout
    names = [
        b.text.plain.id_to_token(i) if i < lay.text_size else lay.token_name(i)
        for i in enc.ids.tolist()
    ]
    mods = [MODALITIES[m] for m in enc.modality]
    ok = proc.decode(enc.ids).text == text
    if as_json:
        _echo_json({"ids": enc.ids.tolist(), "modality": mods, "tokens": names, "round_trip": ok})
    else:
        click.echo(" ".join(map(str, enc.ids.tolist())))
        click.echo(" ".join(names))
        click.echo(f"{len(enc)} tokens; round trip {'exact' if ok else 'NOT exact'}")
    if not ok:
        _fail("text did not round-trip exactly (adopted tokenizer with a normaliser?)")


@main.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.argument("datasets", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--limit", default=0, help="Samples per modality (0 = all).")
def roundtrip(bundle, datasets, limit) -> None:
    """Round-trip DATASETS' samples through BUNDLE; JSON report (action error per dimension)."""
    import numpy as np

    from vla_tokenizers.actions import roundtrip_error

    b = _load_bundle(bundle)
    report: dict = {"text": {"samples": 0, "exact": 0}, "actions": {}}
    errs: dict[str, dict[str, list]] = {}
    seen: dict[str, int] = {}
    for sample in _iter_dataset_samples(datasets, "roundtrip"):
        m = str(sample.meta.modality)
        if limit and seen.get(m, 0) >= limit:
            continue
        seen[m] = seen.get(m, 0) + 1
        if m == "text":
            t = sample.payloads["txt"].decode("utf-8")
            report["text"]["samples"] += 1
            report["text"]["exact"] += b.text.decode(b.text.encode(t)) == t
        elif m == "actions":
            values = np.load(io.BytesIO(sample.payloads["actions.npy"]), allow_pickle=False)
            dims = sample.meta.dims
            modes = {"bins": b.actions.decode(b.actions.encode(values, dims), dims)}
            if b.fast is not None:
                modes["fast"] = b.fast.decode(b.fast.encode(values, dims), dims, len(values))
            for mode, dec in modes.items():
                rt = roundtrip_error(b.action_stats, values, dec, dims).to_json()
                for d, r in rt.items():
                    errs.setdefault(mode, {}).setdefault(d, []).append(r)
    for mode, by_dim in errs.items():
        report["actions"][mode] = {
            d: {
                "max_abs": max(r["max_abs"] for r in rs),
                "max_abs_inside_bounds": max(r["max_abs_inside_bounds"] for r in rs),
                "mean_abs": float(np.mean([r["mean_abs"] for r in rs])),
                "bin_width": rs[0]["bin_width"],
                "clipped_fraction": float(np.mean([r["clipped_fraction"] for r in rs])),
            }
            for d, rs in by_dim.items()
        }
    _echo_json(report)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--bundle", "-b", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False))
@click.option(
    "--workers", "-j", default=1, show_default=True, help="Processes (one input shard each)."
)
@click.option(
    "--ipa",
    type=click.Choice(["off", "flagged", "all"]),
    default="flagged",
    show_default=True,
    help="IPA spans after text: never, for samples flagged ipa_fallback, or always.",
)
@click.option("--ipa-language", default=None, help="Language for IPA when a sample names none.")
@click.option("--actions", type=click.Choice(["bins", "fast"]), default="bins", show_default=True)
@click.option(
    "--video-size",
    default=128,
    show_default=True,
    help="Rig frames are resized to this square size for the bundle's video codec.",
)
@click.option(
    "--bucket-by",
    type=click.Choice(["stem", "dataset", "modality"]),
    default="stem",
    show_default=True,
    help="Bucket = <source file stem | dataset folder>__<modality>, or modality.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def shards(
    inputs, bundle, out, workers, ipa, ipa_language, actions, video_size, bucket_by, as_json
) -> None:
    """Tokenise INPUTS (dataset folders or .tar shards) into IndexedDataset .bin/.idx per bucket.

    Every sample goes through VLAProcessor: with codecs in the bundle (`build --vision-codec /
    --audio-codec`), images, rig video and audio become codec codes, encoded in batches on the
    GPU when torch sees one. Re-running the same command resumes: finished shards are skipped.
    """
    from vla_tokenizers.bundle import BundleError
    from vla_tokenizers.token_shards import TokenShardError, tokenize_shards

    options = {"ipa": ipa, "ipa_language": ipa_language, "actions": actions}
    if video_size != 128:  # the default stays out of settings.json (resumes of older outputs)
        options["video_size"] = video_size
    with click.progressbar(length=1, label="tokenise", file=sys.stderr, show_pos=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = max(total, done, 1)
            bar.update(done - bar.pos)

        try:
            report = tokenize_shards(
                inputs,
                bundle,
                out,
                workers=workers,
                options=options,
                bucket_by=bucket_by,
                progress=progress,
            )
        except (BundleError, TokenShardError, ValueError, FileNotFoundError) as e:
            _fail(str(e))
    if as_json:
        _echo_json(report.__dict__)
    else:
        click.echo(
            f"{report.shards} shards ({report.shards_skipped} already done), {report.samples} samples, "
            f"{report.rejected} rejected -> {report.documents} documents, {report.tokens} tokens in "
            f"{len(report.buckets)} buckets in {report.seconds:.1f}s -> {out}"
        )
    for message, count in sorted(report.warnings.items()):
        click.echo(f"warning: {count} samples: {message}", err=True)
    if report.rejected:
        click.echo(
            f"warning: {report.rejected} samples rejected, see {Path(out) / 'rejects.jsonl'}",
            err=True,
        )


from vla_tokenizers.codecs.cli import codec as _codec_group  # noqa: E402  (learned codecs)

main.add_command(_codec_group)
