"""`python -m sample_app ...` runs the command-line interface."""

from sample_app.cli import main

raise SystemExit(main())
