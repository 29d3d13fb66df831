"""aws.call / aws.errors: the one place a botocore error becomes a one-line message + hint."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoRegionError

from opskit import aws
from opskit.errors import ConfigError, InventoryError, LabError
from opskit.transport.errors import CommandFailed


def denied() -> ClientError:
    return ClientError(
        {"Error": {"Code": "UnauthorizedOperation", "Message": "You are not authorized"}},
        "CreateSnapshots",
    )


def raise_(exc: BaseException) -> None:
    raise exc


def test_result_passes_through() -> None:
    assert aws.call(lambda: {"Snapshots": []}) == {"Snapshots": []}


def test_client_error_becomes_a_config_error_with_a_hint() -> None:
    boto = denied()
    with pytest.raises(ConfigError) as err:
        aws.call(lambda: raise_(boto))
    assert err.value.message == (
        "AWS CreateSnapshots failed: UnauthorizedOperation: You are not authorized"
    )
    assert err.value.hint == "the IAM identity in use needs permission for CreateSnapshots"
    assert err.value.__cause__ is boto  # -v shows botocore's own traceback


def test_what_prefixes_the_message_and_a_plain_error_class_gets_no_hint() -> None:
    with pytest.raises(CommandFailed) as err:
        aws.call(lambda: raise_(denied()), "snapshot", error=CommandFailed)
    assert str(err.value) == (
        "snapshot: AWS CreateSnapshots failed: UnauthorizedOperation: You are not authorized"
    )
    assert err.value.exit_status is None  # the hint did not land in another argument


def test_context_manager_with_a_replaced_hint() -> None:
    with pytest.raises(LabError) as err, aws.errors("lab setup", error=LabError, hint="see log"):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1/")
    assert err.value.message == "lab setup: cannot reach AWS endpoint http://127.0.0.1:1/"
    assert err.value.hint == "see log"


def test_botocore_errors_that_are_not_client_errors() -> None:
    with pytest.raises(InventoryError) as err, aws.errors("ec2.yml", error=InventoryError):
        raise NoRegionError()
    assert err.value.message == "ec2.yml: no AWS region configured"
    assert err.value.hint and "aws.region" in err.value.hint


def test_other_exceptions_pass_untouched() -> None:
    boom = ValueError("not AWS")
    with pytest.raises(ValueError) as err:
        aws.call(lambda: raise_(boom), "snapshot", error=CommandFailed)
    assert err.value is boom
