"""``python tests/search_driver.py ARGS``: ``python -m search.run ARGS`` with the test-only ``smoke`` space registered.

The driver process is the one that calls the space (Optuna runs in the Tune driver), so registering it here is enough;
trial workers only receive configs. With ``CXR_INTERRUPT_AT`` set, Ctrl+C comes at the moment it names
(tests/interrupt_at.py).
"""

from __future__ import annotations

import os
import sys

import interrupt_at
import smoke_space

from search.run import main

if __name__ == "__main__":
    smoke_space.register()
    if os.environ.get(interrupt_at.ENV):
        interrupt_at.install()
    sys.exit(main())
