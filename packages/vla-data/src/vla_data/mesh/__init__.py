"""Procedural 3D: sandboxed Blender scripts, OBJ / X3D / PLY / PCD readers, geometry checks.

- `policy.check_script`: AST allow-list for Blender scripts (first line of defence);
- `sandbox.run_script`: the script in a child process under OS limits (network, user and PID
  namespaces, Landlock write confinement, rlimits, wall-clock kill), its mesh exported to OBJ by
  bpy's `wm.obj_export`;
- `obj`, `x3d`, `pcd`: strict readers and writers (X3D `IndexedFaceSet` written and parsed here
  with expat, DTDs and entities refused); PLY through trimesh;
- `geometry.check_geometry`: non-finite vertices, degenerate faces, boundary and non-manifold
  edges, watertightness, winding, bounding box, counts;
- `ingest`: the readers `vla-data ingest` uses for `.py`, `.obj`, `.ply`, `.pcd`, `.x3d`.
"""

from vla_data.mesh.geometry import GeometryReport, MeshData, MeshError, check_geometry
from vla_data.mesh.obj import parse_obj, write_obj
from vla_data.mesh.pcd import parse_pcd
from vla_data.mesh.policy import ScriptRejected, check_script
from vla_data.mesh.sandbox import SandboxError, SandboxLimits, SandboxResult, run_script
from vla_data.mesh.x3d import parse_x3d, write_x3d

__all__ = [
    "GeometryReport",
    "MeshData",
    "MeshError",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "ScriptRejected",
    "check_geometry",
    "check_script",
    "parse_obj",
    "parse_pcd",
    "parse_x3d",
    "run_script",
    "write_obj",
    "write_x3d",
]
