"""The pure domain of Model Ledger: aggregates, events, value objects and rules.

Imports only the standard library, ``eventsourcing.domain`` and itself.
"""
