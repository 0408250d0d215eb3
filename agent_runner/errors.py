"""One short, secret-free line for an exception, for logs and the health check's output."""

from __future__ import annotations

# Substrings of the SDK's (Rust) transport errors, and what they mean to an operator.
_KNOWN = (
    ("tcp connect error", "connection refused or unreachable"),
    ("dns error", "host name not found"),
    ("deadline", "timed out"),
    ("timed out", "timed out"),
    ("invalid peer certificate", "TLS certificate not trusted"),
    ("unauthenticated", "not authenticated (check TEMPORAL_API_KEY or the client certificate)"),
    ("permissiondenied", "permission denied"),
    ("namespace", "namespace not found or not allowed"),
)


def describe_error(err: BaseException | None, limit: int = 160) -> str:
    if err is None:
        return "no error"
    text = str(err).strip()
    lowered = text.lower().replace(" ", "")
    for needle, meaning in _KNOWN:
        if needle.replace(" ", "") in lowered:
            return meaning
    first = text.splitlines()[0] if text else type(err).__name__
    return first[:limit]
