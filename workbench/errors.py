"""The exceptions the library raises on purpose.

Every message says what was received, what was expected and how to fix it. Pages and the
CLI catch :class:`WorkbenchError` and show its message; anything else is a bug.
"""


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""


class ConfigError(WorkbenchError):
    """A setting or an argument has a value that cannot be used."""


class NotFoundError(WorkbenchError):
    """A named or identified thing does not exist in the workspace."""


class AlreadyExistsError(WorkbenchError):
    """A thing with that name exists already."""


class ValidationError(WorkbenchError):
    """Input does not match the schema or rules it is checked against."""


class MissingDependencyError(WorkbenchError):
    """An optional heavy library is needed for this call and is not installed."""


class JobCancelled(WorkbenchError):
    """A running job noticed that it was asked to stop."""
