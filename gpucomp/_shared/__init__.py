"""Helpers every floor uses and that know nothing of the flow: files opened safely (atomic writes,
regular files only, size limits), the numba finder, TOML table checks, fault-injection points.
"""
