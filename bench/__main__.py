"""`python -m bench [--only latency,memory] [--quick]`: print the benchmark table."""

from __future__ import annotations

import sys

from bench.cli import main

sys.exit(main())
