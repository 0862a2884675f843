"""Running the ``reelvault`` command in-process, for tests of how it refuses bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelvault.cli import main


def refusal(argv: list[str], capsys: pytest.CaptureFixture[str], data_dir: Path) -> str:
    """Run ``reelvault ARGV`` (with ``--data-dir`` after a subcommand); it must exit 2 with
    exactly one line on standard error, which is returned."""
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--data-dir", str(data_dir)] if len(argv) > 1 else argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reelvault: "), err
    return err[0]
