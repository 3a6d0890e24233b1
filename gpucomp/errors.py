"""Exception types. Every user-facing failure is a GpucompError with a message that
names the file or key, what is wrong, and what to do; the CLI prints it without a traceback."""


class GpucompError(Exception):
    """Base class: the CLI prints the message and exits with status 2. A newline in the message is
    shown as `\\n` (a name holding one cannot fake a line of its own), but in the classes whose
    `multiline` is True: their newlines are their layout, and every name in them was made one line
    where the message was built."""

    multiline = False


class LayerError(GpucompError, ValueError):
    """A layers folder or trait file is unusable."""


class LayerProblems(LayerError):
    """Several problems in a layers folder, a line each (safe_text.terminal_safe made each one line)."""

    multiline = True


class LayerWarning(UserWarning):
    """Something in a layers folder was left out (files that are not images); the run goes on."""


class ConfigError(GpucompError, ValueError):
    """A config file or option has a bad key, type or value."""


class PlanError(GpucompError, ValueError):
    """The requested collection cannot be planned (e.g. more items than combinations)."""


class OutputError(GpucompError, OSError):
    """The output folder cannot be used or written."""


class BackendUnavailable(GpucompError, RuntimeError):
    """A backend that was asked for explicitly cannot run here."""


class Interrupted(GpucompError):
    """A run was stopped on request (Ctrl-C, SIGTERM, `Generation.stop()`); finished items are
    kept and re-running the same command resumes. `summary` describes what was done."""

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary or {}
