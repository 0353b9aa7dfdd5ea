"""``python -m bench`` (from the repository root, after ``scripts/setup``)."""

from bench.cli import main

raise SystemExit(main())
