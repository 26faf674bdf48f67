"""Resource-change events: outbox, relay to Kafka, idempotent consumers, replicas, catch-up."""
