"""A minimal PEP 517 build backend, standard library only, so that `pip install ./python` works in any venv
without network access (setuptools would be fetched, or need `wheel`). Builds a pure-Python wheel of the
authrun package and an sdist of this directory."""

import base64
import hashlib
import io
import os
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


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist_info = "%s-%s.dist-info" % (NAME, VERSION)
    wheel_name = "%s-%s-py3-none-any.whl" % (NAME, VERSION)
    records = []
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w", zipfile.ZIP_DEFLATED) as z:
        def add(arcname, data):
            z.writestr(arcname, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
            records.append("%s,sha256=%s,%d" % (arcname, digest, len(data)))

        for name in _package_files():
            with open(os.path.join(HERE, NAME, name), "rb") as f:
                add("%s/%s" % (NAME, name), f.read())
        add(dist_info + "/METADATA", METADATA.encode())
        add(dist_info + "/WHEEL", b"Wheel-Version: 1.0\nGenerator: authrun\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
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
