"""Maps the three top-level folders onto subpackages of ``edgectl`` (see DESIGN.md, "Layout").

pyproject.toml holds all metadata; only the package list lives here, because setuptools' automatic
discovery cannot rename folders (``runtime/`` -> ``edgectl.runtime``) and a hand-kept list goes stale.
"""

import os

from setuptools import setup

ROOTS = {
    "edgectl": "edgectl",
    "edgectl.converter": "converter",
    "edgectl.runtime": "runtime",
    "edgectl.fleet": "fleet",
}


def _packages() -> list[str]:
    found = []
    for package, folder in ROOTS.items():
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
            if "__init__.py" in filenames:
                rel = os.path.relpath(dirpath, folder)
                found.append(package if rel == "." else f"{package}.{rel.replace(os.sep, '.')}")
    return found


setup(packages=_packages(), package_dir=ROOTS)
