"""Compositing backends. `select.choose()` picks one; only `cuda` imports cupy, lazily."""
