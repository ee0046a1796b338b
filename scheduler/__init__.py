"""Periodic jobs (compaction, snapshots, retention, watchdog) run by APScheduler."""
