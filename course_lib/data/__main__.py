"""``python -m course_lib.data build|embed|verify|all``: rebuild or verify the frozen corpus (``make data``)."""

import sys

from .corpus import main

sys.exit(main())
