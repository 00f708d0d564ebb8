"""``python -m speechrq.cli``, the same as ``python -m speechrq`` and ``speechrq``."""

import sys

from . import main

sys.exit(main())
