"""Talking to NATS JetStream: topology, publishing, consuming, dead letters."""
