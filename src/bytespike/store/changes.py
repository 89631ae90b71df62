"""A change counter shared by every process on one SQLite database, read without a system call.

The file beside the database holds one 8-byte counter; processes map it into memory, so reading
it on every request costs a memory load. Whoever changes keys bumps it after committing, and
every gateway process sees the new value at once.
"""

from __future__ import annotations

import fcntl
import mmap
import os

_SIZE = 8


class ChangeCounter:
    __slots__ = ("_fd", "_mm")

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < _SIZE:
            os.ftruncate(self._fd, _SIZE)
        self._mm = mmap.mmap(self._fd, _SIZE)

    def value(self) -> int:
        return int.from_bytes(self._mm[:_SIZE], "little")

    def bump(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self._mm[:_SIZE] = (self.value() + 1).to_bytes(_SIZE, "little")
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._mm.close()
        os.close(self._fd)
