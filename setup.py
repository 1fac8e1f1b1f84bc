"""Build step: ship the notebooks and the demo params inside the package.

``notebooks/`` and ``params/`` stay at the repository's top level (where users edit them); the
wheel carries copies as ``lcgee/notebooks/NN_*.py`` and ``lcgee/notebooks/params/demo.yaml``,
so an installed lcgee runs ``lcgee run demo`` from any directory (see
``lcgee.run.default_notebooks_dir`` and ``lcgee.run.resolve_params``). Everything else about
the package is declared in ``pyproject.toml``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = {"notebooks": ("notebooks", "[0-9][0-9]_*.py"),
           "notebooks/params": ("params", "demo.yaml")}


class BuildWithNotebooks(build_py):
    """``build_py`` that also copies the stage notebooks and the demo params into the package."""

    def run(self) -> None:
        super().run()
        for dest, (src, pattern) in SHIPPED.items():
            target = Path(self.build_lib) / "lcgee" / dest
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted((HERE / src).glob(pattern)):
                shutil.copyfile(path, target / path.name)


setup(cmdclass={"build_py": BuildWithNotebooks})
