"""Every error the pipeline raises, in one place, split by what a retry can do about it.

Two bases say it in the type, as Airflow's HTTP provider keeps its errors:

- :class:`FatalError` is Airflow's fail-at-once exception (``AirflowFailException``):
  the task fails without spending its retries, because only a person can fix the cause
  (a bad config, a missing secret, a threshold, wrong credentials, a contract break);
- :class:`RetryableError` is a plain ``AirflowException``: the task's retries may fix
  it (a server that was down, retries of a request that ran out, a database hiccup).

``import_tasks.run_step`` fails a task at once exactly when its error is a FatalError.
Messages are admin-facing: they name the file, key, URL or step and the fix, and never
carry a secret or a row's values (see :func:`sis_learning.staging.errors.summarise`).
The modules that used to define these classes still export them under the same names.

Light on purpose: the DAG files import this module at parse time.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class SisLearningError(AirflowException):
    """Any error of this pipeline."""


class FatalError(SisLearningError, AirflowFailException):
    """No retry can fix it: the task fails at once with the message."""


class RetryableError(SisLearningError):
    """May pass on a later attempt: the task's retries apply."""


# ---- configuration and secrets ---------------------------------------------------------


class DistrictConfigError(FatalError, ValueError):
    """A district YAML that cannot be used; the message names file, key and fix."""


class SecretReferenceError(FatalError, ValueError):
    """A secret reference that is malformed or points at nothing."""


class MappingSpecError(FatalError, ValueError):
    """A mapping spec that cannot be used; the message names the file and line."""


class ColumnRulesError(FatalError, ValueError):
    """The column rules file cannot be used; the message names the file and line."""


class UnknownSchoolError(DistrictConfigError):
    """The district configuration names a school PowerSchool does not have."""


# ---- HTTP APIs (PowerSchool, Learning) ----------------------------------------------------


class ApiError(SisLearningError):
    """An HTTP API answered in a way the pipeline cannot use; ``str()`` is admin-facing.

    The base of both kinds: raised as is, it is retryable (a connection lost mid-request).
    """

    def __init__(
        self,
        status: int | None,
        message: str,
        url: str,
        *,
        method: str = "GET",
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.url = url
        self.method = method
        self.errors = errors or []

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # picklable across processes (Celery, multiprocessing)
        return (_rebuild_api_error, (type(self), self.status, self.message, self.url, self.method, self.errors))


def _rebuild_api_error(cls, status, message, url, method, errors):
    return cls(status, message, url, method=method, errors=errors)


class FatalApiError(ApiError, FatalError):
    """A failure retrying cannot fix (Airflow fails the task without spending its retries)."""


class AuthenticationError(FatalApiError):
    """401 even with fresh credentials: the client id/secret or token is wrong."""


class PermissionDeniedError(FatalApiError):
    """403: the credentials are valid but not allowed to do this."""


class NotFoundError(FatalApiError):
    """404: the resource (a school, a section, a path) does not exist."""


class ValidationFailedError(FatalApiError):
    """The server refused the request's content (409, 422, "Validation Failed", field access)."""


class TlsVerificationError(FatalApiError):
    """The server's certificate could not be verified against the configured CA bundle."""


class ApiConfigurationError(FatalApiError):
    """The Airflow connection itself is unusable (not HTTPS, missing CA bundle file, ...)."""


class PageSizeTooSmallError(FatalApiError):
    """The plugin's Data Configuration page size is below the integration's minimum of 100."""


class RetriesExhaustedError(ApiError, RetryableError):
    """Transient failures outlasted the retry budget (Airflow may retry the whole task)."""


class UnexpectedResponseError(ApiError, RetryableError):
    """A 200 whose body is not the envelope the API documents for that URL (empty, HTML, ...)."""


class LearningResponseError(ApiError, RetryableError):
    """Learning answered 200 with a body that does not keep the contract (missing rows, ...)."""


# ---- the run's own checks -------------------------------------------------------------------


class ExtractOrderError(FatalError):
    """An extract needs rows another extract task stages first in the same run."""


class EmptyListingError(FatalError):
    """A school's listing came back empty though /count or the last run says it has rows."""


class ValidationThresholdExceeded(FatalError, RuntimeError):
    """Too large a share of an entity's rows failed: the run stops before anything is loaded."""


class MassChangeDetected(FatalError):
    """The run would deactivate/remove too much, or looks like an Import ID change.

    Retrying cannot help, a person has to look and approve. ``findings`` holds the
    structured counts the failure email shows.
    """

    def __init__(self, message: str, findings: list[dict[str, Any]]):
        super().__init__(message)
        self.findings = findings

    def __reduce__(self):  # picklable with its findings (executors ship exceptions across processes)
        return (type(self), (str(self), self.findings))


# ---- the staging database -----------------------------------------------------------------


class LeaseBusy(RetryableError):
    """Another grade push run of the district held the lease for longer than this run waits."""


class LeaseLost(RetryableError):
    """This grade push run's lease expired and another run took it over: it must not write any more.

    Raised before the next PowerTeacher write or cursor advance; what this run already wrote
    is in the ledger (scores are recorded per PUT), so the new holder does not write it again.
    """


class StagingDataError(FatalError):
    """The staging database refused rows (a constraint): summarised by table, constraint, count."""


class StagingDatabaseError(RetryableError):
    """The staging database failed (connection, lock, ...): summarised, without SQL parameters."""
