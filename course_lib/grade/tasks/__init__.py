"""Every task's tests, one module per chapter.  Importing this package registers them all."""

from . import vector_search  # noqa: F401
