"""`python -m imagedrop` runs the CLI."""

from imagedrop.cli import main

raise SystemExit(main())
