"""X3D scenes as structure tokens plus quantised numbers.

An X3D (XML encoding) document is untrusted input: it is parsed with the stdlib's expat, and a
DOCTYPE, any entity declaration or external entity reference is refused (no entity expansion,
no external fetches); documents over `MAX_BYTES` or deeper than `MAX_DEPTH` are refused too.
Comments, processing instructions and whitespace-only character data are dropped.

Token grammar inside an X3D span (the markers `<|x3d_start|>` / `<|x3d_end|>` are the caller's)::

    element   := (N:<Node> | <elem> LITERAL) attribute* (element | #text LITERAL)* </>
    attribute := (F:<field> | @attr LITERAL) value
    value     := NUMBER+ | (true|false)+ | #str LITERAL
    LITERAL   := text BPE ids (maximal run)

Known node and field names (X3D 3.3/4.0 core, geometry, appearance, lighting, navigation,
interpolation) are single tokens; any other name goes through the text BPE. Attribute values
made only of numbers become number tokens (integers exact, floats to the layout's significant
digits); lists of true/false become boolean tokens; anything else, and every value of a
string-typed field (`STRING_FIELDS`: DEF, USE, version, url, ...), is a string literal.
Decoding gives back an equivalent document (same tree, names and strings; numbers quantised).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from xml.parsers import expat
from xml.sax.saxutils import escape, quoteattr

from vla_tokenizers.numbers import NumberError

MAX_BYTES = 64 << 20
MAX_DEPTH = 256

X3D_NODES = """
X3D head meta component unit Scene WorldInfo Transform Group StaticGroup Switch LOD Billboard
Collision Anchor Inline Shape Appearance Material PhysicalMaterial UnlitMaterial TwoSidedMaterial
ImageTexture PixelTexture MovieTexture MultiTexture TextureTransform TextureProperties Box Sphere
Cylinder Cone Disk2D Rectangle2D Circle2D Arc2D ArcClose2D Polyline2D Polypoint2D TriangleSet2D
Text FontStyle IndexedFaceSet IndexedTriangleSet IndexedTriangleStripSet IndexedTriangleFanSet
IndexedQuadSet QuadSet TriangleSet TriangleStripSet TriangleFanSet IndexedLineSet LineSet PointSet
ElevationGrid Extrusion Coordinate CoordinateDouble Normal Color ColorRGBA TextureCoordinate
Viewpoint OrthoViewpoint NavigationInfo Background TextureBackground Fog DirectionalLight
PointLight SpotLight TimeSensor PositionInterpolator OrientationInterpolator ScalarInterpolator
ColorInterpolator CoordinateInterpolator NormalInterpolator ROUTE TouchSensor PlaneSensor
CylinderSensor SphereSensor ProximitySensor VisibilitySensor Sound AudioClip Script field
fieldValue ProtoDeclare ProtoInterface ProtoBody ProtoInstance ExternProtoDeclare IS connect
MetadataString MetadataFloat MetadataDouble MetadataInteger MetadataBoolean MetadataSet
LineProperties FillProperties HAnimHumanoid HAnimJoint HAnimSegment CADAssembly CADPart CADFace
""".split()

X3D_FIELDS = """
DEF USE containerField class id profile version xmlns:xsd xsd:noNamespaceSchemaLocation name
content level translation rotation scale scaleOrientation center bboxCenter bboxSize
diffuseColor emissiveColor specularColor ambientIntensity shininess transparency baseColor
metallic roughness size radius height bottomRadius topRadius bottom top side solid ccw convex
creaseAngle point coordIndex colorIndex normalIndex texCoordIndex index colorPerVertex
normalPerVertex vector color position orientation fieldOfView centerOfRotation description
direction intensity on location attenuation beamWidth cutOffAngle global url string family style
justify spacing length maxExtent skyColor groundColor skyAngle groundAngle key keyValue fromNode
fromField toNode toField cycleInterval loop enabled startTime stopTime type headlight speed
avatarSize visibilityLimit transitionType crossSection spine beginCap endCap xDimension
zDimension xSpacing zSpacing title info repeatS repeatT whichChoice range fogType
visibilityRange accessType value appinfo documentation nodeField protoField vertexCount
stripCount fanCount lineSegments linewidthScaleFactor filled hatched texCoord mode
""".split()

# Fields whose value is a string by type: always a literal (so version="4.0" stays "4.0").
STRING_FIELDS = frozenset(
    """DEF USE containerField class id profile version xmlns:xsd xsd:noNamespaceSchemaLocation
    name content description url string family style justify title info fromNode fromField toNode
    toField type appinfo documentation nodeField protoField accessType value fogType
    transitionType""".split()
)

CLOSE, ELEM, ATTR, STR, TEXT, TRUE, FALSE = (
    "</>",
    "<elem>",
    "@attr",
    "#str",
    "#text",
    "true",
    "false",
)
GENERIC = [CLOSE, ELEM, ATTR, STR, TEXT, TRUE, FALSE]

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_SPLIT = re.compile(r"[\s,]+")


def default_x3d_names() -> list[str]:
    """Token names of the `x3d` range, in order."""
    return GENERIC + [f"N:{n}" for n in X3D_NODES] + [f"F:{f}" for f in X3D_FIELDS]


class X3DError(ValueError):
    pass


@dataclass
class XNode:
    tag: str
    attrs: list[tuple[str, str]] = field(default_factory=list)
    children: list[XNode | str] = field(default_factory=list)


def parse_x3d(data: bytes | str) -> XNode:
    """Parse untrusted X3D XML into an `XNode` tree; refuses DOCTYPE and entity declarations."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_BYTES:
        raise X3DError(f"X3D document of {len(raw)} bytes exceeds the {MAX_BYTES} byte limit")
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    root: list[XNode] = []
    stack: list[XNode] = []

    def refuse(what: str):
        def handler(*_args):
            raise X3DError(f"{what} is not allowed in X3D input (untrusted XML)")

        return handler

    def start(tag: str, attrs: list[str]) -> None:
        if len(stack) >= MAX_DEPTH:
            raise X3DError(f"X3D nesting deeper than {MAX_DEPTH}")
        node = XNode(tag, list(zip(attrs[0::2], attrs[1::2], strict=True)))
        if stack:
            stack[-1].children.append(node)
        elif root:
            raise X3DError("more than one root element")
        else:
            root.append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def chars(text: str) -> None:
        if not stack:
            return
        kids = stack[-1].children
        if kids and isinstance(kids[-1], str):
            kids[-1] += text
        else:
            kids.append(text)

    parser.ordered_attributes = True
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = refuse("a DOCTYPE declaration")
    parser.EntityDeclHandler = refuse("an entity declaration")
    parser.UnparsedEntityDeclHandler = refuse("an unparsed entity declaration")
    parser.ExternalEntityRefHandler = refuse("an external entity reference")
    parser.NotationDeclHandler = refuse("a notation declaration")
    try:
        parser.Parse(raw, True)
    except expat.ExpatError as e:
        raise X3DError(f"malformed X3D XML: {e}") from None
    if not root:
        raise X3DError("X3D document has no root element")

    def strip(node: XNode) -> None:
        node.children = [c for c in node.children if not (isinstance(c, str) and not c.strip())]
        for c in node.children:
            if isinstance(c, XNode):
                strip(c)

    strip(root[0])
    return root[0]


