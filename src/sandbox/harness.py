# unitcoder sandbox harness: a warm fork server plus the per-check test runner.
#
# Started by the Rust supervisor as `python -I -B -c <this file> <config json>` inside the
# isolation (bwrap / unshare / none). It pre-imports heavy modules once, then for each job:
# forks a fresh child that runs the program and its unittest module, streams per-test
# outcomes through a private pipe (each line tagged with the job's random nonce), enforces
# the wall-clock timeout, kills every process the check left behind, and answers the
# supervisor with one framed JSON result.
#
# Trust boundary: this server process never runs tested code. The child does, so anything
# in the child may be hostile. The child takes what it needs from unittest before the
# tested code runs, decides outcomes from its own result object (never unittest's
# TestResult), and checks after every test that the unittest framework was not modified.
import json
import os
import select
import shutil
import signal
import struct
import sys
import time

CONFIG = json.loads(sys.argv[1])
PROTO_IN = os.dup(0)
PROTO_OUT = os.dup(1)
_devnull = os.open(os.devnull, os.O_RDWR)
os.dup2(_devnull, 0)
os.dup2(_devnull, 1)
os.set_inheritable(PROTO_IN, False)
os.set_inheritable(PROTO_OUT, False)

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"
os.environ["MPLBACKEND"] = "Agg"


