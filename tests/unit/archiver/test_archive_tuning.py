"""The bulk-read tuning: raised once, never lowered, harmless when httpcore changes. Both
stacks are tuned: provider downloads run on httpcore2 (httpx2), storage reads on httpcore."""

from __future__ import annotations

import subprocess
import sys

import httpcore
import httpcore2
import pytest
from reelvault_archiver.tuning import tune_http_reads

STACKS = (httpcore2, httpcore)


def test_socket_reads_are_raised_never_lowered(monkeypatch: pytest.MonkeyPatch) -> None:
    for stack in STACKS:
        monkeypatch.setattr(stack.AsyncHTTP11Connection, "READ_NUM_BYTES", 64 * 1024)
    assert tune_http_reads(1024 * 1024) == 1024 * 1024
    for stack in STACKS:
        assert stack.AsyncHTTP11Connection.READ_NUM_BYTES == 1024 * 1024
    assert tune_http_reads(128 * 1024) == 1024 * 1024  # a smaller chunk setting keeps 1 MiB


@pytest.mark.parametrize("gone", STACKS, ids=lambda stack: stack.__name__)
def test_a_stack_without_the_setting_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, gone: object
) -> None:
    (kept,) = (stack for stack in STACKS if stack is not gone)
    monkeypatch.setattr(kept.AsyncHTTP11Connection, "READ_NUM_BYTES", 64 * 1024)
    monkeypatch.delattr(gone.AsyncHTTP11Connection, "READ_NUM_BYTES")  # type: ignore[attr-defined]
    assert tune_http_reads(1024 * 1024) == 1024 * 1024
    assert kept.AsyncHTTP11Connection.READ_NUM_BYTES == 1024 * 1024
    assert not hasattr(gone.AsyncHTTP11Connection, "READ_NUM_BYTES")  # type: ignore[attr-defined]


def test_neither_stack_with_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for stack in STACKS:
        monkeypatch.delattr(stack.AsyncHTTP11Connection, "READ_NUM_BYTES")
    assert tune_http_reads(1024 * 1024) == 0


FAULTS_OF_FREED_PIECES = """
import resource, sys
from reelvault_archiver.tuning import tune_malloc

tuned = tune_malloc() if sys.argv[1] == "tuned" else None
pieces = []
for _ in range(8):  # warm: the heap has grown to what a copy holds
    pieces = [bytes(256 * 1024) for _ in range(16)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):  # then pieces come and go, as in a copy
    pieces = [bytes(256 * 1024) for _ in range(16)]
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt, Linux only")
def test_freed_pieces_are_reused_without_new_page_faults() -> None:
    def faults(mode: str) -> tuple[str, int]:
        done = subprocess.run(
            [sys.executable, "-c", FAULTS_OF_FREED_PIECES, mode],
            capture_output=True, text=True, check=True, timeout=60,
        )
        tuned, count = done.stdout.split()
        return tuned, int(count)

    untuned = faults("default")[1]
    tuned, count = faults("tuned")
    assert tuned == "True"
    # By default the heap's top goes back to the kernel and is faulted in again.
    assert untuned > 10_000
    assert count < untuned / 10
