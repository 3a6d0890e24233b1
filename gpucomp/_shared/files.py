"""Files opened safely: the one place that opens files inside OUT, and the reads of inputs that must
be regular files of a bounded size (configs, lists, one-of-ones, manifests).

Everything appears atomically (written under a temporary name, then renamed), and nothing is
ever written through a link: a temporary file is created with O_EXCL (never a link's target),
the rename replaces a link itself rather than what it points to, the few files opened in place
(the lock, the journal) are opened with O_NOFOLLOW, and the folders we write into inside OUT
must be real folders. Reads of our own files go through `read_regular`, which refuses links,
FIFOs and devices without blocking, and caps the size it will read.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path

from gpucomp.errors import ConfigError, OutputError

TMP_PREFIX = ".gpucomp-tmp-"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO for reading would otherwise wait for a writer


class NotRegularFile(OSError):
    """A path inside OUT that should be a plain file is a link, FIFO, socket, device or folder."""


def create_temporary(folder: Path) -> tuple[int, str]:
    """A new temporary file in `folder`, with the umask's usual permissions (mkstemp's 0600
    would make every image private to the user who rendered it). O_EXCL never follows a link."""
    while True:
        tmp = os.path.join(folder, f"{TMP_PREFIX}{secrets.token_hex(8)}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", fsync: bool = False, exclusive: bool = False, **kwargs):
    """A file to stream into; it appears under `path` only once the block ends without error,
    and a failure leaves nothing behind (not even the temporary file). A link at `path` is
    replaced, never written through. `fsync`: the data and the rename are on disk on return.
    `exclusive`: FileExistsError when something (a link too) has the name by then (`link_new`)."""
    path = Path(path)
    fd, tmp = create_temporary(path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if exclusive:
            link_new(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if fsync:
        _fsync_folder(path.parent)


NO_HARD_LINKS = (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS)


def link_new(tmp: str, path: Path) -> None:
    """Give the finished file `tmp` the name `path` only if nothing has that name, and drop `tmp`.
    link(2) fails with EEXIST when the name exists, in the same step that would make it, so there is
    no window between a check and the write (what O_EXCL gives, without an empty or partial file
    ever showing under `path`). Where the file system refuses hard links, the name is claimed with
    O_EXCL and the finished file renamed onto it: an empty file shows there for that moment only."""
    try:
        os.link(tmp, path, follow_symlinks=False)
    except OSError as err:
        if err.errno not in NO_HARD_LINKS:
            raise
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o666))
        try:
            os.replace(tmp, path)
        except BaseException:
            os.unlink(path)  # the empty file claimed just above, never someone else's
            raise
    else:
        os.unlink(tmp)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a power cut after this keeps the new name)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the file itself is synced
    finally:
        os.close(fd)


def open_in_place(path: str | os.PathLike, flags: int, mode: int = 0o644) -> int:
    """An fd for the few files updated in place inside OUT (the lock, the journal): never
    through a symbolic or hard link, never a FIFO or device. Raises NotRegularFile (an OSError)
    otherwise. `flags` must not truncate: truncate after this has checked the file."""
    assert not flags & os.O_TRUNC, "truncate after the checks, with os.ftruncate"
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | _NONBLOCK, mode)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise NotRegularFile(errno.ELOOP, "is a symbolic link (gpucomp never writes through links in "
                                 "the output folder; remove it)", str(path)) from None
        raise
    _require_regular(fd, path)
    if os.fstat(fd).st_nlink > 1:
        os.close(fd)
        raise NotRegularFile(errno.EMLINK, "has other hard links (gpucomp never writes through links in the "
                             "output folder; remove it)", str(path))
    os.set_blocking(fd, True)
    return fd


def _require_regular(fd: int, path) -> None:
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
            "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
            "not a regular file"
        raise NotRegularFile(errno.EINVAL, f"is {kind}, not a regular file (remove it)", str(path))


@contextmanager
def open_regular(path: str | os.PathLike):
    """A binary file object for reading one of our own files: a link, FIFO, socket or device
    raises NotRegularFile at once instead of being followed or blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _NONBLOCK)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise NotRegularFile(errno.ELOOP, "is a symbolic link, not a file gpucomp wrote", str(path)) from None
        raise
    _require_regular(fd, path)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as f:
        yield f


