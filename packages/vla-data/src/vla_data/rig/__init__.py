"""Six-camera driving rigs: the on-disk input layout, clock synchronisation and the rig reader.

```python
from vla_data.rig import RigSyncConfig, load_rig, write_rig
from vla_data.video import SamplingPolicy

rig = load_rig("scene-0061/", RigSyncConfig(rate_hz=12, tolerance_ms=20),
               policy=SamplingPolicy(kind="fps", fps=2))
rig.sync.ticks_us            # reference ticks (int64 microseconds, ~12 Hz)
rig.sync.frame_index         # (ticks, 6) frame of each camera per tick, -1 = none
rig.actions                  # (ticks, 4) steering, throttle, brake, speed at the ticks
rig.defects                  # missing cameras, dropped frames, duplicated timestamps, offsets, drift
rig.sampled_frames("front")  # {tick: RGB} for the sampled ticks
sample = rig.meta(), rig.payloads()   # what `vla-data ingest` stores (modality "rig")
```
"""

from vla_data.rig.config import RigSyncConfig
from vla_data.rig.layout import (
    ACTION_DIMS,
    CAMERAS,
    POSE_DIMS,
    RIG_MANIFEST,
    CameraEntry,
    RigError,
    RigManifest,
    TableEntry,
    parse_manifest,
    write_rig,
)
from vla_data.rig.reader import Rig, RigCamera, claim_rig_files, load_rig, read_rig
from vla_data.rig.sync import (
    CameraClock,
    SyncResult,
    interpolate_pose,
    interpolate_signals,
    synchronise,
)

__all__ = [
    "ACTION_DIMS",
    "CAMERAS",
    "POSE_DIMS",
    "RIG_MANIFEST",
    "CameraClock",
    "CameraEntry",
    "Rig",
    "RigCamera",
    "RigError",
    "RigManifest",
    "RigSyncConfig",
    "SyncResult",
    "TableEntry",
    "claim_rig_files",
    "interpolate_pose",
    "interpolate_signals",
    "load_rig",
    "parse_manifest",
    "read_rig",
    "synchronise",
    "write_rig",
]
