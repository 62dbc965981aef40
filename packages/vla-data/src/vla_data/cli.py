"""The `vla-data` command line (click): ingest, verify, stats, inspect, sample-corpus."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vla_data import __version__


def _echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _fail(message: str) -> None:
    raise click.ClickException(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vla-data")
def main() -> None:
    """Turn raw multimodal files into validated, fully accounted WebDataset shards."""


@main.command()
@click.argument("sources", nargs=-1, required=True)
@click.option(
    "--out", "-o", required=True, type=click.Path(file_okay=False), help="Dataset folder to write."
)
@click.option("--text-field", default="text", show_default=True)
@click.option("--id-field", default="id", show_default=True)
@click.option("--license-field", default="license", show_default=True)
@click.option(
    "--license",
    "default_license",
    default="unknown",
    show_default=True,
    help="License of records that name none.",
)
@click.option(
    "--audio-rate", default=16_000, show_default=True, help="Resample audio to this rate (Hz)."
)
@click.option(
    "--audio-channels",
    type=int,
    default=None,
    help="Mix audio to this many channels (default: keep, at most 2).",
)
@click.option(
    "--keep-gps", is_flag=True, help="Keep GPS EXIF in images (stripped by default as PII)."
)
@click.option(
    "--action-dims", default=None, help="Comma-separated names for plain .npy action columns."
)
@click.option(
    "--transcript-language",
    default=None,
    help="Language of transcripts whose sidecar names none (en, cmn, yue, hak, ...; auto = LID).",
)
@click.option("--ipa/--no-ipa", default=True, show_default=True, help="IPA layer for transcripts.")
@click.option(
    "--speech-checks/--no-speech-checks",
    default=True,
    show_default=True,
    help="VAD, loudness, clipping and silence checks on audio.",
)
@click.option(
    "--blender-timeout",
    "blender_timeout_s",
    type=float,
    default=60.0,
    show_default=True,
    help="Wall-clock seconds per Blender script (run sandboxed).",
)
@click.option("--blender-cpu", "blender_cpu_s", type=int, default=60, show_default=True)
@click.option("--blender-memory-mb", type=int, default=4096, show_default=True)
@click.option("--max-shard-count", default=10_000, show_default=True)
@click.option("--max-shard-mb", default=1024, show_default=True)
@click.option(
    "--tasks",
    default=8,
    show_default=True,
    help="Output partitions (fixed for reproducible shards).",
)
@click.option(
    "--workers", "-j", type=int, default=None, help="Processes (default: CPUs, at most 8)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def ingest(
    sources,
    out,
    text_field,
    id_field,
    license_field,
    default_license,
    audio_rate,
    audio_channels,
    keep_gps,
    action_dims,
    max_shard_count,
    max_shard_mb,
    tasks,
    workers,
    as_json,
    **speech_and_3d,
) -> None:
    """Ingest SOURCES (files, folders, globs or fsspec URLs) into the dataset folder OUT.

    Re-running the same command resumes: finished inputs are skipped, nothing is duplicated.
    """
    from pydantic import ValidationError

    from vla_data.ingest import IngestConfig, SourceError
    from vla_data.ingest import ingest as run_ingest

    options = dict(
        text_field=text_field,
        id_field=id_field,
        license_field=license_field,
        default_license=default_license,
        audio_rate=audio_rate,
        audio_channels=audio_channels,
        strip_gps=not keep_gps,
        action_dims=action_dims.split(",") if action_dims else None,
        max_shard_count=max_shard_count,
        max_shard_bytes=max_shard_mb << 20,
        tasks=tasks,
        **speech_and_3d,
    )
    if workers is not None:
        options["workers"] = workers
    try:
        config = IngestConfig(**options)
    except ValidationError as e:
        err = e.errors()[0]
        _fail(f"invalid option {err['loc'][0]}: {err['msg']}")
    with click.progressbar(length=1, label="ingest", file=sys.stderr, show_pos=False) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        try:
            report = run_ingest(list(sources), out, config, progress=progress)
        except (SourceError, ValueError, FileNotFoundError) as e:
            _fail(str(e))
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        _echo_json(report.__dict__ | {"inputs": report.inputs})
    else:
        click.echo(
            f"{report.files} files ({report.files_skipped} already done), {report.inputs} records: "
            f"{report.kept} kept, {report.quarantined} quarantined, {report.bytes_in / 1e6:.1f} MB "
            f"in {report.seconds:.1f}s -> {out}"
        )


@main.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True)
def verify(root, as_json) -> None:
    """Check ROOT's accounting: inputs = kept + filtered + quarantined, each kept key in one shard."""
    from vla_data.verify import verify as run_verify

    report = run_verify(root)
    if as_json:
        _echo_json(report.__dict__ | {"ok": report.ok})
    else:
        c = report.counts
        click.echo(
            f"{root}: {report.inputs} inputs = {c.get('kept', 0)} kept + {c.get('filtered', 0)} filtered + "
            f"{c.get('quarantined', 0)} quarantined; {report.shards} shards"
        )
    if not report.ok:
        for problem in report.problems[:20]:
            click.echo(f"error: {problem}", err=True)
        more = len(report.problems) - 20
        if more > 0:
            click.echo(f"error: ... and {more} more", err=True)
        _fail(f"verify failed: {len(report.problems)} discrepancies, first: {report.problems[0]}")
    if not as_json:
        click.echo("ok")


