"""The publish commands' option limits and defaults, in a module of their own: `gpucomp --help` shows
them without loading the gallery and everything it reads."""

THUMB_DEFAULT, THUMB_MIN, THUMB_MAX = 160, 16, 1024  # the gallery's thumbnail box side, pixels
