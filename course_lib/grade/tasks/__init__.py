"""Every task's tests, one module per lesson or chapter.  Importing this package registers them all.

Add a module here (``vs03_ivf.py``, ...) and it is picked up: no list to edit.
"""

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