@main.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False))
def stats(root) -> None:
    """Counts, bytes and hours of audio by source, license and modality (JSON)."""
    from vla_data.shards import ShardError
    from vla_data.stats import dataset_stats

    try:
        _echo_json(dataset_stats(root))
    except ShardError as e:
        _fail(str(e))


@main.command()
@click.argument("shard", type=click.Path(exists=True, dir_okay=False))
@click.option("--limit", "-n", default=20, show_default=True, help="Records to show (0 = all).")
@click.option("--json", "as_json", is_flag=True, help="Full JSON metadata, one record per line.")
def inspect(shard, limit, as_json) -> None:
    """List the records of a SHARD (sample or quarantine shard) with their parts and metadata."""
    from vla_data.quarantine import QuarantineRecord
    from vla_data.shards import ShardError, iter_groups, sample_from_group

    try:
        for i, (key, members) in enumerate(iter_groups(shard)):
            if limit and i >= limit:
                click.echo(f"... (stopped at --limit {limit})")
                break
            meta = json.loads(members.get("json", b"{}"))
            if "error" in meta:  # a quarantine record
                record = QuarantineRecord.model_validate(meta)
                line = f"{key}  QUARANTINED  {record.error}  ({record.bytes} bytes from {record.source})"
                obj = record.model_dump(mode="json")
            else:
                sample = sample_from_group(shard, key, members)
                parts = ", ".join(f"{n}:{p.bytes}B" for n, p in sample.parts.items())
                line = f"{key}  {sample.modality.value}  [{parts}]  {sample.meta.model_dump(exclude={'modality'})}"
                obj = sample.model_dump(mode="json")
            click.echo(json.dumps(obj, ensure_ascii=False) if as_json else line)
    except ShardError as e:
        _fail(str(e))


