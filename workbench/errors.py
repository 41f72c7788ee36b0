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


class JobFailed(WorkbenchError):
    """A job run in this process failed: the message says which job and why in one line;
    ``error`` keeps the job's traceback (also in the job's row)."""

    def __init__(self, job):
        reason = " ".join((job.message or "no reason given").split())
        super().__init__(f"{job.kind} job {job.id} failed: {reason}")
        self.job_id, self.error = job.id, job.error


class JobCancelled(WorkbenchError):
    """A running job noticed that it was asked to stop."""
