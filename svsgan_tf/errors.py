"""Exceptions that the command-line tools turn into one-line messages."""


class SVSGANError(Exception):
    """Base class of every error that names its input and the problem in one line."""


class AudioError(SVSGANError):
    """An audio input that cannot be used: unreadable, empty, too short, non-finite."""

    def __init__(self, source, problem):
        self.source = str(source)
        self.problem = str(problem)
        super().__init__(f"{self.source}: {self.problem}")


class ConfigError(SVSGANError):
    """A configuration value, model name or model directory that is not valid."""


class DataError(SVSGANError):
    """A data set (folder, track list) that cannot be used."""


class OutputError(SVSGANError):
    """An output path that cannot be written (not a directory, permission denied, disk full); the
    command-line tools exit with code 1 for it, as for a failed file, not 2 as for a bad input."""

    exit_code = 1


class ServingError(SVSGANError):
    """A model server that cannot be used: down, too slow, unknown model or signature, request refused."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
