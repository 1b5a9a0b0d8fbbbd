"""Builds libkiln from the source tree this package sits in (meson, as
tools/setup.sh does) and ships the shared library inside the package, so
`pip install ./python` works whether or not kiln is installed system-wide.
Outside a kiln source tree nothing is built: the package then loads the
libkiln that KILN_LIBRARY names or the system's."""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)


class build_with_libkiln(build_py):
    def run(self):
        super().run()
        if not os.path.exists(os.path.join(SOURCE, "meson.build")):
            return
        build = os.path.join(SOURCE, "build-python")
        if not os.path.exists(os.path.join(build, "build.ninja")):
            subprocess.check_call(["meson", "setup", build, SOURCE, "--buildtype=release",
                                   "-Dwerror=false"])
        subprocess.check_call(["meson", "compile", "-C", build, "kiln:shared_library"])
        target = os.path.join(self.build_lib, "kiln", "_lib")
        os.makedirs(target, exist_ok=True)
        # one file, under its soname's full version (libkiln.so.0.2.0): not
        # the links beside it, which a wheel would store as three copies
        lib = os.path.realpath(os.path.join(build, "libkiln.so"))
        shutil.copy2(lib, os.path.join(target, os.path.basename(lib)))


setup(cmdclass={"build_py": build_with_libkiln})
