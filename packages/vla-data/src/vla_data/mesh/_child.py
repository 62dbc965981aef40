"""Sandbox child: run one untrusted Blender script inside OS-level and interpreter-level limits.

Started by `vla_data.mesh.sandbox.run_script` as ``python -I -B _child.py WORKDIR FD`` in its own
session (process group); FD is a pipe on which the supervisor reports the sandboxed pid. Standard library and bpy only: it does not import vla_data, so nothing
of the parent's package state is reachable from the script. Order of operations:

1. isolate the network: a fresh network namespace (``unshare(CLONE_NEWNET)``, only loopback,
   and that one down), entered directly as root or together with a new user namespace otherwise;
2. drop privileges: enter a new user namespace (as root, after the network one), so the process
   keeps its uid for file access but holds no capability in the initial namespace (it cannot
   raise its resource limits or bypass file permissions);
   then a new PID namespace: this process stays outside as a supervisor, forks PID 1 inside
   (a minimal init with PR_SET_PDEATHSIG = SIGKILL), which forks the worker that runs the
   script; when PID 1 goes the kernel kills everything in the namespace, so killing the run
   kills whatever the script started, even after a setsid(). Without a PID namespace the
   supervisor is a child subreaper instead: orphans are re-parented to it, and it (or, on a
   timeout, the runner) kills every descendant it holds;
3. Landlock (Linux >= 5.13): writes of any kind (create, write, truncate, remove, rename, link,
   mknod) only beneath WORKDIR (plus /dev/null); with ABI >= 4 TCP bind/connect denied; with
   ABI >= 6 abstract unix sockets and signals scoped to the sandbox (it cannot signal its parent);
4. resource limits, hard = soft (CPU: hard = soft + 1 s) so they cannot be raised: RLIMIT_AS (memory), RLIMIT_CPU,
   RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_CORE = 0; PR_SET_NO_NEW_PRIVS;
5. import bpy (if the script uses it) and load factory settings with an empty scene;
6. interpreter guards (unless the parent turned them off for testing): an audit hook that
   refuses sockets, processes, ctypes and file writes outside WORKDIR, and restricted builtins
   (no open/exec/eval/compile/getattr/..., an ``__import__`` that admits only the allowed
   modules);
7. exec the script, then export every mesh object with ``bpy.ops.wm.obj_export`` to
   WORKDIR/mesh.obj and write WORKDIR/result.json.

Each layer that could not be applied is reported in result.json; the parent copies that report
into the sample metadata. The wall-clock limit (and the kill of the whole process group) is the
parent's, outside the reach of anything here.
"""

import builtins
import contextlib
import ctypes
import json
import os
import resource
import sys
import traceback

# Never let the script shadow stdlib or bpy modules from this file's folder.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
SYS_LANDLOCK_CREATE_RULESET = 444  # same number on every architecture (new syscall table)
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _errno_text() -> str:
    return os.strerror(ctypes.get_errno())


def isolate_network() -> tuple[str, bool]:
    """(what applied, whether a user namespace was entered)."""
    if _libc.unshare(CLONE_NEWNET) == 0:
        return "network namespace (no interfaces up)", False
    first = _errno_text()
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
        return "user + network namespace (no interfaces up)", True
    return f"none (unshare failed: {first}; with a user namespace: {_errno_text()})", False


def drop_capabilities(in_userns: bool) -> str:
    if in_userns:
        return "no capabilities outside the sandbox's user namespace"
    if _libc.unshare(CLONE_NEWUSER) == 0:
        return "no capabilities outside the sandbox's user namespace"
    return f"unchanged (user namespace unavailable: {_errno_text()})"


def enter_pid_namespace() -> str | None:
    """unshare(CLONE_NEWPID): the next fork becomes PID 1 of a new namespace, and when it dies
    the kernel kills everything left inside (a setsid() cannot escape the kill)."""
    if _libc.unshare(CLONE_NEWPID) == 0:
        return None
    return _errno_text()


