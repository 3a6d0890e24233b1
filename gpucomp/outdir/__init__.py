"""The output folder and the runs that fill it: its layout, lock, manifest and resume checks, journal and
provenance, streamed writeback, the shard renderer, the local pipeline, Ray, and update-metadata.
"""