@main.command("filter")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--config",
    "-c",
    "config_path",
    required=True,
    help="Pipeline TOML, or a shipped recipe: web-text, sample-corpus.",
)
@click.option(
    "--out", "-o", required=True, type=click.Path(file_okay=False), help="Dataset folder to write."
)
@click.option(
    "--workers", "-j", default=1, show_default=True, help="Processes (one input shard each)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def filter_(src, config_path, out, workers, as_json) -> None:
    """Run the stage cascade of a pipeline TOML over dataset SRC into OUT (resumable per shard).

    Per-stage stats (in / kept / dropped by reason / seconds / counters) go to OUT/stats.json;
    every ledger line carries the record's scores, for `vla-data replay`.
    """
    from vla_data.pipeline import PipelineConfig, run_pipeline

    try:
        config = PipelineConfig.load(config_path)
        with click.progressbar(length=1, label="filter", file=sys.stderr, show_pos=True) as bar:

            def progress(done: int, total: int) -> None:
                bar.length = max(total, 1)
                bar.update(done - bar.pos)

            report = run_pipeline(src, out, config, workers=workers, progress=progress)
    except ValueError as e:
        _fail(str(e))
    if as_json:
        _echo_json(report.__dict__)
        return
    click.echo(f"{'stage':<20} {'in':>9} {'kept':>9} {'seconds':>8}  dropped / counters")
    for row in report.stages:
        extra = {**row["dropped"], **row["counters"]}
        click.echo(
            f"{row['stage']:<20} {row['in']:>9} {row['kept']:>9} {row['seconds']:>8.2f}  {extra}"
        )
    click.echo(
        f"{report.inputs} inputs: {report.kept} kept, {report.filtered} filtered, "
        f"{report.quarantined} quarantined in {report.seconds:.1f}s -> {out}"
    )


@main.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out", "-o", required=True, type=click.Path(file_okay=False), help="Dataset folder to write."
)
@click.option(
    "--text",
    type=click.Choice(["minhash", "exact", "simhash", "none"]),
    default="minhash",
    show_default=True,
)
@click.option(
    "--ngram", default=5, show_default=True, help="MinHash shingle size (words; CJK characters)."
)
@click.option("--bands", default=14, show_default=True)
@click.option("--rows", default=8, show_default=True)
@click.option(
    "--jaccard",
    "jaccard_threshold",
    default=0.0,
    show_default=True,
    help="Verify LSH candidates at this estimated Jaccard (0 = keep every band collision, as FineWeb).",
)
@click.option(
    "--simhash-threshold", default=3, show_default=True, help="Max Hamming distance (bits)."
)
@click.option(
    "--image", type=click.Choice(["phash", "dhash", "none"]), default="phash", show_default=True
)
@click.option(
    "--image-threshold", default=6, show_default=True, help="Max Hamming distance of image hashes."
)
@click.option(
    "--chunk-size",
    default=200_000,
    show_default=True,
    help="Documents per spilled run: the memory bound.",
)
@click.option(
    "--spill-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where runs spill (default: temp).",
)
@click.option("--workers", "-j", default=1, show_default=True)
def dedup(src, out, workers, **options) -> None:
    """Deduplicate every shard of SRC into OUT: one representative kept per cluster.

    Duplicates are filtered in the ledger with the representative's key as their cluster.
    """
    from pydantic import ValidationError

    from vla_data.pipeline import DedupConfig, run_dedup

    try:
        config = DedupConfig(**options)
        report = run_dedup(src, out, config, workers=workers)
    except ValidationError as e:
        _fail(f"invalid option {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}")
    except ValueError as e:
        _fail(str(e))
    (row,) = report.stages
    click.echo(
        f"{report.inputs} inputs: {report.kept} kept ({row['counters'].get('clusters', 0)} clusters with "
        f"duplicates), dropped {row['dropped']} in {report.seconds:.1f}s -> {out}"
    )


@main.command()
@click.option(
    "--config",
    "-c",
    "config_path",
    required=True,
    help="Pipeline TOML, or a shipped recipe: web-text, sample-corpus.",
)
@click.option("--stage", "stage_name", required=True, help="Stage name in the pipeline.")
@click.option("--score", required=True, help="One of the stage's thresholded scores.")
@click.option(
    "--labels",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="JSONL with text and label (keep/drop).",
)
@click.option(
    "--dataset",
    type=click.Path(exists=True, file_okay=False),
    help="A filtered folder: kept fraction on its recorded scores.",
)
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for replay.json and replay.png.",
)
@click.option(
    "--points", default=101, show_default=True, help="Thresholds to evaluate (score quantiles)."
)
def replay(config_path, stage_name, score, labels, dataset, out, points) -> None:
    """Precision / recall / kept fraction of a stage over thresholds, before re-running it."""
    from vla_data.dataset import write_json_atomic
    from vla_data.pipeline import PipelineConfig
    from vla_data.pipeline.replay import plot
    from vla_data.pipeline.replay import replay as run_replay

    try:
        curve = run_replay(
            PipelineConfig.load(config_path), stage_name, score, labels, dataset, points
        )
    except ValueError as e:
        _fail(str(e))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = curve.__dict__ | {"best_f1": curve.best_f1()}
    write_json_atomic(out / "replay.json", summary)
    plot(curve, out / "replay.png")
    _echo_json(
        {
            k: summary[k]
            for k in ("stage", "score", "direction", "current", "labelled", "positives", "best_f1")
        }
        | {"json": str(out / "replay.json"), "png": str(out / "replay.png")}
    )


