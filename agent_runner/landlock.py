"""Landlock, the Linux kernel's unprivileged sandbox, through its three system calls (ctypes).

Standard library only: the sandbox launcher imports it without the worker's virtual environment.
Constants are from <linux/landlock.h>. Each ABI version adds rights; a ruleset asks only for the
rights the running kernel knows (best effort), and `Ruleset.missing` names what it could not have.
"""

from __future__ import annotations

import ctypes
import os
import platform
from dataclasses import dataclass, field

# System call numbers: the same on every architecture (added after the tables were unified).
SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

# Filesystem rights, with the ABI version that introduced them.
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2: link or rename a file into another directory
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5: ioctl on device files
FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # the rights that apply to a non-directory
READ_ONLY = EXECUTE | READ_FILE | READ_DIR

# Network rights (ABI 4): TCP bind and connect.
NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1
# Scopes (ABI 6): no connecting to abstract unix sockets, no signals, outside the sandbox.
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

# What each protection needs, for the start-up report.
PROTECTIONS = {
    "filesystem": 1,
    "rename/link across directories (refer)": 2,
    "truncate": 3,
    "network (TCP bind/connect)": 4,
    "device ioctl": 5,
    "signal and abstract unix socket scoping": 6,
}


class LandlockError(OSError):
    pass


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]  # fmt: skip


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(number: int, *args: object) -> int:
    # Every integer as a C long: syscall() is variadic, and the kernel reads full registers.
    converted = [ctypes.c_long(arg) if isinstance(arg, int) else arg for arg in args]
    result = int(_libc.syscall(ctypes.c_long(number), *converted))
    if result < 0:
        err = ctypes.get_errno()
        raise LandlockError(err, os.strerror(err))
    return result


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing, disabled or blocked."""
    if platform.system() != "Linux":
        return 0
    try:
        return _syscall(SYS_CREATE_RULESET, None, 0, CREATE_RULESET_VERSION)
    except LandlockError:  # ENOSYS (old kernel, seccomp), EOPNOTSUPP (built but disabled at boot)
        return 0


def missing_protections(abi: int, *, network: bool) -> list[str]:
    """What this ABI version cannot enforce; network only when commands are to be kept off it."""
    return [
        f"{name} (Landlock ABI {needed})"
        for name, needed in PROTECTIONS.items()
        if abi < needed and (network or not name.startswith("network"))
    ]


@dataclass
class Ruleset:
    """Paths a sandboxed process may use, and what it is kept from; `restrict_self` enforces it."""

    read_write: list[str] = field(default_factory=list)  # directories (or files) with every right
    read_only: list[str] = field(default_factory=list)  # directories (or files): read and execute
    extra: dict[str, int] = field(default_factory=dict)  # path -> more rights (e.g. write /dev/null)
    deny_tcp: bool = False
    scope: bool = True

    def restrict_self(self, abi: int | None = None) -> int:
        """Confine this process and its future children, best effort for this kernel's ABI.
        Returns the ABI version used; raises LandlockError when Landlock is not available."""
        abi = abi_version() if abi is None else abi
        if abi < 1:
            raise LandlockError(95, "Landlock is not available in this kernel")
        handled_fs = FS_BY_ABI.get(abi, FS_BY_ABI[5])
        attr = _RulesetAttr(
            handled_access_fs=handled_fs,
            handled_access_net=(NET_BIND_TCP | NET_CONNECT_TCP) if self.deny_tcp and abi >= 4 else 0,
            scoped=(SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if self.scope and abi >= 6 else 0,
        )
        ruleset = _syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
        try:
            rules = [(path, handled_fs) for path in self.read_write]
            rules += [(path, READ_ONLY | (IOCTL_DEV if path == "/dev" else 0)) for path in self.read_only]
            rules += [(path, rights | READ_ONLY) for path, rights in self.extra.items()]
            for path, rights in rules:
                self._add_path(ruleset, path, rights & handled_fs)
            if _libc.prctl(PR_SET_NO_NEW_PRIVS, *(ctypes.c_ulong(a) for a in (1, 0, 0, 0))) != 0:
                err = ctypes.get_errno()
                raise LandlockError(err, f"no_new_privs: {os.strerror(err)}")
            _syscall(SYS_RESTRICT_SELF, ruleset, 0)
        finally:
            os.close(ruleset)
        return abi

    @staticmethod
    def _add_path(ruleset: int, path: str, rights: int) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # e.g. /lib32 on a system without it
        try:
            if not os.path.isdir(path):
                rights &= FILE_RIGHTS
            beneath = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
            _syscall(SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.byref(beneath), 0)
        finally:
            os.close(fd)
