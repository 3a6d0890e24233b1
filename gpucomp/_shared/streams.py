"""The command line's standard output and error: a closed pipe or a full device there never turns a
finished run into a failure, and nothing printed reaches the terminal as a control (safe_text)."""
from __future__ import annotations

import os

from gpucomp._shared.safe_text import stream_safe


class TolerantStream:
    """stdout/stderr for a command's reports. A closed pipe or a full device there must not turn a
    finished run into a failure: the exit status says what happened to the collection, and what
    could not be printed is dropped (the fd is pointed at /dev/null, so exit-time flushes pass)."""

    def __init__(self, stream):
        self._stream = stream
        self.lost: OSError | None = None

    def write(self, text: str) -> int:
        if self.lost is None:
            try:
                return self._write(text)
            except OSError as err:
                self._lose(err)
        return len(text)

    def _write(self, text: str) -> int:
        """Every control and bidi character is shown as an escape (but newlines, tabs and CR), and a
        terminal whose encoding lacks a character (a Latin-1 locale and the `—` in a message) gets it
        as an escape instead of a UnicodeEncodeError."""
        shown = stream_safe(text)  # no escape sequence reaches the terminal, whatever printed it
        try:
            self._stream.write(shown)
        except UnicodeEncodeError:
            encoding = self._stream.encoding or "ascii"  # a text stream's; None for an io.StringIO
            self._stream.write(shown.encode(encoding, "backslashreplace").decode(encoding))
        return len(text)

    def flush(self) -> None:
        if self.lost is None:
            try:
                self._stream.flush()
            except OSError as err:
                self._lose(err)

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except (OSError, ValueError):
            return False

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def _lose(self, err: OSError) -> None:
        self.lost = err
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass  # not a real fd (a test's capture): nothing is flushed to it at exit
