"""The ``reelvault`` operator commands without a system: how they find one, and how they
refuse a bad command line (exit 2, one line, before anything is asked)."""

from __future__ import annotations

import stat
from decimal import Decimal
from pathlib import Path

import pytest

from reelvault.local_system import (
    read_api_key,
    record_system,
    system_environment,
    write_api_key,
)
from tests.support.command_line import refusal


def test_a_recorded_system_fills_in_only_what_the_environment_does_not_say(
    tmp_path: Path,
) -> None:
    record_system(tmp_path, {"NATS_URL": "nats://127.0.0.1:14222", "REELVAULT_NAMESPACE": "rv",
                             "DATABASE_URL": "postgresql://app:s3cret-pw@db/x",
                             "REELVAULT_STORAGE_DIR": "/data/storage",
                             "SUPABASE_SERVICE_ROLE_KEY": "service-role-secret",
                             "REELVAULT_STORAGE_SIGNING_KEY": "signing-secret",
                             "OPENAI_API_KEY": "sk-secret", "HOME": "/home/op"})
    recorded = (tmp_path / "system.json").read_text()
    # Where the database and storage are (backups run beside the system need them) but no
    # secret: neither keys nor the database password.
    for secret in ("s3cret-pw", "service-role-secret", "signing-secret", "sk-secret", "HOME"):
        assert secret not in recorded
    assert stat.S_IMODE((tmp_path / "system.json").stat().st_mode) == 0o600
    assert system_environment(tmp_path, {}) == {
        "NATS_URL": "nats://127.0.0.1:14222", "REELVAULT_NAMESPACE": "rv",
        "DATABASE_URL": "postgresql://app@db/x", "REELVAULT_STORAGE_DIR": "/data/storage"}
    env = system_environment(tmp_path, {"NATS_URL": "nats://elsewhere:4222",
                                        "DATABASE_URL": "postgresql://app:pw@db/x"})
    assert env["NATS_URL"] == "nats://elsewhere:4222" and env["REELVAULT_NAMESPACE"] == "rv"
    assert env["DATABASE_URL"] == "postgresql://app:pw@db/x"


def test_no_recorded_system_or_a_damaged_file_leaves_the_environment_alone(
    tmp_path: Path,
) -> None:
    assert system_environment(tmp_path, {"A": "1"}) == {"A": "1"}
    (tmp_path / "system.json").write_text("{broken")
    assert system_environment(tmp_path, {"A": "1"}) == {"A": "1"}


def test_the_kept_key_is_private_to_its_owner(tmp_path: Path) -> None:
    assert read_api_key(tmp_path) is None
    write_api_key(tmp_path, "rvk_0123456789abcdef_" + "A" * 43)
    assert read_api_key(tmp_path) == "rvk_0123456789abcdef_" + "A" * 43
    assert stat.S_IMODE((tmp_path / "api-key").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["orgs", "create", "Bad Slug"], "invalid slug"),
        (["orgs", "create", "ab"], "invalid slug"),
        (["keys", "create", "--org", "UPPER"], "invalid slug"),
        (["keys", "create", "--org", "acme", "--scope", "root"], "invalid choice"),
        (["keys", "create", "--org", "acme", "--expires-in-days", "0"], "positive"),
        (["flags", "set", "turbo", "on"], "invalid choice"),
        (["flags", "set", "maintenance", "maybe"], "on|off"),
        (["flags", "set", "whitelist", "on"], "--orgs"),
        (["flags", "set", "whitelist", "--orgs", "ok-org,Not_OK"], "invalid slug"),
        (["quotas", "set", "--org", "acme"], "at least one limit"),
        (["quotas", "set", "--org", "acme", "--videos-per-month", "-1"], "negative"),
        (["quotas", "set", "--org", "acme", "--cost-usd-per-month", "lots"], "not a number"),
        (["orgs"], "required"),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert says in refusal(argv, capsys, tmp_path)


def test_limits_take_numbers_or_none() -> None:
    from reelvault.admin import parse_limit

    assert parse_limit(int)("12") == 12 and parse_limit(int)("none") is None
    assert parse_limit(Decimal)("12.50") == Decimal("12.50")
