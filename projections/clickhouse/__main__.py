"""``python -m projections.clickhouse migrate | query``: see ``projections.clickhouse.cli``."""

from __future__ import annotations

import sys

from projections.clickhouse.cli import main

if __name__ == "__main__":
    sys.exit(main())
