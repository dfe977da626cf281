"""Loads authrun's extension module (_engine), or says in one line what to do when this interpreter has none."""

import glob
import os
import sys
import sysconfig


def _built_for():
    here = os.path.dirname(os.path.abspath(__file__))
    tags = sorted(os.path.basename(p)[len("_engine."):-len(".so")] for p in glob.glob(os.path.join(here, "_engine.*.so")))
    return ", ".join(tags) or "no interpreter (it was not built)"


def load():
    try:
        from . import _engine
    except ImportError as e:
        suffix = (sysconfig.get_config_var("EXT_SUFFIX") or "").strip(".").replace(".so", "")
        raise ImportError(
            "authrun's extension module is not built for this interpreter (%s, %s; the package has it for %s): "
            "install authrun for it (`%s -m pip install ./python` in authrun's sources, with its headers and "
            "pybind11), or run Debian's /usr/bin/python3 [%s]" % (sys.executable, suffix, _built_for(), sys.executable, e)
        ) from None
    return _engine
