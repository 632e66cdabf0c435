"""Bytecode for exactly the modules kubetrade imports, made by importing them (image build).

Run by the Containerfile's builder stage with the image's virtualenv python and bytecode
writing on. The runtime image's root filesystem is read-only, so a module without
bytecode there is compiled again by every process that imports it (~0.5 s more per start
of `kubetrade`, ~3 s for a session that loads ccxt). Compiling every module instead
(compileall) costs ~100 MB, most of it for modules nothing imports; importing every
module of kubetrade writes bytecode for what it actually loads (~40 MB). A failing import
fails the build: it also proves that the stripped shared libraries still load.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys

# Imported inside functions by kubetrade (on first use), so the walk below misses them.
LAZY = ("duckdb", "pyarrow.parquet")


def main() -> int:
    if sys.dont_write_bytecode:
        print("precompile.py: bytecode writing is off (PYTHONDONTWRITEBYTECODE)", file=sys.stderr)
        return 1
    names = []
    for package_name in ("kubetrade.runner", "kubetrade.operator"):
        package = importlib.import_module(package_name)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package_name + ".")]
    # A lazy import whose distribution is not installed (any more) is not kubetrade's to load.
    names += [name for name in LAZY if importlib.util.find_spec(name.split(".")[0]) is not None]
    for name in names:
        importlib.import_module(name)
    print(f"precompile.py: imported {len(names)} modules, {len(sys.modules)} loaded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
