"""The package version: in its own module so that any room can name it (manifests, provenance, `info`)
without importing the API."""

__version__ = "0.1.0"
