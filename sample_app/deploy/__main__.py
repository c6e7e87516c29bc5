"""`python -m sample_app.deploy`."""

from sample_app.deploy.cli import main

raise SystemExit(main())
