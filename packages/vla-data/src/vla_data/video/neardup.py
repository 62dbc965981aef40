"""Perceptual near-duplicates of clips: sequences of keyframe pHashes compared with a Hamming
threshold.

A clip's signature is the 64-bit pHash (:func:`vla_data.dedup.image_hash.phash`) of frames
picked by a sampling policy, with their times. The default policy samples one frame per
``interval_s`` of presentation time rather than the codec's keyframes: a re-encode usually moves
the keyframes (another GOP), while times stay put, so re-encoded, re-scaled or re-compressed
copies keep nearly the same signature. ``SamplingPolicy(kind="keyframes")`` is available too.

Two signatures are compared at every alignment (shift of one against the other, so trimmed
copies match) that overlaps at least ``min_overlap`` of the shorter one; their distance is the
smallest mean Hamming distance over the overlapping pairs. :func:`clip_dedup` finds candidates
through :class:`~vla_data.dedup.simhash.HammingDeduper` on the individual frame hashes (so it
scales past all-pairs), verifies each candidate pair by alignment and clusters with union-find.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vla_data.dedup.clusters import DedupResult, UnionFind
from vla_data.dedup.hashing import popcount64
from vla_data.dedup.image_hash import phash
from vla_data.dedup.simhash import HammingDeduper
from vla_data.video.decode import VideoSource, scan_video
from vla_data.video.sampling import SamplingPolicy, policy_want


@dataclass(frozen=True)
class ClipSignature:
    """pHashes of a clip's sampled frames and the frames' times in seconds."""

    hashes: np.ndarray  # uint64 (n,)
    times_s: np.ndarray  # float64 (n,)

    def __len__(self) -> int:
        return len(self.hashes)

    def to_dict(self) -> dict:
        return {
            "hashes": [f"{int(h):016x}" for h in self.hashes],
            "times_s": [round(float(t), 6) for t in self.times_s],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ClipSignature:
        return cls(
            np.array([int(h, 16) for h in data["hashes"]], dtype=np.uint64),
            np.array(data["times_s"], dtype=np.float64),
        )


def clip_signature(
    source: VideoSource,
    *,
    interval_s: float = 1.0,
    policy: SamplingPolicy | None = None,
    times_us: np.ndarray | None = None,
) -> ClipSignature:
    """Signature of a video: pHash of frames sampled every ``interval_s`` (or by ``policy``)."""
    policy = policy or SamplingPolicy(kind="fps", fps=1.0 / interval_s)
    want = policy_want(policy, times_us)
    hashes: list[int] = []
    times: list[float] = []

    def pick(i: int, t: float, key: bool, cut: bool) -> bool:
        if want(i, t, key, cut):
            times.append(times_us[i] / 1e6 if times_us is not None else t)
            return True
        return False

    scan = scan_video(source, want=pick, features=policy.kind == "shots")
    for i in sorted(scan.images):
        hashes.append(phash(scan.images[i]))
    return ClipSignature(np.array(hashes, dtype=np.uint64), np.array(times, dtype=np.float64))


def frames_signature(frames: Sequence[np.ndarray], times_s: Sequence[float]) -> ClipSignature:
    """Signature from already decoded frames (RGB or luma arrays) and their times."""
    return ClipSignature(
        np.array([phash(f) for f in frames], dtype=np.uint64),
        np.asarray(times_s, dtype=np.float64),
    )


def clip_distance(
    a: ClipSignature, b: ClipSignature, *, min_overlap: float = 0.5
) -> tuple[float, int, int]:
    """(mean Hamming bits, shift, overlapping pairs) at the best alignment of ``b`` on ``a``.

    Pair ``a[i]`` with ``b[i - shift]``. Returns ``(inf, 0, 0)`` when no alignment overlaps
    ``min_overlap`` of the shorter signature.
    """
    ha, hb = np.asarray(a.hashes, np.uint64), np.asarray(b.hashes, np.uint64)
    na, nb = len(ha), len(hb)
    if na == 0 or nb == 0:
        return float("inf"), 0, 0
    need = max(1, int(np.ceil(min_overlap * min(na, nb))))
    best = (float("inf"), 0, 0)
    for shift in range(-(nb - 1), na):
        lo, hi = max(0, shift), min(na, nb + shift)
        if hi - lo < need:
            continue
        d = float(popcount64(ha[lo:hi] ^ hb[lo - shift : hi - shift]).mean())
        if d < best[0] or (d == best[0] and hi - lo > best[2]):
            best = (d, shift, hi - lo)
    return best


def clip_dedup(
    signatures: Sequence[ClipSignature],
    *,
    threshold: float = 8.0,
    frame_threshold: int = 12,
    min_overlap: float = 0.5,
    **kwargs: object,
) -> DedupResult:
    """Cluster clips whose aligned signatures are within ``threshold`` mean bits.

    Candidates are clips with at least one pair of frame hashes within ``frame_threshold`` bits
    (found with :class:`HammingDeduper`; ``kwargs`` go to it); each candidate pair is then
    verified with :func:`clip_distance`.
    """
    owner = np.concatenate(
        [np.full(len(s), i, dtype=np.int64) for i, s in enumerate(signatures)] or [np.zeros(0)]
    ).astype(np.int64)
    uf = UnionFind(len(signatures))
    if owner.size:
        deduper = HammingDeduper(frame_threshold, **kwargs)  # type: ignore[arg-type]
        deduper.add(np.concatenate([np.asarray(s.hashes, np.uint64) for s in signatures]))
        roots = deduper.finish().representative
        groups: dict[int, set[int]] = {}
        for frame, root in enumerate(roots.tolist()):
            groups.setdefault(root, set()).add(int(owner[frame]))
        checked: set[tuple[int, int]] = set()
        for clips in groups.values():
            members = sorted(clips)
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    pair = (members[x], members[y])
                    if pair in checked:
                        continue
                    checked.add(pair)
                    d, _, _ = clip_distance(
                        signatures[pair[0]], signatures[pair[1]], min_overlap=min_overlap
                    )
                    if d <= threshold:
                        uf.union(np.array([pair[0]]), np.array([pair[1]]))
    return DedupResult(uf.roots())
