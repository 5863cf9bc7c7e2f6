"""Helpers for hack/bench.py: a small Kubernetes client, process and API-server counters, audit-log reading.

Each module is one concern; none of them imports the operator, so the harness measures it from outside.
"""
