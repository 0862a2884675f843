"""What every reelvault service shares: event contracts, topology, settings, storage and the
provider protocol."""
