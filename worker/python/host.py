# The Python half of authrun-python, compiled into the executable (worker/python/CMakeLists.txt turns this
# file into a C++ string constant): never read from a path at run time. The C++ half (python_host.cpp) has
# done the key hand-over, the handshake and the framing; it calls load() once with the program message and
# call() for each task. PROTOCOL.md section 11 is the contract these functions follow.
import base64
import json
import json.encoder
import os
import sys

_HOST_FILE = "<authrun-python host>"
_PICKLED = "authrun.pickled"
_modules = {}
_cache = {}
_MISSING = object()


class _Failed(Exception):
    """The program failed to load: the message names what and where."""


def _type_name(t):
    """The exception type as the result's error type: module-qualified, builtins bare."""
    module = getattr(t, "__module__", None)
    name = getattr(t, "__qualname__", None) or t.__name__
    return name if module in (None, "builtins") else "%s.%s" % (module, name)


def _module_line(exc, file):
    """The line of `file` where an import failed, from a SyntaxError or the traceback."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return exc.filename or file, exc.lineno
    tb, where = exc.__traceback__, None
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        internal = name.startswith("<") or tb.tb_frame.f_globals.get("__name__", "").startswith("importlib")
        if not internal and (file is None or os.path.abspath(name) == file):
            where = (name, tb.tb_lineno)
        tb = tb.tb_next
    return where or (file, None)


def _exc_text(e):
    try:
        return str(e)
    except BaseException:  # noqa: B902 - a __str__ that raises
        return "<str() of the %s raised>" % type(e).__name__


def _import(name, file):
    import importlib
    import importlib.util
    if file:
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise ImportError("not a Python source file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        if name == "__mp_main__":
            # The Pool's main script, as multiprocessing.spawn loads it: pickled references to __main__.f
            # resolve, and its `if __name__ == "__main__":` block does not run.
            sys.modules["__main__"] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(name)


def load(program_json):
    """Imports the program's modules and runs its initializer. Returns None, or the message of the failure."""
    try:
        _load(json.loads(program_json))
        return None
    except _Failed as e:
        return str(e)
    except BaseException as e:  # noqa: B902
        return "%s: %s" % (_type_name(type(e)), _exc_text(e))


def _load(program):
    modules = program.get("modules") or []
    cwd = program.get("cwd")
    if cwd:
        try:
            os.chdir(cwd)
        except OSError as e:
            raise _Failed("cannot enter the directory %s: %s" % (cwd, e.strerror))
    # The user's environment, now that the parent is proven: site-packages (a venv's too) and .pth files.
    import site
    site.main()
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if user_site and os.path.isdir(user_site):
        site.addsitedir(user_site)
    for p in reversed(program.get("sys_path") or []):
        if p not in sys.path:
            sys.path.insert(0, p)
    for m in modules:
        name, file = m["name"], m.get("file")
        try:
            module = _import(name, file)
        except BaseException as e:  # noqa: B902 - SystemExit at import is a failed program too
            sys.modules.pop(name, None)
            where_file, line = _module_line(e, os.path.abspath(file) if file else None)
            if where_file is None and isinstance(e, ModuleNotFoundError):
                where_file = "not found on sys.path"
            place = ", ".join(str(x) for x in (where_file, "line %d" % line if line else None) if x)
            text = _exc_text(e)
            detail = "%s: %s" % (type(e).__name__, text) if text else type(e).__name__
            raise _Failed("module '%s'%s: %s" % (name, " (%s)" % place if place else "", detail))
        _modules[name] = module
    init = program.get("initializer")
    if init:
        import pickle
        try:
            func, initargs = pickle.loads(base64.b64decode(init))
            func(*initargs)
        except BaseException as e:  # noqa: B902
            raise _Failed("initializer: %s: %s" % (_type_name(type(e)), _exc_text(e)))


