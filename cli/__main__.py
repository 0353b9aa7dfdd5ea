"""``python -m touchlamp`` is the same as the ``touchlamp`` command."""

from touchlamp.cli import main

raise SystemExit(main())