@main.command("train-classifier")
@click.argument("train", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out", "-o", required=True, type=click.Path(dir_okay=False), help="Model file to write."
)
@click.option(
    "--valid",
    type=click.Path(exists=True, dir_okay=False),
    help="Evaluation file (default: hold out part of TRAIN).",
)
@click.option("--holdout", default=0.1, show_default=True, help="Held-out share without --valid.")
@click.option("--text-field", default="text", show_default=True, help="JSONL text field.")
@click.option("--label-field", default="label", show_default=True, help="JSONL label field.")
@click.option("--epoch", default=25, show_default=True)
@click.option("--lr", default=0.5, show_default=True)
@click.option("--dim", default=32, show_default=True)
@click.option("--word-ngrams", default=2, show_default=True)
@click.option("--minn", default=1, show_default=True, help="Min character n-gram (0 = none).")
@click.option("--maxn", default=4, show_default=True)
@click.option("--bucket", default=200_000, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--threads", default=1, show_default=True, help=">1 is faster but not bit-reproducible."
)
@click.option("--quantize", is_flag=True, help="Product-quantize (a small .ftz model).")
@click.option("--cutoff", default=0, show_default=True, help="Rows kept when quantizing (0 = all).")
def train_classifier(train, out, valid, holdout, **options) -> None:
    """Train a fastText classifier (language ID, quality, topic, toxicity) from TRAIN.

    TRAIN is fastText lines (`__label__x text`) or JSONL (.jsonl). Writes OUT and OUT.json (a
    model card with held-out accuracy per label) and prints the card. Use the model in a
    pipeline with a `fasttext` stage, or as a `language_id` stage's `model`.
    """
    from vla_data.classify.train import train_classifier as train_model

    fields = {k: options.pop(k) for k in ("text_field", "label_field", "quantize", "cutoff")}
    try:
        card = train_model(train, out, valid_path=valid, holdout=holdout, **fields, **options)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    _echo_json(card)


@main.command("sample-corpus")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False))
@click.option(
    "--corrupt", is_flag=True, help="Add one bad file of every kind ingest must quarantine."
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--size",
    type=click.Choice(["tiny", "small"]),
    default="tiny",
    show_default=True,
    help="tiny: one 2 s drive (tests, main job); small: 4x records, three 10 s drives.",
)
@click.option("--scale", type=int, default=None, help="Override the size's record multiplier.")
def sample_corpus(out, corrupt, seed, size, scale) -> None:
    """Generate the embedded offline sample corpus of raw files (deterministic for a seed)."""
    from vla_data.corpus import generate_corpus

    try:
        manifest = generate_corpus(Path(out), corrupt=corrupt, seed=seed, size=size, scale=scale)
    except (FileExistsError, ValueError) as e:
        _fail(str(e))
    click.echo(
        f"{len(manifest.files)} files, {manifest.expected_records} records "
        f"({manifest.expected_quarantined} to quarantine) -> {out}"
    )


from vla_data.rig.cli import rig_check  # noqa: E402  (driving rigs)
from vla_data.video.cli import cost  # noqa: E402  (video storage cost model)

main.add_command(rig_check)
main.add_command(cost)

if __name__ == "__main__":
    main()
