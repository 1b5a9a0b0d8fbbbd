"""The package as pip builds and installs it (meson-python): a wheel from
the source tree, installed without it into a --system-site-packages
virtual environment, into a directory for the system interpreter, and
into a plain virtual environment. Offline: the wheel is built without
build isolation, with Debian's meson-python, and nothing is downloaded.
The build directory (build-wheel/) is kept, so later runs rebuild only
what changed."""
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK = textwrap.dedent("""
    import os, sys, numpy as np, kiln
    assert kiln.library_path.startswith(sys.argv[1]), kiln.library_path
    m = kiln.Sequential([kiln.Linear(3)], input_shape=4, loss="mse")
    print(kiln.__version__, m.predict(np.ones((2, 4))).shape)
""")

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mesonpy") is None,
    reason="meson-python is not installed for this interpreter (Debian: python3-mesonpy, "
           "which tools/setup.sh installs); the install paths are not tested")


def run(*args, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("KILN_LIBRARY", "PYTHONPATH")}
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, args))}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def pip_into(venv, *args):
    """This interpreter's pip acting on the environment (pip --python):
    creating environments without pip of their own is much faster."""
    return run(sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), *args)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    build = os.path.join(SOURCE, "build-wheel")
    if not os.path.exists(os.path.join(build, "meson-private", "coredata.dat")):
        # meson-python 0.12 (Debian 12) reconfigures a build directory it has
        # not configured yet when its native file is there from another one
        native = os.path.join(SOURCE, "python", ".mesonpy-native-file.ini")
        if os.path.exists(native):
            os.remove(native)
        shutil.rmtree(build, ignore_errors=True)
    run(sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q",
        "-w", str(out), "--config-settings=builddir=" + build,
        os.path.join(SOURCE, "python"))
    wheels = list(out.glob("kiln-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_the_wheel_holds_the_library_and_the_package(wheel):
    import zipfile
    names = zipfile.ZipFile(wheel).namelist()
    assert "kiln/_lib/libkiln.so" in names and "kiln/__init__.py" in names
    assert "kiln/model.py" in names and not any("test" in n for n in names)


def test_installs_into_a_venv_with_system_site_packages(wheel, tmp_path):
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv))
    pip_into(venv, "install", "-q", "--no-index", "--no-deps", str(wheel))
    out = run(str(venv / "bin" / "python"), "-c", CHECK, str(venv), cwd=tmp_path)
    assert "(2, 3)" in out


def test_installs_for_the_system_interpreter(wheel, tmp_path):
    target = tmp_path / "site"
    run(sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
        "--target", str(target), str(wheel))
    env_check = f"import sys; sys.path.insert(0, {str(target)!r})\n" + CHECK
    assert "(2, 3)" in run(sys.executable, "-c", env_check, str(target), cwd=tmp_path)


def test_installs_into_a_plain_venv(wheel, tmp_path):
    """Without network numpy cannot come along, so the check is the install
    itself, its declared dependency, and the library it carries."""
    venv = tmp_path / "plain"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    pip_into(venv, "install", "-q", "--no-index", "--no-deps", str(wheel))
    show = pip_into(venv, "show", "kiln")
    assert "Requires: numpy" in show
    lib = run(str(venv / "bin" / "python"), "-c",
              "import ctypes, glob, sys; p = glob.glob(sys.prefix + '/lib/python*/site-packages"
              "/kiln/_lib/libkiln.so')[0]; l = ctypes.CDLL(p); l.kiln_version.restype = "
              "ctypes.c_char_p; print(l.kiln_version().decode())", cwd=tmp_path)
    assert lib.strip().count(".") == 2
