"""Public contracts: the lifecycle events on JetStream and the catalog's request/reply API."""
