from __future__ import annotations

import numpy as np
import pytest

from vla_tokenizers.mesh import MeshError, mesh_error, parse_obj
from vla_tokenizers.x3d import X3DError, compare_trees, parse_x3d

X3D = """<?xml version="1.0" encoding="UTF-8"?>
<X3D profile="Interchange" version="3.3">
  <head><meta name="title" content="Two boxes &amp; a cone"/></head>
  <Scene>
    <!-- a comment is dropped -->
    <Transform DEF="Box1" translation="0.5 -1.25 3" rotation="0 1 0 1.5708" scale="1,1,1">
      <Shape>
        <Appearance><Material diffuseColor="0.8 0.1 0.1" transparency="0"/></Appearance>
        <Box size="2 2 2" solid="true"/>
      </Shape>
    </Transform>
    <Shape>
      <IndexedFaceSet coordIndex="0 1 2 -1 0 2 3 -1 3 2 1 5000 -1" ccw="false true">
        <Coordinate point="0 0 0, 1 0 0, 1 1 0, 0.000123 1 12345.6"/>
      </IndexedFaceSet>
    </Shape>
    <CustomNode myField="hello world" other="1 two 3"/>
    <Script DEF="S"><![CDATA[ecmascript: function f() { return 1 < 2; }]]></Script>
  </Scene>
</X3D>
"""


def test_x3d_round_trip_is_equivalent(bundle):
    codec = bundle.x3d
    ids = codec.encode(X3D)
    lay = bundle.layout
    assert lay.id_of("x3d:N:Transform") in ids and lay.id_of("x3d:F:translation") in ids
    assert any(i in lay.range("number") for i in ids)
    back = codec.decode(ids)
    digits = lay.config.number_digits
    assert compare_trees(parse_x3d(X3D), parse_x3d(back), rel_tol=0.5 * 10 ** (1 - digits)) == []
    # integers are exact (coordIndex), unknown names and strings come back verbatim
    tree = parse_x3d(back)
    ifs = tree.children[1].children[1].children[0]
    assert dict(ifs.attrs)["coordIndex"] == "0 1 2 -1 0 2 3 -1 3 2 1 5000 -1"
    custom = tree.children[1].children[2]
    assert tree.attrs == [("profile", "Interchange"), ("version", "3.3")]
    assert custom.tag == "CustomNode" and custom.attrs == [
        ("myField", "hello world"),
        ("other", "1 two 3"),
    ]
    script = tree.children[1].children[3]
    assert script.children == ["ecmascript: function f() { return 1 < 2; }"]
    assert compare_trees(parse_x3d(X3D), parse_x3d(back), rel_tol=1e-9) != []  # numbers quantised


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ('<!DOCTYPE X3D PUBLIC "ISO//Web3D//DTD X3D 3.3//EN" "x.dtd"><X3D/>', "DOCTYPE"),
        ('<!DOCTYPE x [<!ENTITY a "aaaa">]><X3D>&a;</X3D>', "DOCTYPE"),
        ("<X3D><Scene></X3D>", "malformed"),
        ("", "malformed"),
    ],
)
def test_untrusted_x3d_is_refused(bundle, doc, why):
    with pytest.raises(X3DError, match=why):
        bundle.x3d.encode(doc)


def _obj(rng: np.random.Generator, n: int = 200) -> str:
    v = rng.normal(size=(n, 3)) * [3.0, 0.5, 10.0] + [100.0, -2.0, 0.0]
    faces = [(i + 1, i + 2, i + 3) for i in range(0, n - 3, 2)] + [(1, 2, 3, 4)]
    lines = ["# test mesh", "o thing", "vn 0 0 1", "vt 0.5 0.5"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v]
    lines += [f"f {a}/1/1 {b}//1 {c}" for a, b, c in faces[:-1]] + ["f -4 -3 -2 -1"]
    return "\n".join(lines) + "\n"


def test_obj_round_trip_within_quantisation(bundle):
    text = _obj(np.random.default_rng(0))
    codec = bundle.obj
    ids = codec.encode(text)
    lay = bundle.layout
    assert sum(i in lay.range("mesh_coord") for i in ids) == 200 * 3
    mesh = parse_obj(text)
    back = codec.decode(ids)
    report = mesh_error(mesh, back)
    assert report["faces_equal"] and back.faces[-1] == [196, 197, 198, 199]
    bound = codec.quantization_bound(mesh)
    assert (np.array(report["max_abs_per_axis"]) <= bound + 1e-9).all()
    assert lay.config.mesh_bins == 64 and report["max_distance_over_diagonal"] < 0.02
    tm = back.to_trimesh()
    assert tm.vertices.shape == (200, 3) and len(tm.faces) == len(mesh.triangles())
    again = parse_obj(back.to_obj())
    assert np.allclose(again.vertices, back.vertices, atol=1e-4)


def test_bad_obj_is_refused(bundle):
    with pytest.raises(MeshError, match="out of range"):
        bundle.obj.encode("v 0 0 0\nv 1 0 0\nf 1 2 3\n")
    with pytest.raises(MeshError, match="no vertices"):
        bundle.obj.encode("# nothing\n")
    big = "".join(f"v {i} 0 0\n" for i in range(bundle.layout.range("mesh_index").size + 1))
    with pytest.raises(MeshError, match="allows"):
        bundle.obj.encode(big)
