"""Runtime flags as stored values: what each value means, and that a damaged one is off."""

from __future__ import annotations

from reelvault_common.contracts.flags import Flags, encode_flag


def test_stored_values_switch_each_flag() -> None:
    flags = Flags().with_value("maintenance", encode_flag(True))
    flags = flags.with_value("whitelist", encode_flag(["acme", "globex"]))
    assert flags.maintenance and not flags.coming_soon
    assert flags.whitelist == ("acme", "globex")
    assert flags.may_create("acme") and not flags.may_create("initech")


def test_no_whitelist_lets_everyone_create() -> None:
    flags = Flags().with_value("whitelist", encode_flag([]))
    assert flags.whitelist == () and flags.may_create("anyone")


def test_a_deleted_or_damaged_value_is_off() -> None:
    on = Flags(maintenance=True, whitelist=("acme",))
    assert not on.with_value("maintenance", None).maintenance
    assert not on.with_value("maintenance", b"{not json").maintenance
    assert on.with_value("whitelist", b'["Not A Slug"]').whitelist == ()
    assert on.with_value("whitelist", b'"acme"').whitelist == ()