def _wait_status(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0


def init_process(worker: int, status_fd: int) -> int:
    """PID 1 of the sandbox: reap everything, report the worker's status, then exit (which makes
    the kernel kill whatever else is still alive in the namespace)."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            status = 0
            break
        if pid == worker:
            break
    if os.WIFSIGNALED(status):
        os.write(status_fd, f"signal {os.WTERMSIG(status)}".encode())
    else:
        os.write(status_fd, f"exit {os.WEXITSTATUS(status)}".encode())
    os.close(status_fd)
    return 0


def descendants(root: int) -> list[int]:
    """Live descendants of `root` (from /proc/*/stat), children before grandchildren."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def kill_descendants(root: int) -> None:
    import signal

    for _ in range(50):  # until nothing is left (a process may fork while we look)
        pids = descendants(root)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        while True:  # reap what was re-parented to us (we are a subreaper)
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break


def exit_like(status: int) -> int:
    """Leave with a child's wait status (a signal is re-raised on ourselves)."""
    import signal

    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        return 128 + sig
    return os.WEXITSTATUS(status)


def supervise(init: int, status_fd: int) -> int:
    """Wait for the sandbox's PID 1 and leave with the worker's status (a signal is re-raised)."""
    _wait_status(init)
    try:
        word, _, value = os.read(status_fd, 64).decode("ascii", "replace").partition(" ")
        number = int(value)
    except (OSError, ValueError):
        return 70  # PID 1 died without a report (it was killed)
    if word == "signal":
        return exit_like(number)  # a wait status whose low bits are the signal
    return number


def landlock(workdir: str) -> dict:
    abi = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    if abi < 1:
        return {"applied": False, "detail": f"Landlock unavailable: {_errno_text()}"}
    write = (
        FS_WRITE_FILE
        | FS_REMOVE_DIR
        | FS_REMOVE_FILE
        | FS_MAKE_CHAR
        | FS_MAKE_DIR
        | FS_MAKE_REG
        | FS_MAKE_SOCK
        | FS_MAKE_FIFO
        | FS_MAKE_BLOCK
        | FS_MAKE_SYM
    )
    if abi >= 2:
        write |= FS_REFER
    if abi >= 3:
        write |= FS_TRUNCATE
    attr = _RulesetAttr(write, 0, 0)
    size = 8
    what = ["writes only beneath the work folder"]
    if abi >= 4:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
        size = 16
        what.append("TCP bind/connect denied")
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
        what.append("signals and abstract unix sockets scoped")
    fd = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), size, 0)
    if fd < 0:
        return {"applied": False, "detail": f"landlock_create_ruleset: {_errno_text()}"}
    file_write = FS_WRITE_FILE | (FS_TRUNCATE if abi >= 3 else 0)
    for path, access in ((workdir, write), ("/dev/null", file_write)):
        pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rule = _PathBeneathAttr(access, pfd)
        rc = _libc.syscall(
            SYS_LANDLOCK_ADD_RULE, fd, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0
        )
        os.close(pfd)
        if rc != 0:
            os.close(fd)
            return {"applied": False, "detail": f"landlock_add_rule({path}): {_errno_text()}"}
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if _libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, fd, 0) != 0:
        os.close(fd)
        return {"applied": False, "detail": f"landlock_restrict_self: {_errno_text()}"}
    os.close(fd)
    return {"applied": True, "abi": int(abi), "detail": f"Landlock ABI {abi}: " + ", ".join(what)}


def set_limits(limits: dict) -> dict:
    mb = 1 << 20
    table = {
        "RLIMIT_AS": (resource.RLIMIT_AS, int(limits["memory_mb"]) * mb),
        "RLIMIT_CPU": (resource.RLIMIT_CPU, int(limits["cpu_s"])),  # SIGXCPU; SIGKILL 1 s later
        "RLIMIT_FSIZE": (resource.RLIMIT_FSIZE, int(limits["file_mb"]) * mb),
        "RLIMIT_NOFILE": (resource.RLIMIT_NOFILE, int(limits["max_files"])),
        "RLIMIT_CORE": (resource.RLIMIT_CORE, 0),
    }
    applied = {}
    for name, (which, value) in table.items():
        hard = value + 1 if which == resource.RLIMIT_CPU else value
        resource.setrlimit(which, (value, hard))
        applied[name] = value
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return applied


class SandboxViolation(PermissionError):
    """Raised by the audit hook; the parent reports these as 'blocked'."""


_ARMED = False
_WORKDIR = ""
_BLOCKED_EVENTS = (
    "socket.",
    "subprocess.",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.killpg",
    "os.setuid",
    "pty.spawn",
    "ctypes.",
    "resource.setrlimit",
    "resource.prlimit",
    "sys.remote_exec",
    "webbrowser.open",
    "urllib.Request",
    "http.client.connect",
)
_PATH_EVENTS = {
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.symlink": (0, 1),
    "os.link": (0, 1),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.truncate": (0,),
    "os.utime": (0,),
    "shutil.rmtree": (0,),
    "shutil.copyfile": (1,),
    "shutil.move": (1,),
}


def _inside(path) -> bool:
    if isinstance(path, int):
        return True  # an already open descriptor: its opening was checked
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return real == _WORKDIR or real.startswith(_WORKDIR + os.sep) or real == "/dev/null"


def _audit(event: str, args: tuple) -> None:
    if not _ARMED:
        return
    if event.startswith(_BLOCKED_EVENTS):
        raise SandboxViolation(f"sandbox: {event} is not allowed")
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        )
        if writes and not _inside(path):
            raise SandboxViolation(
                f"sandbox: writing {path!r} (outside the work folder) is not allowed"
            )
    elif event in _PATH_EVENTS:
        for i in _PATH_EVENTS[event]:
            if i < len(args) and not _inside(args[i]):
                raise SandboxViolation(
                    f"sandbox: {event} on {args[i]!r} (outside the work folder) is not allowed"
                )


_DENIED_BUILTINS = (
    "open",
    "exec",
    "eval",
    "compile",
    "globals",
    "locals",
    "vars",
    "getattr",
    "setattr",
    "delattr",
    "input",
    "breakpoint",
    "help",
    "exit",
    "quit",
    "memoryview",
    "copyright",
    "credits",
    "license",
)


def _guarded_builtins(allowed_modules: list[str]) -> dict:
    allowed = set(allowed_modules)
    real_import = builtins.__import__

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level != 0 or name.split(".")[0] not in allowed:
            raise ImportError(f"sandbox: import of {name!r} is not allowed")
        return real_import(name, globals, locals, fromlist, level)

    safe = {k: v for k, v in vars(builtins).items() if k not in _DENIED_BUILTINS}
    safe["__import__"] = guarded_import
    return safe


def _mesh_objects(bpy) -> list[str]:
    kinds = {"MESH", "CURVE", "SURFACE", "META", "FONT"}
    return sorted(o.name for o in bpy.context.scene.objects if o.type in kinds)


def main() -> int:
    workdir = os.path.realpath(sys.argv[1])
    pid_fd = int(sys.argv[2])
    os.chdir(workdir)
    with open(os.path.join(workdir, "job.json"), encoding="utf-8") as f:
        job = json.load(f)
    iso: dict = {}
    iso["network"], in_userns = isolate_network()
    iso["capabilities"] = drop_capabilities(in_userns)
    why = enter_pid_namespace()
    if why is not None:  # fallback: a subreaper supervisor, so orphans cannot slip away
        os.close(pid_fd)
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        worker = os.fork()
        if worker > 0:
            status = _wait_status(worker)
            kill_descendants(os.getpid())
            return exit_like(status)
        _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
        iso["processes"] = (
            "process group + subreaper supervisor: orphans are killed with the run "
            f"(PID namespace unavailable: {why})"
        )
        return run(workdir, job, iso)
    status_r, status_w = os.pipe()
    init = os.fork()
    if init > 0:  # supervisor, outside: report PID 1's pid to the runner, wait, pass the status on
        os.close(status_w)
        os.write(pid_fd, f"{init}\n".encode())
        os.close(pid_fd)
        return supervise(init, status_r)
    os.close(pid_fd)
    os.close(status_r)
    _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)  # SIGKILL when the supervisor goes
    worker = os.fork()
    if worker > 0:
        os._exit(init_process(worker, status_w))
    os.close(status_w)
    _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    iso["processes"] = "own PID namespace (everything in it dies with the run)"
    return run(workdir, job, iso)


def run(workdir: str, job: dict, iso: dict) -> int:
    global _ARMED, _WORKDIR
    _WORKDIR = workdir
    with open(os.path.join(workdir, "script.py"), encoding="utf-8") as f:
        source = f.read()
    report = {"isolation": iso, "ok": False}

    def finish(code: int) -> int:
        with open(os.path.join(workdir, "result.json"), "w", encoding="utf-8") as f:
            json.dump(report, f)
        return code

    iso["filesystem"] = landlock(workdir)
    iso["rlimits"] = set_limits(job["limits"])
    iso["python_guards"] = bool(job["guards"])
    finish(1)  # the isolation report survives even if the script is killed
    sys.addaudithook(_audit)

    bpy = None
    if job["uses_bpy"]:
        import bpy  # noqa: F811 - trusted import before the script runs

        bpy.ops.wm.read_factory_settings(use_empty=True)
    code_globals = {"__name__": "__main__", "__file__": "script.py"}
    if job["guards"]:
        code_globals["__builtins__"] = _guarded_builtins(job["allowed_modules"])
    try:
        code = compile(source, "script.py", "exec")
        _ARMED = job["guards"]
        exec(code, code_globals)
    except MemoryError:
        code_globals.clear()
        report["error"] = {"kind": "memory", "message": "MemoryError (memory limit reached)"}
        return finish(3)
    except BaseException as e:  # noqa: BLE001 - everything the script raises is reported
        code_globals.clear()
        kind = "blocked" if isinstance(e, SandboxViolation) else "script_error"
        tb = traceback.extract_tb(e.__traceback__)
        line = next((fr.lineno for fr in reversed(tb) if fr.filename == "script.py"), None)
        report["error"] = {
            "kind": kind,
            "message": f"{type(e).__name__}: {e}"[:2000],
            "line": line,
        }
        return finish(2)
    code_globals.clear()
    if bpy is None:
        bpy = sys.modules.get("bpy")
    if bpy is None:
        report["error"] = {"kind": "no_mesh", "message": "the script never imported bpy: no mesh"}
        return finish(4)
    objects = _mesh_objects(bpy)
    report["objects"] = objects
    if not objects:
        report["error"] = {
            "kind": "no_mesh",
            "message": "the script left no mesh object in the scene",
        }
        return finish(4)
    bpy.ops.wm.obj_export(
        filepath=os.path.join(workdir, "mesh.obj"),
        export_selected_objects=False,
        apply_modifiers=True,
        export_uv=False,
        export_normals=False,
        export_materials=False,
        export_triangulated_mesh=False,
        export_curves_as_nurbs=False,
    )
    report["ok"] = True
    return finish(0)


if __name__ == "__main__":
    sys.exit(main())
