"""The coordinator's side of Kafka (an adapter over :mod:`plumbing.kafka`)."""
