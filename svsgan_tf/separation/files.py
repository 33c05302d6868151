"""Separating audio files: output names that never clash, atomic song folders, batches that resume."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import functools
import logging
import os
import sys

import numpy as np

from svsgan_tf import cli
from svsgan_tf.errors import OutputError

logger = logging.getLogger(__name__)


def add_existing_flags(parser: argparse.ArgumentParser) -> None:
    """--overwrite and --skip-existing, for every command that writes OUT/NAME folders."""
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace stems left by an earlier run")
    existing.add_argument("--skip-existing", action="store_true",
                          help="keep stems left by an earlier run and separate only the other files")


NAMING_RULE = ("Each input gets OUT/NAME/{vocals,accompaniment}.wav. NAME is the file name without its "
               "extension for a file given by name, and the path below the folder without the extension "
               "for a file found in a folder. NAMEs that are equal, or one a folder of the other, get the "
               "shortest end of their paths that ends the clash (song.wav and song.flac; x/song and "
               "y/song). An "
               "existing OUT/NAME is refused unless --overwrite or --skip-existing is given.")


# output failures that every later file would meet too: the batch stops at the first
FATAL_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT)


@dataclasses.dataclass(frozen=True)
class Job:
    """One input file and the name of its output folder below OUT."""

    path: str
    name: str


def plan_jobs(inputs: list[str]) -> list[Job]:
    """The files named by INPUT arguments (folders searched) and their output names (see NAMING_RULE);
    a file named twice (the same real path) is separated once. One-line error if there are none."""
    from svsgan_tf.audio.io import find_audio_files

    paths, names, seen = [], [], set()
    for item in inputs:
        found = find_audio_files([item])
        if not found:
            logger.warning("%s: a folder without audio files", item)
        for path in found:
            key = os.path.realpath(path)
            if key in seen:
                continue
            seen.add(key)
            relative = os.path.relpath(path, item) if os.path.isdir(item) else os.path.basename(path)
            paths.append(path)
            names.append(os.path.splitext(relative)[0])
    if not paths:
        raise cli.SVSGANError(f"{' '.join(inputs)}: no audio files found")
    return [Job(path, name) for path, name in zip(paths, unique_names(paths, names))]


def unique_names(paths: list[str], names: list[str]) -> list[str]:
    """`names`, where clashing ones are replaced by the shortest end of their absolute paths that ends
    the clash: the file name with its extension, then one parent folder without and with the extension,
    then two, and so on. Two names clash when they are equal (compared case-insensitively, as some file
    systems do) or when one is a folder of the other (`a` and `a/b`: replacing OUT/a would remove
    OUT/a/b); every name is checked again after each change."""
    parts = [os.path.abspath(path).split(os.sep) for path in paths]
    # a name of d path components is the end of its path at level 2d - 2 (level 0: the file name alone)
    levels = [0 if len(n.split(os.sep)) == 1 else 2 * len(n.split(os.sep)) - 2 for n in names]

    def name(i: int) -> str:
        return names[i] if levels[i] == 0 else candidate_name(parts[i], levels[i])

    for _ in range(2 * max((len(p) for p in parts), default=0) + 1):
        current = [name(i).lower().replace(os.sep, "/") for i in range(len(names))]
        owners: dict[str, list[int]] = {}
        for i, value in enumerate(current):
            owners.setdefault(value, []).append(i)
        clashing = {i for same in owners.values() if len(same) > 1 for i in same}
        for i, value in enumerate(current):
            folders = value.split("/")[:-1]
            for depth in range(1, len(folders) + 1):
                for j in owners.get("/".join(folders[:depth]), []):
                    clashing.update((i, j))
        movable = [i for i in clashing if levels[i] < 2 * len(parts[i]) - 1]
        if not movable:
            break
        for i in movable:
            levels[i] += 1
    return [name(i) for i in range(len(names))]


def candidate_name(parts: list[str], level: int) -> str:
    """Level 1: the file name; 2: its folder / the name without the extension; 3: with it; 4: two
    folders and the name without the extension; and so on."""
    depth, with_extension = (level + 2) // 2, level % 2 == 1
    name = parts[-1] if with_extension else os.path.splitext(parts[-1])[0]
    return os.path.join(*parts[max(0, len(parts) - depth):-1], name)


def check_output_folder(out_dir: str) -> None:
    """Create OUT; OutputError (one line: not a directory, permission denied, ...) if it is unusable."""
    from svsgan_tf.io_utils import output_error

    try:
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), out_dir)
        os.makedirs(out_dir, exist_ok=True)
        if not os.access(out_dir, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), out_dir)
    except OSError as err:
        raise OutputError(output_error(out_dir, err)) from None


def write_error(folder: str, target: str, err: Exception) -> OSError:
    """The OSError (naming `target`) behind libsndfile's "System error." while writing into `folder`: a
    full disk when no block is left there, an I/O error otherwise."""
    try:
        stats = os.statvfs(folder)
        full = stats.f_bavail * stats.f_frsize < 65536
    except OSError:
        full = False
    code = errno.ENOSPC if full else errno.EIO
    return OSError(code, os.strerror(code) if full else f"cannot write audio ({err})", target)


def separate_file(separator, job: Job, out_dir: str, protect: tuple[str, ...] = (), overwrite: bool = False,
                  opened=None) -> str:
    """Separate `job.path` into out_dir/job.name/{vocals,accompaniment}.wav; return that folder.

    The input is read and the stems are written a chunk at a time (separator.chunk_layout), into a
    temporary folder beside the target that replaces it only when both stems are complete. `opened`
    is a context manager giving the input opened ahead (see separate_files); by default the file is
    opened here.

    Raises:
        SVSGANError for a bad input or a target folder that exists (without `overwrite`) or holds an
        input listed in `protect`; OSError when the output cannot be written.
    """
    import soundfile as sf

    from svsgan_tf.audio.io import open_audio, read_frames, write_options
    from svsgan_tf.config import TARGETS
    from svsgan_tf.errors import AudioError
    from svsgan_tf.io_utils import atomic_directory, fsync_file
    from svsgan_tf.separation.stream import separate_stream

    folder = os.path.join(out_dir, job.name)
    real_folder = os.path.realpath(folder)
    for source in protect:
        if os.path.realpath(source).startswith(real_folder + os.sep):
            raise AudioError(source, f"refusing to overwrite an input file (it lies in the output folder {folder})")
    if os.path.lexists(folder) and not overwrite:
        raise cli.SVSGANError(f"{folder}: exists, from an earlier run; pass --overwrite to replace it or "
                              "--skip-existing to keep it")
    with (opened or open_audio(job.path)) as reader, atomic_directory(folder) as tmp:
        def read(start: int, stop: int):
            return read_frames(reader, job.path, stop - start, start)

        paths = {target: os.path.join(tmp, f"{target}.wav") for target in TARGETS}
        writers = {}
        try:
            for target, path in paths.items():
                writers[target] = sf.SoundFile(path, "w", channels=reader.channels,
                                               **write_options(path, reader.samplerate))
            # an engine may stream a file its own way (the edge runner's --stream); else chunk by chunk
            stream = getattr(separator, "stream", None) or functools.partial(separate_stream, separator)
            for blocks in stream(read, reader.frames, reader.channels, reader.samplerate, job.path):
                for target, block in blocks.items():
                    writers[target].write(np.clip(block, -1.0, 1.0))
            for target in TARGETS:
                writers.pop(target).close()
        except sf.LibsndfileError as err:
            raise write_error(tmp, folder, err) from None
        finally:
            for writer in writers.values():
                with contextlib.suppress(Exception):
                    writer.close()
        for path in paths.values():
            fsync_file(path)
    return folder


def separate_files(separator, jobs: list[Job], out_dir: str, quiet: bool = False,
                   fatal: tuple[type, ...] = (), overwrite: bool = False, skip_existing: bool = False) -> list[str]:
    """Separate each job into out_dir/<name>/{vocals,accompaniment}.wav; return the error lines.

    `separator` is anything `separate_stream` takes (a Separator, a TF Serving client, the edge runner), or
    anything with a `stream(read, nb_samples, nb_channels, sample_rate, source)` method yielding the stems
    block by block (the edge runner's --stream). A bad file or an
    output that cannot be written is reported on one line and the next file is tried; errors of the
    `fatal` types (a server that cannot be reached) and a full or read-only disk stop the batch.
    Temporary files that a killed run left in out_dir are removed first.
    """
    from tqdm import tqdm

    from svsgan_tf.config import TARGETS
    from svsgan_tf.errors import SVSGANError
    from svsgan_tf.io_utils import output_error, remove_stale_temporaries
    from svsgan_tf.separation.stream import Ahead

    check_output_folder(out_dir)
    for path in remove_stale_temporaries(out_dir):
        logger.warning("removed %s, left by a killed run", path)
    protect = tuple(job.path for job in jobs)
    errors = []
    kept = {job.path for job in jobs if skip_existing and all(
        os.path.isfile(os.path.join(out_dir, job.name, f"{t}.wav")) for t in TARGETS)}
    # the next file is opened (decoded, for ffmpeg formats) while one is separated
    ahead = Ahead(_open_entered, [(job.path,) for job in jobs if job.path not in kept], "open-ahead",
                  discard=lambda opened: opened[0].close())
    try:
        for index, job in enumerate(tqdm(jobs, desc="separating", unit="file", disable=quiet)):
            folder = os.path.join(out_dir, job.name)
            if job.path in kept:
                logger.info("%s: kept (--skip-existing)", folder)
                continue
            message, stop = None, False
            try:
                stack, reader, error = ahead(job.path)
                with stack:
                    separate_file(separator, job, out_dir, protect, overwrite or skip_existing,
                                  _opened(reader, error))
            except SVSGANError as err:
                if isinstance(err, fatal):
                    raise
                message = f"error: {err}"
            except OSError as err:
                message = f"error: {output_error(getattr(err, 'filename', None) or folder, err)}"
                stop = err.errno in FATAL_ERRNOS
            if message:
                errors.append(message)
                tqdm.write(message, file=sys.stderr)
            if stop:
                errors += [f"error: {later.path}: not tried" for later in jobs[index + 1:]]
                break
    finally:
        ahead.close(wait=False)
    return errors


@contextlib.contextmanager
def _opened(reader, error):
    """An input opened ahead: its reader, or its own error (a bad input), raised only when separate_file
    enters it, after its checks of the output folder."""
    if error is not None:
        raise error
    yield reader


def _open_entered(path: str):
    """(ExitStack holding the open file, reader, None) or (empty ExitStack, None, the error)."""
    from svsgan_tf.audio.io import open_audio
    from svsgan_tf.errors import SVSGANError

    stack = contextlib.ExitStack()
    try:
        return stack, stack.enter_context(open_audio(path)), None
    except (SVSGANError, OSError) as err:
        stack.close()
        return contextlib.ExitStack(), None, err


def report(jobs: list, errors: list[str], out_dir: str) -> int:
    """Print how many files were separated; exit code 1 if any failed."""
    print(f"separated {len(jobs) - len(errors)} of {len(jobs)} files into {os.path.abspath(out_dir)}")
    return 1 if errors else 0
