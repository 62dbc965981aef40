"""`vla-data rig-check`: load a rig folder and print its clocks, quality and defects."""

from __future__ import annotations

import json

import click

from vla_data.rig.config import RigSyncConfig


@click.command("rig-check", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("folder")
@click.option("--rate-hz", default=12.0, show_default=True, help="Reference clock.")
@click.option(
    "--tolerance-ms", default=20.0, show_default=True, help="Frame-to-tick matching tolerance."
)
@click.option("--offset-tolerance-ms", default=5.0, show_default=True)
@click.option("--drift-tolerance-ms", default=5.0, show_default=True)
@click.option("--no-correct", is_flag=True, help="Match raw timestamps (no clock correction).")
def rig_check(folder, rate_hz, tolerance_ms, offset_tolerance_ms, drift_tolerance_ms, no_correct):
    """Check a rig folder (rig.json + cameras + CAN) without ingesting it; prints JSON.

    Exits 1 with the file and cause when the rig is malformed (what ingest would quarantine).
    """
    from pydantic import ValidationError

    from vla_data.rig.layout import RigError
    from vla_data.rig.reader import load_rig

    try:
        config = RigSyncConfig(
            rate_hz=rate_hz,
            tolerance_ms=tolerance_ms,
            offset_tolerance_ms=offset_tolerance_ms,
            drift_tolerance_ms=drift_tolerance_ms,
            correct_clocks=not no_correct,
        )
    except ValidationError as e:
        raise click.ClickException(e.errors()[0]["msg"]) from None
    try:
        rig = load_rig(folder, config)
    except RigError as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(rig.report(), indent=2))
