"""The ``vpr_bench.plugins`` entry point: importing this module registers every published model.

Each module of ``zoo.models`` is one model family (a typed options dataclass, the network built from timm
backbones and our own small aggregators, the map from its authors' checkpoint keys to ours) and registers
itself with ``zoo.published.register_published``.
"""

import importlib
import pkgutil

from zoo import models

for _module in sorted(m.name for m in pkgutil.iter_modules(models.__path__) if not m.name.startswith("_")):
    importlib.import_module(f"zoo.models.{_module}")
