"""Files of a PKI directory: private keys 0600 from their first byte, public files 0644.

A private key is written to a file created with ``O_CREAT | O_EXCL`` and mode
0600, so it is never readable by anyone else, not even for an instant; a
replacement goes to such a fresh file first and is renamed over the old one.
Changes to a CA directory happen under an exclusive ``flock`` on its ``.lock``
file, so two ``federation pki`` commands never interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from federation.errors import ConfigError

__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "PUBLIC_FILE_MODE",
    "check_private_file",
    "exclusive_lock",
    "make_private_dir",
    "write_private_file",
    "write_public_file",
]

PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644
PRIVATE_DIR_MODE = 0o700
_LOCK_NAME = ".lock"


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) with mode 0700; an existing one is kept as is."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise ConfigError(f"{path} exists and is not a directory") from None
        return
    os.chmod(path, PRIVATE_DIR_MODE)  # exactly 0700, whatever the umask


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # exactly `mode`, whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    if not replace:
        try:
            _write_new(path, data, mode)
        except FileExistsError:
            raise ConfigError(f"{path} already exists; refusing to overwrite it") from None
        return
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        _write_new(tmp, data, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_private_file(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write secret ``data`` to a file that is mode 0600 from its creation.

    Raises:
        ConfigError: ``path`` exists and ``replace`` is false.
    """
    _write(path, data, PRIVATE_FILE_MODE, replace=replace)


def write_public_file(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write public ``data`` (a certificate, a CRL) to a mode 0644 file.

    Raises:
        ConfigError: ``path`` exists and ``replace`` is false.
    """
    _write(path, data, PUBLIC_FILE_MODE, replace=replace)


def check_private_file(path: Path) -> bytes:
    """Read a private key file, refusing one that others may read or write (as ssh does).

    Raises:
        ConfigError: Missing, or its mode grants group or other any access.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise ConfigError(f"private key {path} not found") from None
    if mode & 0o077:
        raise ConfigError(
            f"private key {path} has mode {mode:04o}; it must not be accessible to group or "
            f"others: run `chmod 600 {path}`"
        )
    return path.read_bytes()


@contextlib.contextmanager
def exclusive_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (its ``.lock`` file) for the ``with`` block."""
    fd = os.open(directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
