"""Persistence: the versioned resource store, its search index, engines and migrations."""
