# What both Python workers do alike once the parent is proven (PROTOCOL.md section 11): load the program, find
# a task's function, take its args, write its value or its error. authrun-python compiles this text in ahead of
# its host code (worker/python/CMakeLists.txt); the ctypes worker, _bootstrap.py, imports it, and authrun gives
# interpreters that file with this text in place of the import (python/CMakeLists.txt). Standard library only;
# nothing runs at import but definitions.
import base64
import json
import json.encoder
import os
import sys

__all__ = ["_MISSING", "_Failed", "_type_name", "_exc_text", "_a", "_enter_program", "_load_modules",
           "_find_function", "_error_details", "_encode", "_from_json", "_unencodable"]

_MISSING = object()


def _type_name(t):
    """An exception's type for a result: module-qualified, builtins bare."""
    module = getattr(t, "__module__", None)
    name = getattr(t, "__qualname__", None) or t.__name__
    return name if module in (None, "builtins") else "%s.%s" % (module, name)


def _exc_text(e):
    """str(e), or what says that it raised."""
    try:
        return str(e)
    except BaseException:  # noqa: B902 - a __str__ that raises
        return "<str() of the %s raised>" % type(e).__name__


def _a(name):
    """The name with its article: "a list", "an int"."""
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


class _Failed(Exception):
    """The program failed to load: the message names what and where."""


def _enter_program(program):
    """The program's directory and sys_path, and the user's environment (site-packages, a venv's too, and .pth
    files), now that the parent is proven."""
    cwd = program.get("cwd")
    if cwd:
        try:
            os.chdir(cwd)
        except OSError as e:
            raise _Failed("cannot enter the directory %s: %s" % (cwd, e.strerror))
    import site
    site.main()
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if user_site and os.path.isdir(user_site):
        site.addsitedir(user_site)
    for p in reversed(program.get("sys_path") or []):
        if p not in sys.path:
            sys.path.insert(0, p)


def _import_module(name, file):
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


def _load_modules(modules, skip=None):
    """Imports the program's modules ({"name", "file"?} each); returns {name: module}. Raises _Failed naming the
    module, the file and line, and what was raised; `skip` is the worker's own file (not the user's line)."""
    loaded = {}
    for m in modules:
        name, file = m["name"], m.get("file")
        try:
            loaded[name] = _import_module(name, file)
        except BaseException as e:  # noqa: B902 - SystemExit at import is a failed program too
            sys.modules.pop(name, None)
            where_file, line = _module_line(e, os.path.abspath(file) if file else None, skip)
            if where_file is None and isinstance(e, ModuleNotFoundError):
                where_file = "not found on sys.path"
            place = ", ".join(str(x) for x in (where_file, "line %d" % line if line else None) if x)
            text = _exc_text(e)
            detail = "%s: %s" % (type(e).__name__, text) if text else type(e).__name__
            raise _Failed("module '%s'%s: %s" % (name, " (%s)" % place if place else "", detail))
    return loaded


def _find_function(modules, fn):
    """The callable `fn` names among `modules` ({name: module}): "module.attr.path", or "attr.path" when there
    is one module. Returns (callable, None) or (None, (error type, message))."""
    best = max((m for m in modules if fn.startswith(m + ".")), key=len, default="")
    if best:
        module, path = modules[best], fn[len(best) + 1:]
    elif len(modules) == 1:
        module, path = next(iter(modules.values())), fn
    else:
        return None, ("unknown_function", "unknown function '%s': name its module (one of %s), as module.%s" %
                      (fn, ", ".join(sorted(modules)), fn))
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


def _module_line(exc, file, skip=None):
    """The (file, line) of `file` (the user's code when None) where an import failed, from a SyntaxError or the
    traceback; frames of `skip` (the worker's own file) and of importlib are not the user's."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return exc.filename or file, exc.lineno
    tb, where = exc.__traceback__, None
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        internal = name.startswith("<") or tb.tb_frame.f_globals.get("__name__", "").startswith("importlib")
        if not internal and os.path.abspath(name) != skip and (file is None or os.path.abspath(name) == file):
            where = (name, tb.tb_lineno)
        tb = tb.tb_next
    return where or (file, None)


_ATTRIBUTES = ("code", "errno", "strerror", "filename", "filename2", "winerror", "name", "path", "reason")


def _error_details(e, own_files):
    """A task's exception as its error's details: the traceback without the frames of `own_files` (the worker's
    code), and the attributes JSON can hold (those of its __dict__ and the usual ones: code, errno...)."""
    import traceback
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if f.filename not in own_files and os.path.abspath(f.filename) not in own_files]
    details = {"traceback": "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames)) +
               "".join(traceback.format_exception_only(type(e), e))}
    attributes = {}
    names = list(getattr(e, "__dict__", {}) or {})
    for name in names + [a for a in _ATTRIBUTES if a not in names]:
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
    return details


def _from_json(value):
    """A task's args as the function gets them: {"$bytes": base64} becomes bytes; {"$dict": {...}} is that
    object, taken as it is. Raises ValueError for base64 that is not valid."""
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
    """bytes nested in a result become {"$bytes": base64}; anything else JSON cannot hold is refused."""
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


# Keys sorted, as the runner's parsed path prints them: a result reads the same whether it came alone (parsed)
# or in a result_batch (passed on as text).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_to_json,
                            sort_keys=True)


def _key_text(k):
    """A dict key as JSON writes it: str as is; int, float, bool and None as their JSON text."""
    if isinstance(k, str):
        return k
    if k is True or k is False or k is None or isinstance(k, float):
        return json.dumps(k)
    if isinstance(k, int):
        return int.__repr__(k)
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
    """The value's JSON text (section 11.1). Raises TypeError or ValueError for what JSON cannot hold,
    RecursionError for what nests too deep."""
    t = type(value)
    # The common scalars without an encoder's set-up (the text JSONEncoder.encode would write).
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


def _unencodable(fn, value, e):
    """The bad_result message for `value`, returned by `fn`, that _encode refused with `e`."""
    what = str(e)
    if "float values" in what:
        what = "a float that is NaN or infinite"
    elif not what.startswith(("a ", "an ")):
        what = "a %s holding what JSON cannot (%s)" % (type(value).__name__, what)
    return "%s returned %s, which JSON cannot hold" % (fn, what)
