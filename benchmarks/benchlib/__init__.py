"""Shared plumbing for the scripts in ``benchmarks/``: native builds, pinned child processes and
machine descriptions. Each module does one of these jobs; the scripts import what they need."""
