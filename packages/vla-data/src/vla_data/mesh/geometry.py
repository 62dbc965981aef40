"""`MeshData` (vertices + polygon faces + named objects) and its geometry checks.

Checks, all counted so they can go into `MeshMeta`:

- non-finite vertices: any coordinate NaN or +-inf;
- degenerate faces: a repeated vertex index, or a polygon area (Newell's method over the fan
  triangles) at most `1e-12 * diagonal**2` of the finite bounding box;
- edges, taken from polygon boundaries (not from triangulation diagonals): boundary edges (one
  face), non-manifold edges (three or more faces);
- watertight: faces exist, no boundary and no non-manifold edge (every edge in exactly two
  faces); winding consistency from trimesh on the fan-triangulated mesh;
- bounding box over finite vertices, counts of vertices, faces and triangles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class MeshError(ValueError):
    """Malformed geometry: the message names the cause (and the line/element where known)."""


@dataclass
class MeshData:
    vertices: np.ndarray  # (n, 3) float64
    face_sizes: np.ndarray  # (m,) int64, >= 3 each
    face_indices: np.ndarray  # (sum(face_sizes),) int64, 0-based
    objects: list[tuple[str, int, int]] = field(default_factory=list)  # (name, first face, end)

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float64).reshape(-1, 3)
        self.face_sizes = np.asarray(self.face_sizes, dtype=np.int64).reshape(-1)
        self.face_indices = np.asarray(self.face_indices, dtype=np.int64).reshape(-1)
        if int(self.face_sizes.sum()) != len(self.face_indices):
            raise MeshError("face sizes do not add up to the face index count")
        if len(self.face_sizes) and int(self.face_sizes.min()) < 3:
            raise MeshError("a face has fewer than 3 vertices")
        if len(self.face_indices) and (
            int(self.face_indices.min()) < 0 or int(self.face_indices.max()) >= len(self.vertices)
        ):
            raise MeshError("a face index is out of range")
        if not self.objects:
            self.objects = [("mesh", 0, len(self.face_sizes))]

    @classmethod
    def from_triangles(cls, vertices, faces, name: str = "mesh") -> MeshData:
        faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
        return cls(vertices, np.full(len(faces), 3), faces.reshape(-1), [(name, 0, len(faces))])

    @classmethod
    def concatenate(cls, parts: list[tuple[str, MeshData]]) -> MeshData:
        verts, sizes, idx, objects = [], [], [], []
        nv = nf = 0
        for name, m in parts:
            verts.append(m.vertices)
            sizes.append(m.face_sizes)
            idx.append(m.face_indices + nv)
            objects.append((name, nf, nf + len(m.face_sizes)))
            nv += len(m.vertices)
            nf += len(m.face_sizes)
        if not parts:
            return cls(np.zeros((0, 3)), np.zeros(0), np.zeros(0), [])
        return cls(np.concatenate(verts), np.concatenate(sizes), np.concatenate(idx), objects)

    @property
    def is_point_cloud(self) -> bool:
        return len(self.face_sizes) == 0

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.face_sizes)[:-1]]).astype(np.int64)

    def faces(self) -> list[np.ndarray]:
        return (
            np.split(self.face_indices, np.cumsum(self.face_sizes)[:-1])
            if len(self.face_sizes)
            else []
        )

    def triangles(self) -> tuple[np.ndarray, np.ndarray]:
        """Fan triangulation: (t, 3) vertex indices and, per triangle, its polygon's index."""
        sizes, starts = self.face_sizes, self.starts
        ntri = sizes - 2
        poly = np.repeat(np.arange(len(sizes)), ntri)
        k = np.arange(int(ntri.sum())) - np.repeat(np.cumsum(ntri) - ntri, ntri)
        base = starts[poly]
        tris = np.stack(
            [
                self.face_indices[base],
                self.face_indices[base + k + 1],
                self.face_indices[base + k + 2],
            ],
            axis=1,
        )
        return tris.reshape(-1, 3), poly

    def edges(self) -> np.ndarray:
        """Polygon boundary edges (undirected, sorted pairs), one row per face side."""
        if not len(self.face_sizes):
            return np.zeros((0, 2), dtype=np.int64)
        nxt = np.arange(len(self.face_indices)) + 1
        ends = np.cumsum(self.face_sizes)
        nxt[ends - 1] = self.starts  # wrap each polygon
        e = np.stack([self.face_indices, self.face_indices[nxt]], axis=1)
        return np.sort(e, axis=1)

    def subset(self, first: int, end: int) -> MeshData:
        """Faces [first, end) with only the vertices they use, re-indexed."""
        sizes = self.face_sizes[first:end]
        lo = int(self.face_sizes[:first].sum())
        idx = self.face_indices[lo : lo + int(sizes.sum())]
        used, inverse = np.unique(idx, return_inverse=True)
        return MeshData(self.vertices[used], sizes, inverse.reshape(-1))


