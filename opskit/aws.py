"""boto3 session/client factory driven by the inventory's ``aws:`` vars.

``aws:`` vars carry ``region``, ``profile`` and, in lab/test inventories only,
``endpoint_url`` (the moto server) and dummy ``access_key_id``/``secret_access_key`` (so the
lab never needs the operator's AWS_* environment). The production code path is the same; only the
endpoint differs. Clients are cached per (service, profile, region, endpoint): boto3
clients are thread-safe and the runner calls AWS from many threads, while sessions are
not, so session use is serialised by a lock.

boto3 is imported lazily: it costs ~0.3 s and most commands never talk to AWS.

Every AWS call goes through :func:`call` or :func:`errors`: the one place a botocore error
becomes a one-line message plus a hint (:func:`explain`), raised as the caller's exception class.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from opskit.errors import ConfigError, OpskitError

T = TypeVar("T")

_lock = threading.Lock()
_sessions: dict[tuple[str | None, str | None], Any] = {}
_clients: dict[tuple[str, str | None, str | None, str | None, str | None], Any] = {}

CREDENTIALS_HINT = (
    "set AWS_PROFILE (or aws.profile in the inventory), or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY; on EC2, attach an instance role"
)


def client(service: str, aws_vars: Mapping[str, Any] | None, region: str | None = None) -> Any:
    """A boto3 client for ``service``; ``region`` overrides ``aws_vars['region']``.

    Raises ConfigError (one line + hint) for an unknown profile or a missing region.
    """
    aws_vars = aws_vars or {}
    profile = aws_vars.get("profile") or None
    region = region or aws_vars.get("region") or None
    endpoint = aws_vars.get("endpoint_url") or None
    key_id = aws_vars.get("access_key_id") or None
    key = (service, profile, region, endpoint, key_id)
    with _lock:
        cached = _clients.get(key)
        if cached is not None:
            return cached
        with errors():
            made = _session(profile, key_id, aws_vars.get("secret_access_key")).client(
                service, region_name=region, endpoint_url=endpoint, config=_config()
            )
        _clients[key] = made
        return made


def reset() -> None:
    """Forget cached sessions and clients (tests that change AWS_* env vars call this)."""
    with _lock:
        _sessions.clear()
        _clients.clear()


def _session(profile: str | None, key_id: str | None, secret: str | None) -> Any:
    if (profile, key_id) not in _sessions:
        import boto3.session

        _sessions[(profile, key_id)] = boto3.session.Session(
            profile_name=profile, aws_access_key_id=key_id, aws_secret_access_key=secret
        )
    return _sessions[(profile, key_id)]


def _config() -> Any:
    from botocore.config import Config

    # Bounded waits: an unreachable endpoint must fail in seconds, not minutes.
    return Config(
        connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
    )


def call(fn: Callable[[], T], what: str | None = None, *,
         error: type[Exception] = ConfigError, hint: str | None = None) -> T:
    """``fn()``, a botocore error raised as ``error`` (see :func:`errors`)."""
    with errors(what, error=error, hint=hint):
        return fn()


@contextmanager
def errors(what: str | None = None, *, error: type[Exception] = ConfigError,
           hint: str | None = None) -> Iterator[None]:
    """Turn a botocore error inside the block into ``error("what: message", hint)``.

    The message and hint come from :func:`explain`; ``hint`` replaces the explained one. An
    ``error`` that is no OpskitError (e.g. a host step's CommandFailed) gets the message only,
    as it has no hint to show. Other exceptions pass through untouched. The botocore error
    stays the ``__cause__``, so ``-v`` shows its traceback.
    """
    try:
        yield
    except Exception as exc:
        if not is_boto_error(exc):
            raise
        message, explained = explain(exc)
        if what:
            message = f"{what}: {message}"
        if issubclass(error, OpskitError):
            raise error(message, hint or explained) from exc
        raise error(message) from exc


def is_boto_error(exc: BaseException) -> bool:
    """True for botocore's own errors (use it in ``except Exception`` blocks)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, (BotoCoreError, ClientError))


def explain(exc: BaseException) -> tuple[str, str]:
    """A one-line message and a hint for a botocore exception."""
    from botocore import exceptions as bx

    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return "no usable AWS credentials", CREDENTIALS_HINT
    if isinstance(exc, bx.ProfileNotFound):
        return (
            f"AWS profile '{exc.kwargs.get('profile')}' not found",
            "check aws.profile in the inventory against ~/.aws/config",
        )
    if isinstance(exc, bx.NoRegionError):
        return (
            "no AWS region configured",
            "set aws.region in the inventory (e.g. group vars of 'all') or AWS_DEFAULT_REGION",
        )
    if isinstance(exc, bx.EndpointConnectionError):
        return (
            f"cannot reach AWS endpoint {exc.kwargs.get('endpoint_url')}",
            "check the network (and aws.endpoint_url: in the lab, is the moto server up?)",
        )
    if isinstance(exc, bx.ClientError):
        return _explain_client_error(exc)
    return f"AWS error: {exc}", "re-run with -v for details"


def _explain_client_error(exc: Any) -> tuple[str, str]:
    err = exc.response.get("Error", {})
    code = err.get("Code", "Unknown")
    operation = getattr(exc, "operation_name", "call")
    message = f"AWS {operation} failed: {code}: {err.get('Message', '')}".rstrip(": ")
    if code in ("AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch"):
        return message, CREDENTIALS_HINT
    if code in ("ExpiredToken", "RequestExpired", "ExpiredTokenException"):
        return message, "refresh the credentials (e.g. `aws sso login`) and retry"
    if code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException"):
        return message, f"the IAM identity in use needs permission for {operation}"
    if code in ("RequestLimitExceeded", "Throttling", "ThrottlingException"):
        return message, "AWS is throttling; retry shortly or lower --forks"
    return message, "re-run with -v for details"
