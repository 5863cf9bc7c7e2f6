"""Certificates and keys handed to `ssl`, which loads them from files only, without putting them on a disk.

Where the kernel offers memfds (Linux), the data goes to one, and `ssl` reads it through `/proc/self/fd`: the
kernel frees it with the process, even one killed with SIGKILL. Elsewhere callers fall back to private files.
"""

from __future__ import annotations

import os

IN_MEMORY = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


def memory_file(name: str, data: bytes) -> tuple[int, str]:
    """A memfd holding `data` (close-on-exec: no child process inherits it), and the path to read it by. It lives
    until the descriptor is closed."""
    fd = os.memfd_create(name)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return fd, f"/proc/self/fd/{fd}"
