"""Point Cloud Data (PCL `.pcd`, v0.7): ascii, binary and binary_compressed (LZF) readers.

trimesh 5.2 has no PCD loader, so the header and data are parsed here (fields, sizes, types,
counts, width x height = points) and the x/y/z columns become a `trimesh.PointCloud`.
Organised clouds mark missing returns with NaN, so non-finite points are counted, not fatal.
"""

from __future__ import annotations

import numpy as np

from vla_data.mesh.geometry import MeshError

MAX_PCD_BYTES = 512 << 20
_TYPES = {
    ("F", 4): "<f4",
    ("F", 8): "<f8",
    ("I", 1): "i1",
    ("I", 2): "<i2",
    ("I", 4): "<i4",
    ("I", 8): "<i8",
    ("U", 1): "u1",
    ("U", 2): "<u2",
    ("U", 4): "<u4",
    ("U", 8): "<u8",
}
_KEYS = (
    "VERSION",
    "FIELDS",
    "SIZE",
    "TYPE",
    "COUNT",
    "WIDTH",
    "HEIGHT",
    "VIEWPOINT",
    "POINTS",
    "DATA",
)


def lzf_decompress(data: bytes, out_len: int) -> bytes:
    """LibLZF decompression (the format PCL's binary_compressed uses), bounds-checked."""
    out = bytearray(out_len)
    ip = op = 0
    n = len(data)
    while ip < n:
        ctrl = data[ip]
        ip += 1
        if ctrl < 32:  # literal run of ctrl + 1 bytes
            length = ctrl + 1
            if ip + length > n or op + length > out_len:
                raise MeshError("PCD: corrupt LZF stream (literal run past the end)")
            out[op : op + length] = data[ip : ip + length]
            ip += length
            op += length
        else:  # back reference
            length = ctrl >> 5
            if length == 7:
                if ip >= n:
                    raise MeshError("PCD: corrupt LZF stream (truncated length)")
                length += data[ip]
                ip += 1
            if ip >= n:
                raise MeshError("PCD: corrupt LZF stream (truncated offset)")
            ref = op - ((ctrl & 0x1F) << 8) - data[ip] - 1
            ip += 1
            length += 2
            if ref < 0 or op + length > out_len:
                raise MeshError("PCD: corrupt LZF stream (reference out of range)")
            for k in range(length):  # may overlap: byte by byte
                out[op + k] = out[ref + k]
            op += length
    if op != out_len:
        raise MeshError(f"PCD: LZF stream gave {op} bytes, header says {out_len}")
    return bytes(out)


def parse_pcd(data: bytes) -> tuple[np.ndarray, dict]:
    """(points (n, 3) float64, header dict) of a PCD file."""
    if len(data) > MAX_PCD_BYTES:
        raise MeshError(f"PCD larger than {MAX_PCD_BYTES >> 20} MiB")
    header: dict[str, list[str]] = {}
    pos = 0
    while "DATA" not in header:
        end = data.find(b"\n", pos)
        if end < 0:
            raise MeshError("PCD header has no DATA line")
        try:
            line = data[pos:end].decode("ascii").strip()
        except UnicodeDecodeError:
            raise MeshError("PCD header is not ASCII text") from None
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        if key not in _KEYS:
            raise MeshError(f"PCD header: unknown key {key[:40]!r}")
        header[key] = values
    for key in ("FIELDS", "SIZE", "TYPE", "WIDTH", "HEIGHT", "POINTS"):
        if key not in header:
            raise MeshError(f"PCD header has no {key} line")
    fields = header["FIELDS"]
    counts = header.get("COUNT", ["1"] * len(fields))
    if not (len(fields) == len(header["SIZE"]) == len(header["TYPE"]) == len(counts)):
        raise MeshError("PCD header: FIELDS, SIZE, TYPE and COUNT differ in length")
    try:
        width, height, points = (
            int(header["WIDTH"][0]),
            int(header["HEIGHT"][0]),
            int(header["POINTS"][0]),
        )
        sizes = [int(s) for s in header["SIZE"]]
        counts_i = [int(c) for c in counts]
    except (ValueError, IndexError):
        raise MeshError("PCD header: WIDTH/HEIGHT/POINTS/SIZE/COUNT must be integers") from None
    if width * height != points or points < 0:
        raise MeshError(f"PCD header: WIDTH*HEIGHT ({width}x{height}) != POINTS ({points})")
    for axis in "xyz":
        if axis not in fields:
            raise MeshError(f"PCD has no {axis!r} field (fields: {' '.join(fields)})")
    dtypes = []
    for name, size, typ, count in zip(fields, sizes, header["TYPE"], counts_i, strict=True):
        code = _TYPES.get((typ, size))
        if code is None or count < 1:
            raise MeshError(f"PCD field {name!r}: unsupported TYPE {typ} SIZE {size} COUNT {count}")
        dtypes.append((name if name != "_" else f"_pad{len(dtypes)}", code, (count,)))
    dtype = np.dtype(dtypes)
    mode = (header["DATA"] or ["?"])[0]
    body = data[pos:]
    if mode == "ascii":
        rows = [r.split() for r in body.decode("ascii", "replace").splitlines() if r.strip()]
        ncols = sum(counts_i)
        if len(rows) != points or any(len(r) != ncols for r in rows):
            raise MeshError(f"PCD ascii data: expected {points} rows of {ncols} values")
        col = {}
        offset = 0
        for name, count in zip(fields, counts_i, strict=True):
            col[name] = offset
            offset += count
        try:
            xyz = np.array([[float(r[col[a]]) for a in "xyz"] for r in rows], dtype=np.float64)
        except ValueError:
            raise MeshError("PCD ascii data: a coordinate is not a number") from None
    elif mode == "binary":
        need = dtype.itemsize * points
        if len(body) < need:
            raise MeshError(f"PCD binary data truncated: {len(body)} bytes, need {need}")
        rec = np.frombuffer(body[:need], dtype=dtype, count=points)
        xyz = np.stack([rec[a][:, 0].astype(np.float64) for a in "xyz"], axis=1)
    elif mode == "binary_compressed":
        if len(body) < 8:
            raise MeshError("PCD binary_compressed data truncated (no size words)")
        csize = int.from_bytes(body[0:4], "little")
        usize = int.from_bytes(body[4:8], "little")
        if usize != dtype.itemsize * points or 8 + csize > len(body):
            raise MeshError("PCD binary_compressed: sizes disagree with the header or the file")
        raw = lzf_decompress(body[8 : 8 + csize], usize)
        cols = {}
        offset = 0
        for (name, code, _shape), count in zip(dtypes, counts_i, strict=True):
            n = np.dtype(code).itemsize * count * points
            cols[name] = np.frombuffer(raw[offset : offset + n], dtype=code).reshape(points, count)
            offset += n
        xyz = np.stack([cols[a][:, 0].astype(np.float64) for a in "xyz"], axis=1)
    else:
        raise MeshError(f"PCD DATA {mode!r} is not ascii, binary or binary_compressed")
    info = {"fields": fields, "width": width, "height": height, "points": points, "data": mode}
    return xyz.reshape(-1, 3), info


def write_pcd_ascii(points: np.ndarray) -> bytes:
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    head = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\n"
        f"TYPE F F F\nCOUNT 1 1 1\nWIDTH {len(points)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
        f"POINTS {len(points)}\nDATA ascii\n"
    )
    rows = "".join(f"{x:.7g} {y:.7g} {z:.7g}\n" for x, y, z in points.tolist())
    return (head + rows).encode()
