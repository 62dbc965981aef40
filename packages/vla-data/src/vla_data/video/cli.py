"""`vla-data cost`: bytes per hour and object-store cost of multi-camera driving video."""

from __future__ import annotations

import json

import click
from pydantic import ValidationError

from vla_data.video.cost import CODEC_BPP, CostInputs, estimate_cost


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1000
    return f"{n:.2f} PB"


@click.command("cost", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--hours", type=float, required=True, help="Hours of driving.")
@click.option("--codec", type=click.Choice(sorted(CODEC_BPP)), default="h264", show_default=True)
@click.option(
    "--bitrate-kbps",
    type=float,
    default=None,
    help="Video bitrate per camera (default: codec bits/pixel x pixels/s).",
)
@click.option("--cameras", default=6, show_default=True)
@click.option("--width", default=640, show_default=True)
@click.option("--height", default=480, show_default=True)
@click.option("--fps", default=12.0, show_default=True)
@click.option("--clip-s", default=20.0, show_default=True, help="Seconds per rig sample.")
@click.option("--months", default=12.0, show_default=True, help="Retention.")
@click.option("--replicas", default=1, show_default=True)
@click.option(
    "--usd-per-gb-month", default=0.023, show_default=True, help="Storage price (S3 Standard)."
)
@click.option("--put-usd-per-1000", default=0.005, show_default=True)
@click.option("--get-usd-per-1000", default=0.0004, show_default=True)
@click.option("--egress-usd-per-gb", default=0.0, show_default=True)
@click.option("--reads", default=1, show_default=True, help="Full passes over the data.")
@click.option("--object-gb", default=1.0, show_default=True, help="Shard object size.")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def cost(as_json: bool, usd_per_gb_month: float, **options) -> None:
    """Bytes/hour and object-store cost for N hours of 6-camera 480p@12Hz driving video."""
    try:
        inputs = CostInputs(storage_usd_per_gb_month=usd_per_gb_month, **options)
    except ValidationError as e:
        err = e.errors()[0]
        raise click.ClickException(
            f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}"
        ) from None
    est = estimate_cost(inputs)
    if as_json:
        click.echo(json.dumps(est, indent=2))
        return
    c = est["cost_usd"]
    click.echo(f"{inputs.hours:g} h of {inputs.cameras}-camera video, {inputs.codec}:")
    click.echo(
        f"  per hour  {_human(est['bytes_per_hour'])} "
        f"(video {_human(est['video_bytes_per_hour'])}, "
        f"metadata {_human(est['metadata_bytes_per_hour'])})"
    )
    click.echo(
        f"  total     {_human(est['total_bytes'])} "
        f"({est['objects']} objects, {est['stored_gb_with_replicas']:.1f} GB stored)"
    )
    click.echo(
        f"  cost      ${c['total']:.2f} over {inputs.months:g} months "
        f"(storage ${c['storage']:.2f} = ${c['per_month_storage']:.2f}/month, "
        f"PUT ${c['put_requests']:.4f}, GET ${c['get_requests']:.4f}, egress ${c['egress']:.2f})"
    )
    click.echo("assumptions:")
    for line in est["assumptions"]:
        click.echo(f"  - {line}")
