"""Our errors map to gRPC statuses and back to the same typed errors."""

from __future__ import annotations

import grpc
import pytest

from federation import errors
from federation.transport.status import CODE_METADATA_KEY, STATUS_BY_CODE, error_from_rpc


class _FakeRpcError(grpc.RpcError):
    def __init__(self, status: grpc.StatusCode, details: str, code: str | None) -> None:
        self._status, self._details, self._code = status, details, code

    def code(self) -> grpc.StatusCode:
        return self._status

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((CODE_METADATA_KEY, self._code),) if self._code else ()


def _subclasses(cls: type[errors.FederationError]) -> list[type[errors.FederationError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_subclasses(sub))
    return out


ALL = _subclasses(errors.FederationError)


def test_every_error_class_has_a_unique_code_and_a_status() -> None:
    codes = [c.code for c in ALL]
    assert len(codes) == len(set(codes))
    missing = [c.__name__ for c in ALL if c.code not in STATUS_BY_CODE]
    assert missing == []


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_error_survives_the_wire(cls: type[errors.FederationError]) -> None:
    rpc = _FakeRpcError(STATUS_BY_CODE[cls.code], "what went wrong", cls.code)
    back = error_from_rpc(rpc)
    assert type(back) is cls
    assert back.message == "what went wrong"


def test_unavailable_without_code_names_the_target() -> None:
    back = error_from_rpc(_FakeRpcError(grpc.StatusCode.UNAVAILABLE, "refused", None), target="h:1")
    assert isinstance(back, errors.CoordinatorUnavailableError)
    assert "h:1" in back.message


def test_size_limit_without_code_is_message_too_large() -> None:
    back = error_from_rpc(
        _FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max", None)
    )
    assert isinstance(back, errors.MessageTooLargeError)
    assert "larger than max" in back.message


def test_error_class_for_unknown_code_is_the_root() -> None:
    assert errors.error_class_for_code("no-such-code") is errors.FederationError
