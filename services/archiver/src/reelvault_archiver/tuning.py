"""Process-wide tuning for a bulk-transfer process (the archiver moves hundreds of MB per job).

httpcore's (and httpcore2's) async HTTP/1.1 connection reads the socket 64 KiB at a time
(``AsyncHTTP11Connection.READ_NUM_BYTES``); every read is a trip through the event loop, anyio's
stream wrapper and h11. Reading up to 1 MiB per trip cut the event loop's share of a 500 MB
download enough to raise the archiver's copy from ~214 to ~268 MB/s (medians of 5 runs on the
2-core development machine, see bench/archive.py). Reads still return as soon as any data is
there, so small answers are not delayed; a read allocates at most this many bytes (one per
connection at a time).

It is a class attribute of a library, so this is applied once at start, only when httpcore still
has it, and only ever raised.

The pieces a download hands on are freed as soon as they are written: with glibc's defaults the
heap's top is given back to the kernel again and again and faulted in afresh (~50,000 minor page
faults per 500 MB copied, measured), which cost a third of the copy's system time. ``tune_malloc``
keeps freed memory for reuse (``mallopt``: a fixed mmap threshold, so blocks of a few MiB come
from the heap, and a trim threshold well above what a copy holds at once).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import logging

log = logging.getLogger(__name__)

BULK_READ_BYTES = 1024 * 1024
# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest on 64-bit systems
TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024


def tune_malloc() -> bool:
    """Keep freed heap memory for the next pieces instead of returning it to the kernel; True
    if the C library took the settings (glibc), False elsewhere (musl, macOS: left as is)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mmap_set: int = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    trim_set: int = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    applied = mmap_set == 1 and trim_set == 1
    if not applied:
        log.info("the C library refused the malloc thresholds: left as they are")
    return applied


def tune_http_reads(read_bytes: int = BULK_READ_BYTES) -> int:
    """Let async HTTP/1.1 connections read up to ``read_bytes`` per socket read, on httpcore2
    (provider downloads, through httpx2) and httpcore (storage, through httpx). Returns the
    smallest size in effect, 0 if neither exposes the setting any more."""
    sizes = [_tune(name, read_bytes) for name in ("httpcore2", "httpcore")]
    return min((size for size in sizes if size), default=0)


def _tune(module_name: str, read_bytes: int) -> int:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return 0
    connection = getattr(module, "AsyncHTTP11Connection", None)
    current = getattr(connection, "READ_NUM_BYTES", None)
    if connection is None or not isinstance(current, int):
        log.info("%s has no READ_NUM_BYTES any more: socket reads left as they are", module_name)
        return 0
    if read_bytes > current:
        connection.READ_NUM_BYTES = read_bytes
    return int(connection.READ_NUM_BYTES)
