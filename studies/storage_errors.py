"""A storage's failures told apart: an outage the client may retry, or a misconfiguration."""

import errno
import logging
import os

from botocore import exceptions as boto
from rest_framework import status

from anim_gateway.errors import ApplicationError

logger = logging.getLogger(__name__)

# A disk that is full, failing, gone from under its mount or remounted read-only: it comes
# back (space freed, the mount restored) without anyone changing the gateway.
OUTAGE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EIO,
    errno.EROFS,
    errno.ESTALE,  # an NFS handle its server no longer knows (a restart, a failover)
    errno.ENOTCONN,  # a FUSE or network mount whose daemon went away
    errno.ENODEV,
    errno.ETIMEDOUT,
}
# A storage folder the gateway's user may not write: retrying never fixes it, an operator does.
REFUSED_ERRNOS = {errno.EACCES, errno.EPERM}

# What a storage raises when it fails: the file system's errors, and botocore's on S3 (its
# own classes, not OSError).
STORAGE_ERRORS: tuple[type[Exception], ...] = (OSError, boto.BotoCoreError, boto.ClientError)

# S3's answers that mean "ask again later", besides any 5xx.
S3_BUSY = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestLimitExceeded",
}
# S3's answers that a setting is wrong (credentials, permissions, the bucket's name or region):
# asking again never helps. Its codes are safe to name: they say nothing of bucket or endpoint.
S3_REFUSALS = {
    "AccessDenied",
    "AllAccessDisabled",
    "AccountProblem",
    "AuthorizationHeaderMalformed",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidBucketName",
    "InvalidToken",
    "NoSuchBucket",
    "PermanentRedirect",
    "SignatureDoesNotMatch",
}
# botocore's errors of a service it could not reach, or that broke off answering.
S3_UNREACHABLE = (boto.ConnectionError, boto.HTTPClientError)
# botocore's errors of a client without working credentials or region: the configuration's.
S3_UNCONFIGURED = (
    boto.NoCredentialsError,
    boto.PartialCredentialsError,
    boto.CredentialRetrievalError,
    boto.NoRegionError,
)


class StorageError(ApplicationError):
    """The gateway's own storage (its spool, its storage folder or bucket) failed; ``reason``
    names the failure without a path, a bucket or an endpoint."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class StorageUnavailable(StorageError):
    """An outage (a full or failing disk, an object store unreachable or busy): nothing was
    changed and the same request succeeds once the storage is back."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "STORAGE_UNAVAILABLE"

    def __init__(self, reason: str) -> None:
        super().__init__(f"The gateway's storage is unavailable ({reason}).", reason=reason)


class StorageMisconfigured(StorageError):
    """The storage refuses the gateway (permissions, credentials, a bucket that does not
    exist): the server's fault, which no retry fixes; a 500, logged for an operator."""

    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    code = "STORAGE_MISCONFIGURED"

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"The gateway's storage refuses the operation ({reason}), a configuration fault; "
            "it has been logged.",
            reason=reason,
        )


def storage_failure(exc: BaseException, doing: str) -> StorageError | None:
    """What a storage's error means (logged), or None for an error that is neither an outage
    nor a misconfiguration (a bug, left to show as it is)."""
    failure = _classified(exc)
    if failure is not None:
        # The error's type and code only: its text may name a path, a bucket or an endpoint.
        logger.error(
            "Storage %s while %s: %s (%s)",
            "unavailable" if isinstance(failure, StorageUnavailable) else "misconfigured",
            doing,
            type(exc).__name__,
            failure.reason,
        )
    return failure


def _classified(exc: BaseException) -> StorageError | None:
    # botocore first: some of its errors are OSErrors too (a connect timeout), without errno.
    if isinstance(exc, boto.ClientError):
        return _s3_answer(exc)
    if isinstance(exc, S3_UNREACHABLE):
        return StorageUnavailable("object store unreachable")
    if isinstance(exc, S3_UNCONFIGURED):
        return StorageMisconfigured("object store credentials or region")
    if isinstance(exc, OSError) and exc.errno in OUTAGE_ERRNOS:
        return StorageUnavailable(os.strerror(exc.errno))
    if isinstance(exc, OSError) and exc.errno in REFUSED_ERRNOS:
        return StorageMisconfigured(os.strerror(exc.errno))
    return None


def _s3_answer(exc: boto.ClientError) -> StorageError | None:
    code = s3_error_code(exc)
    http_status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    if code in S3_BUSY or http_status >= 500:
        return StorageUnavailable("object store busy or failing")
    if code in S3_REFUSALS:
        return StorageMisconfigured(f"the object store answers {code}")
    return None  # any other refusal is about the request: the caller knows what it means


def s3_error_code(exc: boto.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def storage_failure_kind(exc: BaseException) -> type[StorageError] | None:
    """StorageUnavailable or StorageMisconfigured as the error means one (not logged)."""
    failure = _classified(exc)
    return type(failure) if failure is not None else None


def raise_storage_failure(exc: BaseException, doing: str) -> None:
    """Raise the StorageError an outage or a misconfiguration means (logged), from ``exc``;
    return for any other error, which the caller re-raises."""
    failure = storage_failure(exc, doing)
    if failure is not None:
        raise failure from exc
