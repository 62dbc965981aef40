"""Run an untrusted procedural Blender script and get its mesh back as OBJ, or a typed failure.

`run_script(source)`:

1. `policy.check_script` (AST allow-list) — a rejected script never runs;
2. a fresh temporary work folder holds the script, a job file and everything the child writes;
3. a child interpreter (`_child.py`, in its own session) isolates itself (network namespace,
   user namespace, Landlock write confinement, rlimits: address space, CPU seconds, file size,
   open files) and runs the script with interpreter guards; see `_child.py` for the order;
4. this process enforces the wall-clock limit: on expiry the sandbox's PID 1, every descendant
   of the child and the whole process group are killed (SIGKILL); the group is killed again
   after any exit so no stray process outlives the run;
5. the child's exit status, resource usage and `result.json` become a `SandboxResult` (the OBJ
   text, objects, isolation report, CPU seconds, peak memory) or a `SandboxError` whose `kind` is
   one of `rejected`, `timeout`, `cpu`, `memory`, `file_size`, `blocked`, `script_error`,
   `no_mesh`, `crashed`, `output`;
6. the work folder is removed.

Nothing in the child's output is trusted: the OBJ is parsed and checked again by the caller.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from vla_data.mesh._child import descendants
from vla_data.mesh.policy import ALLOWED_MODULES, ScriptRejected, check_script, script_imports

CHILD = Path(__file__).with_name("_child.py")
MAX_RESULT_BYTES = 1 << 20
MAX_LOG_BYTES = 16 << 10


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits. Memory is address space (RLIMIT_AS): bpy alone maps about 1.4 GB."""

    wall_s: float = 60.0
    cpu_s: int = 60
    memory_mb: int = 4096
    file_mb: int = 256
    max_files: int = 256

    def __post_init__(self) -> None:
        if self.wall_s <= 0 or self.cpu_s < 1 or self.memory_mb < 64 or self.file_mb < 1:
            raise ValueError(f"invalid sandbox limits {self}")
        if self.max_files < 16:
            raise ValueError("max_files must be at least 16")


class SandboxError(RuntimeError):
    """A script that was refused, stopped or failed; `kind` says which, the message says why."""

    def __init__(self, kind: str, message: str, *, isolation: dict | None = None, log: str = ""):
        self.kind = kind
        self.isolation = isolation or {}
        self.log = log
        super().__init__(f"{kind}: {message}")


@dataclass
class SandboxResult:
    obj: bytes
    objects: list[str]
    isolation: dict
    seconds: float
    cpu_s: float
    max_rss_mb: float
    log: str = ""
    imports: tuple[str, ...] = field(default_factory=tuple)


def _child_env(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "MALLOC_ARENA_MAX": "2",  # keeps bpy's address-space use independent of the core count
        "OMP_NUM_THREADS": "1",
    }


def _tail(path: Path, limit: int = MAX_LOG_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _read_result(workdir: Path) -> dict:
    path = workdir / "result.json"
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_RESULT_BYTES:
            return {}
        doc = json.loads(path.read_text(encoding="utf-8"))
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _kill_descendants(root: int) -> None:
    for _ in range(50):
        pids = descendants(root)  # the child's /proc walk; no reaping here (not a subreaper)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _inner_pid(pid_r: int) -> int | None:
    try:
        text = os.read(pid_r, 64).decode("ascii", "replace").strip()
    except (BlockingIOError, OSError):
        return None
    return int(text) if text.isdigit() else None


def _wait(proc: subprocess.Popen, wall_s: float, pid_r: int) -> tuple[int | None, os.struct_rusage]:
    """(exit status as Popen.returncode, rusage); status None when the wall clock ran out.

    The child is observed with WNOWAIT, its process group killed while its zombie still holds
    the pid (so the group id cannot have been reused), and only then reaped.
    """
    deadline = time.monotonic() + wall_s
    delay = 0.005
    timed_out = False
    while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline:
            timed_out = True
            break
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)
    if timed_out:
        inner = _inner_pid(pid_r)  # PID 1 of the sandbox's PID namespace, if it has one
        if inner:
            with contextlib.suppress(ProcessLookupError):
                os.kill(inner, signal.SIGKILL)  # still the supervisor's unreaped child
        _kill_descendants(proc.pid)  # without a PID namespace: the supervisor holds orphans
    _kill_group(proc.pid)  # on timeout: the run; otherwise: anything left in its group
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (None if timed_out else proc.returncode), usage


def _rmtree(path: Path) -> None:
    def fix(func, p, _exc):
        try:
            os.chmod(p, stat.S_IRWXU)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=fix)


