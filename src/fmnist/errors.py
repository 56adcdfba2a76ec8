"""The project's error types: each one becomes a one-line message and a non-zero exit in the CLI."""


class FmnistError(Exception):
    """A problem the user can fix (bad input, missing file, nonsense config); never a bug."""

    exit_code = 2


class DataError(FmnistError):
    """The data files are missing, unreadable or fail verification."""


class IdxError(DataError):
    """An IDX file (or byte string) is malformed. The message names the file and what is wrong."""


class DownloadError(DataError):
    """Every mirror failed after the retries."""


class ConfigError(FmnistError):
    """A configuration value makes no sense (non-positive epochs, unknown model, ...)."""
