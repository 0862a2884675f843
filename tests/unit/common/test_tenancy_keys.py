"""API keys, slugs and scopes: the pure rules the gateway, the catalog and the CLI share."""

from __future__ import annotations

import pytest
from reelvault_common.contracts.tenancy import (
    KEY_PREFIX,
    Scope,
    generate_key,
    grants,
    hash_key,
    is_valid_slug,
    key_matches,
    public_id_of,
)


def test_a_new_key_names_its_public_id_and_matches_only_its_hash() -> None:
    new = generate_key()
    assert new.key.startswith(f"{KEY_PREFIX}_{new.public_id}_")
    assert public_id_of(new.key) == new.public_id
    assert new.key_hash == hash_key(new.key) and new.key not in new.key_hash
    assert key_matches(new.key, new.key_hash)
    other = generate_key()
    assert not key_matches(other.key, new.key_hash)
    assert other.public_id != new.public_id and other.key != new.key


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "rvk_",
        "sk-proj-abc",
        "Bearer rvk_0123456789abcdef_" + "A" * 43,
        "rvk_0123456789abcdef_" + "A" * 42,  # one character short
        "rvk_0123456789abcdef_" + "A" * 44,
        "rvk_0123456789ABCDEF_" + "A" * 43,  # public ids are lowercase hex
        "xyz_0123456789abcdef_" + "A" * 43,
        "rvk_0123456789abcdef_" + "A" * 42 + "é",
        "rvk_0123456789abcdef_" + "A" * 42 + "\n",
        "rvk_0123456789abcdef_" + "A" * 5000,
    ],
)
def test_malformed_keys_have_no_public_id(presented: str) -> None:
    assert public_id_of(presented) is None


def test_a_key_with_dashes_and_underscores_in_its_secret_is_well_formed() -> None:
    assert public_id_of("rvk_0123456789abcdef_" + "-_" * 21 + "a") == "0123456789abcdef"


@pytest.mark.parametrize("slug", ["abc", "acme", "a-b", "default", "x" * 40, "org-2026"])
def test_valid_slugs(slug: str) -> None:
    assert is_valid_slug(slug)


@pytest.mark.parametrize(
    "slug", ["", "ab", "x" * 41, "Acme", "a_b", "-abc", "abc-", "a.b", "a b", "a/b", "ünï", "a*c"]
)
def test_invalid_slugs(slug: str) -> None:
    assert not is_valid_slug(slug)


def test_admin_grants_every_scope_and_other_scopes_only_themselves() -> None:
    assert grants(["admin"], Scope.VIDEOS_WRITE) and grants(["admin"], Scope.VIDEOS_READ)
    assert grants(["videos:read"], Scope.VIDEOS_READ)
    assert not grants(["videos:read"], Scope.VIDEOS_WRITE)
    assert not grants(["videos:write"], Scope.ADMIN)
    assert not grants([], Scope.VIDEOS_READ)
