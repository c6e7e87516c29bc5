"""`python -m opslab.variants NAME serve ...`."""

from opslab.variants import main

raise SystemExit(main())
