"""Operator implementations. Importing this package imports every module in it, and each
module registers its ops with ``fastq.runtime.registry.register``."""

import importlib
import pkgutil

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_mod}")
