"""The contracts are what other systems (and every service) import to speak to us: plain pydantic
models, so importing them must not drag in a broker client, an HTTP client or a storage SDK."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("nats", "faststream", "httpx", "storage3", "supabase")

# A fresh interpreter: this test process has long imported all of them.
_PROBE = """
import importlib, json, pkgutil, sys
import reelvault_common.contracts as contracts
names = [contracts.__name__] + [
    info.name for info in pkgutil.walk_packages(contracts.__path__, contracts.__name__ + ".")
]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted(sys.modules)}))
"""


def test_contracts_import_no_broker_http_or_storage_client() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    result = json.loads(done.stdout)
    # The walk found the modules that matter, so an empty package cannot pass by accident.
    assert {"reelvault_common.contracts.events", "reelvault_common.contracts.catalog"} <= set(
        result["modules"]
    )
    leaked = sorted(
        name
        for name in result["loaded"]
        if any(name == root or name.startswith(root + ".") for root in FORBIDDEN)
    )
    assert leaked == [], f"importing the contracts loaded {leaked}"