@dataclass(frozen=True)
class GeometryReport:
    vertices: int
    faces: int
    triangles: int
    point_cloud: bool
    bbox_min: list[float] | None
    bbox_max: list[float] | None
    non_finite_vertices: int
    degenerate_faces: int
    boundary_edges: int
    non_manifold_edges: int
    watertight: bool
    winding_consistent: bool | None

    @property
    def issues(self) -> list[str]:
        out = []
        if self.non_finite_vertices:
            out.append("non_finite_vertices")
        if self.degenerate_faces:
            out.append("degenerate_faces")
        if self.non_manifold_edges:
            out.append("non_manifold_edges")
        if not self.point_cloud and not self.watertight:
            out.append("not_watertight")
        if self.winding_consistent is False:
            out.append("inconsistent_winding")
        return out


def check_geometry(mesh: MeshData) -> GeometryReport:
    v = mesh.vertices
    finite_rows = np.isfinite(v).all(axis=1)
    non_finite = int((~finite_rows).sum())
    fin = v[finite_rows]
    bbox_min = fin.min(axis=0).tolist() if len(fin) else None
    bbox_max = fin.max(axis=0).tolist() if len(fin) else None
    nf = len(mesh.face_sizes)
    if nf == 0:
        return GeometryReport(
            len(v), 0, 0, True, bbox_min, bbox_max, non_finite, 0, 0, 0, False, None
        )
    tris, poly = mesh.triangles()
    # degenerate: repeated index within a polygon, or (near) zero area
    owner = np.repeat(np.arange(nf), mesh.face_sizes)
    order = np.lexsort((mesh.face_indices, owner))  # indices sorted within each face
    idx_sorted, owner_sorted = mesh.face_indices[order], owner[order]
    within = (idx_sorted[1:] == idx_sorted[:-1]) & (owner_sorted[1:] == owner_sorted[:-1])
    repeated = np.zeros(nf, dtype=bool)
    repeated[owner_sorted[1:][within]] = True
    p = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
    cross = np.cross(p[tris[:, 1]] - p[tris[:, 0]], p[tris[:, 2]] - p[tris[:, 0]])
    normal = np.zeros((nf, 3))
    np.add.at(normal, poly, cross)
    area2 = np.linalg.norm(normal, axis=1)
    diag2 = float(np.sum((np.array(bbox_max) - np.array(bbox_min)) ** 2)) if bbox_min else 0.0
    degenerate = repeated | (area2 <= 1e-12 * max(diag2, 1e-300) * 2)
    edges = mesh.edges()
    edges = edges[edges[:, 0] != edges[:, 1]]
    _uniq, counts = np.unique(edges, axis=0, return_counts=True)
    boundary = int((counts == 1).sum())
    non_manifold = int((counts > 2).sum())
    watertight = boundary == 0 and non_manifold == 0 and len(counts) > 0
    winding = None
    if non_finite == 0:
        import trimesh

        tm = trimesh.Trimesh(vertices=v, faces=tris, process=False, validate=False)
        winding = bool(tm.is_winding_consistent)
    return GeometryReport(
        vertices=len(v),
        faces=nf,
        triangles=len(tris),
        point_cloud=False,
        bbox_min=bbox_min,
        bbox_max=bbox_max,
        non_finite_vertices=non_finite,
        degenerate_faces=int(degenerate.sum()),
        boundary_edges=boundary,
        non_manifold_edges=non_manifold,
        watertight=watertight,
        winding_consistent=winding,
    )
