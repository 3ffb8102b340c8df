#!/usr/bin/env python
"""Throughput and latency of the permit-checker, against a raw aiokafka pipe on the same broker.

Run by hand (not a test): ``.venv/bin/python bench/permit_throughput.py [options]``; see
bench/README.md for the options and the figures, and the ``throughput`` package beside this
file for how a run goes. The bench's own child processes run this file again, with ``--role``.
"""

from throughput.run import main

if __name__ == "__main__":
    raise SystemExit(main())