def read_regular(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of one of our own files (see `open_regular`); more than `limit` bytes raises
    NotRegularFile(EFBIG) before anything is read."""
    with open_regular(path) as f:
        if limit is not None:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise NotRegularFile(errno.EFBIG, f"is {size} bytes, more than the {limit} a file of this kind "
                                     f"can hold", str(path))
        return f.read()


def ensure_folder(path: Path) -> Path:
    """Create `path` (a folder we write into inside OUT) if missing; refuse a link or a non-folder
    there, so that no write can land outside OUT. Raises OutputError."""
    try:
        try:
            path.mkdir()
        except FileExistsError:
            pass  # checked below, whatever it is
        st = os.lstat(path)
    except OSError as err:
        raise write_failure(path, err, "run the same command again") from err
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(f"{path}: is a symbolic link; gpucomp only writes into real folders inside the output "
                          f"folder (so nothing lands elsewhere): remove the link, or pass --force to start over")
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{path}: exists and is not a folder; remove it, or pass --force to start over")
    return path


def write_failure(path: str | os.PathLike, err: OSError, then: str) -> OutputError:
    """The error for a write to `path` that failed with `err`: the file, what went wrong in words a
    user can act on (a full disk, a quota, a read-only or failing device), and `then`, how to go on
    once that is fixed (e.g. "run `gpucomp gallery OUT` again")."""
    if err.errno == errno.ENOSPC:
        why = "no space left on the device; free space"
    elif err.errno == errno.EDQUOT:
        why = "over the disk quota; free space (or have the quota raised)"
    elif err.errno == errno.EROFS:
        why = "the file system is read-only; make it writable (or use a copy of the folder elsewhere)"
    elif err.errno == errno.EIO:
        why = "input/output error (a failing disk or a lost network mount); check the device"
    else:
        why = f"cannot write ({err.strerror or err}); fix the cause"
    return OutputError(f"{path}: {why}, then {then}")


def remove_temporaries(folder: Path, prefix: str = TMP_PREFIX) -> int:
    """Remove what killed writers left in `folder` under temporary names; a link to a folder
    (or no folder) is left alone. Returns how many files went."""
    if not is_real_folder(folder):
        return 0
    n = 0
    for p in folder.iterdir():
        if p.name.startswith(prefix):
            try:
                os.unlink(p)
                n += 1
            except FileNotFoundError:
                pass
    return n


def nonempty_file(path: Path) -> bool:
    """A plain file (not a link, FIFO or device) with at least one byte: an item's non-primary files
    count as there when they are (media.py; they are not hashed)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size > 0


def is_real_folder(path: Path) -> bool:
    """A folder that is not a link (what we may list, clean or delete from)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


WRITE_PIECE = 1 << 20  # one write() per MiB: see atomic_write_bytes


def atomic_write_bytes(path: str | os.PathLike, data, fsync: bool = False, writeback=None,
                       exclusive: bool = False) -> None:
    """Write `data` to `path` so the final name only ever shows complete content. Large data goes
    in 1 MiB writes: one 4.2 MB write() took a median 3.3 ms (p90 15 ms) on the 2-core box's
    sandboxed kernel against 1.3 ms (p90 1.7 ms) in 1 MiB pieces; elsewhere it costs nothing.
    `writeback` (a writeback.Writeback): stream the file to disk and out of the page cache.
    `exclusive`: never replace a file already at `path` (FileExistsError; see atomic_open)."""
    view = memoryview(data).cast("B")
    with atomic_open(path, "wb", fsync, exclusive) as f:
        for start in range(0, len(view), WRITE_PIECE):
            f.write(view[start:start + WRITE_PIECE])
        if writeback is not None:
            f.flush()
            writeback.add(f.fileno(), len(view), os.fspath(path))


def json_bytes(obj, indent: int | None = 2) -> bytes:
    """The exact bytes gpucomp writes for a JSON file (also used to check files on resume). NaN and
    infinities are a ValueError, never written as `NaN`/`Infinity` (which JSON does not have, so the
    file would stop being JSON): inputs that could carry one are refused where they are read."""
    return (json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False) + "\n").encode()


def atomic_write_json(path: str | os.PathLike, obj, indent: int | None = 2, fsync: bool = False) -> None:
    atomic_write_bytes(path, json_bytes(obj, indent), fsync)


MAX_CONFIG_BYTES = 16 << 20  # a config is a few KB; exact counts for thousands of traits stay far below


def read_config_text(path: Path) -> str:
    """The config's text. Its type and size are checked with stat before the open (stat never blocks)
    and again on the open file: a named pipe or a device is refused instead of waited on or read
    forever, a huge file instead of read. A UTF-8 byte order mark (Windows Notepad writes one) is fine."""
    try:
        _check_config_file(path, os.stat(path))
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a pipe swapped in after the stat: no wait
        with open(fd, "rb") as f:
            _check_config_file(path, os.fstat(f.fileno()))
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror or err})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: more than {MAX_CONFIG_BYTES} bytes is far more than a config holds; "
                          f"is this the right file?")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{path}: saved as UTF-16 (it starts with a UTF-16 byte order mark); save the config as UTF-8")
    try:
        return data.decode("utf-8-sig")  # -sig: drops a UTF-8 byte order mark
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err}); save the config as UTF-8") from None


def _check_config_file(path: Path, info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path}: is a folder; pass the config file (e.g. {path / 'gpucomp.toml'})")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: not a regular file (a pipe, socket or device); pass a .toml config file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {info.st_size} bytes is far more than a config holds "
                          f"(at most {MAX_CONFIG_BYTES}); is this the right file?")


PATH_MAX = 4096  # Linux: a path longer than this cannot be opened as written (ENAMETOOLONG)


def reachable(path: str) -> str:
    """`path`, or the same place relative to the working directory when the absolute path is too
    long to open (a manifest records absolute paths; resumed from a very deep working directory,
    those exceed PATH_MAX while the relative path does not)."""
    if len(os.fsencode(path)) < PATH_MAX:
        return path
    try:
        relative = os.path.relpath(path)
    except (OSError, ValueError):
        return path
    return relative if len(os.fsencode(relative)) < PATH_MAX else path
