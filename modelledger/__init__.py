"""Composition root and infrastructure: settings, event store, application services, CLI."""
