"""``python -m reelvault_generator``: run the generator until SIGTERM/SIGINT."""

from reelvault_common.runtime.early_stop import exit_cleanly_on_sigterm

exit_cleanly_on_sigterm()  # before the slow imports below

from reelvault_common.runtime.eventloop import run

from reelvault_generator.app import main

if __name__ == "__main__":
    run(main)