def _find(fn):
    """The callable `fn` names: "module.attr.path", or "attr.path" when the program has one module.
    Returns (callable, None) or (None, (type, message))."""
    module, path = None, None
    best = ""
    for name in _modules:
        if fn.startswith(name + ".") and len(name) > len(best):
            best = name
    if best:
        module, path = _modules[best], fn[len(best) + 1:]
    elif len(_modules) == 1:
        module, path = next(iter(_modules.values())), fn
    else:
        return None, ("unknown_function", "unknown function '%s': name its module (one of %s), as module.%s" %
                      (fn, ", ".join(sorted(_modules)), fn))
    obj = module
    for part in path.split("."):
        obj = getattr(obj, part, _MISSING) if part else _MISSING
        if obj is _MISSING:
            if not best and "." in path:
                return None, ("unknown_function", "unknown function '%s': no module '%s' in the program (%s), "
                              "nor '%s' in module '%s'" % (fn, path.split(".")[0], module.__name__, path,
                                                           module.__name__))
            return None, ("unknown_function", "unknown function '%s': module '%s' has no '%s'" %
                          (fn, module.__name__, path))
    if not callable(obj):
        return None, ("not_callable", "'%s' is not callable: it is %s in module '%s'" %
                      (fn, _a(type(obj).__name__), module.__name__))
    return obj, None


def _a(name):
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


def _from_json(value):
    """{"$bytes": base64} becomes bytes; {"$dict": {...}} is that object, taken as it is."""
    if isinstance(value, dict):
        if len(value) == 1:
            if isinstance(value.get("$bytes"), str):
                return base64.b64decode(value["$bytes"], validate=True)
            inner = value.get("$dict")
            if isinstance(inner, dict):
                return {k: _from_json(v) for k, v in inner.items()}
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _to_json(obj):
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(obj)).decode("ascii")}
    raise TypeError(_a(type(obj).__name__))


def _escape(value):
    """A returned dict whose one key is "$bytes" or "$dict" becomes {"$dict": it}: never taken for bytes."""
    if isinstance(value, dict):
        out = {k: _escape(v) for k, v in value.items()}
        if len(out) == 1 and ("$bytes" in out or "$dict" in out):
            return {"$dict": out}
        return out
    if isinstance(value, (list, tuple)):
        return [_escape(v) for v in value]
    return value


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_to_json,
                            sort_keys=True)


def _key_text(k):
    """A dict key as JSON writes it: str as is; int, float, bool and None as their JSON text."""
    if isinstance(k, str):
        return k
    if k is True or k is False or k is None:
        return json.dumps(k)
    if isinstance(k, (int, float)):
        return json.dumps(k) if isinstance(k, float) else int.__repr__(k)
    raise TypeError("keys must be str, int, float, bool or None, not %s" % type(k).__name__)


def _keys_as_text(value):
    """Every dict's keys made text first, so that keys of mixed types sort (as text)."""
    if isinstance(value, dict):
        return {_key_text(k): _keys_as_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_keys_as_text(v) for v in value]
    return value


_SCALARS = (str, int, float, bool, type(None))
_encode_str = json.encoder.encode_basestring  # what the encoder uses for str with ensure_ascii=False


def _encode(value):
    t = type(value)
    # The common scalars without an encoder's set-up (the bytes JSONEncoder.encode would write).
    if t is int:
        return int.__repr__(value)
    if t is str:
        return _encode_str(value)
    if t in _SCALARS:  # nothing inside to escape or sort
        return _ENCODER.encode(value)
    try:
        text = _ENCODER.encode(value)
    except TypeError as e:
        if "not supported between instances" not in str(e):
            raise
        value = _keys_as_text(value)
        text = _ENCODER.encode(value)
    if '"$' in text:
        text = _ENCODER.encode(_escape(value))
    return text


_ATTRIBUTES = ("code", "errno", "strerror", "filename", "filename2", "winerror", "name", "path", "reason")


