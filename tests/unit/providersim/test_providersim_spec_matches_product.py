"""The product's table of what the Videos API accepts against the simulator's own copy.

Two copies on purpose: the simulator's is written from the API reference, so a mistake in the
product's table shows up here instead of passing every test run against the simulator.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from reelvault_common.providers import video_spec as product
from reelvault_providersim import spec as simulator


@dataclass(frozen=True)
class Rules:
    """One copy's rules, as plain values that can be compared."""

    models: frozenset[str]
    sizes_by_model: dict[str, frozenset[str]]
    seconds: frozenset[str]
    # Each documented snapshot slug -> the model it is taken as (None: refused).
    snapshots: dict[str, str | None]
    default_model: str
    default_seconds: str
    default_size: str
    prompt_max_chars: int


def simulator_rules() -> Rules:
    return Rules(
        models=frozenset(simulator.MODELS),
        sizes_by_model={m: frozenset(s) for m, s in simulator.SIZES_BY_MODEL.items()},
        seconds=frozenset(simulator.SECONDS),
        snapshots={slug: simulator.model_family(slug) for slug in simulator.SNAPSHOTS},
        default_model=simulator.DEFAULT_MODEL,
        default_seconds=simulator.DEFAULT_SECONDS,
        default_size=simulator.DEFAULT_SIZE,
        prompt_max_chars=simulator.PROMPT_MAX_CHARS,
    )


def product_rules() -> Rules:
    return Rules(
        models=frozenset(product.SIZES_BY_MODEL),
        sizes_by_model={m: frozenset(s) for m, s in product.SIZES_BY_MODEL.items()},
        seconds=frozenset(product.SECONDS_ALLOWED),
        # Probed with the slugs the reference documents: the product matches a pattern.
        snapshots={slug: product.base_model(slug) for slug in simulator.SNAPSHOTS},
        default_model=product.DEFAULT_MODEL,
        default_seconds=product.DEFAULT_SECONDS,
        default_size=product.DEFAULT_SIZE,
        prompt_max_chars=product.PROMPT_MAX_CHARS,
    )


def _set_difference(what: str, product_values: frozenset[str],
                    simulator_values: frozenset[str]) -> list[str]:
    found = []
    if extra := sorted(product_values - simulator_values):
        found.append(f"{what}: the product accepts {extra}, which the documented API "
                     "(the simulator) refuses")
    if missing := sorted(simulator_values - product_values):
        found.append(f"{what}: the documented API (the simulator) accepts {missing}, which "
                     "the product refuses")
    return found


def disagreements(product_side: Rules, simulator_side: Rules) -> list[str]:
    """Every difference between the two copies, one readable line each."""
    found = _set_difference("models", product_side.models, simulator_side.models)
    for model in sorted(product_side.models & simulator_side.models):
        found += _set_difference(f"sizes of {model}", product_side.sizes_by_model[model],
                                 simulator_side.sizes_by_model[model])
    found += _set_difference("seconds", product_side.seconds, simulator_side.seconds)
    for slug, expected in sorted(simulator_side.snapshots.items()):
        got = product_side.snapshots.get(slug)
        if got != expected:
            found.append(f"snapshot {slug!r}: the product takes it as {got!r}, the documented "
                         f"API as {expected!r}")
    for field in ("default_model", "default_seconds", "default_size", "prompt_max_chars"):
        ours, theirs = getattr(product_side, field), getattr(simulator_side, field)
        if ours != theirs:
            found.append(f"{field}: the product has {ours!r}, the documented API {theirs!r}")
    return found


def test_the_products_table_matches_the_documented_api() -> None:
    found = disagreements(product_rules(), simulator_rules())
    assert not found, (
        "reelvault_common.providers.video_spec (the product) and reelvault_providersim.spec (the "
        "simulator's copy of the OpenAI Videos API reference) disagree; correct whichever is "
        "wrong against the reference:\n  - " + "\n  - ".join(found)
    )


def test_a_difference_in_any_rule_is_named() -> None:
    documented = simulator_rules()
    sizes = dict(documented.sizes_by_model)
    sizes["sora-2"] = sizes["sora-2"] | {"1920x1080"}
    doctored = dataclasses.replace(
        documented,
        models=documented.models | {"sora-3"},
        sizes_by_model={**sizes, "sora-3": frozenset()},
        seconds=documented.seconds - {"12"},
        snapshots={**documented.snapshots, "sora-2-pro-2025-10-06": "sora-2"},
        default_size="1280x720",
        prompt_max_chars=1000,
    )
    found = disagreements(doctored, documented)
    assert found == [
        "models: the product accepts ['sora-3'], which the documented API (the simulator) "
        "refuses",
        "sizes of sora-2: the product accepts ['1920x1080'], which the documented API (the "
        "simulator) refuses",
        "seconds: the documented API (the simulator) accepts ['12'], which the product refuses",
        "snapshot 'sora-2-pro-2025-10-06': the product takes it as 'sora-2', the documented API "
        "as 'sora-2-pro'",
        "default_size: the product has '1280x720', the documented API '720x1280'",
        "prompt_max_chars: the product has 1000, the documented API 32000",
    ]
    assert disagreements(documented, documented) == []
