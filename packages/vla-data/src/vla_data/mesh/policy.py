"""AST allow-list for procedural Blender scripts: checked before anything runs.

A script passes only if every construct in it is on the allow-list:

- imports: `bpy`, `bmesh`, `mathutils` (and their submodules), `math`, `random`; no relative or
  `*` imports;
- no class definitions, decorators, `async` code or `global` declarations of dunder names;
- no name or attribute starting with `_` (dunders are how Python escapes: `__class__`,
  `__subclasses__`, `__globals__`, `__builtins__`, ...), except the name `__name__`;
- none of the builtins that reach files, code or the interpreter: `open`, `exec`, `eval`,
  `compile`, `__import__`, `globals`, `locals`, `vars`, `setattr`, `delattr`, `input`,
  `breakpoint`, `help`, `exit`, `quit`, `memoryview`; `getattr`/`hasattr` only with a literal
  attribute name that passes the attribute rules;
- none of the Blender API names that read or write files, run code or reach the window manager:
  `bpy.app` (handlers, timers, driver namespace), `bpy.utils`, text blocks (`texts`,
  `as_module`), drivers (`driver_add`, `expression`), `filepath`/`directory` (attributes or
  keyword arguments), library/image/sound/font data, `save*`/`load*`/`export*`/`import*`/
  `write*`/`read*`/`bake*` names, and `bpy.ops` categories other than geometry ones (`mesh`,
  `object`, `transform`, `curve`, `surface`, `material`, `uv`, `node`, `geometry`).

The check is a first line of defence, not the only one: `sandbox.run_script` also runs the script
in a child process under OS limits (see `_child.py`), which hold even for a script that passes
this check through a hole in it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

ALLOWED_MODULES = ("bpy", "bmesh", "mathutils", "math", "random")
OPS_CATEGORIES = frozenset(
    {"mesh", "object", "transform", "curve", "surface", "material", "uv", "node", "geometry"}
)
DENIED_NAMES = frozenset(
    {
        "open",
        "exec",
        "eval",
        "compile",
        "__import__",
        "globals",
        "locals",
        "vars",
        "setattr",
        "delattr",
        "input",
        "breakpoint",
        "help",
        "exit",
        "quit",
        "memoryview",
    }
)
ATTR_FUNCTIONS = frozenset({"getattr", "hasattr"})
DENIED_ATTRS = frozenset(
    {
        # interpreter / OS reach
        "app",
        "utils",
        "path",
        "system",
        "environ",
        "popen",
        "socket",
        "subprocess",
        # text blocks and drivers run Python
        "texts",
        "as_module",
        "driver_add",
        "driver_remove",
        "drivers",
        "driver",
        "expression",
        "driver_namespace",
        "handlers",
        "timers",
        # files
        "filepath",
        "filepath_raw",
        "directory",
        "filename",
        "files",
        "libraries",
        "library",
        "images",
        "sounds",
        "fonts",
        "movieclips",
        "cache_files",
        "volumes",
        "pack",
        "unpack",
        "reload",
        "render",
        "bake",
        # window manager and UI
        "wm",
        "window_manager",
        "preferences",
        "script",
        "file",
        "text",
        "screen",
        "ed",
        "extensions",
        "console",
    }
)
DENIED_PREFIXES = ("save", "load", "export", "import", "write", "read", "bake", "exec", "run")
DENIED_KEYWORDS = frozenset({"filepath", "directory", "filename", "files", "filter_glob"})
MAX_SOURCE_BYTES = 1 << 20
MAX_NODES = 200_000


class ScriptRejected(ValueError):
    """A script that fails the allow-list: the rule and the line it broke."""

    def __init__(self, reason: str, line: int | None = None):
        self.reason = reason
        self.line = line
        super().__init__(f"line {line}: {reason}" if line else reason)


@dataclass(frozen=True)
class ScriptInfo:
    """What the check learned: the modules imported (top level), sorted."""

    imports: tuple[str, ...]

    @property
    def uses_bpy(self) -> bool:
        return bool({"bpy", "bmesh"} & set(self.imports))


def _attr_ok(name: str) -> str | None:
    """Why attribute `name` is refused, or None."""
    if name.startswith("_"):
        return f"attribute {name!r} (names starting with '_' reach interpreter internals)"
    if name in DENIED_ATTRS:
        return f"attribute {name!r} is not allowed (file, code or UI access)"
    low = name.lower()
    if low.startswith(DENIED_PREFIXES):
        return f"attribute {name!r} is not allowed (reads, writes or runs something)"
    return None


def _module_ok(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] not in ALLOWED_MODULES:
        return f"import of {name!r} (only {', '.join(ALLOWED_MODULES)})"
    for part in parts[1:]:
        why = _attr_ok(part)
        if why:
            return f"import of {name!r}: {why}"
    if (
        parts[0] == "bpy"
        and len(parts) > 2
        and parts[1] == "ops"
        and parts[2] not in OPS_CATEGORIES
    ):
        return f"import of {name!r}: bpy.ops.{parts[2]} is not a geometry category"
    return None


class _Checker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.imports: set[str] = set()
        self.nodes = 0
        self.bpy_names = {"bpy"}  # names bound to the bpy module
        self.ops_names: set[str] = set()  # names bound to bpy.ops

    def fail(self, node: ast.AST, reason: str) -> None:
        raise ScriptRejected(reason, getattr(node, "lineno", None))

    def generic_visit(self, node: ast.AST) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.fail(node, f"script too large (over {MAX_NODES} syntax nodes)")
        super().generic_visit(node)

    # statements that are never needed by a procedural model
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.fail(node, "class definitions are not allowed")

    def visit_AsyncFunctionDef(self, node: ast.AST) -> None:
        self.fail(node, "async code is not allowed")

    visit_AsyncFor = visit_AsyncWith = visit_Await = visit_AsyncFunctionDef

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.decorator_list:
            self.fail(node, "decorators are not allowed")
        if node.name.startswith("_"):
            self.fail(node, f"function name {node.name!r} (names starting with '_')")
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            why = _module_ok(alias.name)
            if why:
                self.fail(node, why)
            self.imports.add(alias.name.split(".")[0])
            if alias.asname and alias.asname.startswith("_"):
                self.fail(node, f"alias {alias.asname!r} (names starting with '_')")
            if alias.name == "bpy" and alias.asname:
                self.bpy_names.add(alias.asname)
            if alias.name == "bpy.ops" and alias.asname:
                self.ops_names.add(alias.asname)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            self.fail(node, "relative imports are not allowed")
        why = _module_ok(node.module)
        if why:
            self.fail(node, why)
        self.imports.add(node.module.split(".")[0])
        for alias in node.names:
            if alias.name == "*":
                self.fail(node, f"'from {node.module} import *' is not allowed")
            why = _module_ok(f"{node.module}.{alias.name}")
            if why:
                self.fail(node, why)
            if alias.asname and alias.asname.startswith("_"):
                self.fail(node, f"alias {alias.asname!r} (names starting with '_')")
            if node.module == "bpy" and alias.name == "ops":
                self.ops_names.add(alias.asname or "ops")
        self.generic_visit(node)

    def _is_bpy_ops(self, value: ast.expr) -> bool:
        if isinstance(value, ast.Name):
            return value.id in self.ops_names
        return (
            isinstance(value, ast.Attribute)
            and value.attr == "ops"
            and isinstance(value.value, ast.Name)
            and value.value.id in self.bpy_names
        )

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in DENIED_NAMES:
            self.fail(node, f"name {node.id!r} is not allowed")
        if node.id.startswith("__") and node.id != "__name__":
            self.fail(node, f"name {node.id!r} (dunder names reach interpreter internals)")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        for name in node.names:
            if name.startswith("__"):
                self.fail(node, f"global {name!r} is not allowed")
        self.generic_visit(node)

    visit_Nonlocal = visit_Global

    def visit_Attribute(self, node: ast.Attribute) -> None:
        why = _attr_ok(node.attr)
        if why:
            self.fail(node, why)
        if self._is_bpy_ops(node.value) and node.attr not in OPS_CATEGORIES:
            self.fail(node, f"bpy.ops.{node.attr} is not a geometry operator category")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in ATTR_FUNCTIONS:
            if len(node.args) < 2 or not (
                isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
            ):
                self.fail(node, f"{func.id}() needs a literal attribute name")
            why = _attr_ok(node.args[1].value)
            if why:
                self.fail(node, f"{func.id}(): {why}")
        for kw in node.keywords:
            if kw.arg is None:
                self.fail(node, "'**' keyword arguments are not allowed (they hide names)")
            if kw.arg in DENIED_KEYWORDS:
                self.fail(node, f"keyword argument {kw.arg!r} is not allowed (file access)")
        self.generic_visit(node)


def check_script(source: str | bytes) -> ScriptInfo:
    """Parse `source` and apply the allow-list; raises `ScriptRejected` naming rule and line."""
    if isinstance(source, bytes):
        if len(source) > MAX_SOURCE_BYTES:
            raise ScriptRejected(f"script larger than {MAX_SOURCE_BYTES} bytes")
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ScriptRejected(f"script is not UTF-8 ({e})") from None
    if len(source.encode("utf-8")) > MAX_SOURCE_BYTES:
        raise ScriptRejected(f"script larger than {MAX_SOURCE_BYTES} bytes")
    if "\x00" in source:
        raise ScriptRejected("script contains NUL bytes")
    try:
        tree = ast.parse(source, filename="script.py")
    except SyntaxError as e:
        raise ScriptRejected(f"syntax error: {e.msg}", e.lineno) from None
    checker = _Checker()
    checker.visit(tree)
    return ScriptInfo(imports=tuple(sorted(checker.imports)))


def script_imports(source: str) -> tuple[str, ...]:
    """Top-level modules a script imports (no policy applied; a syntax error gives ())."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return tuple(sorted(found))
