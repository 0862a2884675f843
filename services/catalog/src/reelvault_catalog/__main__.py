"""``python -m reelvault_catalog``: run the catalog until SIGTERM/SIGINT."""

from __future__ import annotations

from reelvault_common.runtime.early_stop import exit_cleanly_on_sigterm

exit_cleanly_on_sigterm()  # before the slow imports below

from reelvault_common.runtime.eventloop import run

from reelvault_catalog.app import main

if __name__ == "__main__":
    run(main)
