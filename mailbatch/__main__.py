"""Allow ``python -m mailbatch``."""
from mailbatch.cli import main

raise SystemExit(main())
