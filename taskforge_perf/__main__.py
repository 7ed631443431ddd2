"""``python -m taskforge_perf`` runs the CLI."""

from taskforge_perf.cli import main

raise SystemExit(main())
