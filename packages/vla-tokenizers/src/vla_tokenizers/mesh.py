"""OBJ meshes as quantised vertex coordinates and face indices (LLaMA-Mesh style, 64 bins default).

Token grammar inside a mesh span (markers `<|mesh_start|>` / `<|mesh_end|>` are the caller's)::

    NUMBER x 6                      bounding box: min x y z, max x y z (floored / ceiled)
    <|mesh_vertices|> (qx qy qz)*   one mesh_coord id per axis per vertex, in file order
    <|mesh_faces|> (i i i ... <|mesh_face_end|>)*   0-based mesh_index ids, any arity

Only `v` and `f` statements are kept (normals, texture coordinates, groups and materials are
dropped); a face's `v/vt/vn` forms use the vertex index, negative (relative) indices are
resolved. The box is rounded outward to the number codec's precision and quantisation uses the
rounded box, so every decoded coordinate is within half a bin of the original:
`(hi - lo) / (bins - 1) / 2` per axis. `mesh_error` reports the actual error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_tokenizers.numbers import NumberError
from vla_tokenizers.specials import MESH_FACE_END, MESH_FACES, MESH_VERTICES


class MeshError(ValueError):
    pass


@dataclass
class Mesh:
    vertices: np.ndarray  # (n, 3) float64
    faces: list[list[int]]  # 0-based vertex indices per face

    def to_obj(self) -> str:
        lines = [f"v {x:.6g} {y:.6g} {z:.6g}" for x, y, z in self.vertices]
        lines += ["f " + " ".join(str(i + 1) for i in f) for f in self.faces]
        return "\n".join(lines) + "\n"

    def triangles(self) -> np.ndarray:
        """Faces fan-triangulated, (m, 3)."""
        tris = [(f[0], f[k], f[k + 1]) for f in self.faces for k in range(1, len(f) - 1)]
        return np.array(tris, dtype=np.int64).reshape(-1, 3)

    def to_trimesh(self):
        import trimesh

        return trimesh.Trimesh(vertices=self.vertices, faces=self.triangles(), process=False)


def parse_obj(data: bytes | str, max_vertices: int | None = None) -> Mesh:
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    verts: list[tuple[float, float, float]] = []
    faces: list[list[int]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "v":
            try:
                x, y, z = (float(p) for p in parts[1:4])
            except ValueError:
                raise MeshError(f"OBJ line {lineno}: bad vertex {line.strip()!r}") from None
            if not all(np.isfinite((x, y, z))):
                raise MeshError(f"OBJ line {lineno}: non-finite vertex")
            verts.append((x, y, z))
        elif parts[0] == "f":
            face = []
            for p in parts[1:]:
                try:
                    i = int(p.split("/")[0])
                except ValueError:
                    raise MeshError(f"OBJ line {lineno}: bad face index {p!r}") from None
                i = i - 1 if i > 0 else len(verts) + i
                if not 0 <= i < len(verts):
                    raise MeshError(f"OBJ line {lineno}: face index {p} out of range")
                face.append(i)
            if len(face) < 3:
                raise MeshError(f"OBJ line {lineno}: face with fewer than 3 vertices")
            faces.append(face)
    if not verts:
        raise MeshError("OBJ has no vertices")
    if max_vertices is not None and len(verts) > max_vertices:
        raise MeshError(f"OBJ has {len(verts)} vertices; the layout allows {max_vertices}")
    return Mesh(np.array(verts, dtype=np.float64), faces)


class ObjCodec:
    def __init__(self, layout):
        self.layout = layout
        self.coord = layout.range("mesh_coord")
        self.index = layout.range("mesh_index")
        self.nr = layout.range("number")
        self.num = layout.config.number_codec
        self.bins = self.coord.size
        self.v_id = layout.id_of(MESH_VERTICES)
        self.f_id = layout.id_of(MESH_FACES)
        self.fe_id = layout.id_of(MESH_FACE_END)

    def box(self, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The outward-rounded box that quantisation and decoding both use."""
        lo = np.array([self.num.round_float(v, "floor") for v in vertices.min(axis=0)])
        hi = np.array([self.num.round_float(v, "ceil") for v in vertices.max(axis=0)])
        return lo, hi

    def quantize(self, vertices: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        span = np.where(hi > lo, hi - lo, 1.0)
        q = np.rint((vertices - lo) / span * (self.bins - 1))
        return np.clip(q, 0, self.bins - 1).astype(np.int64)

    def dequantize(self, q: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return lo + q.astype(np.float64) / (self.bins - 1) * (hi - lo)

    def encode(self, data: bytes | str | Mesh) -> list[int]:
        mesh = data if isinstance(data, Mesh) else parse_obj(data, self.index.size)
        if len(mesh.vertices) > self.index.size:
            raise MeshError(
                f"mesh has {len(mesh.vertices)} vertices; the layout allows {self.index.size}"
            )
        lo, hi = self.box(mesh.vertices)
        out: list[int] = []
        try:
            for v in (*lo, *hi):
                out += [self.nr.start + t for t in self.num.encode_float(float(v))]
        except NumberError as e:
            raise MeshError(f"mesh bounds out of range: {e}") from None
        out.append(self.v_id)
        out += (self.quantize(mesh.vertices, lo, hi) + self.coord.start).ravel().tolist()
        out.append(self.f_id)
        for f in mesh.faces:
            out += [self.index.start + i for i in f]
            out.append(self.fe_id)
        return out

    def decode(self, ids) -> Mesh:
        ids = [int(i) for i in ids]
        try:
            vpos, fpos = ids.index(self.v_id), ids.index(self.f_id)
        except ValueError:
            raise MeshError("mesh span lacks <|mesh_vertices|> or <|mesh_faces|>") from None
        try:
            box = self.num.decode([t - self.nr.start for t in ids[:vpos]])
        except NumberError as e:
            raise MeshError(f"bad mesh bounds: {e}") from None
        if len(box) != 6:
            raise MeshError(f"mesh bounds need 6 numbers, got {len(box)}")
        lo, hi = np.array(box[:3], dtype=np.float64), np.array(box[3:], dtype=np.float64)
        coords = np.array(ids[vpos + 1 : fpos], dtype=np.int64)
        if coords.size % 3 or ((coords < self.coord.start) | (coords >= self.coord.end)).any():
            raise MeshError("vertex block must be mesh_coord ids, three per vertex")
        verts = self.dequantize((coords - self.coord.start).reshape(-1, 3), lo, hi)
        faces, face = [], []
        for t in ids[fpos + 1 :]:
            if t == self.fe_id:
                if len(face) < 3:
                    raise MeshError("face with fewer than 3 vertices")
                faces.append(face)
                face = []
            elif t in self.index and t - self.index.start < len(verts):
                face.append(t - self.index.start)
            else:
                raise MeshError(f"token {t} is not a valid face index")
        if face:
            raise MeshError("last face has no <|mesh_face_end|>")
        return Mesh(verts, faces)

    def quantization_bound(self, data: bytes | str | Mesh) -> np.ndarray:
        """Half a bin per axis for this mesh's rounded box (the round-trip guarantee)."""
        mesh = data if isinstance(data, Mesh) else parse_obj(data)
        lo, hi = self.box(mesh.vertices)
        return (hi - lo) / (self.bins - 1) / 2


def mesh_error(original: Mesh, decoded: Mesh) -> dict:
    """Geometric error of a decoded mesh against the original (vertex order is kept)."""
    if original.vertices.shape != decoded.vertices.shape:
        raise MeshError("meshes have different vertex counts")
    err = np.abs(original.vertices - decoded.vertices)
    dist = np.linalg.norm(original.vertices - decoded.vertices, axis=1)
    diag = float(np.linalg.norm(original.vertices.max(0) - original.vertices.min(0))) or 1.0
    return {
        "vertices": len(original.vertices),
        "faces_equal": original.faces == decoded.faces,
        "max_abs_per_axis": err.max(axis=0).tolist(),
        "mean_abs_per_axis": err.mean(axis=0).tolist(),
        "max_vertex_distance": float(dist.max()),
        "mean_vertex_distance": float(dist.mean()),
        "max_distance_over_diagonal": float(dist.max()) / diag,
    }
