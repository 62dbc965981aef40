"""`vla-data ingest` readers for 3D inputs: Blender scripts (`.py`), `.obj`, `.ply`, `.pcd`, `.x3d`.

Each file is one record, a `MeshMeta` sample with parts `obj` and `x3d` (plus `blend.py`, `ply`
or `pcd` for those sources; an `.obj` or `.x3d` input is kept byte for byte as its own part).
A script is run in the sandbox (`sandbox.run_script`, limits from the ingest config) and its
exported OBJ is parsed like any other. Quarantined, with the file name and the cause: scripts
that fail the allow-list or are stopped by a limit, files that do not parse, meshes without
vertices, and meshes (not point clouds) with NaN/inf coordinates. Geometry defects that real
meshes have (open boundaries, non-manifold edges, degenerate faces) are recorded, not fatal.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

import numpy as np

from vla_data.mesh.geometry import MeshData, MeshError, check_geometry
from vla_data.mesh.obj import parse_obj, write_obj
from vla_data.mesh.pcd import parse_pcd
from vla_data.mesh.sandbox import SandboxError, SandboxLimits, run_script
from vla_data.mesh.x3d import parse_x3d, write_x3d
from vla_data.sample import MeshMeta

if TYPE_CHECKING:  # no runtime import: vla_data.ingest imports this module
    from vla_data.ingest.base import FileContext, Record

MAX_MESH_FILE_BYTES = 512 << 20


def read_ply(data: bytes) -> MeshData:
    """PLY (ascii or binary) through trimesh: a mesh or a point cloud."""
    import trimesh

    try:
        loaded = trimesh.load(io.BytesIO(data), file_type="ply", process=False)
    except Exception as e:  # trimesh raises many types on malformed input
        raise MeshError(f"PLY does not parse: {type(e).__name__}: {e}") from None
    if isinstance(loaded, trimesh.Scene):
        geoms = list(loaded.geometry.values())
        if not geoms:
            raise MeshError("PLY has no geometry")
        loaded = geoms[0]
    if isinstance(loaded, trimesh.Trimesh):
        if len(loaded.faces) == 0:
            return MeshData(loaded.vertices, [], [])
        return MeshData.from_triangles(loaded.vertices, loaded.faces)
    if isinstance(loaded, trimesh.PointCloud):
        return MeshData(loaded.vertices, [], [])
    raise MeshError(f"PLY holds a {type(loaded).__name__}, not a mesh or point cloud")


def mesh_record(
    ctx: FileContext,
    rid: str,
    mesh: MeshData,
    source_format: str,
    payloads: dict[str, bytes],
    raw: bytes,
    sandbox: dict | None = None,
) -> Record:
    """Check `mesh` and build its sample (adding the `obj`/`x3d` parts not in `payloads`)."""
    what = f"{source_format} {ctx.name}"
    report = check_geometry(mesh)
    if report.vertices == 0:
        return ctx.bad(rid, "", f"{what}: mesh has no vertices", raw)
    if report.non_finite_vertices and not report.point_cloud:
        return ctx.bad(
            rid,
            "",
            f"{what}: {report.non_finite_vertices} vertices have NaN/inf coordinates",
            raw,
        )
    clean = mesh
    if report.point_cloud and report.non_finite_vertices:  # organised clouds: NaN = no return
        keep = np.isfinite(mesh.vertices).all(axis=1)
        clean = MeshData(mesh.vertices[keep], [], [], mesh.objects)
    if "obj" not in payloads:
        payloads = payloads | {"obj": write_obj(clean, f"vla-data from {ctx.name}")}
    if "x3d" not in payloads:
        payloads = payloads | {"x3d": write_x3d(clean, ctx.name)}
    meta = MeshMeta(
        source_format=source_format,
        vertices=report.vertices,
        faces=report.faces,
        triangles=report.triangles,
        objects=list(dict.fromkeys(n for n, first, end in mesh.objects if end > first))
        or [mesh.objects[0][0]],
        point_cloud=report.point_cloud,
        bbox_min=report.bbox_min,
        bbox_max=report.bbox_max,
        non_finite_vertices=report.non_finite_vertices,
        degenerate_faces=report.degenerate_faces,
        boundary_edges=report.boundary_edges,
        non_manifold_edges=report.non_manifold_edges,
        watertight=report.watertight,
        winding_consistent=report.winding_consistent,
        issues=report.issues,
        sandbox=sandbox,
    )
    return ctx.sample(rid, "", meta, payloads)


def _read(ctx: FileContext, f: IO[bytes]) -> bytes:
    return f.read(MAX_MESH_FILE_BYTES + 1)


def _reader(fmt: str, parse, keep_as: str):
    def read(ctx: FileContext, f: IO[bytes]) -> Iterator[Record]:
        raw = _read(ctx, f)
        rid = ctx.name
        if not raw:
            yield ctx.bad(rid, "", f"{fmt} {ctx.name}: empty file", raw)
            return
        if len(raw) > MAX_MESH_FILE_BYTES:
            yield ctx.bad(
                rid, "", f"{fmt} {ctx.name}: larger than {MAX_MESH_FILE_BYTES >> 20} MiB", raw
            )
            return
        try:
            mesh = parse(raw)
        except (MeshError, MemoryError) as e:
            yield ctx.bad(rid, "", f"malformed {fmt} {ctx.name}: {e}", raw)
            return
        yield mesh_record(ctx, rid, mesh, fmt.lower(), {keep_as: raw}, raw)

    read.__name__ = f"read_{keep_as}"
    read.__doc__ = f"One {fmt} file -> one mesh sample (or a quarantined record naming the cause)."
    return read


def _pcd_mesh(raw: bytes) -> MeshData:
    points, _info = parse_pcd(raw)
    return MeshData(points, [], [], [("points", 0, 0)])


read_obj = _reader("OBJ", parse_obj, "obj")
read_x3d = _reader("X3D", parse_x3d, "x3d")
read_ply_file = _reader("PLY", read_ply, "ply")
read_pcd = _reader("PCD", _pcd_mesh, "pcd")


def read_blend_script(ctx: FileContext, f: IO[bytes]) -> Iterator[Record]:
    """A procedural Blender script: allow-list, sandboxed run, OBJ + X3D of what it built."""
    raw = f.read(MAX_MESH_FILE_BYTES + 1)
    rid = ctx.name
    what = f"Blender script {ctx.name}"
    if not raw.strip():
        yield ctx.bad(rid, "", f"{what}: empty file", raw)
        return
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        yield ctx.bad(rid, "", f"{what}: not UTF-8 ({e})", raw)
        return
    cfg = ctx.config
    limits = SandboxLimits(
        wall_s=cfg.blender_timeout_s, cpu_s=cfg.blender_cpu_s, memory_mb=cfg.blender_memory_mb
    )
    try:
        result = run_script(source, limits)
    except SandboxError as e:
        yield ctx.bad(rid, "", f"{what}: {e}", raw)
        return
    try:
        mesh = parse_obj(result.obj)
    except MeshError as e:
        yield ctx.bad(rid, "", f"{what}: its exported OBJ is unreadable: {e}", raw)
        return
    iso = result.isolation
    fs = iso.get("filesystem")
    sandbox = {
        "network": iso.get("network"),
        "capabilities": iso.get("capabilities"),
        "processes": iso.get("processes"),
        "filesystem": fs.get("detail") if isinstance(fs, dict) else fs,
        "python_guards": iso.get("python_guards"),
        "limits": {
            "wall_s": limits.wall_s,
            "cpu_s": limits.cpu_s,
            "memory_mb": limits.memory_mb,
            "file_mb": limits.file_mb,
        },
        "seconds": round(result.seconds, 2),
        "cpu_s": round(result.cpu_s, 2),
        "max_rss_mb": round(result.max_rss_mb, 1),
        "objects": result.objects[:100],
        "exporter": "bpy wm.obj_export",
    }
    yield mesh_record(
        ctx, rid, mesh, "blend.py", {"blend.py": raw, "obj": result.obj}, raw, sandbox=sandbox
    )
