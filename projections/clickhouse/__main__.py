"""``python -m turnlog.projections.clickhouse migrate | query`` (see its ``cli``)."""

from __future__ import annotations

import sys

from turnlog.projections.clickhouse.cli import main

if __name__ == "__main__":
    sys.exit(main())
