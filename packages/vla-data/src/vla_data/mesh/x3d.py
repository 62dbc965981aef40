"""X3D (XML encoding): write meshes as IndexedFaceSet / PointSet, read them back safely.

Writing: one `Shape` per object, `IndexedFaceSet` with `coordIndex` (polygons closed by -1) and
a `Coordinate` holding only that object's vertices; a point cloud is a `PointSet`. Numbers are
written with 7 significant digits (what Blender's OBJ exporter keeps).

Reading: the document is untrusted. It is parsed with the standard library's expat; a DOCTYPE,
any entity declaration, external entity reference or processing of parameter entities is
refused (no entity expansion, nothing fetched), as are documents over `MAX_BYTES` or nested
deeper than `MAX_DEPTH`. Geometry is collected from the `Scene`: `IndexedFaceSet`,
`IndexedTriangleSet`, `TriangleSet`, `IndexedQuadSet`, `PointSet` and the primitives `Box`,
`Sphere`, `Cylinder`, `Cone` (tessellated with trimesh), under `Transform` (translation,
rotation, scale, scaleOrientation, center), `Group`, `StaticGroup`, `Collision`, `Switch`
(the chosen child), `LOD` (the first level), with `DEF`/`USE` resolved. Other nodes (lights,
viewpoints, materials, sensors...) are skipped. A value that does not parse, an index out of
range or a document without geometry is a `MeshError` naming the element.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from xml.parsers import expat
from xml.sax.saxutils import quoteattr

import numpy as np

from vla_data.mesh.geometry import MeshData, MeshError

MAX_BYTES = 256 << 20
MAX_DEPTH = 128
_SEP = re.compile(r"[\s,]+")
_NAME = re.compile(r"[^A-Za-z0-9_\-]+")


def _num(x: float) -> str:
    s = f"{x:.7g}"
    return "0" if s in ("-0", "0") else s


def _def_name(name: str, used: set[str]) -> str:
    base = _NAME.sub("_", name).strip("_") or "shape"
    if base[0].isdigit() or base[0] == "-":
        base = "n" + base
    out, k = base, 1
    while out in used:
        k += 1
        out = f"{base}_{k}"
    used.add(out)
    return out


def write_x3d(mesh: MeshData, title: str = "vla-data mesh") -> bytes:
    """An X3D 4.0 document (Interchange profile) for `mesh`."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<X3D profile="Interchange" version="4.0" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema-instance" '
        'xsd:noNamespaceSchemaLocation="https://www.web3d.org/specifications/x3d-4.0.xsd">',
        "  <head>",
        f'    <meta name="title" content={quoteattr(title)}/>',
        '    <meta name="generator" content="vla-data"/>',
        "  </head>",
        "  <Scene>",
    ]
    used: set[str] = set()
    if mesh.is_point_cloud:
        pts = ", ".join(" ".join(_num(c) for c in p) for p in mesh.vertices.tolist())
        name = _def_name(mesh.objects[0][0] if mesh.objects else "points", used)
        lines += [
            f'    <Shape DEF="{name}">',
            "      <PointSet>",
            f'        <Coordinate point="{pts}"/>',
            "      </PointSet>",
            "    </Shape>",
        ]
    for obj_name, first, end in mesh.objects:
        if end <= first:
            continue
        part = mesh.subset(first, end)
        index = " ".join(" ".join(str(i) for i in f.tolist()) + " -1" for f in part.faces())
        pts = ", ".join(" ".join(_num(c) for c in p) for p in part.vertices.tolist())
        lines += [
            f'    <Shape DEF="{_def_name(obj_name, used)}">',
            f'      <IndexedFaceSet solid="false" coordIndex="{index}">',
            f'        <Coordinate point="{pts}"/>',
            "      </IndexedFaceSet>",
            "    </Shape>",
        ]
    lines += ["  </Scene>", "</X3D>"]
    return ("\n".join(lines) + "\n").encode()


# --- reading ---------------------------------------------------------------------------------


@dataclass
class _Node:
    tag: str
    attrs: dict[str, str]
    line: int
    children: list[_Node] = field(default_factory=list)


def _refuse(what: str):
    def handler(*_args):
        raise MeshError(f"X3D: {what} is not allowed (no DTDs or entities in untrusted XML)")

    return handler