def to_xml(node: XNode, indent: int = 0) -> str:
    pad = "  " * indent
    attrs = "".join(f" {k}={quoteattr(v)}" for k, v in node.attrs)
    if not node.children:
        return f"{pad}<{node.tag}{attrs}/>\n"
    if all(isinstance(c, str) for c in node.children):
        body = "".join(escape(c) for c in node.children)  # type: ignore[arg-type]
        return f"{pad}<{node.tag}{attrs}>{body}</{node.tag}>\n"
    inner = "".join(
        to_xml(c, indent + 1) if isinstance(c, XNode) else f"{pad}  {escape(c)}\n"
        for c in node.children
    )
    return f"{pad}<{node.tag}{attrs}>\n{inner}{pad}</{node.tag}>\n"


def document(node: XNode) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + to_xml(node)


class X3DCodec:
    """Encode an X3D document to ids of the unified vocabulary and back."""

    def __init__(self, layout, text):
        self.layout, self.text = layout, text
        self.r = layout.range("x3d")
        self.nr = layout.range("number")
        self.num = layout.config.number_codec
        self.names = {n: self.r.start + i for i, n in enumerate(self.r.names)}
        self.ids = {v: k for k, v in self.names.items()}

    def _literal(self, s: str) -> list[int]:
        return self.text.encode(s)

    def _value(self, v: str, key: str) -> list[int]:
        if key in STRING_FIELDS:
            return [self.names[STR], *self._literal(v)]
        items = [x for x in _SPLIT.split(v.strip()) if x]
        if items and all(_INT.match(x) or _FLOAT.match(x) for x in items):
            out: list[int] = []
            try:
                for x in items:
                    local = (
                        self.num.encode_int(int(x))
                        if _INT.match(x)
                        else self.num.encode_float(float(x))
                    )
                    out += [self.nr.start + t for t in local]
                return out
            except NumberError:
                pass  # out of range: keep the exact string
        if items and all(x in (TRUE, FALSE) for x in items):
            return [self.names[x] for x in items]
        return [self.names[STR], *self._literal(v)]

    def encode(self, data: bytes | str | XNode) -> list[int]:
        root = data if isinstance(data, XNode) else parse_x3d(data)
        out: list[int] = []

        def walk(node: XNode) -> None:
            key = f"N:{node.tag}"
            out.extend(
                [self.names[key]]
                if key in self.names
                else [self.names[ELEM], *self._literal(node.tag)]
            )
            for k, v in node.attrs:
                fk = f"F:{k}"
                out.extend(
                    [self.names[fk]] if fk in self.names else [self.names[ATTR], *self._literal(k)]
                )
                out.extend(self._value(v, k))
            for c in node.children:
                if isinstance(c, XNode):
                    walk(c)
                else:
                    out.extend([self.names[TEXT], *self._literal(c)])
            out.append(self.names[CLOSE])

        walk(root)
        return out

    def decode_tree(self, ids) -> XNode:
        ids = [int(i) for i in ids]
        n, i = len(ids), 0
        text_size = self.layout.text_size
        root: list[XNode] = []
        stack: list[XNode] = []

        def literal() -> str:
            nonlocal i
            j = i
            while j < n and ids[j] < text_size:
                j += 1
            s = self.text.decode(ids[i:j])
            i = j
            return s

        def value() -> str:
            nonlocal i
            if i >= n:
                raise X3DError("attribute without a value at the end of the span")
            t = ids[i]
            if t in self.nr:
                j = i
                while j < n and ids[j] in self.nr:
                    j += 1
                try:
                    nums = self.num.decode([x - self.nr.start for x in ids[i:j]])
                except NumberError as e:
                    raise X3DError(f"bad number run at token {i}: {e}") from None
                i = j
                return " ".join(
                    str(v) if isinstance(v, int) else self.num.format_float(v) for v in nums
                )
            name = self.ids.get(t)
            if name in (TRUE, FALSE):
                words = []
                while i < n and self.ids.get(ids[i]) in (TRUE, FALSE):
                    words.append(self.ids[ids[i]])
                    i += 1
                return " ".join(words)
            if name == STR:
                i += 1
                return literal()
            raise X3DError(f"token {t} at {i} cannot start an attribute value")

        while i < n:
            t = ids[i]
            name = self.ids.get(t)
            if name is None:
                raise X3DError(f"token {t} at {i} is not an X3D structure token")
            i += 1
            if name.startswith("N:") or name == ELEM:
                tag = name[2:] if name != ELEM else literal()
                node = XNode(tag)
                if stack:
                    stack[-1].children.append(node)
                elif root:
                    raise X3DError("X3D span has more than one root element")
                else:
                    root.append(node)
                stack.append(node)
            elif name.startswith("F:") or name == ATTR:
                if not stack:
                    raise X3DError(f"attribute outside an element at {i - 1}")
                key = name[2:] if name != ATTR else literal()
                stack[-1].attrs.append((key, value()))
            elif name == TEXT:
                if not stack:
                    raise X3DError(f"text outside an element at {i - 1}")
                stack[-1].children.append(literal())
            elif name == CLOSE:
                if not stack:
                    raise X3DError(f"unbalanced close at {i - 1}")
                stack.pop()
            else:
                raise X3DError(f"unexpected {name!r} at {i - 1}")
        if stack or not root:
            raise X3DError("X3D span ends with unclosed elements" if stack else "empty X3D span")
        return root[0]

    def decode(self, ids) -> str:
        return document(self.decode_tree(ids))


