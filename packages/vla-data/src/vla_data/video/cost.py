"""Storage cost model for multi-camera driving video kept as WebDataset rig samples.

Bytes per hour = video (bitrate x cameras, plus container overhead) + the per-tick members of a
rig sample (timestamps, frame map, actions, ego pose, raw CAN) + per-sample JSON and tar headers.
Without ``bitrate_kbps`` the video bitrate is ``bits_per_pixel x width x height x fps`` with a
per-codec bits-per-pixel typical of road scenes at visually lossless-ish quality (H.264 CRF ~23;
the procedural corpus measures 0.15 bpp). Object-store cost = stored GB-months x price + PUT
requests for the shard objects + GET requests and egress for each full read. Every number is a
field with its default printed by ``vla-data cost``.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# typical bits per pixel at 480p for road scenes (H.264 CRF 23 class quality)
CODEC_BPP = {"h264": 0.15, "h265": 0.09, "av1": 0.07, "vp9": 0.09, "mjpeg": 1.2, "raw": 12.0}
CodecName = Literal["h264", "h265", "av1", "vp9", "mjpeg", "raw"]
_TAR_MEMBER = 512 + 256  # header + average padding
_GB = 1e9


class CostInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hours: float = Field(gt=0, description="hours of driving")
    codec: CodecName = "h264"
    bitrate_kbps: float | None = Field(None, gt=0, description="per camera; None: codec bpp")
    cameras: int = Field(6, ge=1)
    width: int = Field(640, gt=0)
    height: int = Field(480, gt=0)
    fps: float = Field(12.0, gt=0)
    container_overhead: float = Field(0.01, ge=0, description="mp4 boxes, share of video bytes")
    clip_s: float = Field(20.0, gt=0, description="seconds per rig sample (nuScenes scenes: 20)")
    can_hz: float = Field(100.0, ge=0, description="raw CAN rows per second (5 float64 each)")
    json_bytes: int = Field(6_000, ge=0, description="metadata per sample (calibration, defects)")
    replicas: int = Field(1, ge=1, description="stored copies (e.g. 2 regions)")
    months: float = Field(12.0, gt=0, description="retention")
    storage_usd_per_gb_month: float = Field(0.023, ge=0, description="S3 Standard, us-east-1")
    put_usd_per_1000: float = Field(0.005, ge=0)
    get_usd_per_1000: float = Field(0.0004, ge=0)
    egress_usd_per_gb: float = Field(0.0, ge=0, description="0 inside the region")
    reads: int = Field(1, ge=0, description="full passes over the data (epochs, re-processing)")
    object_gb: float = Field(1.0, gt=0, description="shard object size")


def estimate_cost(inputs: CostInputs) -> dict:
    """Bytes per hour and object-store cost; returns numbers plus the assumptions used."""
    x = inputs
    bpp = CODEC_BPP[x.codec]
    kbps = x.bitrate_kbps if x.bitrate_kbps is not None else bpp * x.width * x.height * x.fps / 1e3
    video = kbps * 1e3 / 8 * 3600 * x.cameras * (1 + x.container_overhead)
    ticks = x.fps * 3600
    # per tick: reference time (8), frame map (4 x 6), actions (4 x 4 float32),
    # ego pose (7 float64), per-camera raw timestamps (8 per camera)
    per_tick = 8 + 4 * 6 + 4 * 4 + 7 * 8 + 8 * x.cameras
    can = x.can_hz * 3600 * 5 * 8
    samples = 3600 / x.clip_s
    members = x.cameras * 2 + 6  # mp4 + camera timestamps, plus ticks/frames/actions/can/pose/json
    per_sample = x.json_bytes + members * (_TAR_MEMBER + 128)  # + .npy headers
    meta = ticks * per_tick + can + samples * per_sample
    per_hour = video + meta
    total = per_hour * x.hours
    stored_gb = total * x.replicas / _GB
    objects = math.ceil(total / (x.object_gb * _GB)) * x.replicas
    storage = stored_gb * x.storage_usd_per_gb_month * x.months
    puts = objects * x.put_usd_per_1000 / 1000
    gets = objects * x.reads * x.get_usd_per_1000 / 1000
    egress = total / _GB * x.reads * x.egress_usd_per_gb
    assumptions = [
        f"{x.cameras} cameras at {x.width}x{x.height} @ {x.fps:g} Hz, codec {x.codec}",
        (
            f"video bitrate {kbps:.0f} kbit/s per camera (given)"
            if x.bitrate_kbps is not None
            else f"video bitrate {kbps:.0f} kbit/s per camera = {bpp} bits/pixel x pixels/s "
            f"(typical for {x.codec} on road scenes; pass --bitrate-kbps to override)"
        ),
        f"container overhead {x.container_overhead:.0%} of video bytes",
        f"rig samples of {x.clip_s:g} s: {x.json_bytes} B JSON + {members} tar members each",
        f"per tick {per_tick} B (ticks, frame map, 4 actions, ego pose, camera timestamps); "
        f"raw CAN {x.can_hz:g} Hz x 5 float64",
        f"{x.replicas} replica(s), retained {x.months:g} months at "
        f"${x.storage_usd_per_gb_month}/GB-month",
        f"{x.object_gb:g} GB shard objects: PUT ${x.put_usd_per_1000}/1000, "
        f"GET ${x.get_usd_per_1000}/1000, {x.reads} full read(s), egress ${x.egress_usd_per_gb}/GB",
        "GB = 1e9 bytes; prices exclude tax, minimum-duration and retrieval fees of cold tiers",
    ]
    return {
        "inputs": x.model_dump(),
        "bitrate_kbps_per_camera": round(kbps, 1),
        "bytes_per_hour": round(per_hour),
        "video_bytes_per_hour": round(video),
        "metadata_bytes_per_hour": round(meta),
        "gb_per_hour": round(per_hour / _GB, 4),
        "total_bytes": round(total),
        "total_tb": round(total / 1e12, 4),
        "stored_gb_with_replicas": round(stored_gb, 3),
        "objects": objects,
        "cost_usd": {
            "storage": round(storage, 2),
            "put_requests": round(puts, 4),
            "get_requests": round(gets, 4),
            "egress": round(egress, 2),
            "total": round(storage + puts + gets + egress, 2),
            "per_month_storage": round(stored_gb * x.storage_usd_per_gb_month, 2),
        },
        "assumptions": assumptions,
    }
