"""What every reelvault service shares: event contracts, topology, settings, storage, provider protocol."""
