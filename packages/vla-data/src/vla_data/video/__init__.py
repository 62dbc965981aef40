"""Video processing: decode scans, shot cuts, sampling policies, quality checks, clip near-dup,
and a storage cost model.

```python
from vla_data.video import (
    scan_video, check_quality, detect_cuts, SamplingPolicy, policy_want,
    clip_signature, clip_distance, clip_dedup, estimate_cost, CostInputs,
)

scan = scan_video("front.mp4", want=policy_want(SamplingPolicy(kind="fps", fps=2)))
scan.info                      # codec, width, height, frames, pix_fmt
check_quality(scan.features)   # black / frozen / blurry frame indices
scan.features.cut              # frames that start a new shot
scan.images                    # {frame index: (H, W, 3) RGB} for the sampled frames
clip_distance(clip_signature(a), clip_signature(b))  # (mean bits, shift, overlap)
```
"""

from vla_data.video.cost import CostInputs, estimate_cost
from vla_data.video.decode import (
    VideoError,
    VideoInfo,
    VideoScan,
    encode_h264,
    iter_frames,
    luma,
    probe_video,
    scan_video,
)
from vla_data.video.neardup import (
    ClipSignature,
    clip_dedup,
    clip_distance,
    clip_signature,
    frames_signature,
)
from vla_data.video.quality import (
    FrameFeatures,
    QualityConfig,
    QualityReport,
    check_quality,
    frame_features,
    laplacian_variance,
)
from vla_data.video.sampling import (
    SamplingPolicy,
    policy_want,
    sample_fixed_fps,
    sample_keyframes,
    sample_shots,
)
from vla_data.video.shots import ShotConfig, ShotDetector, cuts_from_features, detect_cuts, shots

__all__ = [
    "ClipSignature",
    "CostInputs",
    "FrameFeatures",
    "QualityConfig",
    "QualityReport",
    "SamplingPolicy",
    "ShotConfig",
    "ShotDetector",
    "VideoError",
    "VideoInfo",
    "VideoScan",
    "check_quality",
    "clip_dedup",
    "clip_distance",
    "clip_signature",
    "cuts_from_features",
    "detect_cuts",
    "encode_h264",
    "estimate_cost",
    "frame_features",
    "frames_signature",
    "iter_frames",
    "laplacian_variance",
    "luma",
    "policy_want",
    "probe_video",
    "sample_fixed_fps",
    "sample_keyframes",
    "sample_shots",
    "scan_video",
    "shots",
]
