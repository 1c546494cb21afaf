"""One family of exceptions for user mistakes: the CLI prints them in one line, without a traceback."""


class VPRBenchError(Exception):
    """A problem the user can fix (bad option, missing file, bad data). The message names the culprit."""


class ConfigError(VPRBenchError):
    """An invalid option or preset value."""


class DatasetError(VPRBenchError):
    """A dataset that is missing, incomplete or in an unexpected layout."""


class RegistryError(VPRBenchError):
    """An unknown name, or two things registered under one name."""


class CheckpointError(VPRBenchError):
    """A checkpoint or weight file that cannot be loaded safely."""