def log(msg):
    try:
        os.write(2, ("harness: " + msg + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


# ---------------------------------------------------------------- mount setup (unshare)
def setup_mounts():
    """In `unshare` mode we are root in a private mount namespace: give /tmp, /var/tmp and
    /dev/shm fresh tmpfs mounts and make every other mount read-only."""
    import subprocess
    size = "size=%dm" % CONFIG["tmpfs_mb"]
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    mounts = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            parts = line.split()
            sep = parts.index("-")
            mounts.append((parts[4], parts[sep + 1]))
    skip_types = {"proc", "sysfs", "devtmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "tmpfs",
                  "securityfs", "debugfs", "tracefs", "pstore", "bpf", "hugetlbfs", "configfs",
                  "fusectl", "binfmt_misc", "autofs", "efivarfs", "nsfs"}
    for point, fstype in mounts:
        if fstype in skip_types or point.startswith(("/proc", "/sys", "/dev")):
            continue
        subprocess.run(["mount", "-o", "remount,bind,ro", point], stderr=subprocess.DEVNULL)
    # Everything of the host but the system directories is hidden under an empty tmpfs
    # (homes, /run and its sockets, /srv, /opt, work directories), as in bwrap mode; the
    # temp dirs get private size-capped ones.
    system = set(CONFIG.get("system_dirs", [])) | {"/proc", "/sys", "/dev", "/tmp", "/var"}
    hidden = [os.path.join("/", e) for e in sorted(os.listdir("/")) if os.path.join("/", e) not in system
              and os.path.isdir(os.path.join("/", e)) and not os.path.islink(os.path.join("/", e))]
    for point in ["/tmp", "/var/tmp", "/dev/shm"] + hidden:
        if not os.path.isdir(point):
            continue
        tmp = point in ("/tmp", "/var/tmp", "/dev/shm")
        # The interpreter may live under this directory: keep a handle on it, and bind it
        # back (read-only) on top of the fresh tmpfs.
        keep = [p for p in CONFIG.get("keep_paths", []) if p == point or p.startswith(point.rstrip("/") + "/")]
        handles = [(p, os.open(p, os.O_RDONLY | os.O_DIRECTORY)) for p in keep if os.path.isdir(p)]
        options = size + ",mode=1777" if tmp else "size=1m,mode=0755"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", point], check=True)
        for path, fd in handles:
            os.makedirs(path, exist_ok=True)
            parent = path
            while len(parent) > len(point):  # every directory made on the way: searchable
                try:
                    os.chmod(parent, 0o755)
                except OSError:
                    pass
                parent = os.path.dirname(parent)
            # --no-canonicalize: the fd link must not be resolved back to the (now hidden) name.
            subprocess.run(["mount", "--no-canonicalize", "--bind", "/proc/%d/fd/%d" % (os.getpid(), fd), path], check=True)
            subprocess.run(["mount", "-o", "remount,bind,ro", path], check=True)
            os.close(fd)


if CONFIG.get("mount_setup"):
    setup_mounts()

# ---------------------------------------------------------------- warm imports
PREIMPORTED, MISSING = [], []
for _name in CONFIG.get("preimport", []):
    try:
        if _name in ("matplotlib", "matplotlib.pyplot"):
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot  # noqa: F401
        else:
            __import__(_name)
        PREIMPORTED.append(_name)
    except BaseException as _e:  # a broken package must not take the server down
        MISSING.append("%s (%s: %s)" % (_name, type(_e).__name__, _e))

import ctypes  # noqa: E402
import gc  # noqa: E402
import linecache  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
import threading  # noqa: E402
import types  # noqa: E402
import unittest  # noqa: E402
import unittest.mock  # noqa: E402,F401  (tests use it; import once, warm)
import unittest.case  # noqa: E402
import unittest.result  # noqa: E402
from inspect import iscoroutinefunction  # noqa: E402
# unittest imports these lazily (assertLogs → unittest._log, IsolatedAsyncioTestCase →
# unittest.async_case): import them now, so a test's first use does not change the
# namespaces watched below.
for _sub in ("unittest._log", "unittest.async_case", "unittest.util", "unittest.suite", "unittest.loader", "unittest.runner",
             "unittest.main", "unittest.signals"):
    try:
        __import__(_sub)
    except ImportError:
        pass

# Everything imported so far is permanent: children never collect (and so never touch,
# and copy) these objects' pages. This keeps a fork of a pandas/sklearn worker cheap.
gc.collect()
gc.freeze()

# Taken before any tested code runs: later patches of these names do not reach us.
TestCase = unittest.TestCase
AsyncTestCase = getattr(unittest, "IsolatedAsyncioTestCase", None)
RUN_SYNC = unittest.TestCase.run
RUN_ASYNC = AsyncTestCase.run if AsyncTestCase is not None else None
SkipTest = unittest.SkipTest
os_write, os_exit, os_getpid = os.write, os._exit, os.getpid
perf_counter = time.perf_counter
format_exception = traceback.format_exception
_type, _isinstance, _issubclass, _len, _str, _repr = type, isinstance, issubclass, len, str, repr
_getattr, _sorted, _dir, _callable, _vars, _list = getattr, sorted, dir, callable, vars, list

# What "unmodified unittest" means: these namespaces, by identity of every value.
WATCHED = {
    "unittest.TestCase": unittest.TestCase.__dict__,
    "unittest.case": vars(unittest.case),
    "unittest.result": vars(unittest.result),
    "unittest.TestResult": unittest.TestResult.__dict__,
    "unittest": vars(unittest),
}
if AsyncTestCase is not None:
    WATCHED["unittest.IsolatedAsyncioTestCase"] = AsyncTestCase.__dict__
import contextlib  # noqa: E402
WATCHED["threading"] = vars(threading)
WATCHED["threading.Thread"] = threading.Thread.__dict__
WATCHED["contextlib"] = vars(contextlib)
WATCHED["contextlib._GeneratorContextManager"] = contextlib._GeneratorContextManager.__dict__
_outcome_cls = getattr(unittest.case, "_Outcome", None)
if _outcome_cls is not None:
    WATCHED["unittest.case._Outcome"] = _outcome_cls.__dict__


# ---------------------------------------------------------------- JSON without json
_ESCAPES = {i: "\\u%04x" % i for i in range(32)}
_ESCAPES.update({ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"})


def safe_str(o, limit=2000):
    try:
        s = _str(o)
        if _type(s) is not str:
            s = "<unprintable>"
    except BaseException:
        s = "<unprintable %s>" % _type(o).__name__
    return s[:limit]


def clip(text, cap):
    """Keep head and tail of long text."""
    if _len(text) <= cap:
        return text
    half = cap // 2
    return text[:half] + "\n... [%d characters cut] ...\n" % (_len(text) - 2 * half) + text[-half:]


UNITTEST_DIR = os.path.dirname(unittest.__file__)
extract_tb, format_list, format_exception_only = traceback.extract_tb, traceback.format_list, traceback.format_exception_only


def describe(exc_info, cap):
    """Message and traceback of a failure, without unittest's and the harness's own frames
    (as unittest's own runner shows them)."""
    etype, value, tb = exc_info
    name = etype.__name__ if _isinstance(etype, type) else safe_str(etype)
    try:
        frames = [f for f in extract_tb(tb) if not f.filename.startswith(UNITTEST_DIR) and f.filename != "<string>"]
        text = "Traceback (most recent call last):\n" + "".join(format_list(frames)) + "".join(format_exception_only(etype, value))
    except BaseException:
        text = name + ": " + safe_str(value)
    try:  # free the failing frames' locals (a memory bomb's data) now, not at exit
        traceback.clear_frames(tb)
    except BaseException:
        pass
    module = getattr(etype, "__module__", "") if _isinstance(etype, type) else ""
    qn = getattr(etype, "__qualname__", None) or name
    qn = qn if _type(qn) is str else name
    qualified = qn if module in ("builtins", "") or _type(module) is not str else module + "." + qn
    return {"type": name, "message": clip(name + ": " + safe_str(value), 2000), "traceback": clip(text, cap),
            "memory_error": _isinstance(value, MemoryError) or name == "MemoryError", "text": clip(safe_str(value), 2000),
            "qualified": qualified, "skip": _isinstance(value, unittest.SkipTest)}


def plain_failure(d, _type=type, _str=str, _dict=dict):
    """A described failure as it reaches the main thread: only exact built-in strings and
    booleans survive (the description was made on the check thread, by code tested code
    may have meddled with; its strings can lie, its kinds cannot)."""
    out = {"type": "?", "message": "<unprintable>", "traceback": "", "text": "<unprintable>", "qualified": "?"}
    if _type(d) is not _dict:
        return dict(out, memory_error=False, skip=False)
    for k in ("type", "message", "traceback", "text", "qualified"):
        v = d.get(k)
        if _type(v) is _str:
            out[k] = v
    out["memory_error"] = d.get("memory_error") is True
    out["skip"] = d.get("skip") is True
    return out


# ---------------------------------------------------------------- the check child
# get_objects and get_referrers can find anything, the harness's frames included;
# get_referents only walks down from objects the caller already holds (pandas uses it).
BLOCKED_EVENTS = {"gc.get_objects", "gc.get_referrers", "sys._current_frames"}


def audit(event, args, _blocked=frozenset(BLOCKED_EVENTS), _len=len, _type=type, _fn=types.FunctionType,
          _error=RuntimeError, _attrs=("__code__", "__defaults__", "__kwdefaults__"), _harness=globals()):
    """Installed in the check child before tested code runs; audit hooks cannot be removed.
    Blocks walking the heap to find the harness, and swapping the code or defaults of the
    harness's own functions (other functions are left alone: namedtuple sets defaults)."""
    if event in _blocked:
        raise _error("blocked by the unitcoder sandbox: " + event)
    if event == "object.__setattr__" and _len(args) >= 2 and args[1] in _attrs and _type(args[0]) is _fn \
            and args[0].__globals__ is _harness:
        raise _error("blocked by the unitcoder sandbox: changing the harness's " + args[1])


class Result:
    """Receives unittest's callbacks for one test. Pass means: addSuccess and nothing else.
    Slots: tested code that finds this object cannot replace its methods on the instance."""

    __slots__ = ("events", "shouldStop", "failfast", "buffer", "tb_locals", "collectedDurations")

    def __init__(self):
        self.events = []
        self.shouldStop = False
        self.failfast = False
        self.buffer = False
        self.tb_locals = False
        self.collectedDurations = []

    def startTest(self, test):
        pass

    def stopTest(self, test):
        pass

    def addSuccess(self, test):
        self.events.append(("pass", None))

    def addFailure(self, test, err):
        self.events.append(("fail", err))

    def addError(self, test, err):
        self.events.append(("error", err))

    def addSkip(self, test, reason):
        self.events.append(("skip", reason))

    def addExpectedFailure(self, test, err):
        self.events.append(("expected_failure", err))

    def addUnexpectedSuccess(self, test):
        self.events.append(("unexpected_success", None))

    def addSubTest(self, test, subtest, err):
        if err is not None:
            failure = _isinstance(err[1], _getattr(test, "failureException", AssertionError))
            self.events.append(("fail" if failure else "error", err))

    def addDuration(self, test, elapsed):
        pass


WATCHED["harness.Result"] = Result.__dict__


def watch_module_classes(watched):
    """The class dictionaries of unittest's modules too (`_AssertRaisesContext`, `_Outcome`,
    `TestSuite`, `TestLoader`, ...): swapping a method there changes what a test means."""
    import unittest.mock
    for mod_name in ("unittest.case", "unittest.result", "unittest.util", "unittest.suite", "unittest.loader", "unittest.async_case",
                     "unittest._log", "contextlib"):  # not unittest.mock: it sets globals lazily (mock_open)
        mod = sys.modules.get(mod_name)
        if mod is None:
            continue
        watched.setdefault(mod_name, vars(mod))
        for k, v in list(vars(mod).items()):
            if isinstance(v, type) and v.__dict__.get("__module__") == mod_name:
                watched.setdefault(mod_name + "." + k, v.__dict__)


watch_module_classes(WATCHED)
# Assertion helpers tests use, and modules they rely on, by identity of their namespaces
# (where the worker imported them).
for _name in ("numpy.testing", "pandas.testing", "re", "collections", "functools"):
    _parent = _name.split(".")[0]
    if _parent != _name and _parent in sys.modules and _name not in sys.modules:
        try:  # numpy and pandas load their testing modules lazily: load them once here
            __import__(_name)
        except BaseException:
            pass
    if _name in sys.modules:
        WATCHED.setdefault(_name, vars(sys.modules[_name]))
from operator import is_ as operator_is  # noqa: E402
_fn_code = types.FunctionType.__dict__["__code__"].__get__
_fn_defaults = types.FunctionType.__dict__["__defaults__"].__get__
_fn_kwdefaults = types.FunctionType.__dict__["__kwdefaults__"].__get__
_fn_closure = types.FunctionType.__dict__["__closure__"].__get__
_cell_contents = types.CellType.__dict__["cell_contents"].__get__


def function_state(fn, _code=_fn_code, _defaults=_fn_defaults, _kwdefaults=_fn_kwdefaults, _closure=_fn_closure, _cell=_cell_contents):
    """What a function does, by value: its code, defaults and closure cells' contents (a
    function keeps its identity when any of these is swapped)."""
    cells = _closure(fn) or ()
    contents = []
    for c in cells:
        try:
            contents.append(id(_cell(c)))
        except ValueError:  # an empty cell
            contents.append(None)
    return (id(_code(fn)), id(_defaults(fn)), id(_kwdefaults(fn)), tuple(contents))


def build_snapshot(watched, _fn=types.FunctionType):
    """Taken in the worker before any check: every watched namespace by identity of its
    values, and every function in them by value."""
    snapshot = []
    for name, ns in watched.items():
        values = {k: v for k, v in dict(ns).items() if k != "__warningregistry__"}
        functions = {k: (v, function_state(v)) for k, v in values.items() if type(v) is _fn}
        for k, v in values.items():  # staticmethod / classmethod wrappers hold functions too
            inner = getattr(v, "__func__", None) if type(v) in (staticmethod, classmethod) else None
            if type(inner) is _fn:
                functions[k + ".__func__"] = (inner, function_state(inner))
        snapshot.append((name, ns, values, functions))
    modules = {name: sys.modules.get(name) for name in ("unittest", "unittest.case", "unittest.result", "unittest.mock", "threading", "contextlib")}
    return snapshot, modules


SNAPSHOT = build_snapshot(WATCHED)

import _thread  # noqa: E402


def in_thread(target, args, cap, stack_bytes=64 * 1024 * 1024, _start=_thread.start_new_thread, _lock=_thread.allocate_lock,
              _stack_size=_thread.stack_size, _sys=sys, _describe=describe, _plain=plain_failure, _type=type, _tuple=tuple, _len=len):
    """Run tested code on its own thread, and everything that may call into objects it made
    (formatting its exceptions included) there too: the main thread, which holds the
    reporter and the judge, never runs a line of tested code. The thread is a bare
    `_thread` one, waited for on a C lock — no `threading` internals tested code could swap
    are called here. Returns ("ok", value) or ("raised", a plain failure dict)."""
    _stack_size(stack_bytes)
    done = _lock()
    done.acquire()
    box = []

    def trampoline():
        try:
            try:
                box.append(("ok", target(*args)))
            except BaseException:
                box.append(("raised", _describe(_sys.exc_info(), cap)))
        except BaseException:
            pass
        finally:
            done.release()

    _start(trampoline, ())
    done.acquire()
    if box and _type(box[0]) is _tuple and _len(box[0]) == 2:
        status, value = box[0]
        if status == "raised":
            return ("raised", _plain(value))
        return ("ok", value)
    return ("raised", _plain({"type": "RuntimeError", "message": "RuntimeError: no result from the test thread"}))


def exec_phase(source, path, namespace, _compile=compile, _exec=exec, _type=type, _str=str):
    _exec(_compile(source, path, "exec", dont_inherit=True) if _type(source) is _str else source, namespace)


TEST_FLAGS = ("__unittest_skip__", "__unittest_skip_why__", "__unittest_expecting_failure__")


def run_one(run, cls, name, result, cap, _getattr=getattr, _setattr=setattr, _hasattr=hasattr, _describe=describe, _safe_str=safe_str,
            _type=type, _tuple=tuple, _len=len, _flags=TEST_FLAGS):
    """One test, on the check thread. The test method is wrapped so that only a method that
    ran to its end counts: unittest itself takes `raise _ShouldStop()` (or a swapped
    failureException) as success. Returns the outcome events as plain data."""
    test = cls(name)
    method = _getattr(test, name)
    completed = []
    if iscoroutinefunction(method):
        async def wrapped(*a, **k):
            value = await method(*a, **k)
            completed.append(True)
            return value
    else:
        def wrapped(*a, **k):
            value = method(*a, **k)
            completed.append(True)
            return value
    for flag in _flags:
        if _hasattr(method, flag):
            _setattr(wrapped, flag, _getattr(method, flag))
    _setattr(test, name, wrapped)
    events = result.events
    run(test, result)
    if result.events is not events:
        return None
    out = []
    for e in events:
        if _type(e) is not _tuple or _len(e) != 2:
            out.append(("tamper", None))
            continue
        kind, detail = e
        if kind in ("fail", "error", "expected_failure") and detail is not None:
            out.append((kind, _describe(detail, cap)))
        elif kind == "skip":
            out.append((kind, _safe_str(detail)))
        else:
            out.append((kind, None))
    if not completed and [e for e in out if e[0] == "pass"] and _len(out) == 1:
        out.append(("error", {"message": "the test method did not run to its end, yet unittest counted it a success", "traceback": ""}))
    return out


def call(fn):
    return fn()


def call_attr(obj, name, _getattr=getattr):
    return _getattr(obj, name)()


def make_judge(built, cap, _dict=dict, _any=any, _len=len, _list=list, _type=type, _min=min, _str=str,
               _isinstance=isinstance, _describe=describe, _safe_str=safe_str, _state=function_state, _modules=sys.modules):
    """Closures that decide outcomes, built before tested code runs. They use only their
    default arguments and methods of built-in types, so nothing tested code can rebind
    (module globals, builtins) changes what they conclude."""
    worker_snapshot, modules = built
    # Namespaces by identity, taken here in the child: a fork rebinds some module data
    # (threading's), so the worker's copy would not match. Functions by value come from the
    # worker, where no tested code ever ran.
    snapshot = [(name, ns, {k: v for k, v in _dict(ns).items() if k != "__warningregistry__"}, functions)
                for name, ns, _, functions in worker_snapshot]
    ranks = (("error", 0), ("fail", 1), ("tamper", 1), ("unexpected_success", 2), ("expected_failure", 3), ("skip", 4), ("pass", 5))

    # `warnings` adds `__warningregistry__` to the globals of the module a warning is
    # attributed to; that is bookkeeping, not tampering.
    ignored = ("__warningregistry__",)
    # Display settings a test module may set on TestCase (`TestCase.maxDiff = None`):
    # plain data that changes messages, never outcomes.
    settings = {"unittest.TestCase": ("maxDiff", "longMessage"), "unittest.case.TestCase": ("maxDiff", "longMessage")}
    plain = (type(None), int, bool)
    # Flat, for speed (mutant runs check once per mutant): every watched function with the
    # ids of its code, defaults and keyword defaults, and its closure cells' contents.
    flat = [(name + "." + k, fn, state[0], state[1], state[2], state[3])
            for name, _, _, functions in snapshot for k, (fn, state) in functions.items()]
    spaces = [(name, ns, before, _list(before.keys()), _list(before.values()), settings.get(name, ())) for name, ns, before, _ in snapshot]

    def tampered(_id=id, _code=_fn_code, _defaults=_fn_defaults, _kwdefaults=_fn_kwdefaults, _map=map, _all=all,
                 _is=operator_is, _missing=object()):
        changed = [name for name, mod in modules.items() if _modules.get(name) is not mod]
        for label, fn, code, defaults, kwdefaults, cells in flat:
            if _id(_code(fn)) != code or _id(_defaults(fn)) != defaults or _id(_kwdefaults(fn)) != kwdefaults \
                    or (cells and _state(fn)[3] != cells):
                changed.append(label + " (code, defaults or closure)")
        for name, ns, before, keys, values, shown in spaces:
            now = _dict(ns)
            for k in ignored:
                now.pop(k, None)
            for k in shown:
                if k in now and _type(now[k]) in plain:
                    now[k] = before.get(k)
            if _len(now) != _len(keys) or not _all(_map(_is, _map(now.get, keys, [_missing] * _len(keys)), values)):
                changed.append(name)
        return changed

    def outcome(events, _plain=plain_failure):
        """The test's outcome from the plain events the check thread returned."""
        if _type(events) is not _list:
            return {"kind": "tamper", "message": "the result object was replaced"}
        if not events:
            return {"kind": "error", "message": "no outcome was recorded for this test"}
        rank = _dict(ranks)
        for e in events:
            if _type(e) is not tuple or _len(e) != 2 or _type(e[0]) is not _str or e[0] not in rank:
                return {"kind": "tamper", "message": "the result object holds foreign entries"}
        kind, detail = _min(events, key=lambda e: rank[e[0]])
        if kind in ("fail", "error", "expected_failure") and detail is not None:
            d = _plain(detail)
            return {"kind": kind, "message": d["message"], "traceback": d["traceback"], "memory_error": d["memory_error"]}
        if kind == "skip":
            return {"kind": "skip", "message": detail if _type(detail) is _str else "<unprintable>"}
        return {"kind": kind, "message": ""}

    return tampered, outcome


def make_encoder(_type=type, _int_repr=int.__repr__, _float_repr=float.__repr__, _translate=str.translate,
                 _items=dict.items, _str=str, _join=str.join, _escapes=dict(_ESCAPES), _safe_str=safe_str):
    """JSON encoder from built-in type methods only (not the json module, which tested code
    could patch)."""
    def enc(o):
        t = _type(o)
        if o is None:
            return "null"
        if o is True:
            return "true"
        if o is False:
            return "false"
        if t is int:
            return _int_repr(o)
        if t is float:
            return _float_repr(o) if o == o and o not in (float("inf"), float("-inf")) else "null"
        if t is str:
            return '"' + _translate(o, _escapes) + '"'
        if t is list or t is tuple:
            return "[" + _join(",", [enc(x) for x in o]) + "]"
        if t is dict:
            return "{" + _join(",", [enc(_str(k)) + ":" + enc(v) for k, v in _items(o)]) + "}"
        return enc(_safe_str(o))

    return enc


# Attribute access that cannot dispatch to tested code (a metaclass `__getattribute__`,
# `__dir__` or a `__name__` property): the built-in descriptors of `type`, called directly.
type_dict = type.__dict__["__dict__"].__get__
type_name = type.__dict__["__name__"].__get__
type_mro = type.__dict__["__mro__"].__get__


def test_names(cls, _type_mro=type_mro, _type_dict=type_dict, _type=type, _str=str, _callable=callable, _sorted=sorted):
    """`test*` names of a class as unittest's loader sees them, read from the class
    dictionaries along the MRO (no `dir`, no `getattr` on the class)."""
    names = set()
    for klass in _type_mro(cls):
        for k, v in _type_dict(klass).items():
            if _type(k) is _str and k.startswith("test") and _callable(v):
                names.add(k)
    return _sorted(names)

# ---------------------------------------------------------------- coverage
# Which executable lines of the function under test ran during the tests. The targets are
# the entry point's code object and every code object nested in it, taken from the
# program as compiled here (not from the namespace, which tested code controls).
# 3.12+: sys.monitoring LINE events enabled on those code objects only, each line disabled
# after its first hit, so nothing else slows down. 3.10/3.11 (a trace function there slows
# every line of every library by ~2x): this compile of the program gets a call to a hit
# recorder before each statement of the function; the recorder counts a line only when
# its caller is one of the target code objects, so tests that call it count nothing. Only
# the coverage run uses that compile. A test that removes or replaces the tracer or the
# recorder makes coverage unknown (`intact` false), never higher.
CodeType = types.CodeType
_monitoring = getattr(sys, "monitoring", None)
COVERAGE_TOOL = 4
NOT_DEFS = ("<lambda>", "<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>")


def coverage_targets(module_code, entry):
    """The entry point's code objects (nested included) and their executable lines."""
    roots = [c for c in module_code.co_consts if _type(c) is CodeType and (c.co_name == entry or not entry)]
    targets, lines, todo = [], set(), _list(roots)
    while todo:
        co = todo.pop()
        targets.append(co)
        own = {line for _, _, line in co.co_lines() if line is not None}
        if co.co_name not in NOT_DEFS and _len(own) > 1:
            own.discard(co.co_firstlineno)  # the def line's RESUME: the call, not a line of the body
        lines |= own
        todo.extend(c for c in co.co_consts if _type(c) is CodeType)
    return targets, lines


def instrument(source, path, entry, hit_name):
    """The program compiled with `hit_name(line)` before each statement of the entry
    point's body (nested blocks and functions included; docstrings, `global` and
    `nonlocal` left alone); also the statement lines."""
    tree = ast.parse(source, path)
    lines = set()

    def body(stmts, owner_is_def):
        out = []
        for i, stmt in enumerate(stmts):
            docstring = owner_is_def and i == 0 and _isinstance(stmt, ast.Expr) and _isinstance(stmt.value, ast.Constant) \
                and _type(stmt.value.value) is str
            if not docstring and not _isinstance(stmt, (ast.Global, ast.Nonlocal)):
                call = ast.Expr(ast.Call(ast.Name(hit_name, ast.Load()), [ast.Constant(stmt.lineno)], []))
                out.append(ast.copy_location(call, stmt))
                lines.add(stmt.lineno)
            walk(stmt)
            out.append(stmt)
        return out

    def walk(node):
        is_def = _isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(node, field, None)
            if _type(stmts) is list and stmts and _isinstance(stmts[0], ast.stmt):
                setattr(node, field, body(stmts, is_def and field == "body"))
        for handler in getattr(node, "handlers", ()) or ():
            handler.body = body(handler.body, False)
        for case in getattr(node, "cases", ()) or ():
            case.body = body(case.body, False)

    for node in tree.body:
        if _isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (node.name == entry or not entry):
            node.body = body(node.body, True)
    ast.fix_missing_locations(tree)
    return compile(tree, path, "exec", dont_inherit=True), lines


class Coverage:
    """Line hits of the target code objects; `start`/`stop` wrap each test on the check
    thread."""

    __slots__ = ("targets", "ids", "lines", "hits", "intact", "method", "namespace", "hit_name", "recorder")

    def __init__(self, targets, lines, namespace=None, hit_name=None):
        self.targets, self.lines, self.hits, self.intact = targets, lines, set(), True
        self.ids = frozenset(id(c) for c in targets)
        self.namespace, self.hit_name, self.recorder = namespace, hit_name, None
        if hit_name is not None:
            self.method = "instrumentation"

            # A line already counted costs one set lookup; a new one is checked against its
            # caller's code object before it counts.
            def hit(line, _getframe=sys._getframe, _id=id, _ids=self.ids, _hits=self.hits, _add=self.hits.add):
                if line not in _hits and _id(_getframe(1).f_code) in _ids:
                    _add(line)
            self.recorder = hit
            namespace[hit_name] = hit
            return
        self.method = "monitoring"
        mon = _monitoring
        try:
            mon.use_tool_id(COVERAGE_TOOL, "unitcoder")
        except ValueError:
            self.intact = False
            return
        add, disable = self.hits.add, mon.DISABLE

        def on_line(code, line, _add=add, _disable=disable):
            _add(line)
            return _disable
        mon.register_callback(COVERAGE_TOOL, mon.events.LINE, on_line)
        for co in targets:
            mon.set_local_events(COVERAGE_TOOL, co, mon.events.LINE)

    def start(self):
        pass

    def stop(self):
        if self.recorder is not None:
            if self.namespace.get(self.hit_name) is not self.recorder:
                self.intact = False
            return
        try:
            if _monitoring.get_tool(COVERAGE_TOOL) != "unitcoder":
                self.intact = False
        except BaseException:
            self.intact = False

    def report(self, _sorted=sorted):
        hit = self.hits & self.lines
        return {"method": self.method, "intact": self.intact, "lines": _sorted(self.lines), "hit": _sorted(hit)}


def measure(source, path, entry, namespace):
    """(code object to run, Coverage) for a coverage run."""
    if _monitoring is not None:
        compiled = compile(source, path, "exec", dont_inherit=True)
        return compiled, Coverage(*coverage_targets(compiled, entry))
    # One leading underscore: a `__name` inside a class body would be mangled.
    hit_name = "_unitcoder_line_" + os.urandom(6).hex()
    compiled, lines = instrument(source, path, entry, hit_name)
    targets, _ = coverage_targets(compiled, entry)
    return compiled, Coverage(targets, lines, namespace, hit_name)


# ---------------------------------------------------------------- calls
# Did each test make the function under test run? Counted on the entry point's own code
# object (from the harness's compile of the program, not the namespace): 3.12+ by a
# sys.monitoring PY_START event on that code object only; 3.10/3.11 by a recorder call
# compiled in at the top of its body (after the docstring). Either counts only when the
# frame that started is that code object's, so calling the recorder from a test counts
# nothing; a test that mocks or replaces the function never runs its code and counts
# nothing either. Replacing or removing the recorder can only lose counts (the module is
# then judged not to call the function), never add them.
CALLS_TOOL = 5


class Calls:
    __slots__ = ("box", "ok")

    def __init__(self, box, ok):
        self.box, self.ok = box, ok

    def count(self):
        return self.box[0]


def watch_calls(source, path, entry, namespace):
    """(code object to run, Calls) for a verdict run that records calls of `entry`."""
    box = [0]
    if _monitoring is not None:
        compiled = compile(source, path, "exec", dont_inherit=True)
        target = next((c for c in compiled.co_consts if _type(c) is CodeType and c.co_name == entry), None)
        if target is None:
            return compiled, Calls(box, False)
        mon = _monitoring
        try:
            mon.use_tool_id(CALLS_TOOL, "unitcoder-calls")
        except ValueError:
            return compiled, Calls(box, False)

        def on_start(code, offset, _getframe=sys._getframe, _t=target, _b=box):
            if code is _t and _getframe(1).f_code is _t:
                _b[0] += 1
        mon.register_callback(CALLS_TOOL, mon.events.PY_START, on_start)
        mon.set_local_events(CALLS_TOOL, target, mon.events.PY_START)
        return compiled, Calls(box, True)
    name = "_unitcoder_call_" + os.urandom(6).hex()
    tree = ast.parse(source, path)
    found = False
    for node in tree.body:
        if _isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry:
            first = node.body[0]
            at = 1 if _isinstance(first, ast.Expr) and _isinstance(first.value, ast.Constant) and _type(first.value.value) is str else 0
            # Before a `global`/`nonlocal` too: a call of another name may precede them.
            anchor = node.body[at] if at < _len(node.body) else first
            call = ast.copy_location(ast.Expr(ast.Call(ast.Name(name, ast.Load()), [], [])), anchor)
            node.body.insert(at, call)
            found = True
    ast.fix_missing_locations(tree)
    compiled = compile(tree, path, "exec", dont_inherit=True)
    target = next((c for c in compiled.co_consts if _type(c) is CodeType and c.co_name == entry), None)
    if not found or target is None:
        return compile(source, path, "exec", dont_inherit=True), Calls(box, False)

    def record(_getframe=sys._getframe, _t=target, _b=box):
        if _getframe(1).f_code is _t:
            _b[0] += 1
    namespace[name] = record
    return compiled, Calls(box, True)


def traced(coverage, fn, args):
    """On the check thread: `fn(*args)` with the coverage tracer on."""
    coverage.start()
    try:
        return fn(*args)
    finally:
        coverage.stop()


def run_tests(job, send, workdir, cap, tampered, outcome, run_sync, run_async, test_case, async_case, failfast=False,
              _describe=describe, _sorted=sorted, _callable=callable, _isinstance=isinstance, _issubclass=issubclass,
              _list=list, _dict=dict, _type=type, _str=str, _in_thread=in_thread, _exec_phase=exec_phase, _run_one=run_one,
              _call=call, _call_attr=call_attr, _Result=Result, _type_dict=type_dict, _type_name=type_name, _test_names=test_names):
    """Run the program and its test module; report what happened. Everything tested code
    made is touched here only through type-level built-ins; anything that may run tested
    code (importing, collecting attributes, formatting exceptions, class fixtures, tests)
    runs on the check thread (`in_thread`)."""
    module = types.ModuleType("__test__")
    module.__file__ = os.path.join(workdir, "__test__.py")
    sys.modules["__test__"] = module
    namespace = module.__dict__
    coverage = compiled = calls = None
    for phase, field, filename in (("code", "code", "solution.py"), ("tests", "tests", "test_solution.py")):
        path = os.path.join(workdir, filename)
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as fh:
            # Mutant runs keep the original program in the file: tests that read the
            # source (inspect.getsource, open) see what they would see on the original.
            fh.write(job.get("file_" + field) or job[field])
        if phase == "code" and job.get("coverage") is not None:
            # The program runs from this very code object, so the targets are its own.
            try:
                compiled, coverage = measure(job[field], path, job["coverage"], namespace)
            except BaseException as e:
                send("coverage", {"error": "%s: %s" % (_type(e).__name__, safe_str(e, 200))})
        elif phase == "code" and job.get("calls"):
            try:
                compiled, calls = watch_calls(job[field], path, job["calls"], namespace)
            except BaseException as e:
                send("calls", {"error": "%s: %s" % (_type(e).__name__, safe_str(e, 200))})
        source = compiled if phase == "code" and compiled is not None else job[field]
        status, value = _in_thread(_exec_phase, (source, path, namespace), cap)
        if status == "raised":
            value["phase"] = phase
            send("phase_error", value)
            return
        if phase == "code" and calls is not None:
            calls.box[0] = 0  # calls made by the program's own import are not the tests'
    # In mutant runs (failfast) the caller checks integrity once per mutant instead.
    changed = [] if failfast else tampered()
    if changed:
        send("tamper", {"when": "import", "changed": changed})
        return
    classes = []
    for v in _list(_dict.values(namespace)):
        if _isinstance(v, _type) and _issubclass(v, test_case):
            m = _type_dict(v).get("__module__")
            if _type(m) is _str and m == "__test__":
                classes.append(v)
    classes = _sorted(classes, key=_type_name)
    plan = [(cls, _test_names(cls)) for cls in classes]
    send("found", {"tests": [_type_name(cls) + "." + n for cls, names in plan for n in names]})
    set_up_module = _dict.get(namespace, "setUpModule")
    if _callable(set_up_module):
        status, value = _in_thread(_call, (set_up_module,), cap)
        if status == "raised":
            value["phase"] = "setUpModule"
            send("phase_error", value)
            return
    if calls is not None:
        send("calls", {"watched": calls.ok})
    # Calls at import of the tests or in setUpModule count for every test (results computed
    # once), those in setUpClass for the class's tests.
    module_called = calls is not None and calls.count() > 0
    base_names = _list(test_case.__dict__)
    for cls, names in plan:
        class_name = _type_name(cls)
        class_dict_before = _dict(_type_dict(cls))
        run = run_async if async_case is not None and _issubclass(cls, async_case) else run_sync
        class_failure = None
        class_start = calls.count() if calls is not None else 0
        status, value = _in_thread(_call_attr, (cls, "setUpClass"), cap)
        class_called = calls is not None and calls.count() > class_start
        if status == "raised":
            if value["skip"]:
                class_failure = {"kind": "skip", "message": "setUpClass skipped: " + value["text"]}
            else:
                class_failure = {"kind": "error", "message": "setUpClass: " + value["message"], "traceback": value["traceback"],
                                 "memory_error": value["memory_error"]}
        for name in names:
            test_id = class_name + "." + name
            if class_failure is not None:
                failed = _dict(class_failure, test=test_id)
                if calls is not None:
                    failed["called"] = module_called or class_called
                send("test", failed)
                if failfast:
                    return
                continue
            result = _Result()
            test_start = calls.count() if calls is not None else 0
            if coverage is not None:
                status, value = _in_thread(traced, (coverage, _run_one, (run, cls, name, result, cap)), cap)
            else:
                status, value = _in_thread(_run_one, (run, cls, name, result, cap), cap)
            if status == "raised":
                events = [("error", value)]
            elif value is None:
                events = None  # the result object was replaced
            else:
                events = value
            verdict = outcome(events)
            changed = [] if failfast else tampered()
            now = _type_dict(cls)
            redefined = [k for k in base_names if k in now and now[k] is not class_dict_before.get(k)]
            if changed or redefined:
                verdict = {"kind": "tamper", "message": "the unittest framework was modified during the test: "
                           + ", ".join(changed + [class_name + "." + k for k in redefined])}
            verdict["test"] = test_id
            if calls is not None:
                verdict["called"] = module_called or class_called or calls.count() > test_start
            send("test", verdict)
            if failfast and verdict["kind"] != "pass":
                return
            result.events.clear() if _type(result.events) is _list else None
            result = value = events = None
        if class_failure is None:
            status, value = _in_thread(_call_attr, (cls, "tearDownClass"), cap)
            if status == "raised":
                send("class_error", {"class": class_name, "message": "tearDownClass: " + value["message"]})
    tear_down_module = _dict.get(namespace, "tearDownModule")
    if _callable(tear_down_module):
        status, value = _in_thread(_call, (tear_down_module,), cap)
        if status == "raised":
            send("class_error", {"class": "<module>", "message": "tearDownModule: " + value["message"]})
    if coverage is not None:
        send("coverage", coverage.report())


def drop_capabilities():
    """Root that stays root (no uid to drop to) keeps no capabilities."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
        for cap in range(64):
            libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP

        class Header(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

        class Data(ctypes.Structure):
            _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

        header = Header(0x20080522, 0)
        data = (Data * 2)()
        libc.capset(ctypes.byref(header), ctypes.byref(data))
    except BaseException:
        pass


# ---------------------------------------------------------------- seccomp
# System calls no function or unit test needs, denied (EPERM) in every check child: kernel
# keyrings (keys outlive the check in the host kernel), tracing and reading other
# processes' memory, mounts and new namespaces (the ways out of the sandbox's own), BPF and
# perf, module and kexec loading. clone3 answers ENOSYS, so libc falls back to clone, whose
# flags can be checked; a clone asking for a new namespace is denied. A foreign syscall ABI
# (i386 or x32 entry points) kills the process: it would bypass the numbers below.
SECCOMP_DENY = {
    "x86_64": (0xC000003E, [101, 310, 311, 165, 166, 155, 167, 168, 169, 175, 176, 313, 246, 320, 248, 249, 250, 272, 308, 321, 298, 323,
                            304, 172, 173, 163, 103, 179, 428, 429, 430, 431, 432, 433, 442], 56, 435),
    "aarch64": (0xC00000B7, [117, 270, 271, 40, 39, 41, 224, 225, 142, 105, 106, 273, 104, 294, 217, 218, 219, 97, 268, 280, 241, 282,
                             265, 89, 116, 60, 428, 429, 430, 431, 432, 433, 442], 220, 435),
}
CLONE_NEW_NAMESPACES = 0x7E020080  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME


def seccomp_program():
    """The filter as a list of (code, jt, jf, k) BPF instructions, or None for an arch we
    have no table for."""
    arch = os.uname().machine
    if arch not in SECCOMP_DENY:
        return None
    audit_arch, deny, clone_nr, clone3_nr = SECCOMP_DENY[arch]
    ld, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06
    allow, kill, eperm, enosys = 0x7FFF0000, 0x80000000, 0x00050000 | 1, 0x00050000 | 38
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, audit_arch), (ret, 0, 0, kill), (ld, 0, 0, 0)]
    if arch == "x86_64":
        prog += [(0x35, 0, 1, 0x40000000), (ret, 0, 0, kill)]  # jge: x32 entry points
    prog += [(jeq, 0, 1, clone3_nr), (ret, 0, 0, enosys)]
    prog += [(jeq, 0, 3, clone_nr), (ld, 0, 0, 16), (jset, 0, 1, CLONE_NEW_NAMESPACES), (ret, 0, 0, eperm)]
    # After the clone block, the accumulator may hold the flags: reload the number.
    prog += [(ld, 0, 0, 0)]
    for nr in deny:
        prog += [(jeq, 0, 1, nr), (ret, 0, 0, eperm)]
    prog += [(ret, 0, 0, allow)]
    return prog


def install_seccomp():
    prog = seccomp_program()
    if prog is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)

    class Instruction(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(Instruction))]

    filters = (Instruction * len(prog))(*[Instruction(*i) for i in prog])
    program = Program(len(prog), filters)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")
    if libc.prctl(22, 2, ctypes.byref(program), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "installing the seccomp filter failed")


def enter_child(job, workdir, out_w, rep_w):
    """Set up a forked child (limits, environment, identity); returns its report fd."""
    try:
        setup_child(job, workdir, out_w, rep_w)
    except BaseException as e:  # our failure, not the tested code's
        os.write(rep_w, job["nonce"].encode() + b"\tsetup_error\t" + json.dumps({"message": "%s: %s" % (type(e).__name__, e)}).encode() + b"\n")
        os._exit(71)
    report_fd = os.dup(rep_w)
    os.close(rep_w)
    return report_fd


def child_main(job, workdir, out_w, rep_w, cap):
    run_child(job, workdir, enter_child(job, workdir, out_w, rep_w), cap)


def setup_child(job, workdir, out_w, rep_w):
    os.setsid()
    os.dup2(_devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    keep = sorted({rep_w, _devnull})
    os.closerange(3, keep[0])
    for lo, hi in zip(keep, keep[1:] + [65536]):
        os.closerange(lo + 1, hi)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGALRM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes fail with an error instead
    limits = job["limits"]
    vm_now = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                vm_now = int(line.split()[1]) * 1024
    mem = vm_now + limits["memory_mb"] * 1024 * 1024
    cpu = int(job.get("cpu_limit") or job["timeout"]) + 2
    for res, value in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_CORE, 0),
                       (resource.RLIMIT_FSIZE, limits["fsize_mb"] * 1024 * 1024),
                       (resource.RLIMIT_NOFILE, limits["nofile"]), (resource.RLIMIT_NPROC, limits["nproc"])):
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            pass
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update({
        # The interpreter's own directory first, as in an activated venv: tests that run
        # `python` or a package's console script find this environment's.
        "PATH": os.path.dirname(sys.executable) + ":/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8", "MPLBACKEND": "Agg", "MPLCONFIGDIR": workdir, "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    tempfile.tempdir = workdir
    # Every check is a fork of the same worker: `random` reseeds itself after fork, numpy's
    # global generator does not. Fresh entropy per check, as in a fresh process.
    np_random = sys.modules.get("numpy.random")
    if np_random is not None:
        try:
            np_random.seed()
        except BaseException:
            pass
    if CONFIG.get("uid") is not None:
        os.setgroups([])
        os.setgid(CONFIG["gid"])
        os.setuid(CONFIG["uid"])
    elif os.geteuid() == 0:
        drop_capabilities()
    if CONFIG.get("seccomp"):
        install_seccomp()


def run_child(job, workdir, report_fd, cap):
    prefix = job["nonce"].encode() + b"\t"
    tampered, outcome = make_judge(SNAPSHOT, cap)
    enc = make_encoder()

    def send(kind, payload, _w=os_write, _fd=report_fd, _p=prefix, _enc=enc):
        data = _p + kind.encode() + b"\t" + _enc(payload).encode("utf-8", "replace") + b"\n"
        while data:
            data = data[_w(_fd, data):]

    job_fields = {k: job.get(k) for k in ("code", "tests", "coverage", "calls", "file_code")}
    del job
    try:
        sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False, buffering=1)
        sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False, buffering=1)
    except BaseException:
        pass
    finish = os_exit
    sys.addaudithook(audit)
    run_tests(job_fields, send, workdir, cap, tampered, outcome, RUN_SYNC, RUN_ASYNC, TestCase, AsyncTestCase)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    send("done", {})
    finish(0)



# ---------------------------------------------------------------- call jobs (case2code, consensus)
# A call job runs the program, then calls its function on inputs given as Python literal
# keyword-argument dicts. Each outcome (the return value with its type preserved, or the
# exception) goes back on the private channel, never through stdout.
import ast  # noqa: E402

# Constructors and constants an input may use besides plain literals (args literal too);
# the lists come from the supervisor (src/python/literals.rs), which checks inputs first.
SAFE_CALLS = frozenset(CONFIG.get("safe_calls", ()))
SAFE_NAMES = frozenset(CONFIG.get("safe_names", ()))
_MODULE_OF = {"np": "numpy", "pd": "pandas", "date": "datetime", "datetime": "datetime", "timedelta": "datetime",
              "Decimal": "decimal", "Fraction": "fractions", "OrderedDict": "collections", "Counter": "collections",
              "deque": "collections"}
import builtins as _builtins  # noqa: E402
import importlib  # noqa: E402


def dotted(node):
    parts = []
    while _isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not _isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def resolve(name):
    head, _, rest = name.partition(".")
    if not rest:
        if head in _MODULE_OF:
            return getattr(importlib.import_module(_MODULE_OF[head]), head)
        return getattr(_builtins, head)
    obj = importlib.import_module(_MODULE_OF.get(head, head) if head in ("np", "pd") else head)
    for part in rest.split("."):
        obj = getattr(obj, part)
    return obj


def literal(node):
    """Evaluate a literal expression: constants, containers, signed numbers, complex sums,
    and calls of the SAFE_CALLS constructors with literal arguments. Nothing else runs."""
    if _isinstance(node, ast.Constant):
        return node.value
    if _isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [literal(e) for e in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[_type(node)](items)
    if _isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("`**` in a dict literal")
        return {literal(k): literal(v) for k, v in zip(node.keys, node.values)}
    if _isinstance(node, ast.UnaryOp) and _isinstance(node.op, (ast.USub, ast.UAdd)):
        v = literal(node.operand)
        if _type(v) not in (int, float, complex):
            raise ValueError("sign on a non-number")
        return -v if _isinstance(node.op, ast.USub) else v
    if _isinstance(node, ast.BinOp) and _isinstance(node.op, (ast.Add, ast.Sub)):
        a, b = literal(node.left), literal(node.right)
        if _type(a) in (int, float) and _type(b) is complex:
            return a + b if _isinstance(node.op, ast.Add) else a - b
        raise ValueError("arithmetic is not a literal")
    if _isinstance(node, ast.Call):
        name = dotted(node.func)
        if name not in SAFE_CALLS:
            raise ValueError("call of %s is not allowed in an input" % (name or "an expression"))
        args = [literal(a) for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise ValueError("`**` in a call")
            kwargs[kw.arg] = literal(kw.value)
        return resolve(name)(*args, **kwargs)
    if _isinstance(node, (ast.Attribute, ast.Name)):
        name = dotted(node)
        if name in SAFE_NAMES:
            return resolve(name)
        raise ValueError("name %s is not a literal" % name)
    raise ValueError("%s is not a literal" % _type(node).__name__)


def parse_input(src):
    tree = ast.parse(src, mode="eval")
    if not _isinstance(tree.body, ast.Dict):
        raise ValueError("an input must be a dict literal of keyword arguments")
    kwargs = literal(tree.body)
    for k in kwargs:
        if _type(k) is not str or not k.isidentifier():
            raise ValueError("argument name %r is not an identifier" % (k,))
    return kwargs


class TooLarge(Exception):
    pass


def make_typed(budget_nodes=2000000, _type=type, _repr=repr, _int_repr=int.__repr__, _float_repr=float.__repr__,
               _len=len, _sorted=sorted, _str=str, _list=list, _items=dict.items, _isinstance=isinstance,
               _getattr=getattr, _safe_str=safe_str, _TooLarge=TooLarge):
    """A typed, canonical encoding of a return value: `[tag, ...]` lists that keep int vs
    str vs float vs tuple apart, with numpy and pandas values encoded by dtype, shape and
    elements. Sets and dicts are sorted, so equal values encode equally."""
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    ndarray = _getattr(np, "ndarray", None)
    np_generic = _getattr(np, "generic", None)
    DataFrame = _getattr(pd, "DataFrame", None)
    Series = _getattr(pd, "Series", None)
    Index = _getattr(pd, "Index", None)
    enc = make_encoder()

    def qualname(t):
        mod = _getattr(t, "__module__", "") or ""
        name = _getattr(t, "__qualname__", None) or _getattr(t, "__name__", "?")
        return name if mod == "builtins" else mod + "." + name

    def safe_repr(o, limit=1000):
        try:
            r = _repr(o)
            if _type(r) is not str:
                r = "<unprintable>"
        except BaseException:
            r = "<unprintable %s>" % qualname(_type(o))
        return clip(r, limit)

    def typed(o, depth, budget):
        budget[0] -= 1
        if budget[0] < 0 or depth > 100:
            raise _TooLarge()
        t = _type(o)
        if o is None:
            return ["none"]
        if t is bool:
            return ["bool", o]
        if t is int:
            try:
                return ["int", _int_repr(o)]
            except ValueError:  # more digits than int->str allows
                return ["int", hex(o)]
        if t is float:
            return ["float", _float_repr(o)]
        if t is complex:
            return ["complex", _float_repr(o.real), _float_repr(o.imag)]
        if t is str:
            return ["str", o]
        if t is bytes or t is bytearray:
            return [t.__name__, o.hex()]
        if t is list or t is tuple:
            return [t.__name__, [typed(x, depth + 1, budget) for x in o]]
        if t is set or t is frozenset:
            items = [typed(x, depth + 1, budget) for x in o]
            return [t.__name__, _sorted(items, key=enc)]
        if t is dict:
            pairs = [[typed(k, depth + 1, budget), typed(v, depth + 1, budget)] for k, v in _items(o)]
            return ["dict", _sorted(pairs, key=lambda p: enc(p[0]))]
        if t is range:
            return ["range", o.start, o.stop, o.step]
        if ndarray is not None and t is ndarray:
            if o.size > budget[0]:
                raise _TooLarge()
            return ["ndarray", _str(o.dtype), _list(o.shape), typed(o.tolist(), depth + 1, budget)]
        if np_generic is not None and _isinstance(o, np_generic):
            return [qualname(t), typed(o.item(), depth + 1, budget)]
        if DataFrame is not None and t is DataFrame:
            if o.size > budget[0]:
                raise _TooLarge()
            cols = _list(o.columns)
            return ["DataFrame", typed(cols, depth + 1, budget), typed(_list(o.index), depth + 1, budget),
                    [_str(d) for d in o.dtypes], [typed(o.iloc[:, j].tolist(), depth + 1, budget) for j in range(_len(cols))]]
        if Series is not None and t is Series:
            if o.size > budget[0]:
                raise _TooLarge()
            return ["Series", typed(o.name, depth + 1, budget), typed(_list(o.index), depth + 1, budget), _str(o.dtype),
                    typed(o.tolist(), depth + 1, budget)]
        if Index is not None and t is Index:
            return ["Index", _str(o.dtype), typed(o.tolist(), depth + 1, budget)]
        return ["object", qualname(t), safe_repr(o, 4000)]

    def top(o, cap):
        try:
            tree = typed(o, 0, [budget_nodes])
            text = enc(tree)
        except (_TooLarge, RecursionError):
            return None, qualname(_type(o)), safe_repr(o)
        if _len(text) > cap:
            import hashlib
            return enc(["digest", qualname(_type(o)), hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()]), \
                qualname(_type(o)), safe_repr(o)
        return text, qualname(_type(o)), safe_repr(o)

    return top, qualname


def invoke(fn, kwargs, top, cap):
    """Call the function (awaiting a coroutine) and encode its result, on the check thread:
    the encoding's time counts toward the input's time limit."""
    value = fn(**kwargs)
    if _type(value).__name__ == "coroutine":
        import asyncio
        value = asyncio.run(value)
    return top(value, cap)


def call_child_main(job, start, end, workdir, out_w, rep_w, cap):
    report_fd = enter_child(job, workdir, out_w, rep_w)
    prefix = job["nonce"].encode() + b"\t"
    enc = make_encoder()
    top, qualname = make_typed()

    def send(kind, payload, raw=None, _w=os_write, _fd=report_fd, _p=prefix, _enc=enc):
        body = _enc(payload)
        if raw is not None:  # splice pre-encoded JSON (the typed value) into the object
            body = body[:-1] + (',' if body != "{}" else '') + '"value":' + raw + "}"
        data = _p + kind.encode() + b"\t" + body.encode("utf-8", "replace") + b"\n"
        while data:
            data = data[_w(_fd, data):]

    code, entry_point = job["code"], job["entry_point"]
    inputs = job["inputs"][start:end]
    value_cap = job.get("value_cap", 262144)
    del job
    try:
        sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False, buffering=1)
        sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False, buffering=1)
    except BaseException:
        pass
    sys.addaudithook(audit)
    # Bound now: tested code can rebind the harness's globals, not this frame's locals.
    _parse, _invoke, _in_thread, _perf, _clip, _safe = parse_input, invoke, in_thread, perf_counter, clip, safe_str
    _BaseException, _MemoryError, _int, _type, _isinstance = BaseException, MemoryError, int, type, isinstance
    module = types.ModuleType("__solution__")
    module.__file__ = os.path.join(workdir, "solution.py")
    sys.modules["__solution__"] = module
    namespace = module.__dict__
    path = module.__file__
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(code)
    status, value = in_thread(exec_phase, (code, path, namespace), cap)
    if status == "raised":
        d = value
        send("import_error", {"type": d["type"], "message": d["message"], "traceback": d["traceback"]})
        send("done", {})
        os_exit(0)
    fn = namespace.get(entry_point)
    if not _callable(fn):
        send("import_error", {"type": "NameError", "message": "the program defines no function %s" % entry_point, "traceback": ""})
        send("done", {})
        os_exit(0)
    send("ready", {})
    for offset, src in enumerate(inputs):
        i = start + offset
        send("start", {"i": i})
        t0 = _perf()
        try:
            kwargs = _parse(src)
        except _BaseException as e:
            send("out", {"i": i, "kind": "bad_input", "message": _clip("%s: %s" % (_type(e).__name__, _safe(e)), 500)})
            continue
        status, value = _in_thread(_invoke, (fn, kwargs, top, value_cap), cap)
        ms = _int((_perf() - t0) * 1000)
        if status == "raised":
            send("out", {"i": i, "kind": "exception", "exception": {"type": value["qualified"], "message": _clip(value["text"], 500)},
                         "ms": ms, "memory_error": value["memory_error"]})
        elif value[0] is None:
            send("out", {"i": i, "kind": "too_large", "type": value[1], "repr": value[2], "ms": ms})
        else:
            send("out", {"i": i, "kind": "value", "type": value[1], "repr": value[2], "ms": ms}, raw=value[0])
        value = kwargs = None
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    send("done", {})
    os_exit(0)


# ---------------------------------------------------------------- the server
PID1 = os.getpid() == 1
UID = CONFIG.get("uid")
if not PID1:
    try:  # orphans of a check re-parent to us, so we can find and kill them
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except BaseException:
        pass


def other_processes(include_zombies=True):
    """Processes left from a check: everything in our PID namespace but us (pid-1 mode), or
    every descendant of ours (subreaper mode). Zombies (exited, not yet reaped) are left out
    when `include_zombies` is false: they run nothing."""
    me = os.getpid()
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as fh:
                stat = fh.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            if not include_zombies and fields[0] in (b"Z", b"X") and not live_threads(entry):
                continue
            parents[int(entry)] = int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
    if PID1:
        return [p for p in parents if p != me]
    found, frontier = set(), {me}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier and p not in found}
        found |= frontier
    return _sorted(found)


def live_threads(pid):
    """A process whose main thread exited shows as a zombie while its other threads run."""
    try:
        tasks = os.listdir("/proc/%s/task" % pid)
    except OSError:
        return False
    for tid in tasks:
        try:
            with open("/proc/%s/task/%s/stat" % (pid, tid), "rb") as fh:
                stat = fh.read()
            if stat[stat.rindex(b")") + 2:].split()[0] not in (b"Z", b"X"):
                return True
        except (OSError, ValueError, IndexError):
            continue
    return False


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_everything():
    """SIGKILL every process of the check, repeating until none is left (a fork bomb may
    spawn while we kill)."""
    for _ in range(200):
        rest = other_processes()
        if not rest:
            return
        if PID1:
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
        else:
            for pid in rest:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.002)
        reap()


def remove_tree(path):
    """Remove `path` and everything under it without recursion and without long paths
    (directory fds, an explicit stack), so a tree of any depth a check left behind goes.
    Returns False when something could not be removed."""
    try:
        if not os.path.isdir(path) or os.path.islink(path):
            os.unlink(path)
            return True
        try:
            os.chmod(path, 0o700)
        except OSError:
            pass
        top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    ok = True
    stack = [(top, None)]  # (directory fd, name in its parent)
    while stack:
        fd, _ = stack[-1]
        sub = None
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            try:
                                os.chmod(entry.name, 0o700, dir_fd=fd, follow_symlinks=False)
                            except (OSError, NotImplementedError):
                                pass
                            sub = entry.name
                            break
                        os.unlink(entry.name, dir_fd=fd)
                    except OSError:
                        ok = False
        except OSError:
            ok = False
        if sub is not None:
            try:
                stack.append((os.open(sub, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd), sub))
                continue
            except OSError:
                ok = False
        # This directory is as empty as it gets: close it and remove it from its parent.
        _, name = stack.pop()
        os.close(fd)
        if stack:
            try:
                os.rmdir(name, dir_fd=stack[-1][0])
            except OSError:
                # Still there: give up rather than rescan it forever.
                for left, _ in stack:
                    os.close(left)
                return False
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        ok = False
    return ok


def wipe(path):
    return remove_tree(path)


def clean_private_tmp():
    """Empty the private /tmp, /var/tmp and /dev/shm. False when something stayed."""
    if not CONFIG.get("private_tmp"):
        return True
    keep = [os.path.normpath(p) for p in CONFIG.get("keep_paths", [])]
    ok = True
    for root in ("/tmp", "/var/tmp", "/dev/shm"):
        ok &= empty_except(root, keep)
    return ok


def empty_except(directory, keep):
    """Remove everything in `directory` except the interpreter's read-only bind mounts in
    `keep` (a venv under /tmp): their parent directories are emptied of anything else, so a
    file a check puts next to them goes too."""
    try:
        names = os.listdir(directory)
    except OSError:
        return True
    ok = True
    for entry in names:
        path = os.path.join(directory, entry)
        if path in keep:
            continue
        if any(k.startswith(path + "/") for k in keep) and os.path.isdir(path) and not os.path.islink(path):
            ok &= empty_except(path, keep)
        else:
            ok &= remove_tree(path)
    return ok


def remove_ipc():
    """Remove the System V shared memory segments, semaphores and message queues a check
    made (this worker's IPC namespace is its own; without one, only those of the check's
    uid). They outlive processes and would carry memory and data into the next check.
    Only their owner may remove them, so a short-lived child with the check's uid does."""
    if not any(ipc_rows(t) for t in ("shm", "sem", "msg")):
        return  # the common case: nothing to remove, no fork
    if UID is None or os.geteuid() != 0:
        remove_ipc_here()
        return
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(CONFIG["gid"])
            os.setuid(UID)
            remove_ipc_here()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def ipc_rows(table):
    try:
        with open("/proc/sysvipc/" + table) as fh:
            return fh.read().count("\n") > 1
    except OSError:
        return False


def remove_ipc_here():
    libc = ctypes.CDLL(None, use_errno=True)
    own_namespace = CONFIG.get("private_ipc") or PID1
    for table, remove in (("shm", lambda i: libc.shmctl(i, 0, None)), ("sem", lambda i: libc.semctl(i, 0, 0)),
                          ("msg", lambda i: libc.msgctl(i, 0, None))):
        try:
            with open("/proc/sysvipc/" + table) as fh:
                header = fh.readline().split()
                rows = [line.split() for line in fh]
        except OSError:
            continue
        col_id, col_uid = header.index(table + "id") if table + "id" in header else 1, header.index("uid")
        for row in rows:
            try:
                if own_namespace or (UID is not None and int(row[col_uid]) == UID):
                    remove(int(row[col_id]))
            except (ValueError, IndexError):
                pass


def cleanup(workdir):
    """After a check: its files, the private temp dirs and its IPC objects. False when
    something stayed behind: the supervisor then replaces this worker, so that nothing of
    one check can reach the next."""
    ok = wipe(workdir)
    ok &= clean_private_tmp()
    try:
        remove_ipc()
    except BaseException:
        ok = False
    ok &= not other_processes(include_zombies=False)
    return ok


def make_workdir(prefix):
    # No "-" in the name: tests split temp paths on "-" (BigCodeBench/1127 does).
    workdir = tempfile.mkdtemp(prefix=prefix, dir=CONFIG["workroot"])
    if UID is not None:
        os.chown(workdir, UID, CONFIG["gid"])
    os.chmod(workdir, 0o700)
    return workdir


def fork_child(main):
    """Fork a child that runs `main(out_w, rep_w)` (output pipe, report pipe) and never
    returns; the parent gets (pid, out_r, rep_r, pidfd)."""
    out_r, out_w = os.pipe()
    rep_r, rep_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(out_r)
            os.close(rep_r)
            os.close(PROTO_IN)
            os.close(PROTO_OUT)
            main(out_w, rep_w)
        finally:
            os._exit(70)
    os.close(out_w)
    os.close(rep_w)
    return pid, out_r, rep_r, os.pidfd_open(pid)


def watch_child(pid, pidfd, open_fds, read, deadline):
    """Read the child's pipes until it exits or `deadline()` passes (the deadline may move
    while reading). `read(fd)` returns False at end of file. Returns (status, timed_out)."""
    while True:
        remaining = deadline() - perf_counter()
        if remaining <= 0:
            return None, True
        ready, _, _ = select.select(list(open_fds) + [pidfd], [], [], remaining)
        for fd in ready:
            if fd == pidfd:
                return os.waitpid(pid, 0)[1], False
            if not read(fd):
                open_fds.discard(fd)


def drain(open_fds, read):
    """Every writer is dead: read what is left in the pipes."""
    for fd in _list(open_fds):
        os.set_blocking(fd, False)
        while read(fd):
            pass


def parse_report_line(raw, prefix):
    """(kind, payload) of one line from a check's private channel, or None when the line
    is not ours (no nonce) or is mangled."""
    if not raw.startswith(prefix):
        return None
    try:
        kind, payload = raw[len(prefix):].split(b"\t", 1)
        return kind.decode(), json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None


def run_job(job):
    cap = CONFIG.get("traceback_cap", 4000)
    out_cap = CONFIG.get("output_cap", 65536)
    workdir = make_workdir("check_")
    started = perf_counter()
    pid, out_r, rep_r, pidfd = fork_child(lambda out_w, rep_w: child_main(job, workdir, out_w, rep_w, cap))
    deadline = started + float(job["timeout"])
    head, tail, out_total = bytearray(), bytearray(), 0
    report = bytearray()
    report_cap = 32 * 1024 * 1024
    open_fds = {out_r, rep_r}

    def read_available(fd):
        nonlocal out_total, head, tail
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        if fd == out_r:
            out_total += len(chunk)
            room = out_cap // 2 - len(head)
            if room > 0:
                head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                tail += chunk
                if len(tail) > out_cap // 2:
                    del tail[:len(tail) - out_cap // 2]
        elif len(report) < report_cap:
            report.extend(chunk)
        return True

    status, timed_out = watch_child(pid, pidfd, open_fds, read_available, lambda: deadline)
    elapsed = perf_counter() - started
    lingering = 0
    if timed_out:
        kill_everything()
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = None
    else:
        # Give processes the check started a moment to finish on their own (a child that
        # is exiting, or one the check did not wait for); zombies do not count.
        reap()
        grace_end = perf_counter() + 0.2
        while True:
            lingering = len(other_processes(include_zombies=False))
            if lingering == 0 or perf_counter() >= grace_end:
                break
            time.sleep(0.01)
            reap()
        kill_everything()
    drain(open_fds, read_available)
    for fd in (out_r, rep_r, pidfd):
        os.close(fd)
    reap()
    healthy = cleanup(workdir)
    exit_info = {}
    if status is not None:
        if os.WIFSIGNALED(status):
            exit_info = {"signal": os.WTERMSIG(status)}
        elif os.WIFEXITED(status):
            exit_info = {"code": os.WEXITSTATUS(status)}
    lines = []
    forged = 0
    prefix = job["nonce"].encode() + b"\t"
    for raw in bytes(report).split(b"\n"):
        if not raw:
            continue
        parsed = parse_report_line(raw, prefix)
        if parsed is None:
            forged += 1
        else:
            lines.append(list(parsed))
    text = bytes(head).decode("utf-8", "replace")
    if out_total > len(head):
        text += "\n... [%d bytes cut] ...\n" % (out_total - len(head) - len(tail)) + bytes(tail).decode("utf-8", "replace")
    return {"id": job["id"], "reports": lines, "forged_lines": forged, "timed_out": timed_out, "exit": exit_info,
            "lingering": lingering, "duration_ms": int(elapsed * 1000), "output": text, "output_bytes": out_total,
            "restart": not healthy}


def run_call_job(job):
    """Run inputs through the program's function: one child per input (`fresh`), or all
    inputs in one child that is replaced after an input times out or kills it. The time
    limit is per input; the import of the program gets the same limit."""
    cap = CONFIG.get("traceback_cap", 4000)
    n = len(job["inputs"])
    fresh = bool(job.get("fresh"))
    per_input = float(job["timeout"])
    total_budget = float(job.get("total_timeout") or per_input * (n + 1) * 2)
    outcomes = [None] * n
    prefix = job["nonce"].encode() + b"\t"
    forged = 0
    healthy = True
    import_error = None
    setup_error = None
    started_all = perf_counter()
    output = bytearray()
    out_cap = CONFIG.get("output_cap", 65536)
    children = 0
    start = 0
    # No inputs: one child still imports the program (an import check).
    while (start < n or children == 0) and import_error is None and setup_error is None:
        if perf_counter() - started_all > total_budget:
            break
        end = start + 1 if fresh and n else n
        workdir = make_workdir("call_")
        pid, out_r, rep_r, pidfd = fork_child(lambda out_w, rep_w: call_child_main(job, start, end, workdir, out_w, rep_w, cap))
        children += 1
        state = {"current": None, "ready": False, "done": False, "buf": bytearray()}
        deadline = perf_counter() + per_input
        open_fds = {out_r, rep_r}

        def take_lines(final=False):
            nonlocal forged, import_error, setup_error, deadline
            buf = state["buf"]
            while True:
                cut = buf.find(b"\n")
                if cut < 0:
                    if final and buf:
                        forged += 1
                        del buf[:]
                    return
                raw = bytes(buf[:cut])
                del buf[:cut + 1]
                parsed = parse_report_line(raw, prefix)
                if parsed is None:
                    forged += 1
                    continue
                kind, payload = parsed
                if kind == "start":
                    state["current"] = payload.get("i")
                    deadline = perf_counter() + per_input
                elif kind == "out":
                    i = payload.get("i")
                    if _type(i) is int and start <= i < end and outcomes[i] is None:
                        outcomes[i] = payload
                    else:
                        forged += 1
                    state["current"] = None
                elif kind == "ready":
                    state["ready"] = True
                elif kind == "done":
                    state["done"] = True
                elif kind == "import_error":
                    import_error = payload
                elif kind == "setup_error":
                    setup_error = payload.get("message", "")

        def read_fd(fd):
            nonlocal forged
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            if fd == out_r:
                room = out_cap - len(output)
                if room > 0:
                    output.extend(chunk[:room])
            else:
                state["buf"].extend(chunk)
                if len(state["buf"]) > 64 * 1024 * 1024:
                    del state["buf"][:]
                    forged += 1
                take_lines()
            return True

        status, timed_out = watch_child(pid, pidfd, open_fds, read_fd, lambda: deadline)
        kill_everything()
        if timed_out:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        drain(open_fds, read_fd)
        take_lines(final=True)
        for fd in (out_r, rep_r, pidfd):
            os.close(fd)
        reap()
        healthy &= cleanup(workdir)
        if import_error is not None or setup_error is not None:
            break
        missing = [i for i in range(start, end) if outcomes[i] is None]
        if not missing:
            start = end
            continue
        first = missing[0]
        if not state["ready"]:
            if timed_out:
                import_error = {"type": "Timeout", "message": "importing the program exceeded the time limit of %gs" % per_input}
            else:
                import_error = {"type": "Killed", "message": "the process died while importing the program"}
            break
        if timed_out:
            outcomes[first] = {"i": first, "kind": "timeout", "message": "exceeded the per-input time limit of %gs" % per_input}
        elif state["done"]:
            # The child finished but a report line did not arrive intact (forged or mangled).
            for i in missing:
                outcomes[i] = {"i": i, "kind": "lost", "message": "no intact report for this input"}
        else:
            how = ""
            if status is not None and os.WIFSIGNALED(status):
                how = "signal %d" % os.WTERMSIG(status)
            elif status is not None and os.WIFEXITED(status):
                how = "exit code %d" % os.WEXITSTATUS(status)
            outcomes[first] = {"i": first, "kind": "killed", "message": "the process ended during this input (%s)" % how}
        start = first + 1
    for i in range(n):
        if outcomes[i] is None:
            outcomes[i] = {"i": i, "kind": "not_run", "message": "the program failed to import" if import_error else "the job's time budget ran out"}
    return {"id": job["id"], "kind": "call", "outcomes": outcomes, "import_error": import_error, "setup_error": setup_error,
            "forged_lines": forged, "children": children, "duration_ms": int((perf_counter() - started_all) * 1000),
            "output": bytes(output).decode("utf-8", "replace"), "restart": not healthy}


# ---------------------------------------------------------------- mutant jobs (test adequacy)
# A mutant job runs the record's tests against each mutant of its program (made by the
# supervisor, src/python/mutants.rs), stopping a mutant at its first failing test. All
# mutants run in one forked child, one after another (the cost of a mutant is the cost of
# its tests); the supervisor-side deadline moves with each mutant. A mutant that times
# out, dies or modifies the harness or unittest ends that child, and the next mutant
# starts in a fresh fork. Mutants that do not compile are `invalid`; those that compile
# to the original's bytecode are `equivalent` (trivial compiler equivalence).
def fingerprint(co, _type=type, _tuple=tuple, _repr=repr, _CodeType=types.CodeType):
    consts = _tuple(fingerprint(c) if _type(c) is _CodeType else (_type(c).__name__, _repr(c)) for c in co.co_consts)
    return (co.co_code, co.co_names, co.co_varnames, co.co_freevars, co.co_cellvars, co.co_flags, co.co_argcount,
            co.co_kwonlyargcount, consts)


def mutant_child_main(job, start, workdir, out_w, rep_w, cap):
    report_fd = enter_child(job, workdir, out_w, rep_w)
    prefix = job["nonce"].encode() + b"\t"
    enc = make_encoder()

    # A mutant that forks leaves a copy of this loop running: only this process reports.
    def send(kind, payload, _w=os_write, _fd=report_fd, _p=prefix, _enc=enc, _me=os_getpid(), _pid=os_getpid, _exit=os_exit):
        if _pid() != _me:
            _exit(0)
        data = _p + kind.encode() + b"\t" + _enc(payload).encode("utf-8", "replace") + b"\n"
        while data:
            data = data[_w(_fd, data):]

    original, tests, mutants = job["code"], job["tests"], job["mutants"]
    del job
    try:
        sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False, buffering=1)
        sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False, buffering=1)
    except BaseException:
        pass
    tampered, outcome = make_judge(SNAPSHOT, cap)
    harness = globals()
    harness_before = dict(harness)
    sys.addaudithook(audit)
    # Bound now: tested code can rebind the harness's globals, not this frame's locals.
    _compile, _fingerprint, _run_tests, _dict, _any, _len, _type, _str = compile, fingerprint, run_tests, dict, any, len, type, str
    _listdir, _join, _chdir, _remove, _exit, _safe = os.listdir, os.path.join, os.chdir, remove_tree, os_exit, safe_str
    _modules, _run_sync, _run_async, _TestCase, _Async = sys.modules, RUN_SYNC, RUN_ASYNC, TestCase, AsyncTestCase
    path = _join(workdir, "solution.py")
    base = _fingerprint(_compile(original, path, "exec", dont_inherit=True))
    # Compiled once: each mutant executes this code object in a fresh namespace.
    try:
        tests_code = _compile(tests, _join(workdir, "test_solution.py"), "exec", dont_inherit=True)
    except BaseException:
        tests_code = tests
    for i in range(start, _len(mutants)):
        send("start", {"i": i})
        try:
            compiled = _compile(mutants[i], path, "exec", dont_inherit=True)
        except BaseException as e:
            send("out", {"i": i, "kind": "invalid", "message": _safe(e, 300)})
            continue
        if _fingerprint(compiled) == base:
            send("out", {"i": i, "kind": "equivalent"})
            continue
        events = []
        _run_tests({"code": compiled, "tests": tests_code, "coverage": None, "file_code": original, "file_tests": tests},
                   lambda kind, payload: events.append((kind, payload)), workdir, cap, tampered, outcome,
                   _run_sync, _run_async, _TestCase, _Async, True)
        killer = None
        passed = 0
        for kind, payload in events:
            if kind == "test" and _type(payload) is _dict and payload.get("kind") == "pass":
                passed += 1
            elif kind in ("test", "phase_error", "tamper") and killer is None:
                killer = {"how": payload.get("kind", kind) if kind == "test" else kind,
                          "test": payload.get("test", payload.get("phase", "")) if _type(payload) is _dict else ""}
        changed = tampered() or [k for k, v in _dict.items(harness_before) if harness.get(k) is not v]
        if killer is not None:
            send("out", {"i": i, "kind": "killed", "how": killer["how"], "test": _str(killer["test"]), "passed": passed})
        else:
            send("out", {"i": i, "kind": "survived", "passed": passed, "changed": bool(changed)})
        if changed:
            send("restart", {"i": i})
            _exit(0)
        _modules.pop("__test__", None)
        try:  # the next mutant starts in a clean directory, as the original did
            _chdir(workdir)
            for entry in _listdir(workdir):
                _remove(_join(workdir, entry))
        except BaseException:
            send("restart", {"i": i})
            _exit(0)
    send("done", {})
    _exit(0)


def run_mutants_job(job):
    """Outcomes of every mutant: killed (how, by which test), survived, invalid,
    equivalent, or timeout/crash (killed)."""
    cap = CONFIG.get("traceback_cap", 4000)
    n = len(job["mutants"])
    per_mutant = float(job["timeout"])
    total_budget = float(job.get("total_timeout") or per_mutant * (n + 1) * 2)
    outcomes = [None] * n
    prefix = job["nonce"].encode() + b"\t"
    forged, healthy, children, start = 0, True, 0, 0
    started_all = perf_counter()
    setup_error = None
    while start < n and setup_error is None and perf_counter() - started_all <= total_budget:
        workdir = make_workdir("mut_")
        pid, out_r, rep_r, pidfd = fork_child(lambda out_w, rep_w: mutant_child_main(job, start, workdir, out_w, rep_w, cap))
        children += 1
        state = {"current": None, "done": False, "restart": False, "buf": bytearray()}
        deadline = perf_counter() + per_mutant
        open_fds = {out_r, rep_r}

        def take_lines():
            nonlocal forged, deadline, setup_error
            buf = state["buf"]
            while True:
                cut = buf.find(b"\n")
                if cut < 0:
                    return
                raw = bytes(buf[:cut])
                del buf[:cut + 1]
                parsed = parse_report_line(raw, prefix)
                if parsed is None:
                    forged += 1
                    continue
                kind, payload = parsed
                if kind == "start":
                    state["current"] = payload.get("i")
                    deadline = perf_counter() + per_mutant
                elif kind == "out":
                    i = payload.get("i")
                    if _type(i) is int and start <= i < n and outcomes[i] is None:
                        outcomes[i] = payload
                    else:
                        forged += 1
                    state["current"] = None
                elif kind == "restart":
                    state["restart"] = True
                elif kind == "done":
                    state["done"] = True
                elif kind == "setup_error":
                    setup_error = payload.get("message", "")

        def read_fd(fd):
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            if fd == rep_r:
                state["buf"].extend(chunk)
                if len(state["buf"]) > 16 * 1024 * 1024:
                    del state["buf"][:]
                take_lines()
            return True  # the mutants' own output is read and dropped

        status, timed_out = watch_child(pid, pidfd, open_fds, read_fd, lambda: deadline)
        kill_everything()
        if timed_out:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        drain(open_fds, read_fd)
        take_lines()
        for fd in (out_r, rep_r, pidfd):
            os.close(fd)
        reap()
        healthy &= cleanup(workdir)
        missing = [i for i in range(start, n) if outcomes[i] is None]
        if not missing or setup_error is not None:
            break
        first = missing[0]
        if timed_out:
            outcomes[first] = {"i": first, "kind": "killed", "how": "timeout", "test": ""}
        elif state["restart"]:
            start = first  # a clean child for the rest (the restart came after an outcome)
            continue
        elif state["current"] == first:
            outcomes[first] = {"i": first, "kind": "killed", "how": "crash", "test": ""}
        else:  # the child ended without starting this mutant
            outcomes[first] = {"i": first, "kind": "lost"}
        start = first + 1
    for i in range(n):
        if outcomes[i] is None:
            outcomes[i] = {"i": i, "kind": "not_run"}
    return {"id": job["id"], "kind": "mutants", "outcomes": outcomes, "setup_error": setup_error, "forged_lines": forged,
            "children": children, "duration_ms": int((perf_counter() - started_all) * 1000), "restart": not healthy}


def read_exact(n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(PROTO_IN, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def send_frame(obj):
    data = json.dumps(obj).encode()
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(PROTO_OUT, data):]


def serve():
    send_frame({"ready": True, "python": sys.version.split()[0], "executable": sys.executable,
                "preimported": PREIMPORTED, "missing": MISSING, "pid1": PID1, "uid": UID})
    while True:
        header = read_exact(4)
        if header is None:
            return
        job = json.loads(read_exact(struct.unpack(">I", header)[0]))
        try:
            kind = job.get("kind")
            result = run_call_job(job) if kind == "call" else run_mutants_job(job) if kind == "mutants" else run_job(job)
        except BaseException as e:  # our own failure: report it; the supervisor replaces us
            result = {"id": job.get("id"), "sandbox_error": "%s: %s" % (type(e).__name__, e), "restart": True}
            kill_everything()
        send_frame(result)


serve()
