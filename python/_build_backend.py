"""A minimal PEP 517 build backend, standard library only, so that `pip install ./python` works in any venv
without network access (setuptools would be fetched, or need `wheel`). Builds a wheel of the authrun package
and an sdist of this directory.

In authrun's source tree (pip builds in place) the wheel also holds the extension module authrun._engine and
the authrun-python worker, built with CMake for the interpreter pip runs (Debian: cmake, g++, python3-dev,
pybind11-dev and authrun's other build packages; scripts/setup installs them) in build/pip-<tag>/; the wheel
is then for that interpreter only. Without the sources or CMake (an sdist elsewhere) the wheel is pure Python:
the worker side, and `import authrun` says what the pool needs."""

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

NAME = "authrun"
VERSION = "0.1.0"
HERE = os.path.dirname(os.path.abspath(__file__))
METADATA = (
    "Metadata-Version: 2.1\n"
    "Name: %s\n"
    "Version: %s\n"
    "Summary: Python worker for authrun: Python functions run for an authrun runner after a mutual handshake\n"
    "Requires-Python: >=3.8\n" % (NAME, VERSION)
)
ENTRY_POINTS = "[console_scripts]\nauthrun-python-worker = authrun._bootstrap:main\n"


def _package_files():
    pkg = os.path.join(HERE, NAME)
    return sorted(f for f in os.listdir(pkg) if f.endswith(".py"))


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def _build_native():
    """[(path in the wheel, file)] of the extension module and the worker built for this interpreter, and the
    wheel's tag; or ([], None) when there is nothing to build them from."""
    source = os.path.dirname(HERE)
    if not os.path.exists(os.path.join(source, "runner", "pool", "engine_module.cpp")) or not shutil.which("cmake"):
        sys.stderr.write("authrun: building a pure-Python wheel (no authrun sources or no cmake): the pool needs "
                         "authrun._engine, built from authrun's sources\n")
        return [], None
    version = "%d%d" % sys.version_info[:2]
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    tag = "cp%s-cp%s-%s" % (version, version, platform)
    build = os.path.join(source, "build", "pip-" + tag)
    configure = ["cmake", "-S", source, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DAUTHRUN_TESTS=OFF",
                 "-DPython3_EXECUTABLE=" + sys.executable]
    for launcher in ("CMAKE_CXX_COMPILER_LAUNCHER", "CMAKE_C_COMPILER_LAUNCHER"):
        if os.environ.get(launcher):
            configure.append("-D%s=%s" % (launcher, os.environ[launcher]))
    subprocess.check_call(configure, stdout=sys.stderr)
    subprocess.check_call(["cmake", "--build", build, "-j%d" % (os.cpu_count() or 1), "--target", "_engine",
                           "authrun-python"], stdout=sys.stderr)
    package = os.path.join(build, "python", NAME)
    extension = [f for f in os.listdir(package) if f.startswith("_engine.") and f.endswith(".so")]
    if not extension:
        raise RuntimeError("the extension module was not built in %s (are python3-dev and pybind11-dev installed?)" % package)
    return [("%s/%s" % (NAME, extension[0]), os.path.join(package, extension[0])),
            ("%s/authrun-python" % NAME, os.path.join(build, "bin", "authrun-python"))], tag


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist_info = "%s-%s.dist-info" % (NAME, VERSION)
    native, tag = _build_native()
    wheel_name = "%s-%s-%s.whl" % (NAME, VERSION, tag or "py3-none-any")
    records = []
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w", zipfile.ZIP_DEFLATED) as z:
        def add(arcname, data, mode=0o644):
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
            records.append("%s,sha256=%s,%d" % (arcname, digest, len(data)))

        for name in _package_files():
            with open(os.path.join(HERE, NAME, name), "rb") as f:
                add("%s/%s" % (NAME, name), f.read())
        for arcname, path in native:
            with open(path, "rb") as f:
                # The worker 0711 as installed by cmake: an executable its user cannot read starts non-dumpable.
                add(arcname, f.read(), 0o711 if arcname.endswith("authrun-python") else 0o755)
        add(dist_info + "/METADATA", METADATA.encode())
        add(dist_info + "/WHEEL", ("Wheel-Version: 1.0\nGenerator: authrun\nRoot-Is-Purelib: %s\nTag: %s\n" % (
            "false" if tag else "true", tag or "py3-none-any")).encode())
        add(dist_info + "/entry_points.txt", ENTRY_POINTS.encode())
        z.writestr(dist_info + "/RECORD", "\n".join(records + [dist_info + "/RECORD,,"]) + "\n")
    return wheel_name


def build_sdist(sdist_directory, config_settings=None):
    base = "%s-%s" % (NAME, VERSION)
    name = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as t:
        for rel in ["pyproject.toml", "_build_backend.py", "README.md"] + ["%s/%s" % (NAME, f) for f in _package_files()]:
            t.add(os.path.join(HERE, rel), arcname="%s/%s" % (base, rel))
        info = tarfile.TarInfo(base + "/PKG-INFO")
        data = METADATA.encode()
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return name
