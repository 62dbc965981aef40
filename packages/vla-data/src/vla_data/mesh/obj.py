"""Wavefront OBJ: a strict reader (every line checked) and a plain writer (`v` and `f` only).

Accepted statements: `v` (3 or 4 numbers, or 6/7 with vertex colour), `vt`, `vn`, `vp`, `f`
(`v`, `v/vt`, `v//vn`, `v/vt/vn`; 1-based or negative relative indices, at least 3 corners),
`l`, `p`, `o`, `g`, `s`, `usemtl`, `mtllib`, `#` comments and blank lines. Anything else, a
number that does not parse, an index out of range or a file that is not UTF-8 text is an error
naming the line. Only positions and polygons are kept (normals, UVs, groups and materials are
dropped); `o` statements name objects.

trimesh's own OBJ loader is lenient (it skips lines it does not understand) and splits vertices
at UV/normal seams, which breaks edge adjacency for the geometry checks, so OBJ is parsed here
and the geometry checks run on the result (through trimesh for winding).
"""

from __future__ import annotations

import numpy as np

from vla_data.mesh.geometry import MeshData, MeshError

MAX_OBJ_BYTES = 512 << 20
_IGNORED = {"vt", "vn", "vp", "l", "p", "g", "s", "usemtl", "mtllib", "cstype", "deg"}


def _index(token: str, count: int, lineno: int, what: str) -> int:
    try:
        i = int(token)
    except ValueError:
        raise MeshError(f"line {lineno}: {what} index {token!r} is not an integer") from None
    if i > 0 and i <= count:
        return i - 1
    if i < 0 and -i <= count:
        return count + i
    raise MeshError(f"line {lineno}: {what} index {i} out of range (1..{count} defined so far)")


def parse_obj(data: bytes) -> MeshData:
    if len(data) > MAX_OBJ_BYTES:
        raise MeshError(f"OBJ larger than {MAX_OBJ_BYTES >> 20} MiB")
    if b"\x00" in data:
        raise MeshError("OBJ contains NUL bytes (binary data, not OBJ text)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MeshError(f"OBJ is not UTF-8 text ({e})") from None
    verts: list[tuple[float, float, float]] = []
    sizes: list[int] = []
    indices: list[int] = []
    objects: list[tuple[str, int, int]] = []
    n_vt = n_vn = 0
    current, first = "", 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.endswith("\\"):  # continuation lines are rare; refuse rather than guess
            raise MeshError(f"line {lineno}: line continuations are not supported")
        head, *rest = line.split()
        if head == "v":
            if len(rest) not in (3, 4, 6, 7):
                raise MeshError(f"line {lineno}: 'v' needs 3 coordinates (got {len(rest)} values)")
            try:
                x, y, z = (float(t) for t in rest[:3])
            except ValueError:
                raise MeshError(
                    f"line {lineno}: vertex coordinate is not a number: {line[:80]!r}"
                ) from None
            verts.append((x, y, z))
        elif head == "f":
            if len(rest) < 3:
                raise MeshError(f"line {lineno}: a face needs at least 3 corners (got {len(rest)})")
            for corner in rest:
                parts = corner.split("/")
                if len(parts) > 3 or not parts[0]:
                    raise MeshError(f"line {lineno}: bad face corner {corner!r}")
                indices.append(_index(parts[0], len(verts), lineno, "vertex"))
                if len(parts) > 1 and parts[1]:
                    _index(parts[1], n_vt, lineno, "texture")
                if len(parts) > 2 and parts[2]:
                    _index(parts[2], n_vn, lineno, "normal")
            sizes.append(len(rest))
        elif head == "o":
            objects.append((current or "mesh", first, len(sizes)))
            current, first = (" ".join(rest) or "object"), len(sizes)
        elif head in _IGNORED:
            if head == "vt":
                n_vt += 1
            elif head == "vn":
                n_vn += 1
        else:
            raise MeshError(f"line {lineno}: unknown OBJ statement {head[:40]!r}")
    objects.append((current or "mesh", first, len(sizes)))
    objects = [o for o in objects if o[2] > o[1]] or [(current or "mesh", 0, len(sizes))]
    if not verts:
        raise MeshError("OBJ has no vertices")
    return MeshData(np.array(verts, dtype=np.float64), sizes, indices, objects)


def _num(x: float) -> str:
    s = f"{x:.7g}"
    return "0" if s in ("-0", "0") else s


def write_obj(mesh: MeshData, header: str = "vla-data") -> bytes:
    """OBJ text: `o` per object, `v x y z`, `f a b c ...` (1-based; objects share the vertex list)."""
    lines = [f"# {header}"]
    lines += [f"v {_num(x)} {_num(y)} {_num(z)}" for x, y, z in mesh.vertices.tolist()]
    faces = mesh.faces()
    for name, first, end in mesh.objects:
        if end > first:
            lines.append(f"o {name}")
            lines += ["f " + " ".join(str(i + 1) for i in f.tolist()) for f in faces[first:end]]
    return ("\n".join(lines) + "\n").encode()