def compare_trees(a: XNode, b: XNode, rel_tol: float) -> list[str]:
    """Differences between two trees, numbers compared within `rel_tol` (empty when equivalent)."""
    problems: list[str] = []

    def values_match(x: str, y: str) -> bool:
        xs, ys = (
            [t for t in _SPLIT.split(x.strip()) if t],
            [t for t in _SPLIT.split(y.strip()) if t],
        )
        if xs == ys:
            return True
        if len(xs) != len(ys):
            return False
        for p, q in zip(xs, ys, strict=True):
            if not (_FLOAT.match(p) and _FLOAT.match(q)):
                if p != q:
                    return False
                continue
            fp, fq = float(p), float(q)
            if abs(fp - fq) > rel_tol * max(abs(fp), abs(fq)) + 1e-300:
                return False
        return True

    def walk(x: XNode, y: XNode, path: str) -> None:
        here = f"{path}/{x.tag}"
        if x.tag != y.tag:
            problems.append(f"{here}: tag {x.tag!r} != {y.tag!r}")
            return
        if [k for k, _ in x.attrs] != [k for k, _ in y.attrs]:
            problems.append(
                f"{here}: attributes {[k for k, _ in x.attrs]} != {[k for k, _ in y.attrs]}"
            )
        for (k, v), (_, w) in zip(x.attrs, y.attrs, strict=False):
            if not values_match(v, w):
                problems.append(f"{here}@{k}: {v!r} != {w!r}")
        if len(x.children) != len(y.children):
            problems.append(f"{here}: {len(x.children)} children != {len(y.children)}")
        for c, d in zip(x.children, y.children, strict=False):
            if isinstance(c, XNode) and isinstance(d, XNode):
                walk(c, d, here)
            elif c != d:
                problems.append(f"{here}: text {c!r} != {d!r}")

    walk(a, b, "")
    return problems
