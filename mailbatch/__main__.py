"""Allow ``python -m mailbatch``."""
from mailbatch.cli.main import main

if __name__ == "__main__":  # not when a spawned render worker imports it
    raise SystemExit(main())