def parse_xml(data: bytes) -> _Node:
    """The element tree of an X3D document, refusing DTDs and entities."""
    if len(data) > MAX_BYTES:
        raise MeshError(f"X3D larger than {MAX_BYTES >> 20} MiB")
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse("a DOCTYPE declaration")
    parser.EntityDeclHandler = _refuse("an entity declaration")
    parser.UnparsedEntityDeclHandler = _refuse("an unparsed entity declaration")
    parser.ExternalEntityRefHandler = _refuse("an external entity reference")
    parser.SkippedEntityHandler = _refuse("an entity reference")
    root = _Node("#root", {}, 0)
    stack = [root]

    def start(tag, attrs):
        if len(stack) > MAX_DEPTH:
            raise MeshError(f"X3D nested deeper than {MAX_DEPTH} elements")
        node = _Node(tag, attrs, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(_tag):
        stack.pop()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise MeshError(f"X3D is not well-formed XML: {e}") from None
    if len(root.children) != 1:
        raise MeshError("X3D has no single root element")
    return root.children[0]


def _floats(node: _Node, name: str, default: list[float] | None = None) -> np.ndarray:
    raw = node.attrs.get(name)
    if raw is None:
        if default is None:
            return np.zeros(0)
        return np.array(default, dtype=np.float64)
    tokens = [t for t in _SEP.split(raw.strip()) if t]
    try:
        return np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        raise MeshError(
            f"X3D line {node.line}: <{node.tag} {name}> has a value that is not a number"
        ) from None


def _ints(node: _Node, name: str) -> np.ndarray:
    raw = node.attrs.get(name, "")
    tokens = [t for t in _SEP.split(raw.strip()) if t]
    try:
        return np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError:
        raise MeshError(
            f"X3D line {node.line}: <{node.tag} {name}> has a value that is not an integer"
        ) from None


def _rotation(axis_angle: np.ndarray) -> np.ndarray:
    x, y, z, angle = axis_angle
    n = math.sqrt(x * x + y * y + z * z)
    if n == 0 or angle == 0:
        return np.eye(4)
    x, y, z = x / n, y / n, z / n
    c, s, t = math.cos(angle), math.sin(angle), 1 - math.cos(angle)
    m = np.eye(4)
    m[:3, :3] = [
        [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
        [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
        [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
    ]
    return m


def _translate(v) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = v
    return m


def _transform(node: _Node) -> np.ndarray:
    """P' = T * C * R * SR * S * -SR * -C * P (X3D 19.4.12)."""
    t = _floats(node, "translation", [0, 0, 0])
    r = _floats(node, "rotation", [0, 0, 1, 0])
    s = _floats(node, "scale", [1, 1, 1])
    sr = _floats(node, "scaleOrientation", [0, 0, 1, 0])
    c = _floats(node, "center", [0, 0, 0])
    if (len(t), len(r), len(s), len(sr), len(c)) != (3, 4, 3, 4, 3):
        raise MeshError(f"X3D line {node.line}: <Transform> field has the wrong number of values")
    srm = _rotation(sr)
    return (
        _translate(t)
        @ _translate(c)
        @ _rotation(r)
        @ srm
        @ np.diag([*s, 1.0])
        @ srm.T
        @ _translate(-c)
    )


def _coords(node: _Node, defs: dict[str, _Node]) -> np.ndarray:
    for child in node.children:
        child = _use(child, defs)
        if child.tag in ("Coordinate", "CoordinateDouble"):
            pts = _floats(child, "point")
            if len(pts) % 3:
                raise MeshError(
                    f"X3D line {child.line}: Coordinate point count is not a multiple of 3"
                )
            return pts.reshape(-1, 3)
    raise MeshError(f"X3D line {node.line}: <{node.tag}> has no Coordinate")


def _use(node: _Node, defs: dict[str, _Node]) -> _Node:
    ref = node.attrs.get("USE")
    if ref is None:
        return node
    if ref not in defs:
        raise MeshError(f"X3D line {node.line}: USE={ref!r} names no earlier DEF")
    return defs[ref]


def _polygons(index: np.ndarray, n: int, node: _Node) -> tuple[list[int], list[int]]:
    sizes, flat, cur = [], [], []
    for i in index.tolist() + [-1]:
        if i == -1:
            if len(cur) >= 3:
                sizes.append(len(cur))
                flat.extend(cur)
            elif cur:
                raise MeshError(
                    f"X3D line {node.line}: a face of <{node.tag}> has fewer than 3 indices"
                )
            cur = []
        elif 0 <= i < n:
            cur.append(i)
        else:
            raise MeshError(
                f"X3D line {node.line}: <{node.tag}> index {i} out of range (0..{n - 1})"
            )
    return sizes, flat


def _primitive(node: _Node) -> MeshData:
    import trimesh

    if node.tag == "Box":
        size = _floats(node, "size", [2, 2, 2])
        if len(size) != 3 or (size <= 0).any():
            raise MeshError(f"X3D line {node.line}: <Box size> must be 3 positive numbers")
        m = trimesh.creation.box(extents=size)
    elif node.tag == "Sphere":
        r = _floats(node, "radius", [1])
        if len(r) != 1 or r[0] <= 0:
            raise MeshError(f"X3D line {node.line}: <Sphere radius> must be positive")
        m = trimesh.creation.uv_sphere(radius=float(r[0]), count=[16, 16])
    else:  # Cylinder, Cone: X3D axis is +Y, trimesh's is +Z
        r = _floats(node, "bottomRadius" if node.tag == "Cone" else "radius", [1])
        h = _floats(node, "height", [2])
        if len(r) != 1 or len(h) != 1 or r[0] <= 0 or h[0] <= 0:
            raise MeshError(f"X3D line {node.line}: <{node.tag}> radius/height must be positive")
        if node.tag == "Cone":
            m = trimesh.creation.cone(radius=float(r[0]), height=float(h[0]), sections=24)
            m.apply_translation([0, 0, -h[0] / 2])
        else:
            m = trimesh.creation.cylinder(radius=float(r[0]), height=float(h[0]), sections=24)
        m.apply_transform(_rotation(np.array([1.0, 0.0, 0.0, -math.pi / 2])))
    return MeshData.from_triangles(m.vertices, m.faces, node.tag)


def _geometry(node: _Node, defs: dict[str, _Node]) -> MeshData | None:
    tag = node.tag
    if tag in ("Box", "Sphere", "Cylinder", "Cone"):
        return _primitive(node)
    if tag == "PointSet":
        return MeshData(_coords(node, defs), [], [])
    if tag not in ("IndexedFaceSet", "IndexedTriangleSet", "TriangleSet", "IndexedQuadSet"):
        return None
    pts = _coords(node, defs)
    if tag == "IndexedFaceSet":
        sizes, flat = _polygons(_ints(node, "coordIndex"), len(pts), node)
    elif tag == "TriangleSet":
        if len(pts) % 3:
            raise MeshError(f"X3D line {node.line}: TriangleSet point count is not a multiple of 3")
        sizes, flat = [3] * (len(pts) // 3), list(range(len(pts)))
    else:
        k = 3 if tag == "IndexedTriangleSet" else 4
        idx = _ints(node, "index")
        if len(idx) % k:
            raise MeshError(f"X3D line {node.line}: <{tag} index> count is not a multiple of {k}")
        if len(idx) and (idx.min() < 0 or idx.max() >= len(pts)):
            raise MeshError(f"X3D line {node.line}: <{tag}> index out of range (0..{len(pts) - 1})")
        sizes, flat = [k] * (len(idx) // k), idx.tolist()
    return MeshData(pts, sizes, flat)


def parse_x3d(data: bytes) -> MeshData:
    root = parse_xml(data)
    if root.tag != "X3D":
        raise MeshError(f"root element is <{root.tag}>, not <X3D>")
    scene = next((c for c in root.children if c.tag == "Scene"), None)
    if scene is None:
        raise MeshError("X3D has no <Scene>")
    defs: dict[str, _Node] = {}
    parts: list[tuple[str, MeshData]] = []
    budget = [0]

    def visit(node: _Node, matrix: np.ndarray, name: str, depth: int) -> None:
        budget[0] += 1
        if depth > MAX_DEPTH or budget[0] > 1_000_000:
            raise MeshError("X3D scene graph too deep or too large (DEF/USE cycle?)")
        if "DEF" in node.attrs:
            defs[node.attrs["DEF"]] = node
        node = _use(node, defs)
        tag = node.tag
        if tag == "Transform":
            matrix = matrix @ _transform(node)
        if tag == "Shape":
            label = node.attrs.get("DEF") or name or f"shape{len(parts)}"
            for child in node.children:
                geo = _geometry(_use(child, defs), defs) if child.tag != "Appearance" else None
                if "DEF" in child.attrs:
                    defs[child.attrs["DEF"]] = child
                if geo is not None:
                    v = geo.vertices @ matrix[:3, :3].T + matrix[:3, 3]
                    parts.append((label, MeshData(v, geo.face_sizes, geo.face_indices)))
            return
        children = node.children
        if tag == "Switch":
            choice = int(_ints(node, "whichChoice")[0]) if node.attrs.get("whichChoice") else -1
            children = [children[choice]] if 0 <= choice < len(children) else []
        elif tag == "LOD":
            children = children[:1]
        for child in children:
            visit(
                child,
                matrix,
                node.attrs.get("DEF", name) if tag == "Transform" else name,
                depth + 1,
            )

    for child in scene.children:
        visit(child, np.eye(4), "", 1)
    if not parts:
        raise MeshError(
            "X3D scene has no geometry (no IndexedFaceSet, TriangleSet, PointSet or primitive)"
        )
    if all(p.is_point_cloud for _n, p in parts):
        return MeshData(
            np.concatenate([p.vertices for _n, p in parts]), [], [], [(parts[0][0], 0, 0)]
        )
    return MeshData.concatenate([(n, p) for n, p in parts if not p.is_point_cloud])
