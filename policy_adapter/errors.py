"""What a failed call to the reward service raises: one exception class per gRPC status that
callers treat differently, decoded once from the rich status (google.rpc.Status details)."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


class RewardServiceError(Exception):
    """Base of every error from the reward service. `code` is the gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class InvalidArgument(RewardServiceError):
    """The request was wrong; `field` names the offending field (e.g. "candidates[2]")."""

    def __init__(self, code: grpc.StatusCode, message: str, field: str = "") -> None:
        super().__init__(code, message)
        self.field = field


class JudgmentFailed(RewardServiceError):
    """ABORTED: the judge could not make a judgment (engine error, retries exhausted). There is
    no reward for it; never read it as a reward of 0."""


class Overloaded(RewardServiceError):
    """RESOURCE_EXHAUSTED after every retry; `retry_after_s` is the server's last hint."""

    def __init__(self, code: grpc.StatusCode, message: str, retry_after_s: float | None) -> None:
        super().__init__(code, message)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(RewardServiceError):
    """UNAVAILABLE after every retry: the service (or its engine) is down or not ready."""


class DeadlineExceeded(RewardServiceError):
    """The call's deadline passed before the answer came back."""


class Unauthenticated(RewardServiceError):
    """UNAUTHENTICATED or PERMISSION_DENIED: check the bearer token."""


# CANCELLED reaches a caller only from the other side (a call the caller cancels raises
# asyncio.CancelledError instead): gRPC's server core sheds calls with it when more arrive than
# the server process takes up (docs/benchmarks.md, section 4). Every call carries a request_id,
# so a retry is answered from the service's results rather than judged again.
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED}
)


def retry_delay_s(err: grpc.RpcError) -> float | None:
    """The google.rpc.RetryInfo delay the server attached to a status, if any."""
    status = _rich_status(err)
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToMilliseconds() / 1000.0
    return None


def _field_of(err: grpc.RpcError) -> str:
    status = _rich_status(err)
    if status is None:
        return ""
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            if bad.field_violations:
                return str(bad.field_violations[0].field)
    return ""


def _rich_status(err: grpc.RpcError) -> status_pb2.Status | None:
    try:
        status: status_pb2.Status | None = rpc_status.from_call(err)  # type: ignore[arg-type]
        return status
    except (ValueError, AttributeError):
        return None  # not a call (e.g. a channel error) or inconsistent details: no extras


def from_rpc_error(err: grpc.RpcError) -> RewardServiceError:
    code: grpc.StatusCode = err.code()  # type: ignore[attr-defined]
    message: str = err.details() or ""  # type: ignore[attr-defined]
    return from_code(code, message, field=_field_of(err), retry_after_s=retry_delay_s(err))


def from_code(
    code: grpc.StatusCode, message: str, *, field: str = "", retry_after_s: float | None = None
) -> RewardServiceError:
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(code, message, field)
    if code is grpc.StatusCode.ABORTED:
        return JudgmentFailed(code, message)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return Overloaded(code, message, retry_after_s)
    if code is grpc.StatusCode.UNAVAILABLE:
        return ServiceUnavailable(code, message)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(code, message)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return Unauthenticated(code, message)
    return RewardServiceError(code, message)


_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}


def code_from_int(value: int) -> grpc.StatusCode:
    """A google.rpc.Code number (as in a batch item error) as a grpc.StatusCode."""
    return _BY_VALUE.get(value, grpc.StatusCode.UNKNOWN)


def in_context(err: RewardServiceError, *, endpoint: str, what: str) -> RewardServiceError:
    """The same error (class, code, field, retry hint) whose message names rrm-serve, the endpoint
    and what was asked: OpenRLHF logs only `str(err)`, at INFO, and then fails later for want of a
    reward, so the message itself must say where the reward went missing."""
    return from_code(
        err.code,
        f"rrm-serve at {endpoint} could not {what}: {err.message}",
        field=getattr(err, "field", ""),
        retry_after_s=getattr(err, "retry_after_s", None),
    )


def failure_line(err: RewardServiceError, *, endpoint: str, what: str) -> str:
    """One line for the trainer's log: the service, the endpoint, the gRPC status and message."""
    return f"rrm-serve at {endpoint} could not {what}: gRPC status {err.code.name}: {err.message}"
