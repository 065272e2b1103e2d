"""Error types shared by every layer of slicebed."""


class SlicebedError(Exception):
    """Base class of errors slicebed reports to the user as one line, without a traceback."""


class InputError(SlicebedError):
    """Bad input from the user: a malformed spec, dataset, model directory or argument."""


class RunStopped(SlicebedError):
    """A run could not go on (disk full, testbed lost); what it recorded is kept and it can be resumed."""
