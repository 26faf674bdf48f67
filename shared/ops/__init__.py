"""Repair commands of every service: dead letters, reindexing, the outbox's state."""