def run_script(
    source: str,
    limits: SandboxLimits | None = None,
    *,
    check: bool = True,
    guards: bool | None = None,
) -> SandboxResult:
    """Run `source` in the sandbox and return its mesh as OBJ text.

    `check=False` skips the AST allow-list and `guards=False` the interpreter guards (audit hook,
    restricted builtins and imports); both default on and exist so tests can show that the OS
    limits alone stop a hostile script. `guards` defaults to `check`.
    """
    limits = limits or SandboxLimits()
    guards = check if guards is None else guards
    if check:
        try:
            info = check_script(source)
        except ScriptRejected as e:
            raise SandboxError("rejected", f"script fails the allow-list: {e}") from None
        imports = info.imports
    else:
        imports = script_imports(source)
    uses_bpy = bool({"bpy", "bmesh"} & set(imports))
    workdir = Path(tempfile.mkdtemp(prefix="vla-blend-"))
    start = time.perf_counter()
    try:
        (workdir / "script.py").write_text(source, encoding="utf-8")
        job = {
            "limits": {
                "memory_mb": limits.memory_mb,
                "cpu_s": limits.cpu_s,
                "file_mb": limits.file_mb,
                "max_files": limits.max_files,
            },
            "guards": guards,
            "uses_bpy": uses_bpy,
            "allowed_modules": list(ALLOWED_MODULES),
        }
        (workdir / "job.json").write_text(json.dumps(job), encoding="utf-8")
        pid_r, pid_w = os.pipe()
        os.set_blocking(pid_r, False)
        with open(workdir / "stdout.log", "wb") as out, open(workdir / "stderr.log", "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", str(CHILD), str(workdir), str(pid_w)],
                cwd=workdir,
                env=_child_env(str(workdir)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
                pass_fds=(pid_w,),
            )
            os.close(pid_w)
            try:
                code, usage = _wait(proc, limits.wall_s, pid_r)
            except BaseException:
                _kill_group(proc.pid)
                proc.wait()
                raise
            finally:
                os.close(pid_r)
        seconds = time.perf_counter() - start
        cpu = usage.ru_utime + usage.ru_stime
        rss_mb = usage.ru_maxrss / 1024
        log = (_tail(workdir / "stdout.log", 4096) + _tail(workdir / "stderr.log")).strip()
        result = _read_result(workdir)
        isolation = result.get("isolation") if isinstance(result.get("isolation"), dict) else {}
        error = result.get("error") if isinstance(result.get("error"), dict) else None

        def fail(kind: str, message: str) -> SandboxError:
            return SandboxError(kind, message, isolation=isolation, log=log[-4000:])

        if code is None:
            raise fail(
                "timeout", f"wall-clock limit of {limits.wall_s:g} s reached; process group killed"
            )
        if code == -signal.SIGXCPU or (code == -signal.SIGKILL and cpu >= limits.cpu_s - 0.05):
            raise fail("cpu", f"CPU limit of {limits.cpu_s} s reached (used {cpu:.1f} s)")
        if code == -signal.SIGXFSZ:
            raise fail("file_size", f"file size limit of {limits.file_mb} MiB reached")
        if error is not None:
            kind = str(error.get("kind", "script_error"))
            if kind not in ("memory", "blocked", "script_error", "no_mesh"):
                kind = "script_error"
            message = str(error.get("message", ""))[:2000]
            line = error.get("line")
            where = f" at script line {line}" if isinstance(line, int) else ""
            if kind == "memory":
                message = f"memory limit of {limits.memory_mb} MiB reached ({message})"
            raise fail(kind, f"{message}{where}")
        if code < 0:
            name = (
                signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else -code
            )
            raise fail("crashed", f"killed by signal {name} (peak memory {rss_mb:.0f} MiB)")
        if code != 0 or not result.get("ok"):
            tail = log.splitlines()[-1] if log else "no output"
            if "MemoryError" in log:
                raise fail("memory", f"memory limit of {limits.memory_mb} MiB reached")
            raise fail("crashed", f"child exited with status {code}: {tail[:500]}")
        obj_path = workdir / "mesh.obj"
        if obj_path.is_symlink() or not obj_path.is_file():
            raise fail("output", "the exporter wrote no mesh.obj")
        if obj_path.stat().st_size > limits.file_mb << 20:
            raise fail("output", "mesh.obj exceeds the file size limit")
        objects = result.get("objects") if isinstance(result.get("objects"), list) else []
        return SandboxResult(
            obj=obj_path.read_bytes(),
            objects=[str(o) for o in objects][:10_000],
            isolation=isolation,
            seconds=seconds,
            cpu_s=cpu,
            max_rss_mb=rss_mb,
            log=log[-4000:],
            imports=imports,
        )
    finally:
        _rmtree(workdir)


@functools.lru_cache(maxsize=1)
def probe_isolation() -> dict:
    """The isolation this machine gives a sandboxed run (an empty script, no bpy; ~0.1 s)."""
    try:
        run_script("pass", SandboxLimits(wall_s=30, memory_mb=512), check=False)
    except SandboxError as e:
        return e.isolation
    return {}
