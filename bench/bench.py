#!/usr/bin/env python3
"""Benchmark harness for cacheback.  Normally started by bench/run.sh.

Python 3 standard library only.  Every measurement is one process started
with posix_spawn (vfork+exec in glibc) and reaped with wait4; elapsed time is
taken from the monotonic clock (time.monotonic_ns, CLOCK_MONOTONIC).  The
child's stdout is a pipe that this process drains (into a reused buffer), so
every contender pays the same "someone reads my output" cost that a shell's
$(...) or a status bar would.  A measurement ends when the child has exited
AND its stdout pipe has reached EOF (a detached helper that kept the pipe open
would therefore be visible); both instants are recorded separately.

Contenders are run round-robin within each repetition (with the starting
contender rotating every repetition), so slow drifts in machine state hit all
of them alike.  Results are reported as median with min and max.
"""

import argparse
import base64
import datetime
import hashlib
import html
import json
import os
import random
import re
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

KiB = 1024
MiB = 1024 * KiB


def env_int(name, default):
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        sys.exit(f"bench: {name} must be an integer, got {v!r}")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# One measured process
# --------------------------------------------------------------------------

class Result:
    __slots__ = ("ns", "exit_ns", "eof_ns", "status", "maxrss_kib", "nbytes", "data")

    def __init__(self, ns, exit_ns, eof_ns, status, maxrss_kib, nbytes, data):
        self.ns = ns                # until exit AND eof (None if eof never came)
        self.exit_ns = exit_ns      # until the process exited
        self.eof_ns = eof_ns        # until its stdout reached EOF (None: held open)
        self.status = status        # exit code (negative: signal)
        self.maxrss_kib = maxrss_kib
        self.nbytes = nbytes
        self.data = data            # captured stdout (only when asked)


_BUF = bytearray(1 << 20)
_MV = memoryview(_BUF)
_ERRFD = None


def set_stderr_log(path):
    global _ERRFD
    _ERRFD = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)


def run_once(argv, env, capture=False, eof_grace_s=20.0):
    """Spawn argv, drain its stdout, reap it.  Returns a Result."""
    r, w = os.pipe()  # both O_CLOEXEC; dup2 onto fd 1 clears it for the child
    fa = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, w, 1),
        (os.POSIX_SPAWN_DUP2, _ERRFD, 2),
    ]
    t0 = time.monotonic_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=fa)
    os.close(w)
    pfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(r, select.POLLIN)
    poller.register(pfd, select.POLLIN)
    t_exit = t_eof = None
    n = 0
    chunks = [] if capture else None
    while t_exit is None or t_eof is None:
        if t_exit is not None:
            left = eof_grace_s * 1e9 - (time.monotonic_ns() - t_exit)
            if left <= 0:
                break  # pipe held open by a descendant long after exit
            timeout_ms = max(1, int(left / 1e6))
        else:
            timeout_ms = None
        for fd, _ev in poller.poll(timeout_ms):
            if fd == pfd:
                if t_exit is None:
                    t_exit = time.monotonic_ns()
                    poller.unregister(pfd)
            elif fd == r:
                k = os.readv(r, [_MV])
                if k == 0:
                    t_eof = time.monotonic_ns()
                    poller.unregister(r)
                else:
                    n += k
                    if capture:
                        chunks.append(bytes(_MV[:k]))
    os.close(r)
    os.close(pfd)
    _, wstatus, ru = os.wait4(pid, 0)
    status = os.waitstatus_to_exitcode(wstatus)
    end = None if t_eof is None else max(t_exit, t_eof)
    return Result(
        None if end is None else end - t0,
        t_exit - t0,
        None if t_eof is None else t_eof - t0,
        status,
        ru.ru_maxrss,
        n,
        b"".join(chunks) if capture else None,
    )


# --------------------------------------------------------------------------
# Peak RSS of one process
# --------------------------------------------------------------------------
#
# ru_maxrss from wait4 is no good here: exec folds the pre-exec address
# space's high-water mark into it, and the pre-exec image of a child of this
# harness is a copy of (or, with vfork, the very same) Python process, about
# 20 MiB.  Instead the child is started under ptrace with PTRACE_O_TRACEEXIT,
# and VmHWM is read from /proc/PID/status at the exit stop, while the new
# image is still intact: that is the peak RSS of the program itself.

_PTRACE_TRACEME = 0
_PTRACE_CONT = 7
_PTRACE_SETOPTIONS = 0x4200
_PTRACE_O_TRACEEXIT = 0x40
_PTRACE_O_EXITKILL = 0x100000
_PTRACE_EVENT_EXIT = 6
_libc = None


def _ptrace(req, pid, data=0):
    global _libc
    import ctypes
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.ptrace.restype = ctypes.c_long
        _libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if _libc.ptrace(req, pid, None, ctypes.c_void_p(data)) == -1:
        e = ctypes.get_errno()
        raise OSError(e, f"ptrace({req}): {os.strerror(e)}")


def peak_rss_kib(argv, env):
    """Peak resident set (VmHWM, KiB) of argv's own image; stdout is a pipe
    drained by a thread.  Returns (vmhwm_kib, exit_code, nbytes)."""
    import threading
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            nul = os.open("/dev/null", os.O_RDONLY)
            os.dup2(nul, 0)
            os.dup2(w, 1)
            os.dup2(_ERRFD, 2)
            _ptrace(_PTRACE_TRACEME, 0)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    os.close(w)
    got = [0]

    def drain():
        buf = bytearray(1 << 20)
        while True:
            k = os.readv(r, [buf])
            if k == 0:
                break
            got[0] += k
    th = threading.Thread(target=drain, daemon=True)
    th.start()
    hwm = None
    _, st = os.waitpid(pid, 0)  # the SIGTRAP stop after execve
    if not os.WIFSTOPPED(st):
        raise BenchError(f"{argv[0]}: did not stop after exec under ptrace")
    _ptrace(_PTRACE_SETOPTIONS, pid, _PTRACE_O_TRACEEXIT | _PTRACE_O_EXITKILL)
    _ptrace(_PTRACE_CONT, pid, 0)
    while True:
        _, st = os.waitpid(pid, 0)
        if os.WIFEXITED(st) or os.WIFSIGNALED(st):
            break
        if os.WIFSTOPPED(st):
            sig = os.WSTOPSIG(st)
            if (st >> 16) == _PTRACE_EVENT_EXIT:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            hwm = int(line.split()[1])
                _ptrace(_PTRACE_CONT, pid, 0)
            else:
                _ptrace(_PTRACE_CONT, pid, 0 if sig == 5 else sig)
    th.join(30)
    os.close(r)
    return hwm, os.waitstatus_to_exitcode(st), got[0]


# --------------------------------------------------------------------------
# Statistics / formatting
# --------------------------------------------------------------------------

def summarize(values):
    values = sorted(values)
    return {
        "n": len(values),
        "median": statistics.median(values),
        "min": values[0],
        "max": values[-1],
        "p90": values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))],
    }


def fmt_ns(ns):
    if ns is None:
        return "n/a"
    a = abs(ns)
    if a >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if a >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if a >= 1e3:
        return f"{ns / 1e3:.0f} µs"
    return f"{ns:.0f} ns"


def fmt_ratio(x):
    if x is None:
        return "n/a"
    return f"{x:.2f}×"


def fmt_kib(k):
    if k is None:
        return "n/a"
    if k >= 10 * 1024:
        return f"{k / 1024:.0f} MiB"
    if k >= 1024:
        return f"{k / 1024:.1f} MiB"
    return f"{k} KiB"


def fmt_size(n):
    if n >= MiB:
        return f"{n // MiB} MiB"
    if n >= KiB:
        return f"{n // KiB} KiB"
    return f"{n} B"


def fmt_int(n):
    return f"{n:,}" if n is not None else "n/a"


# --------------------------------------------------------------------------
# The harness
# --------------------------------------------------------------------------

class Contender:
    """A named command line (argv may depend on the repetition index)."""

    def __init__(self, name, argv, env, expect_len=None):
        self.name = name
        self._argv = argv
        self.env = env
        self.expect_len = expect_len

    def argv(self, rep):
        return self._argv(rep) if callable(self._argv) else self._argv


