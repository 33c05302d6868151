"""Atomic file and directory writes: a temporary name in the same folder, then a rename."""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import tempfile
from typing import Iterator

# temporary names carry the writer's host and process id, so that a later run can tell a killed run's
# leftovers (whose process is gone) from the files of a run still writing:
# .<name>.h<host>pid<N>.<random>.tmp[.ext] / .old
TEMPORARY_NAME = re.compile(r"^\..+\.h([0-9a-f]{8})pid(\d+)\.[A-Za-z0-9_]+\.(tmp|old)(\.[A-Za-z0-9]+)*$")
# the writer's host, so that a run never removes what a process on another machine (sharing the
# folder) is writing: its pid says nothing here
HOST_TAG = hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _prefix(path: str) -> str:
    """The start of a temporary name beside `path` (see TEMPORARY_NAME)."""
    return f".{os.path.basename(path)}.h{HOST_TAG}pid{os.getpid()}."


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_file(path: str) -> None:
    """Flush a written file to disk, so that a rename after it never exposes an empty file."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def remove_stale_temporaries(folder: str) -> list[str]:
    """Remove the temporary files and folders (see TEMPORARY_NAME) that killed runs left below `folder`;
    return their paths. Those of processes still running are kept."""
    removed = []
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            match = TEMPORARY_NAME.match(name)
            if match is None or match.group(1) != HOST_TAG or _process_alive(int(match.group(2))):
                continue
            path = os.path.join(root, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            removed.append(path)
        dirs[:] = [d for d in dirs if os.path.isdir(os.path.join(root, d))]
    return removed


def _process_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True                     # not ours to judge: keep it
    return True


def atomic_write_text(path: str, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the whole new one, never a part."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def _umask() -> int:
    """The process umask, read from /proc where it can be (os.umask would briefly set it to 0 for
    every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary file name beside `path`; rename it onto `path` if the block succeeds.

    The temporary name keeps the extensions of `path` (all of them: Keras wants `.weights.h5`) so that
    writers choosing a format from the extension (soundfile, h5py, Keras) still work. The file gets the
    mode a plain `open` would give it
    (0666 less the umask), not mkstemp's private 0600.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(path)
    base, dot, rest = name[1:].partition(".")          # every extension: x.weights.h5 -> .weights.h5
    base, ext = (name[0] + base, dot + rest) if dot else (name, "")
    fd, tmp = tempfile.mkstemp(prefix=_prefix(base), suffix=f".tmp{ext}", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_directory(path: str, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary folder beside `path`; when the block succeeds it replaces `path`.

    With overwrite=False an existing `path` raises FileExistsError before anything is written. The
    folder gets the mode `os.makedirs` would give it (0777 less the umask), not mkdtemp's private 0700,
    so that another user (a TF Serving container, say) can read an export.
    """
    path = os.path.abspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp", dir=parent)
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        if os.path.exists(path):
            if not overwrite:
                raise FileExistsError(path)
            old = tempfile.mkdtemp(prefix=_prefix(path), suffix=".old", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def output_error(path: str, err: OSError) -> str:
    """One line for an output that cannot be written: `PATH: not a directory`, `PATH: permission
    denied`, `PATH: no space left on device`, ... (the C library's words for the errno, in lower case)."""
    reason = os.strerror(err.errno) if err.errno else (str(err).splitlines()[0] if str(err) else type(err).__name__)
    return f"{path}: {reason[:1].lower()}{reason[1:]}"


def read_json(path: str, error: type, name: str | None = None):
    """The JSON value in the file at `path`; `error` (an SVSGANError class) with one line naming the file
    (or `name`) when it cannot be read or is not JSON."""
    import json

    name = name or path
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as err:
        raise error(f"{name}: cannot be read ({err.strerror or err})") from None
    except json.JSONDecodeError as err:
        raise error(f"{name}: not valid JSON ({err.msg}, line {err.lineno})") from None
