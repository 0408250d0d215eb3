from __future__ import annotations

import pytest

from agent_runner.errors import describe_error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Failed client connect: Server connection error: tonic::transport::Error(Transport, "
            'ConnectError(ConnectError("tcp connect error", 127.0.0.1:1, Os { code: 111 })))',
            "connection refused or unreachable",
        ),
        ("dns error: failed to lookup address information", "host name not found"),
        (
            "Request unauthenticated: invalid API key",
            "not authenticated (check TEMPORAL_API_KEY or the client certificate)",
        ),
        ("first line\nsecond line", "first line"),
    ],
)
def test_transport_errors_become_one_plain_line(text: str, expected: str) -> None:
    assert describe_error(RuntimeError(text)) == expected


def test_long_messages_are_cut() -> None:
    assert len(describe_error(RuntimeError("x" * 1000))) == 160