class Bench:
    def __init__(self, args):
        self.a = args
        self.smoke = args.smoke
        self.work = os.path.abspath(args.work)
        os.makedirs(self.work, exist_ok=True)
        self.run_dir = tempfile.mkdtemp(prefix="run-", dir=self.work)
        set_stderr_log(os.path.join(self.run_dir, "stderr.log"))
        self.tools = {
            "floor": os.path.abspath(args.floor),
            "floor-std": os.path.abspath(args.floor_std),
            "cat": shutil.which("cat"),
            "sh": shutil.which("sh"),
            "echo": shutil.which("echo"),
            "true": shutil.which("true"),
        }
        if args.cacheback:
            self.tools["cacheback"] = os.path.abspath(args.cacheback)
        # The same cacheback built two more ways, for the hit table only: the
        # static musl binary, and the registry-style build (no
        # .cargo/config.toml flags), so what each way costs is visible.
        for name, path in variant_paths(args):
            if path:
                self.tools[name] = os.path.abspath(path)
        if args.bkt:
            self.tools["bkt"] = os.path.abspath(args.bkt)
        self.install_contenders(["floor", "floor-std", "cacheback", *VARIANT_NAMES, "bkt"])
        self.base_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LC_ALL": "C",
        }
        self.results = {"cases": {}, "problems": []}
        self.warmup = env_int("BENCH_WARMUP", 2 if self.smoke else 5)
        self.uniq = f"{os.getpid()}-{int(time.time())}"

    def install_contenders(self, names):
        """Time every contender's binary in the same state: copied like an
        install, then its pages dropped from the page cache, so its first run
        reads it back as after a reboot.  How a binary's pages got into the
        cache matters here: a file the linker just wrote, or one just copied,
        starts a static binary up to 18% faster or slower than one read back
        from disk, which would skew the ratios by how recently each was built."""
        bindir = os.path.join(self.run_dir, "bin")
        os.makedirs(bindir)
        for name in names:
            if name not in self.tools:
                continue
            dest = os.path.join(bindir, name)
            shutil.copy2(self.tools[name], dest)
            self.tools[name] = dest
        os.sync()
        for name in names:
            if name in self.tools:
                fd = os.open(self.tools[name], os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)

    # ---- helpers --------------------------------------------------------

    def has(self, tool):
        return tool in self.tools

    def problem(self, msg):
        log("PROBLEM: " + msg)
        self.results["problems"].append(msg)

    def fresh_dir(self, name):
        self._dirs = getattr(self, "_dirs", 0) + 1
        d = os.path.join(self.run_dir, f"{self._dirs:02d}-{name}")
        os.makedirs(d)
        return d

    def tool_cmd(self, tool, cache_dir, ttl, cmd, stale=None):
        """argv and env that run `cmd` through a caching tool."""
        env = dict(self.base_env)
        if tool == "cacheback" or tool in VARIANT_NAMES:
            env["CACHEBACK_DIR"] = cache_dir
            return [self.tools[tool], "run", "--ttl", ttl, "--", *cmd], env
        if tool == "bkt":
            env["BKT_CACHE_DIR"] = cache_dir
            argv = [self.tools["bkt"], f"--ttl={ttl}"]
            if stale:
                argv.append(f"--stale={stale}")
            return argv + ["--", *cmd], env
        raise ValueError(tool)

    def stderr_tail(self):
        try:
            with open(os.path.join(self.run_dir, "stderr.log"), "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 2000))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def check(self, res, name, what, expect_len=None, expect_data=None):
        if res.status != 0:
            raise BenchError(f"{name} ({what}) exited with {res.status}; stderr tail:\n{self.stderr_tail()}")
        if res.eof_ns is None:
            raise BenchError(f"{name} ({what}): stdout pipe still open {20}s after exit")
        if expect_len is not None and res.nbytes != expect_len:
            raise BenchError(f"{name} ({what}): printed {res.nbytes} bytes, expected {expect_len}")
        if expect_data is not None and res.data != expect_data:
            raise BenchError(f"{name} ({what}): output differs from the expected bytes "
                             f"(got {len(res.data)} bytes, sha256 {hashlib.sha256(res.data).hexdigest()[:16]}, "
                             f"expected {len(expect_data)} bytes, sha256 {hashlib.sha256(expect_data).hexdigest()[:16]})")

    def settle(self):
        """Flush dirty pages (earlier cases write up to hundreds of MiB of
        cache entries) so background writeback does not land in a timing loop."""
        os.sync()
        time.sleep(0.2)

    def interleaved(self, contenders, reps, label):
        """Round-robin: every repetition runs each contender once."""
        self.settle()
        per = {c.name: [] for c in contenders}
        k = len(contenders)
        t_start = time.monotonic()
        for rep in range(-self.warmup, reps):
            shift = rep % k
            for c in contenders[shift:] + contenders[:shift]:
                res = run_once(c.argv(rep), c.env)
                self.check(res, c.name, label, expect_len=c.expect_len)
                if rep >= 0:
                    per[c.name].append(res)
        log(f"{label}: {reps} reps x {k} contenders in {time.monotonic() - t_start:.1f}s")
        out = {}
        for name, rs in per.items():
            out[name] = summarize([r.ns for r in rs])
        return out

    # ---- payloads -------------------------------------------------------

    def payload(self, size):
        """Deterministic printable pseudo-random text of exactly `size` bytes."""
        d = os.path.join(self.work, "payloads")
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, f"payload-{size}.txt")
        if os.path.exists(p) and os.path.getsize(p) == size:
            return p
        rnd = random.Random(size)
        raw = rnd.randbytes(size * 3 // 4 + 64)
        text = base64.encodebytes(raw)[:size]  # 76-char lines
        text = text[:-1] + b"\n"
        tmp = p + ".tmp"
        with open(tmp, "wb") as f:
            f.write(text)
        os.replace(tmp, p)
        return p

    # ---- cases ----------------------------------------------------------

    def warm_hit(self, tool, cache_dir, payload, data, extra_env=None):
        """Cache `cat SRC` where SRC is a hard link to payload, then delete SRC:
        from then on the tool can only answer from its cache (a re-run of the
        command would fail and print nothing), so every timed call is a hit.
        `extra_env` is added to the tool's environment (a fleet store)."""
        src = os.path.join(cache_dir + ".src", os.path.basename(payload))
        os.makedirs(os.path.dirname(src), exist_ok=True)
        os.link(payload, src)
        argv, env = self.tool_cmd(tool, cache_dir, "1h", [self.tools["cat"], src])
        env.update(extra_env or {})
        r = run_once(argv, env, capture=data is not None)
        self.check(r, tool, "warm (miss)", expect_len=os.path.getsize(payload), expect_data=data)
        os.unlink(src)
        r = run_once(argv, env, capture=data is not None)
        self.check(r, tool, "first hit", expect_len=os.path.getsize(payload), expect_data=data)
        return argv, env

    def case_hits(self, sizes, reps_for):
        tools = [t for t in ("bkt", "cacheback", *VARIANT_NAMES) if self.has(t)]
        out = {}
        for size in sizes:
            p = self.payload(size)
            data = None
            if size <= 8 * MiB:
                with open(p, "rb") as f:
                    data = f.read()
            cs = [
                Contender("floor", [self.tools["floor"], p], self.base_env, size),
                Contender("floor-std", [self.tools["floor-std"], p], self.base_env, size),
                Contender("cat", [self.tools["cat"], p], self.base_env, size),
            ]
            argvs = {}
            for t in tools:
                d = self.fresh_dir(f"hit-{size}-{t}")
                argv, env = self.warm_hit(t, d, p, data)
                argvs[t] = (argv, env)
                cs.append(Contender(t, argv, env, size))
            # correctness of floor/cat too
            if data is not None:
                for c in cs[:3]:
                    self.check(run_once(c.argv(0), c.env, capture=True), c.name, "verify", size, data)
            reps = reps_for(size)
            label = f"hit {fmt_size(size)}"
            res = self.interleaved(cs, reps, label)
            # after timing: the cached answer must still be the payload
            for t in tools:
                argv, env = argvs[t]
                r = run_once(argv, env, capture=True)
                if data is not None:
                    self.check(r, t, label + " final verify", size, data)
                else:
                    self.check(r, t, label + " final verify", size)
                    with open(p, "rb") as f:
                        want = hashlib.sha256(f.read()).hexdigest()
                    if hashlib.sha256(r.data).hexdigest() != want:
                        raise BenchError(f"{t}: {label} output differs from payload")
                    r.data = None
            # peak RSS, measured apart from the timing (ptrace would perturb it)
            for c in cs:
                peaks = []
                for _ in range(env_int("BENCH_RSS_REPS", 3)):
                    hwm, code, nb = peak_rss_kib(c.argv(0), c.env)
                    if code != 0 or nb != size:
                        raise BenchError(f"{c.name}: RSS run exited {code} after {nb} bytes")
                    peaks.append(hwm)
                res[c.name]["peak_rss_kib"] = max(peaks)
            out[str(size)] = {"size": size, "reps": reps, "results": res}
        self.results["cases"]["hit"] = out

    def case_miss(self, reps):
        tools = [t for t in ("bkt", "cacheback") if self.has(t)]
        echo = self.tools["echo"]
        tag = f"miss-{self.uniq}"
        cs = [Contender("direct", lambda rep: [echo, "hi", f"{tag}-{rep}"], self.base_env, None)]
        for t in tools:
            d = self.fresh_dir(f"miss-{t}")
            _, env = self.tool_cmd(t, d, "1h", [])
            argv0, _ = self.tool_cmd(t, d, "1h", [echo])
            prefix = argv0[:-1]
            cs.append(Contender(t, (lambda pre: lambda rep: pre + [echo, "hi", f"{tag}-{rep}"])(prefix), env, None))
        # every call prints "hi <arg>\n"; check a couple of outputs properly
        for c in cs:
            want = f"hi {tag}-check\n".encode()
            r = run_once(c._argv("check") if callable(c._argv) else c._argv, c.env, capture=True)
            self.check(r, c.name, "miss verify", len(want), want)
        res = self.interleaved(cs, reps, "miss (echo hi UNIQUE)")
        self.results["cases"]["miss"] = {"reps": reps, "results": res}

    def wait_counter(self, path, want, timeout_s=15.0):
        deadline = time.monotonic() + timeout_s
        n = count_lines(path)
        while n < want and time.monotonic() < deadline:
            time.sleep(0.005)
            n = count_lines(path)
        return n

    def case_stale(self, reps, ttl_ms):
        """Stale hit: entry older than its ttl.  The wrapped command appends a
        line to a counter file, so the number of refreshes is exact."""
        tools = [t for t in ("bkt", "cacheback") if self.has(t)]
        if not tools:
            return
        p = self.payload(1 * KiB)
        with open(p, "rb") as f:
            data = f.read()
        st = {}
        for t in tools:
            d = self.fresh_dir(f"stale-{t}")
            counter = d + ".counter"
            cmd = [self.tools["sh"], "-c", f"echo x >> '{counter}'; exec cat '{p}'"]
            if t == "cacheback":
                argv, env = self.tool_cmd(t, d, f"{ttl_ms}ms", cmd)
            else:  # bkt: long ttl, refresh in the background once older than --stale
                argv, env = self.tool_cmd(t, d, "1h", cmd, stale=f"{ttl_ms}ms")
            r = run_once(argv, env, capture=True)
            self.check(r, t, "stale prime (miss)", len(data), data)
            # Control: a fresh hit timed after the same pause, since a call
            # after an idle stretch (cold caches, a halted vCPU waking) is
            # slower than the back-to-back hits of the fresh-hit case.
            control_dir = self.fresh_dir(f"stale-control-{t}")
            control_cmd = [self.tools["sh"], "-c", f"exec cat '{p}'"]
            control_argv, control_env = self.tool_cmd(t, control_dir, "1h", control_cmd)
            self.check(run_once(control_argv, control_env, capture=True), t, "control prime (miss)", len(data), data)
            st[t] = {"argv": argv, "env": env, "counter": counter, "runs": [], "refresh_ns": [],
                     "expected": 1, "mismatch": 0, "primed_at": time.monotonic(),
                     "control": (control_argv, control_env), "control_runs": []}
            if count_lines(counter) != 1:
                self.problem(f"{t}: priming miss ran the command {count_lines(counter)} times")
        ttl_s = ttl_ms / 1000
        self.settle()
        for rep in range(reps):
            order = tools if rep % 2 == 0 else tools[::-1]
            for t in order:
                s = st[t]
                time.sleep(ttl_s + 0.15)
                r = run_once(*s["control"], capture=True)
                self.check(r, t, "fresh hit after a pause", len(data), data)
                s["control_runs"].append(r)
                # make sure the entry is older than ttl (and any refresh is done)
                time.sleep(ttl_s + 0.15)
                before = count_lines(s["counter"])
                r = run_once(s["argv"], s["env"], capture=True)
                self.check(r, t, "stale hit", len(data), data)
                t_hit = time.monotonic()
                s["runs"].append(r)
                s["expected"] += 1
                n = self.wait_counter(s["counter"], s["expected"])
                s["refresh_ns"].append(int((time.monotonic() - t_hit) * 1e9))
                if n != s["expected"]:
                    s["mismatch"] += 1
                    s["expected"] = n
                    log(f"{t}: stale hit #{rep}: refresh count now {n}, expected {before + 1}")
                # let the refresher finish writing the entry
                time.sleep(0.05)
        out = {}
        for t in tools:
            s = st[t]
            time.sleep(0.5)
            total = count_lines(s["counter"]) - 1
            res = summarize([r.ns for r in s["runs"]])
            res["exit"] = summarize([r.exit_ns for r in s["runs"]])
            res["eof"] = summarize([r.eof_ns for r in s["runs"]])
            res["fresh_after_pause"] = summarize([r.ns for r in s["control_runs"]])
            res["stale_hits"] = len(s["runs"])
            res["refreshes"] = total
            res["reps_with_wrong_refresh_count"] = s["mismatch"]
            res["refresh_started_after"] = summarize(s["refresh_ns"])
            out[t] = res
            if total != len(s["runs"]):
                self.problem(f"{t}: {len(s['runs'])} stale hits caused {total} refreshes (want exactly one each)")
        for t in tools:
            log(f"stale {t}: median {fmt_ns(out[t]['median'])}, {out[t]['stale_hits']} stale hits, "
                f"{out[t]['refreshes']} refreshes")
        self.results["cases"]["stale"] = {"reps": reps, "ttl_ms": ttl_ms, "results": out}

    def case_stale_short_pauses(self, reps, ttl_ms, gap_ms):
        """Stale hits timed against fresh hits, interleaved, with short equal
        pauses: every repetition serves a different entry that went stale at
        the same time, so no TTL has to pass between calls (after a long pause
        every call is slower, which the paced case above corrects for).  Before
        each timed call every refresh started so far has run and GAP ms have
        passed, so no refresh competes with a later call.  Each entry must be
        refreshed exactly once."""
        tools = [t for t in ("bkt", "cacheback") if self.has(t)]
        if not tools:
            return
        p = self.payload(1 * KiB)
        size = os.path.getsize(p)
        cs, counters = [], {}
        for t in tools:
            d = self.fresh_dir(f"stale-short-{t}")
            counter = d + ".counter"
            counters[t] = counter
            body = f"echo x >> '{counter}'; exec cat '{p}'"

            def stale_argv(rep, t=t, d=d, body=body):
                cmd = [self.tools["sh"], "-c", body, f"entry-{rep}"]
                if t == "cacheback":
                    return self.tool_cmd(t, d, f"{ttl_ms}ms", cmd)[0]
                return self.tool_cmd(t, d, "1h", cmd, stale=f"{ttl_ms}ms")[0]

            env = self.tool_cmd(t, d, "1h", [])[1]
            for rep in range(-self.warmup, reps):
                self.check(run_once(stale_argv(rep), env), t, "stale prime (miss)", size)
            fresh_argv = self.tool_cmd(t, d, "1h", [self.tools["sh"], "-c", f"exec cat '{p}'"])[0]
            self.check(run_once(fresh_argv, env), t, "fresh prime (miss)", size)
            cs.append(Contender(f"{t} fresh", fresh_argv, env, size))
            cs.append(Contender(f"{t} stale", stale_argv, env, size))
        primed = reps + self.warmup
        gap_s = gap_ms / 1000
        time.sleep(ttl_ms / 1000 + 0.15)
        per = {}
        started = {t: primed for t in tools}  # counter lines expected so far
        self.settle()
        k = len(cs)
        for rep in range(-self.warmup, reps):
            shift = rep % k
            for c in cs[shift:] + cs[:shift]:
                for t in tools:
                    self.wait_counter(counters[t], started[t])
                time.sleep(gap_s)
                res = run_once(c.argv(rep), c.env)
                self.check(res, c.name, "stale/fresh with short pauses", expect_len=size)
                tool, kind = c.name.split()
                if kind == "stale":
                    started[tool] += 1
                if rep >= 0:
                    per.setdefault(c.name, []).append(res)
        out = {}
        want = 2 * primed
        for t in tools:
            self.wait_counter(counters[t], want)
        time.sleep(1.0)  # time for any extra refresh to show up
        for t in tools:
            got = count_lines(counters[t])
            stale, fresh = per[f"{t} stale"], per[f"{t} fresh"]
            out[t] = {
                "fresh": summarize([r.ns for r in fresh]),
                "stale": summarize([r.ns for r in stale]),
                "stale_exit": summarize([r.exit_ns for r in stale]),
                "stale_eof": summarize([r.eof_ns for r in stale]),
                "stale_hits": primed,
                "refreshes": got - primed,
            }
            if got != want:
                self.problem(f"{t}: {primed} stale hits (short pauses) caused {got - primed} refreshes (want {primed})")
            log(f"stale with short pauses {t}: fresh {fmt_ns(out[t]['fresh']['median'])}, "
                f"stale {fmt_ns(out[t]['stale']['median'])}, {got - primed} refreshes")
        self.results["cases"]["stale_short"] = {"reps": reps, "ttl_ms": ttl_ms, "gap_ms": gap_ms, "results": out}

    def prefill(self, tool, cache_dir, n, budget_s):
        """Create n distinct entries by running the tool on `true fill-i`, a
        few in flight at once.  Stops at the time budget (count reported)."""
        par = max(2, (os.cpu_count() or 2) * 2)
        t_true = self.tools["true"]
        argv0, env = self.tool_cmd(tool, cache_dir, "1h", [t_true])
        devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        fa = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
              (os.POSIX_SPAWN_DUP2, _ERRFD, 2)]
        t0 = time.monotonic()
        started = done = failed = 0
        running = set()
        while done < n:
            while started < n and len(running) < par and time.monotonic() - t0 < budget_s:
                pid = os.posix_spawn(argv0[0], argv0 + [f"fill-{started}"], env, file_actions=fa)
                running.add(pid)
                started += 1
            if not running:
                break
            pid, wst = os.wait()
            running.discard(pid)
            done += 1
            if os.waitstatus_to_exitcode(wst) != 0:
                failed += 1
        os.close(devnull)
        el = time.monotonic() - t0
        log(f"prefill {tool}: {done} entries ({failed} failed) in {el:.1f}s")
        if failed:
            self.problem(f"prefill {tool}: {failed} of {done} calls failed")
        return done, el

    def case_entries(self, counts, reps, budget_s):
        tools = [t for t in ("bkt", "cacheback") if self.has(t)]
        if not tools:
            return
        echo = self.tools["echo"]
        hit_cs, miss_cs, filled = [], [], {}
        for n in counts:
            for t in tools:
                d = self.fresh_dir(f"entries-{n}-{t}")
                got, el = self.prefill(t, d, n, budget_s)
                name = f"{t} @{n:,}"
                filled[name] = {"tool": t, "requested": n, "entries": got, "prefill_s": el,
                                "files": count_files(d)}
                if got < n:
                    self.problem(f"{t}: only {got} of {n} entries prefilled within {budget_s}s")
                argv, env = self.tool_cmd(t, d, "1h", [echo, "hi"])
                r = run_once(argv, env, capture=True)
                self.check(r, name, "warm", 3, b"hi\n")
                hit_cs.append(Contender(name, argv, env, 3))
                tag = f"ent-{self.uniq}"
                pre = argv[:-2]
                miss_cs.append(Contender(name, (lambda pre: lambda rep: pre + [echo, "hi", f"{tag}-{rep}"])(pre),
                                         env, None))
        hit = self.interleaved(hit_cs, reps, "hit with N entries")
        miss = self.interleaved(miss_cs, reps, "miss with N entries")
        self.results["cases"]["entries"] = {"reps": reps, "filled": filled, "hit": hit, "miss": miss}

    def concurrent(self, tool, n, state, sleep_s=0.5, ttl_ms=1000):
        """n callers released at once (all blocked on one pipe until it is
        closed) on a missing or a stale entry.  Counts executions."""
        d = self.fresh_dir(f"conc-{tool}-{state}-{n}")
        counter = d + ".counter"
        outdir = d + ".out"
        os.makedirs(outdir)
        cmd = [self.tools["sh"], "-c", f"echo x >> '{counter}'; sleep {sleep_s}; echo value"]
        if tool == "cacheback":
            argv, env = self.tool_cmd(tool, d, f"{ttl_ms}ms" if state == "stale" else "1h", cmd)
        else:
            argv, env = self.tool_cmd(tool, d, "1h", cmd, stale=f"{ttl_ms}ms" if state == "stale" else None)
        primed = 0
        self.settle()
        if state == "stale":
            r = run_once(argv, env, capture=True)
            self.check(r, tool, "concurrency prime", 6, b"value\n")
            primed = count_lines(counter)
            time.sleep(ttl_ms / 1000 + 0.2)
        gate_r, gate_w = os.pipe()
        pids = {}
        for i in range(n):
            outp = os.path.join(outdir, str(i))
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(gate_w)
                    fd = os.open(outp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(fd, 1)
                    os.dup2(_ERRFD, 2)
                    nul = os.open("/dev/null", os.O_RDONLY)
                    os.read(gate_r, 1)  # blocks until the parent closes gate_w
                    os.dup2(nul, 0)
                    os.execve(argv[0], argv, env)
                finally:
                    os._exit(127)
            pids[pid] = i
        os.close(gate_r)
        time.sleep(0.2)  # let every child reach the gate
        t0 = time.monotonic_ns()
        os.close(gate_w)
        lat, bad = [], 0
        while pids:
            pid, wst = os.wait()
            t = time.monotonic_ns()
            if pid in pids:
                del pids[pid]
                lat.append(t - t0)
                if os.waitstatus_to_exitcode(wst) != 0:
                    bad += 1
        at_return = count_lines(counter) - primed
        # wait for background refreshers to settle
        time.sleep(sleep_s + 1.0)
        settled = count_lines(counter) - primed
        wrong = 0
        for i in range(n):
            with open(os.path.join(outdir, str(i)), "rb") as f:
                if f.read() != b"value\n":
                    wrong += 1
        s = summarize(lat)
        return {"callers": n, "state": state, "executions_when_callers_done": at_return,
                "executions_settled": settled, "failed_callers": bad, "wrong_output": wrong,
                "latency": s}

    def case_concurrency(self, sizes):
        tools = [t for t in ("cacheback", "bkt") if self.has(t)]
        out = []
        for state in ("missing", "stale"):
            for n in sizes:
                for t in tools:
                    r = self.concurrent(t, n, state)
                    r["tool"] = t
                    log(f"concurrency {t} {state} x{n}: {r['executions_settled']} executions, "
                        f"{r['wrong_output']} wrong outputs, {r['failed_callers']} failed, "
                        f"median latency {fmt_ns(r['latency']['median'])}")
                    out.append(r)
        self.results["cases"]["concurrency"] = out

    def hit_contenders_1k(self):
        p = self.payload(1 * KiB)
        with open(p, "rb") as f:
            data = f.read()
        cs = [("floor", [self.tools["floor"], p], self.base_env),
              ("floor-std", [self.tools["floor-std"], p], self.base_env),
              ("cat", [self.tools["cat"], p], self.base_env)]
        for t in ("bkt", "cacheback", *VARIANT_NAMES):
            if self.has(t):
                d = self.fresh_dir(f"tools-{t}")
                argv, env = self.warm_hit(t, d, p, data)
                cs.append((t, argv, env))
        return cs

    def case_callgrind(self):
        vg = shutil.which("valgrind")
        if not vg:
            self.problem("valgrind not found: instruction counts skipped")
            return
        out = {}
        for name, argv, env in self.hit_contenders_1k():
            f = os.path.join(self.run_dir, f"callgrind.{name}.out")
            r = subprocess.run([vg, "--tool=callgrind", f"--callgrind-out-file={f}", "--", *argv],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if r.returncode != 0 or len(r.stdout) != 1 * KiB:
                self.problem(f"callgrind {name}: exit {r.returncode}, {len(r.stdout)} bytes out")
                continue
            ir = None
            with open(f) as fh:
                for line in fh:
                    m = re.match(r"^(summary|totals):\s+(\d+)", line)
                    if m:
                        ir = int(m.group(2))
            out[name] = ir
            log(f"callgrind {name}: {fmt_int(ir)} instructions")
        self.results["cases"]["callgrind"] = out

    def case_strace(self):
        """Syscalls of one 1 KiB hit per contender (strace -f listing, kept in
        bench/.work/strace/ for reading)."""
        st = shutil.which("strace")
        if not st:
            self.problem("strace not found: syscall counts skipped")
            return
        keep = os.path.join(self.work, "strace")
        os.makedirs(keep, exist_ok=True)
        out = {}
        for name, argv, env in self.hit_contenders_1k():
            f = os.path.join(keep, f"{name}-hit-1k.txt")
            r = subprocess.run([st, "-f", "-o", f, "--", *argv], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if r.returncode != 0 or len(r.stdout) != 1 * KiB:
                self.problem(f"strace {name}: exit {r.returncode}, {len(r.stdout)} bytes out")
                continue
            calls, errors, by = 0, 0, {}
            with open(f) as fh:
                for line in fh:
                    body = re.sub(r"^\d+\s+", "", line.rstrip("\n"))
                    if body.startswith(("+++", "---", "<...")):
                        continue  # exit/signal notes, resumed halves
                    m = re.match(r"^([a-z0-9_]+)\(", body)
                    if not m:
                        continue
                    calls += 1
                    by[m.group(1)] = by.get(m.group(1), 0) + 1
                    if re.search(r"= -1 E[A-Z]+", body):
                        errors += 1
            out[name] = {"calls": calls, "errors": errors, "by_name": by, "listing": f}
            log(f"strace {name}: {calls} syscalls ({errors} failed)")
        self.results["cases"]["strace"] = out

    # ---- the fleet store (--store, a loopback redis-server) ---------------

    def case_fleet(self, reps_hit, reps_fill, reps_miss, callers):
        """The fleet tier against a redis-server this harness starts on
        loopback (and stops by PID): a local hit with a store configured next
        to one without; a fill (local miss, fleet hit); a fleet miss's
        overhead; executions for 2 hosts x N callers."""
        if not self.has("cacheback"):
            return
        exe = shutil.which("redis-server")
        if not exe:
            self.problem("redis-server not found: the fleet cases were skipped (apt-get install redis-server)")
            return
        redis = RedisServer(exe, self.run_dir)
        log(f"fleet: redis-server pid {redis.proc.pid} on 127.0.0.1:{redis.port}")
        try:
            out = {"url": "redis://127.0.0.1:PORT", "callers": callers}
            out["hit"] = self.fleet_hit(redis, reps_hit)
            out["fill"] = self.fleet_fill(redis, reps_fill)
            out["miss"] = self.fleet_miss(redis, reps_miss)
            out["concurrency"] = self.fleet_concurrency(redis, callers)
        finally:
            redis.stop()
        self.results["cases"]["fleet"] = out

    def fleet_hit(self, redis, reps):
        p = self.payload(1 * KiB)
        with open(p, "rb") as f:
            data = f.read()
        store = {"CACHEBACK_STORE": redis.url()}
        plain = self.warm_hit("cacheback", self.fresh_dir("fleet-hit-plain"), p, data)
        fleet = self.warm_hit("cacheback", self.fresh_dir("fleet-hit-store"), p, data, store)
        cs = [Contender("cacheback", *plain, len(data)), Contender("cacheback+store", *fleet, len(data))]
        res = self.interleaved(cs, reps, "fleet: fresh hit 1 KiB, with and without a store")
        for c in cs:
            self.check(run_once(c.argv(0), c.env, capture=True), c.name, "fleet hit final verify", len(data), data)
        return {"reps": reps, "results": res}

    def fleet_fill(self, redis, reps):
        """Host A runs `cat SRC` once (publishing it), then SRC is deleted: a
        timed call on a new, empty cache dir can only print the value by
        copying it from the fleet.  The control is the same call without a
        store on a new dir, with SRC still there: a local miss."""
        p = self.payload(1 * KiB)
        with open(p, "rb") as f:
            data = f.read()
        cb = self.tools["cacheback"]
        base = self.fresh_dir("fleet-fill")
        gone = os.path.join(base, "gone.txt")
        kept = os.path.join(base, "kept.txt")
        os.link(p, gone)
        os.link(p, kept)
        store_env = dict(self.base_env, CACHEBACK_STORE=redis.url())
        prime = [cb, "--cache-dir", os.path.join(base, "host-a"), "run", "--ttl", "1h", "--", self.tools["cat"], gone]
        self.check(run_once(prime, store_env, capture=True), "cacheback+store", "fleet fill prime", len(data), data)
        if not redis.wait_for_keys("cacheback:*:meta", 1):
            raise BenchError("fleet fill: host A's value never reached the fleet (no cacheback:*:meta key)")
        os.unlink(gone)

        def fill(rep):
            d = os.path.join(base, f"fill-{rep}")
            return [cb, "--cache-dir", d, "run", "--ttl", "1h", "--", self.tools["cat"], gone]

        def miss(rep):
            d = os.path.join(base, f"miss-{rep}")
            return [cb, "--cache-dir", d, "run", "--ttl", "1h", "--", self.tools["cat"], kept]

        cs = [Contender("cacheback+store", fill, store_env, len(data)),
              Contender("cacheback", miss, self.base_env, len(data))]
        self.check(run_once(fill("check"), store_env, capture=True), "cacheback+store", "fleet fill verify",
                   len(data), data)
        res = self.interleaved(cs, reps, "fleet: fill (local miss, fleet hit) vs local miss, 1 KiB")
        return {"reps": reps, "results": res}

    def fleet_miss(self, redis, reps):
        """`echo hi UNIQUE`: a new key every call, so with a store each call is
        a local miss and a fleet miss (lease, run, publish)."""
        echo = self.tools["echo"]
        cb = self.tools["cacheback"]
        tag = f"fleet-miss-{self.uniq}"
        plain_env = dict(self.base_env, CACHEBACK_DIR=self.fresh_dir("fleet-miss-plain"))
        store_env = dict(self.base_env, CACHEBACK_DIR=self.fresh_dir("fleet-miss-store"),
                         CACHEBACK_STORE=redis.url())

        def argv(rep):
            return [cb, "run", "--ttl", "1h", "--", echo, "hi", f"{tag}-{rep}"]

        cs = [Contender("direct", lambda rep: [echo, "hi", f"{tag}-{rep}"], self.base_env, None),
              Contender("cacheback", argv, plain_env, None),
              Contender("cacheback+store", argv, store_env, None)]
        for c in cs:
            want = f"hi {tag}-check\n".encode()
            self.check(run_once(c.argv("check"), c.env, capture=True), c.name, "fleet miss verify", len(want), want)
        res = self.interleaved(cs, reps, "fleet: miss (echo hi UNIQUE) with and without a store")
        return {"reps": reps, "results": res}

    def fleet_concurrency(self, redis, n):
        tools = [("cacheback+store", redis.url()), ("cacheback", None)]
        if self.has("bkt"):
            tools.append(("bkt", None))
        out = []
        for state in ("missing", "stale"):
            for name, url in tools:
                r = self.concurrent_hosts(name, 2, n, state, url)
                log(f"fleet concurrency {name} {state} 2x{n}: {r['executions_settled']} executions, "
                    f"{r['wrong_output']} wrong outputs, {r['failed_callers']} failed, "
                    f"median latency {fmt_ns(r['latency']['median'])}")
                if name == "cacheback+store" and (r["executions_settled"] != 1 or r["wrong_output"]
                                                  or r["failed_callers"] or r["warned"]):
                    self.problem(f"fleet: 2 hosts x {n} callers on a {state} entry: "
                                 f"{r['executions_settled']} executions (want 1), {r['wrong_output']} wrong "
                                 f"outputs, {r['failed_callers']} failed callers, {r['warned']} callers "
                                 "wrote to stderr (see the log)")
                out.append(r)
        return out

    def concurrent_hosts(self, name, hosts, n, state, store_url, sleep_s=0.5, ttl_ms=1000):
        """Like `concurrent`, over several hosts (cache dirs), n callers each,
        all released at once; with `store_url` the hosts share that store.
        The stale state primes the hosts in turn (with a store, the second
        one fills from the fleet), then lets the TTL pass."""
        tool = "bkt" if name == "bkt" else "cacheback"
        d = self.fresh_dir(f"fleet-conc-{name}-{state}-{n}")
        counter = d + ".counter"
        outdir = d + ".out"
        os.makedirs(outdir)
        cmd = [self.tools["sh"], "-c", f"echo x >> '{counter}'; sleep {sleep_s}; echo value"]
        calls = []
        for h in range(hosts):
            hd = os.path.join(d, f"host-{h}")
            if tool == "cacheback":
                argv, env = self.tool_cmd(tool, hd, f"{ttl_ms}ms" if state == "stale" else "1h", cmd)
                if store_url:
                    env["CACHEBACK_STORE"] = store_url
                    if self.smoke:
                        # The smoke run shares CI's busy machine, where a first
                        # reply can take longer than the 200 ms default and
                        # count as the store being down; the full run keeps
                        # the default, as users get it.
                        env["CACHEBACK_STORE_TIMEOUT"] = "2s"
            else:
                argv, env = self.tool_cmd(tool, hd, "1h", cmd, stale=f"{ttl_ms}ms" if state == "stale" else None)
            calls.append((argv, env))
        primed = 0
        self.settle()
        if state == "stale":
            for argv, env in calls:
                r = run_once(argv, env, capture=True)
                self.check(r, name, "fleet concurrency prime", 6, b"value\n")
            primed = count_lines(counter)
            time.sleep(ttl_ms / 1000 + 0.2)
        gate_r, gate_w = os.pipe()
        pids = {}
        for i in range(n * hosts):
            argv, env = calls[i % hosts]
            outp = os.path.join(outdir, str(i))
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(gate_w)
                    fd = os.open(outp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(fd, 1)
                    # each caller's stderr apart: a caller that warned (the
                    # store did not answer) explains an extra execution
                    fd = os.open(outp + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(fd, 2)
                    nul = os.open("/dev/null", os.O_RDONLY)
                    os.read(gate_r, 1)  # blocks until the parent closes gate_w
                    os.dup2(nul, 0)
                    os.execve(argv[0], argv, env)
                finally:
                    os._exit(127)
            pids[pid] = i
        os.close(gate_r)
        time.sleep(0.3)  # let every child reach the gate
        t0 = time.monotonic_ns()
        os.close(gate_w)
        lat, bad = [], 0
        while pids:
            pid, wst = os.wait()
            t = time.monotonic_ns()
            if pid in pids:
                del pids[pid]
                lat.append(t - t0)
                if os.waitstatus_to_exitcode(wst) != 0:
                    bad += 1
        at_return = count_lines(counter) - primed
        # background refreshers (and, with a store, the other host's copy)
        time.sleep(sleep_s + 2.0)
        settled = count_lines(counter) - primed
        wrong, warned, said = 0, 0, {}
        for i in range(n * hosts):
            with open(os.path.join(outdir, str(i)), "rb") as f:
                if f.read() != b"value\n":
                    wrong += 1
            with open(os.path.join(outdir, f"{i}.err"), "rb") as f:
                err = f.read().decode("utf-8", "replace").strip()
            if err:
                warned += 1
                said[err] = said.get(err, 0) + 1
        for err, k in said.items():
            log(f"fleet concurrency {name} {state}: {k} caller(s) said: {err[:300]}")
        return {"tool": name, "hosts": hosts, "callers": n, "state": state, "primed": primed,
                "executions_when_callers_done": at_return, "executions_settled": settled,
                "failed_callers": bad, "wrong_output": wrong, "warned": warned,
                "latency": summarize(lat)}

    # ---- driver ---------------------------------------------------------

    def run(self):
        smoke = self.smoke
        t0 = time.monotonic()
        sizes = [1 * KiB] if smoke else [1 * KiB, 1 * MiB, 100 * MiB]
        reps = {
            1 * KiB: env_int("BENCH_REPS_1K", 20 if smoke else 300),
            1 * MiB: env_int("BENCH_REPS_1M", 100),
            100 * MiB: env_int("BENCH_REPS_100M", 15),
        }
        self.results["loadavg_start"] = os.getloadavg()
        self.results["started"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        # the miss case first: the 100 MiB hit case leaves the most dirty
        # pages and page-cache churn behind it
        self.case_miss(env_int("BENCH_REPS_MISS", 20 if smoke else 200))
        self.case_hits(sizes, lambda s: reps[s])
        if not smoke:
            self.case_stale(env_int("BENCH_REPS_STALE", 20), env_int("BENCH_STALE_TTL_MS", 300))
        # in the smoke run too (a second or so): it checks one refresh per stale hit
        self.case_stale_short_pauses(env_int("BENCH_REPS_STALE_SHORT", 5 if smoke else 100),
                                     env_int("BENCH_STALE_TTL_MS", 300), env_int("BENCH_STALE_GAP_MS", 10))
        if not smoke:
            counts = [int(x) for x in os.environ.get("BENCH_ENTRIES", "10 100000").split()]
            self.case_entries(counts, env_int("BENCH_REPS_ENTRIES", 100),
                              env_int("BENCH_PREFILL_MAX_S", 240))
            conc = [int(x) for x in os.environ.get("BENCH_CONCURRENCY", "50 200").split()]
            self.case_concurrency(conc)
            self.case_callgrind()
            self.case_strace()
        # the fleet store, in the smoke run too (a few seconds): it checks one
        # execution for two hosts' concurrent callers
        self.case_fleet(env_int("BENCH_REPS_FLEET_HIT", 20 if smoke else 300),
                        env_int("BENCH_REPS_FLEET_FILL", 10 if smoke else 100),
                        env_int("BENCH_REPS_FLEET_MISS", 10 if smoke else 100),
                        env_int("BENCH_FLEET_CALLERS", 20 if smoke else 100))
        self.results["elapsed_s"] = time.monotonic() - t0
        self.results["loadavg_end"] = os.getloadavg()
        return self.results


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def count_files(d):
    n = 0
    for _root, _dirs, files in os.walk(d):
        n += len(files)
    return n


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

class RedisServer:
    """A private redis-server on a free loopback port (no persistence),
    in a scratch dir; stopped by its PID."""

    def __init__(self, exe, work):
        self.dir = tempfile.mkdtemp(prefix="redis-", dir=work)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.command("PING") == b"+PONG":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise BenchError(f"redis-server did not start on 127.0.0.1:{self.port}")
            time.sleep(0.05)

    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def command(self, *args):
        """One command; the reply's first line (enough for PING and counts)."""
        req = f"*{len(args)}\r\n".encode()
        for a in args:
            a = a.encode()
            req += b"$%d\r\n%s\r\n" % (len(a), a)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(req)
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        return reply.split(b"\r\n")[0]

    def wait_for_keys(self, pattern, want, timeout_s=10.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # KEYS replies with an array header: *N
            if int(self.command("KEYS", pattern)[1:] or 0) >= want:
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL to its PID
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def machine_info():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    fs = ""
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": os.uname().release,
            "machine": os.uname().machine, "memory": mem}


def cmd_version(argv):
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        return r.stdout.decode("utf-8", "replace").strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unavailable"


def fs_type(path):
    try:
        r = subprocess.run(["df", "-T", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return r.stdout.decode().splitlines()[1].split()[1]
    except (OSError, IndexError):
        return "unknown"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def write_report(res, args, path_md, path_svg, tools):
    m = machine_info()
    L = []
    L.append("# cacheback benchmarks")
    L.append("")
    L.append("Generated by `bench/run.sh`" + (" --smoke (smoke run: tiny, not representative)" if args.smoke else "")
             + ". Do not edit by hand: rerun the script. Numbers are from one run on the machine below;")
    L.append("they are wall-clock times of whole processes (spawn → exit and stdout EOF), so they include")
    L.append("exec, dynamic loading and the cost of the reader draining the pipe.")
    L.append("")
    L.append("## Machine and versions")
    L.append("")
    L.append(f"- date: {res['started']} (run took {res['elapsed_s']:.0f} s)")
    L.append(f"- machine: {m['nproc']} CPUs, {m['cpu']}, {m['machine']}, {m['memory']} RAM")
    L.append(f"- kernel: Linux {m['kernel']}")
    la0, la1 = res.get("loadavg_start"), res.get("loadavg_end")
    if la0 and la1:
        L.append(f"- load average (1/5/15 min) at start: {la0[0]:.2f} / {la0[1]:.2f} / {la0[2]:.2f}, "
                 f"at end: {la1[0]:.2f} / {la1[1]:.2f} / {la1[2]:.2f} (the run itself keeps about one core busy, and four processes during the prefill)")
        if la0[0] > 1.0:
            L.append(f"- **warning:** other work was running when this run started (1-min load {la0[0]:.2f} on "
                     f"{m['nproc']} CPUs); expect noisier numbers than on an idle machine")
    L.append(f"- cache dirs on: {fs_type(args.work)} (`{os.path.relpath(args.work, os.path.dirname(os.path.abspath(path_md)))}`)")
    L.append(f"- rustc: {cmd_version(['rustc', '--version'])}")
    L.append(f"- python: {sys.version.split()[0]} (harness)")
    L.append(f"- cacheback: {cmd_version([tools['cacheback'], '--version']) if 'cacheback' in tools else 'not built'}")
    L.append(f"- bkt: {cmd_version([tools['bkt'], '--version']) if 'bkt' in tools else 'not run'}")
    L.append("- cacheback-musl: the same source built for `x86_64-unknown-linux-musl` (static, tuned flags); "
             + ("timed in the hit cases only" if "cacheback-musl" in tools else "not run"))
    L.append("- cacheback-untuned: the same source as a crates.io user builds it (`cargo package`, unpacked and "
             "built outside the repository, so `.cargo/config.toml` is not read: dynamic, PIE, sha2 picks its "
             "backend at run time; `bench/registry-style.sh`); "
             + ("timed in the hit cases only" if "cacheback-untuned" in tools else "not run"))
    L.append(f"- cat: {cmd_version([tools['cat'], '--version'])}")
    L.append("- floor: `bench/floor` (static Rust binary: open the file, sendfile(2) it to stdout) — "
             "the cost of starting a process and printing cached bytes")
    L.append("- floor-std: `bench/floor/src/bin/floor-std.rs`, the floor as plain Rust: std's `main` and "
             "start-up, `io::copy` to stdout; built like the floor (static, LTO, panic=abort). `floor` also "
             "skips std's start-up and uses sendfile, as cacheback does, so it is the stricter of the two")
    if shutil.which("valgrind"):
        L.append(f"- valgrind: {cmd_version(['valgrind', '--version'])}")
    L.append("")
    L.append("Method: each sample is one `posix_spawn` + drain stdout pipe + `wait4`, timed with "
             "`CLOCK_MONOTONIC`. Contenders are interleaved round-robin within every repetition "
             "(start rotates), after "
             f"{env_int('BENCH_WARMUP', 2 if args.smoke else 5)} discarded warm-up repetitions. "
             "Cached commands are `cat SRC` where SRC is deleted after the first call, so a timed call "
             "that was not a hit would fail the run. Outputs are byte-checked before and after timing. "
             "The floor, bkt and cacheback binaries are copied into the scratch dir and dropped from the "
             "page cache first, so each is read back from disk like an installed binary (`cat` is the "
             "system's): how a binary's pages came into the cache (just linked, just copied, read from "
             "disk) moved a static binary's start-up by up to 18% on this machine.")
    L.append("")
    if res["problems"]:
        L.append("## Problems seen in this run")
        L.append("")
        for p in res["problems"]:
            L.append(f"- {p}")
        L.append("")

    cases = res["cases"]
    hit = cases.get("hit", {})
    summary(L, cases)
    if hit:
        L.append("## Fresh hit latency")
        L.append("")
        L.append("Median, min and max per call; ratios are of medians. Peak RSS is VmHWM of the program's own "
                 "image (read under ptrace at its exit stop; max of a few separate runs).")
        L.append("")
        L.append("| output | contender | median | min | max | vs floor | vs floor-std | vs bkt | peak RSS |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for key, c in hit.items():
            r = c["results"]
            fl = r["floor"]["median"]
            fs = r.get("floor-std", {}).get("median")
            bk = r.get("bkt", {}).get("median")
            for name, s in r.items():
                L.append(f"| {fmt_size(c['size'])} ({c['reps']} reps) | {name} | **{fmt_ns(s['median'])}** | "
                         f"{fmt_ns(s['min'])} | {fmt_ns(s['max'])} | {fmt_ratio(ratio(s['median'], fl))} | "
                         f"{fmt_ratio(ratio(s['median'], fs))} | "
                         f"{fmt_ratio(ratio(s['median'], bk))} | {fmt_kib(s.get('peak_rss_kib'))} |")
        L.append("")
        if path_svg and len(hit) > 1:
            L.append(f"![median hit latency vs output size]({os.path.relpath(path_svg, os.path.dirname(os.path.abspath(path_md)))})")
            L.append("")

    miss = cases.get("miss")
    if miss:
        r = miss["results"]
        d = r["direct"]["median"]
        L.append("## Miss overhead")
        L.append("")
        L.append(f"`echo hi UNIQUE` run directly vs through each tool, a new key every call "
                 f"({miss['reps']} reps). Overhead = tool median − direct median.")
        L.append("")
        L.append("| contender | median | min | max | overhead | vs direct | overhead vs bkt's |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        bko = r["bkt"]["median"] - d if "bkt" in r else None
        for name, s in r.items():
            ov = None if name == "direct" else s["median"] - d
            L.append(f"| {name} | **{fmt_ns(s['median'])}** | {fmt_ns(s['min'])} | {fmt_ns(s['max'])} | "
                     f"{'—' if ov is None else fmt_ns(ov)} | {fmt_ratio(ratio(s['median'], d))} | "
                     f"{'—' if ov is None else fmt_ratio(ratio(ov, bko))} |")
        L.append("")

    stale = cases.get("stale")
    if stale:
        L.append("## Stale hit")
        L.append("")
        L.append(f"Entry older than its freshness limit ({stale['ttl_ms']} ms: cacheback `--ttl`, bkt `--stale` "
                 "with a 1 h `--ttl`); the cached 1 KiB answer is printed at once and a background refresh runs. "
                 "The wrapped command appends to a counter file, so refreshes are counted exactly. "
                 "`exit` = until the process exited, `EOF` = until its stdout closed (a refresher that "
                 "inherited stdout would hold it open). Each stale hit follows a pause of the TTL plus 150 ms, "
                 "so the control is a fresh hit of another entry timed after the same pause; `vs fresh after "
                 "pause` is the like-for-like ratio, `vs its fresh hit` compares with back-to-back hits.")
        L.append("")
        fresh = hit.get(str(1 * KiB), {}).get("results", {})
        L.append("| contender | median (exit+EOF) | min | max | median exit | median EOF | fresh after pause | vs fresh after pause | vs its fresh hit | vs floor | vs bkt | stale hits | refreshes run |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        sbk = stale["results"].get("bkt", {}).get("median")
        ffl = fresh.get("floor", {}).get("median")
        for name, s in stale["results"].items():
            fr = fresh.get(name, {}).get("median")
            L.append(f"| {name} | **{fmt_ns(s['median'])}** | {fmt_ns(s['min'])} | {fmt_ns(s['max'])} | "
                     f"{fmt_ns(s['exit']['median'])} | {fmt_ns(s['eof']['median'])} | "
                     f"{fmt_ns(s['fresh_after_pause']['median'])} | "
                     f"{fmt_ratio(ratio(s['median'], s['fresh_after_pause']['median']))} | "
                     f"{fmt_ratio(ratio(s['median'], fr))} | {fmt_ratio(ratio(s['median'], ffl))} | "
                     f"{fmt_ratio(ratio(s['median'], sbk))} | {s['stale_hits']} | {s['refreshes']} |")
        L.append("")

    short = cases.get("stale_short")
    if short:
        L.append("### Stale hit against fresh hit, short equal pauses")
        L.append("")
        L.append(f"The same stale hit without the long pause: {short['reps']} entries (plus warm-ups) are cached "
                 f"with a {short['ttl_ms']} ms freshness limit and left to go stale together, then every "
                 "repetition serves a different one of them, interleaved round-robin with fresh hits of a "
                 "1 h entry through the same tool. Before every timed call, stale or fresh, each refresh "
                 f"started so far has run its command and {short.get('gap_ms', 10)} ms have passed, so no "
                 "refresh competes with a later call and both kinds of call start from the same idle "
                 "state. Each entry must be refreshed exactly once. `stale ÷ fresh` is the stale-hit "
                 "target's ratio.")
        L.append("")
        L.append("| contender | fresh hit | stale hit | min | max | stale exit | stale EOF | stale ÷ fresh | stale hits | refreshes run |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, s in short["results"].items():
            L.append(f"| {name} | {fmt_ns(s['fresh']['median'])} | **{fmt_ns(s['stale']['median'])}** | "
                     f"{fmt_ns(s['stale']['min'])} | {fmt_ns(s['stale']['max'])} | "
                     f"{fmt_ns(s['stale_exit']['median'])} | {fmt_ns(s['stale_eof']['median'])} | "
                     f"**{fmt_ratio(ratio(s['stale']['median'], s['fresh']['median']))}** | "
                     f"{s['stale_hits']} | {s['refreshes']} |")
        L.append("")

    ent = cases.get("entries")
    if ent:
        L.append("## Hit and miss with many entries in the cache dir")
        L.append("")
        L.append(f"Cache prefilled by running the tool on `true fill-I` for distinct I (several in parallel); "
                 f"then `echo hi` (hit) and `echo hi UNIQUE` (miss), {ent['reps']} reps each.")
        L.append("")
        L.append("| contender @ entries | files in dir | prefill time | hit median (min–max) | miss median (min–max) |")
        L.append("|---|---:|---:|---:|---:|")
        for name, f in ent["filled"].items():
            h, mi = ent["hit"][name], ent["miss"][name]
            L.append(f"| {name} ({fmt_int(f['entries'])} made) | {fmt_int(f['files'])} | {f['prefill_s']:.0f} s | "
                     f"**{fmt_ns(h['median'])}** ({fmt_ns(h['min'])}–{fmt_ns(h['max'])}) | "
                     f"**{fmt_ns(mi['median'])}** ({fmt_ns(mi['min'])}–{fmt_ns(mi['max'])}) |")
        L.append("")

    conc = cases.get("concurrency")
    if conc:
        L.append("## Concurrent callers")
        L.append("")
        L.append("N callers released at the same instant (all blocked on one pipe until it closes) on a missing "
                 "entry or a stale one. Wrapped command: `sh -c 'echo x >> COUNTER; sleep 0.5; echo value'`. "
                 "Executions are counted from COUNTER when all callers have returned and again after 1.5 s. "
                 "Ideal: 1 execution in both states; on a stale entry every caller should return at once.")
        L.append("")
        L.append("| state | callers | contender | executions (at return / settled) | wrong output | failed | caller latency median | max |")
        L.append("|---|---:|---|---:|---:|---:|---:|---:|")
        for r in conc:
            L.append(f"| {r['state']} | {r['callers']} | {r['tool']} | **{r['executions_when_callers_done']} / "
                     f"{r['executions_settled']}** | {r['wrong_output']} | {r['failed_callers']} | "
                     f"{fmt_ns(r['latency']['median'])} | {fmt_ns(r['latency']['max'])} |")
        L.append("")

    fl = cases.get("fleet")
    if fl:
        L.append("## Fleet store (`--store`)")
        L.append("")
        L.append("cacheback with `CACHEBACK_STORE` set to a redis-server that the harness starts on loopback "
                 "(no persistence) and stops by PID, next to cacheback without a store. Hosts are separate "
                 "cache directories sharing that server.")
        L.append("")
        h = fl["hit"]["results"]
        base = h["cacheback"]["median"]
        L.append(f"Fresh hit, 1 KiB ({fl['hit']['reps']} reps): a fresh local copy is served without touching "
                 "the store, so a store configured should cost nothing (target ≤ 1.05×).")
        L.append("")
        L.append("| contender | median | min | max | vs without a store |")
        L.append("|---|---:|---:|---:|---:|")
        for name, v in h.items():
            L.append(f"| {name} | **{fmt_ns(v['median'])}** | {fmt_ns(v['min'])} | {fmt_ns(v['max'])} | "
                     f"{fmt_ratio(ratio(v['median'], base))} |")
        L.append("")
        f = fl["fill"]["results"]
        L.append(f"Fill, 1 KiB ({fl['fill']['reps']} reps): a new, empty cache dir every call; with the store the "
                 "fleet holds the value (its command's input is deleted, so it can only come from the fleet: "
                 "target ≤ 2 ms median); without, the same call is a local miss that runs `cat`.")
        L.append("")
        L.append("| contender | median | min | max |")
        L.append("|---|---:|---:|---:|")
        for name, v in f.items():
            L.append(f"| {name} | **{fmt_ns(v['median'])}** | {fmt_ns(v['min'])} | {fmt_ns(v['max'])} |")
        L.append("")
        m = fl["miss"]["results"]
        d = m["direct"]["median"]
        local = m["cacheback"]["median"]
        L.append(f"Miss, `echo hi UNIQUE` ({fl['miss']['reps']} reps): with the store, each call is a local miss "
                 "and a fleet miss (it takes the lease, runs, stores and publishes).")
        L.append("")
        L.append("| contender | median | min | max | overhead over direct | over a local miss |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for name, v in m.items():
            L.append(f"| {name} | **{fmt_ns(v['median'])}** | {fmt_ns(v['min'])} | {fmt_ns(v['max'])} | "
                     f"{'—' if name == 'direct' else fmt_ns(v['median'] - d)} | "
                     f"{fmt_ns(v['median'] - local) if name == 'cacheback+store' else '—'} |")
        L.append("")
        L.append(f"Concurrent callers: 2 hosts × {fl['callers']} callers released at the same instant on a missing "
                 "entry or a stale one (TTL 1 s; the stale state primes both hosts first, the second from the "
                 "fleet when there is one). Wrapped command: `sh -c 'echo x >> COUNTER; sleep 0.5; echo value'`. "
                 "Executions counted when all callers have returned and again 2.5 s later. Ideal: 1 for the "
                 "fleet; without one, 1 per host at best (bkt has no fleet mode).")
        L.append("")
        L.append("| state | callers | contender | executions (at return / settled) | wrong output | failed | warned | caller latency median | max |")
        L.append("|---|---:|---|---:|---:|---:|---:|---:|---:|")
        for r in fl["concurrency"]:
            L.append(f"| {r['state']} | {r['hosts']} × {r['callers']} | {r['tool']} | "
                     f"**{r['executions_when_callers_done']} / {r['executions_settled']}** | {r['wrong_output']} | "
                     f"{r['failed_callers']} | {r['warned']} | {fmt_ns(r['latency']['median'])} | "
                     f"{fmt_ns(r['latency']['max'])} |")
        L.append("")

    cg = cases.get("callgrind")
    stc = cases.get("strace")
    if cg or stc:
        L.append("## Instructions and syscalls for one 1 KiB fresh hit")
        L.append("")
        L.append("Instructions (Ir) from `valgrind --tool=callgrind` (user space only, whole process "
                 "including the dynamic loader); syscalls counted in one `strace -f` listing "
                 "(kept in `bench/.work/strace/`).")
        L.append("")
        L.append("| contender | instructions | vs floor | vs bkt | syscalls |")
        L.append("|---|---:|---:|---:|---:|")
        names = list(dict.fromkeys(list((cg or {}).keys()) + list((stc or {}).keys())))
        fl = (cg or {}).get("floor")
        bk = (cg or {}).get("bkt")
        for n in names:
            ir = (cg or {}).get(n)
            sc = (stc or {}).get(n, {}).get("calls")
            L.append(f"| {n} | {fmt_int(ir)} | {fmt_ratio(ratio(ir, fl))} | {fmt_ratio(ratio(ir, bk))} | {fmt_int(sc)} |")
        L.append("")
    L.append("## Reproduce")
    L.append("")
    L.append("```sh")
    L.append("bench/run.sh            # full run, rewrites BENCHMARKS.md and bench/hit-latency.svg")
    L.append("bench/run.sh --smoke    # quick check used by CI; writes nothing in the repo")
    L.append("```")
    L.append("")
    L.append("Repetitions are set by `BENCH_REPS_1K`, `BENCH_REPS_1M`, `BENCH_REPS_100M`, `BENCH_REPS_MISS`, "
             "`BENCH_REPS_STALE`, `BENCH_REPS_STALE_SHORT`, `BENCH_STALE_GAP_MS`, `BENCH_REPS_ENTRIES`, `BENCH_WARMUP`; `BENCH_ENTRIES` (\"10 100000\"), "
             "`BENCH_CONCURRENCY` (\"50 200\"), `BENCH_PREFILL_MAX_S`, `BENCH_STALE_TTL_MS`; the fleet cases by "
             "`BENCH_REPS_FLEET_HIT`, `BENCH_REPS_FLEET_FILL`, `BENCH_REPS_FLEET_MISS`, `BENCH_FLEET_CALLERS` (callers per host).")
    L.append("")
    with open(path_md, "w") as f:
        f.write("\n".join(L))


def fmt_tick(ns):
    if ns >= 1e9:
        return f"{ns / 1e9:g} s"
    if ns >= 1e6:
        return f"{ns / 1e6:g} ms"
    return f"{ns / 1e3:g} µs"


def summary(L, cases):
    """Headline table: one row per measurement, one column per contender."""
    names = ["floor", "floor-std", "cat", "bkt", "cacheback", *VARIANT_NAMES]
    rows = []
    for key, c in cases.get("hit", {}).items():
        r = c["results"]
        rows.append((f"fresh hit, {fmt_size(c['size'])} (median)", {n: r[n]["median"] for n in r}, fmt_ns, True))
    for key, c in cases.get("hit", {}).items():
        r = c["results"]
        fs = r.get("floor-std", {}).get("median")
        if fs:
            rows.append((f"fresh hit, {fmt_size(c['size'])}, ÷ floor-std",
                         {n: ratio(r[n]["median"], fs) for n in r if n not in ("floor", "floor-std")},
                         fmt_ratio, False))
    miss = cases.get("miss")
    if miss:
        r = miss["results"]
        d = r["direct"]["median"]
        rows.append(("miss overhead over running `echo` directly", {n: r[n]["median"] - d for n in r if n != "direct"},
                     fmt_ns, False))
    st = cases.get("stale")
    if st:
        rows.append(("stale hit, 1 KiB (median)", {n: v["median"] for n, v in st["results"].items()}, fmt_ns, False))
        rows.append(("stale hit ÷ fresh hit after the same pause",
                     {n: ratio(v["median"], v["fresh_after_pause"]["median"]) for n, v in st["results"].items()},
                     fmt_ratio, False))
    short = cases.get("stale_short")
    if short:
        rows.append(("stale hit ÷ fresh hit, short equal pauses",
                     {n: ratio(v["stale"]["median"], v["fresh"]["median"]) for n, v in short["results"].items()},
                     fmt_ratio, False))
    cg = cases.get("callgrind")
    if cg:
        rows.append(("instructions, 1 KiB hit", dict(cg), fmt_int, True))
    for key, c in cases.get("hit", {}).items():
        if c["size"] == max(x["size"] for x in cases["hit"].values()):
            rows.append((f"peak RSS, {fmt_size(c['size'])} hit",
                         {n: v.get("peak_rss_kib") for n, v in c["results"].items()}, fmt_kib, False))
    conc = cases.get("concurrency")
    if conc:
        for state in ("missing", "stale"):
            big = [x for x in conc if x["state"] == state]
            if big:
                n = max(x["callers"] for x in big)
                rows.append((f"executions for {n} concurrent callers, {state} entry",
                             {x["tool"]: x["executions_settled"] for x in big if x["callers"] == n}, fmt_int, False))
    fl = cases.get("fleet")
    if fl:
        h = fl["hit"]["results"]
        rows.append(("fresh hit, 1 KiB, with a fleet store configured ÷ without (target ≤ 1.05×)",
                     {"cacheback": ratio(h["cacheback+store"]["median"], h["cacheback"]["median"])},
                     fmt_ratio, False))
        rows.append(("fleet fill, 1 KiB: local miss, fleet hit (median; target ≤ 2 ms)",
                     {"cacheback": fl["fill"]["results"]["cacheback+store"]["median"]}, fmt_ns, False))
        m = fl["miss"]["results"]
        rows.append(("fleet miss overhead over a local miss (median)",
                     {"cacheback": m["cacheback+store"]["median"] - m["cacheback"]["median"]}, fmt_ns, False))
        for state in ("missing", "stale"):
            got = {("cacheback" if r["tool"] == "cacheback+store" else r["tool"]): r["executions_settled"]
                   for r in fl["concurrency"] if r["state"] == state and r["tool"] != "cacheback"}
            rows.append((f"executions for 2 hosts × {fl['callers']} callers, {state} entry "
                         "(cacheback with a fleet store)", got, fmt_int, False))
    if not rows:
        return
    present = [n for n in names if any(n in v for _, v, _, _ in rows)]
    L.append("## Summary")
    L.append("")
    L.append("Ratios in parentheses: vs floor / vs bkt (lower is better). Details and min/max below.")
    L.append("")
    L.append("| measurement | " + " | ".join(present) + " |")
    L.append("|---|" + "---:|" * len(present))
    for label, vals, fmt, show_ratio in rows:
        cells = []
        for n in present:
            v = vals.get(n)
            if v is None:
                cells.append("—")
                continue
            cell = fmt(v)
            if show_ratio and n in ("floor-std", "bkt", "cacheback", "cat", *VARIANT_NAMES):
                cell += f" ({fmt_ratio(ratio(v, vals.get('floor')))} / {fmt_ratio(ratio(v, vals.get('bkt')))})"
            cells.append(cell)
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    L.append("")


def write_svg(res, path):
    hit = res["cases"].get("hit", {})
    if not hit:
        return
    sizes = [c["size"] for c in hit.values()]
    names = []
    for c in hit.values():
        for n in c["results"]:
            if n not in names:
                names.append(n)
    pts = {n: [(c["size"], c["results"][n]["median"]) for c in hit.values() if n in c["results"]] for n in names}
    import math
    W, H = 760, 460
    ml, mr, mt, mb = 96, 170, 50, 60
    pw, ph = W - ml - mr, H - mt - mb
    ys = [v for p in pts.values() for _, v in p]
    y_lo = 10 ** math.floor(math.log10(min(ys)))
    y_hi = 10 ** math.ceil(math.log10(max(ys)))
    if y_hi <= y_lo:
        y_hi = y_lo * 10
    xs = sorted(set(sizes))
    x_lo, x_hi = math.log10(xs[0]), math.log10(xs[-1])
    if x_hi == x_lo:
        x_hi = x_lo + 1

    def X(s):
        return ml + (math.log10(s) - x_lo) / (x_hi - x_lo) * pw

    def Y(v):
        return mt + ph - (math.log10(v) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo)) * ph

    colors = {"floor": "#6b7280", "floor-std": "#9ca3af", "cat": "#2563eb", "bkt": "#d97706",
              "cacheback": "#059669", "cacheback-musl": "#7c3aed", "cacheback-untuned": "#db2777"}
    dashes = {"floor": "4 3", "floor-std": "2 2", "cat": "1 3"}
    o = []
    o.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
             'font-family="sans-serif" font-size="12">')
    o.append(f'<rect width="{W}" height="{H}" fill="white"/>')
    o.append(f'<text x="{ml + pw / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">'
             'Median fresh-hit latency vs output size (log–log)</text>')
    # y grid
    e = math.log10(y_lo)
    while 10 ** e <= y_hi * 1.0001:
        for mul in (1, 2, 5):
            v = mul * 10 ** e
            if v < y_lo or v > y_hi * 1.0001:
                continue
            y = Y(v)
            strong = mul == 1
            o.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + pw}" y2="{y:.1f}" stroke="{"#d1d5db" if strong else "#f0f0f0"}"/>')
            o.append(f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#374151">{html.escape(fmt_tick(v))}</text>')
        e += 1
    for s in xs:
        x = X(s)
        o.append(f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{mt + ph}" stroke="#e5e7eb"/>')
        o.append(f'<text x="{x:.1f}" y="{mt + ph + 18}" text-anchor="middle" fill="#374151">{fmt_size(s)}</text>')
    o.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#374151"/>')
    o.append(f'<text x="{ml + pw / 2}" y="{H - 15}" text-anchor="middle">cached output size</text>')
    o.append(f'<text x="18" y="{mt + ph / 2}" text-anchor="middle" transform="rotate(-90 18 {mt + ph / 2})">'
             'median wall time per call</text>')
    for i, n in enumerate(names):
        c = colors.get(n, "#7c3aed")
        p = pts[n]
        d = " ".join(f"{'M' if j == 0 else 'L'}{X(s):.1f},{Y(v):.1f}" for j, (s, v) in enumerate(p))
        dash = f' stroke-dasharray="{dashes[n]}"' if n in dashes else ""
        o.append(f'<path d="{d}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        for s, v in p:
            o.append(f'<circle cx="{X(s):.1f}" cy="{Y(v):.1f}" r="3.5" fill="{c}">'
                     f'<title>{html.escape(n)} {fmt_size(s)}: {html.escape(fmt_ns(v))}</title></circle>')
        ly = mt + 10 + i * 22
        lx = ml + pw + 16
        o.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 26}" y2="{ly}" stroke="{c}" stroke-width="2"{dash}/>')
        o.append(f'<circle cx="{lx + 13}" cy="{ly}" r="3.5" fill="{c}"/>')
        o.append(f'<text x="{lx + 34}" y="{ly + 4}">{html.escape(n)}</text>')
    o.append(f'<text x="{ml + pw + 16}" y="{mt + 10 + len(names) * 22 + 10}" fill="#6b7280" font-size="10">'
             f'{html.escape(res["started"][:10])}</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


VARIANT_NAMES = ("cacheback-musl", "cacheback-untuned")


def variant_paths(args):
    return [("cacheback-musl", args.cacheback_musl), ("cacheback-untuned", args.cacheback_untuned)]


def main():
    if sys.version_info < (3, 9) or not hasattr(os, "pidfd_open"):
        sys.exit("bench: needs Python >= 3.9 on Linux >= 5.3 (os.pidfd_open, os.posix_spawn)")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--floor", required=True)
    ap.add_argument("--floor-std", required=True)
    ap.add_argument("--cacheback")
    ap.add_argument("--cacheback-musl", help="cacheback built for x86_64-unknown-linux-musl (hit cases)")
    ap.add_argument("--cacheback-untuned", help="cacheback built registry-style (hit cases)")
    ap.add_argument("--bkt")
    ap.add_argument("--work", required=True, help="scratch dir (payloads, cache dirs)")
    ap.add_argument("--out-md", required=True)
    ap.add_argument("--out-svg")
    ap.add_argument("--out-json")
    args = ap.parse_args()
    b = Bench(args)
    try:
        res = b.run()
    except BenchError as e:
        log(f"FAILED: {e}")
        return 1
    if args.out_json:
        with open(args.out_json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    if args.out_svg:
        write_svg(res, args.out_svg)
    write_report(res, args, args.out_md, args.out_svg, b.tools)
    log(f"wrote {args.out_md}" + (f" and {args.out_svg}" if args.out_svg else ""))
    if res["problems"]:
        log(f"{len(res['problems'])} problem(s) recorded (see report)")
        if args.smoke:
            return 1
    # the scratch run dir (up to ~500k files) is removed by run.sh with rm -rf
    return 0


if __name__ == "__main__":
    sys.exit(main())
