"""``python -m touchlamp.install device|relay install|uninstall …``."""

from touchlamp.install.run import main

raise SystemExit(main())
