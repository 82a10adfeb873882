"""Entry point of `python -m devolearn_web.training`."""

from devolearn_web.training.cli import main

raise SystemExit(main())
