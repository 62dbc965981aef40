"""Procedural 3D for the sample corpus: parametric Blender scripts, their meshes (OBJ from
Blender, X3D), and images rendered from those meshes.

Each script is a template filled with seeded parameters; it is run once, at generation time,
in the same sandbox that ingest uses (`vla_data.mesh.sandbox.run_script`), and its OBJ is
re-parsed and written as X3D. Renders are flat-shaded painter's-algorithm views of the mesh.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from vla_data.mesh.geometry import MeshData

WHEEL = """\
import bpy, bmesh

me = bpy.data.meshes.new("wheel")
bm = bmesh.new()
bmesh.ops.create_cone(bm, cap_ends=True, cap_tris=False, segments={segments}, radius1={r1:.3f}, radius2={r2:.3f}, depth={depth:.3f})
bm.to_mesh(me)
bm.free()
ob = bpy.data.objects.new("wheel", me)
bpy.context.collection.objects.link(ob)
"""

TABLE = """\
import bpy, bmesh
from mathutils import Matrix

me = bpy.data.meshes.new("table")
bm = bmesh.new()
top = bmesh.ops.create_cube(bm, size=1.0)
bmesh.ops.scale(bm, vec=({w:.3f}, {d:.3f}, {t:.3f}), verts=top["verts"])
bmesh.ops.translate(bm, vec=(0.0, 0.0, {h:.3f}), verts=top["verts"])
for sx in (-1, 1):
    for sy in (-1, 1):
        leg = bmesh.ops.create_cube(bm, size=1.0)
        bmesh.ops.scale(bm, vec=({leg:.3f}, {leg:.3f}, {h:.3f}), verts=leg["verts"])
        bmesh.ops.translate(bm, vec=(sx * {lx:.3f}, sy * {ly:.3f}, {hh:.3f}), verts=leg["verts"])
bm.to_mesh(me)
bm.free()
ob = bpy.data.objects.new("table", me)
bpy.context.collection.objects.link(ob)
"""

STAIRS = """\
import bpy, bmesh

me = bpy.data.meshes.new("stairs")
bm = bmesh.new()
for i in range({steps}):
    step = bmesh.ops.create_cube(bm, size=1.0)
    bmesh.ops.scale(bm, vec=({run:.3f}, {width:.3f}, {rise:.3f} * (i + 1)), verts=step["verts"])
    bmesh.ops.translate(bm, vec=(i * {run:.3f}, 0.0, {rise:.3f} * (i + 1) / 2), verts=step["verts"])
bm.to_mesh(me)
bm.free()
ob = bpy.data.objects.new("stairs", me)
bpy.context.collection.objects.link(ob)
"""

TORUS = """\
import bpy

bpy.ops.mesh.primitive_torus_add(major_segments={major}, minor_segments={minor}, major_radius={R:.3f}, minor_radius={r:.3f})
"""


def blender_scripts(rng: np.random.Generator) -> dict[str, str]:
    """Parametric scripts, one per object family, with parameters drawn from ``rng``."""
    r1 = float(rng.uniform(0.8, 1.4))
    h = float(rng.uniform(0.6, 1.0))
    w, d = float(rng.uniform(1.2, 2.0)), float(rng.uniform(0.7, 1.1))
    leg = float(rng.uniform(0.06, 0.12))
    return {
        "wheel": WHEEL.format(
            segments=int(rng.integers(8, 33)),
            r1=r1,
            r2=r1 * float(rng.uniform(0.5, 0.9)),
            depth=float(rng.uniform(0.15, 0.4)),
        ),
        "table": TABLE.format(
            w=w, d=d, t=0.06, h=h, leg=leg, lx=w / 2 - leg, ly=d / 2 - leg, hh=h / 2
        ),
        "stairs": STAIRS.format(
            steps=int(rng.integers(3, 7)),
            run=float(rng.uniform(0.25, 0.35)),
            width=float(rng.uniform(0.8, 1.5)),
            rise=float(rng.uniform(0.15, 0.2)),
        ),
        "torus": TORUS.format(
            major=int(rng.integers(16, 33)),
            minor=int(rng.integers(8, 17)),
            R=float(rng.uniform(0.8, 1.2)),
            r=float(rng.uniform(0.15, 0.35)),
        ),
    }


def render_mesh(
    mesh: MeshData, size: int = 256, yaw_deg: float = 35.0, pitch_deg: float = 25.0
) -> bytes:
    """A PNG of a Y-up ``mesh``: perspective view from ``yaw``/``pitch``, flat shading."""
    v = mesh.vertices[:, [0, 2, 1]] * [1, -1, 1]  # OBJ is Y-up (Blender's export); make Z up
    v = v - (v.min(0) + v.max(0)) / 2
    v = v / max(1e-9, float(np.abs(v).max()))
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    rx = np.array(
        [[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]]
    )
    cam = v @ (rx @ rz).T  # x right, z up, y away from the viewer
    depth = cam[:, 1] + 3.0
    f = size * 1.1
    uv = np.stack([size / 2 + f * cam[:, 0] / depth, size / 2 - f * cam[:, 2] / depth], 1)
    light = np.array([0.4, -0.6, 0.7]) / np.linalg.norm([0.4, -0.6, 0.7])
    shade_rows = np.linspace(250, 200, size)[:, None, None] * np.array([0.94, 0.96, 1.0])
    backdrop = np.broadcast_to(shade_rows, (size, size, 3)).astype(np.uint8)  # a studio gradient
    image = Image.fromarray(np.ascontiguousarray(backdrop))
    draw = ImageDraw.Draw(image)
    starts = np.concatenate([[0], np.cumsum(mesh.face_sizes)[:-1]])
    faces = [mesh.face_indices[s : s + n] for s, n in zip(starts, mesh.face_sizes, strict=True)]
    for face in sorted(faces, key=lambda fc: -float(depth[fc].mean())):
        p = cam[face]
        normal = np.cross(p[1] - p[0], p[2] - p[0])
        norm = np.linalg.norm(normal)
        shade = 0.35 + 0.65 * abs(float(normal @ light)) / norm if norm > 0 else 0.35
        color = tuple(int(c * shade) for c in (200, 140, 80))
        draw.polygon([tuple(q) for q in uv[face].round(1)], fill=color, outline=(60, 40, 20))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