def _error(e, fn):
    """(False, type, message, details JSON) for an exception a task raised."""
    import traceback
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename != _HOST_FILE]
    text = "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames)) + \
        "".join(traceback.format_exception_only(type(e), e))
    details = {"traceback": text}
    attributes = {}
    names = list(getattr(e, "__dict__", {}) or {})
    names += [a for a in _ATTRIBUTES if a not in names]
    for name in names:
        if name.startswith("_"):
            continue
        try:
            v = getattr(e, name, _MISSING)
            if v is _MISSING or callable(v):
                continue
            attributes[name] = json.loads(_encode(v))
        except BaseException:  # noqa: B902 - not JSON-able: left out
            continue
    if attributes:
        details["attributes"] = attributes
    try:
        dtext = _encode(details)
        dtext.encode("utf-8")
    except BaseException:  # noqa: B902
        dtext = json.dumps({"traceback": text}, ensure_ascii=True)
    return (False, _type_name(type(e)), _exc_text(e), dtext)


def _call_pickled(attachment):
    import pickle
    try:
        func, args, kwargs = pickle.loads(attachment)
    except BaseException as e:  # noqa: B902
        return _pickled_raise(e, "")
    try:
        value = func(*args, **kwargs)
    except BaseException as e:  # noqa: B902
        import traceback
        return _pickled_raise(e, "".join(traceback.format_exception(type(e), e, e.__traceback__)))
    try:
        data = pickle.dumps(value, protocol=5)
    except BaseException as e:  # noqa: B902
        name = getattr(func, "__qualname__", None) or repr(func)
        err = TypeError("the result of %s cannot be pickled: %s: %s" % (name, _type_name(type(e)), _exc_text(e)))
        return _pickled_raise(err, "")
    return (True, '{"raised":false}', data)


def _pickled_raise(e, tb_text):
    import pickle
    try:
        data = pickle.dumps((e, tb_text), protocol=5)
        pickle.loads(data)
    except BaseException:  # noqa: B902 - an exception that does not pickle: its words in a RuntimeError
        data = pickle.dumps((RuntimeError("%s: %s" % (_type_name(type(e)), _exc_text(e))), tb_text), protocol=5)
    return (True, '{"raised":true}', data)


def call(fn, args_json, attachment):
    """Runs one task. Returns (True, value JSON, attachment or None), (True, str value, None, True) or (False,
    type, message, details JSON)."""
    if fn == _PICKLED:
        if attachment is None:
            return (False, "bad_args", "%s: the task carries no pickle (its attachment is empty)" % fn, None)
        return _call_pickled(attachment)
    f = _cache.get(fn)
    if f is None:
        f, why = _find(fn)
        if f is None:
            return (False, why[0], why[1], None)
        _cache[fn] = f
    args = None if args_json == "null" else json.loads(args_json)
    if '"$' in args_json:
        try:
            args = _from_json(args)
        except ValueError as e:
            return (False, "bad_args", "a {\"$bytes\": ...} in args is not valid base64: %s" % e, None)
    try:
        if attachment is None:
            if type(args) is list:
                value = f(*args)
            elif type(args) is dict:
                value = f(**args)
            elif args is None:
                value = f()
            else:
                value = f(args)
        elif type(args) is list:
            value = f(*args, attachment)
        elif type(args) is dict:
            value = f(attachment, **args)
        elif args is None:
            value = f(attachment)
        else:
            value = f(args, attachment)
    except BaseException as e:  # noqa: B902 - SystemExit, KeyboardInterrupt: that task's error, no more
        return _error(e, fn)
    if value is None:
        return (True, "null", None)
    if type(value) is str:  # written as a JSON string by the C++ host, straight from its UTF-8
        return (True, value, None, True)
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value):
        # The protocol's binary path: the bytes travel raw after the body. (No bytes at all go as
        # {"$bytes": ""}: an empty attachment cannot be told from none.)
        return (True, "null", bytes(value))
    try:
        return (True, _encode(value), None)
    except RecursionError:
        return (False, "bad_result", "%s returned a value nested too deep for JSON" % fn, None)
    except (TypeError, ValueError) as e:
        what = str(e)
        if "float values" in what:
            what = "a float that is NaN or infinite"
        elif not what.startswith(("a ", "an ")):
            what = "a %s holding what JSON cannot (%s)" % (type(value).__name__, what)
        return (False, "bad_result", "%s returned %s, which JSON cannot hold" % (fn, what),
                json.dumps({"type": type(value).__name__}))
