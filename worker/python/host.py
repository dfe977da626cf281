# The Python half of authrun-python, compiled into the executable (worker/python/CMakeLists.txt turns this
# file into a C++ string constant, after python/authrun/_worker_core.py, whose definitions it uses:
# _load_modules, _find_function, _encode...): never read from a path at run time. The C++ half
# (python_host.cpp) has done the key hand-over, the handshake and the framing; it calls load() once with the
# program message and call() for each task. PROTOCOL.md section 11 is the contract these functions follow.
import base64
import json

_HOST_FILE = "<authrun-python host>"
_PICKLED = "authrun.pickled"
_modules = {}
_cache = {}


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
    _enter_program(program)
    _modules.update(_load_modules(program.get("modules") or []))
    init = program.get("initializer")
    if init:
        import pickle
        try:
            func, initargs = pickle.loads(base64.b64decode(init))
            func(*initargs)
        except BaseException as e:  # noqa: B902
            raise _Failed("initializer: %s: %s" % (_type_name(type(e)), _exc_text(e)))


def _error(e, fn):
    """(False, type, message, details JSON) for an exception a task raised."""
    details = _error_details(e, (_HOST_FILE,))
    try:
        dtext = _encode(details)
        dtext.encode("utf-8")
    except BaseException:  # noqa: B902
        dtext = json.dumps({"traceback": details["traceback"]}, ensure_ascii=True)
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
        f, why = _find_function(_modules, fn)
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
        return (False, "bad_result", _unencodable(fn, value, e), json.dumps({"type": type(value).__name__}))
