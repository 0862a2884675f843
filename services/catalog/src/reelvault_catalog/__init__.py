"""catalog: owns the Postgres metadata; projects lifecycle events, answers reads over NATS."""
