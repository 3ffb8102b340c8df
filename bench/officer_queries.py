#!/usr/bin/env python
"""What compliance officers ask, at national scale: builds a history of applications, decisions
and re-decisions through the gate's own store path, then times the officers' queries on it.

Run by hand (not a test): ``.venv/bin/python bench/officer_queries.py [options]``; see
bench/README.md for the options, the goals and the figures, and the ``officer`` package beside
this file for how a run goes.
"""

from officer.run import main

if __name__ == "__main__":
    raise SystemExit(main())
