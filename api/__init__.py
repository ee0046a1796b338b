"""The Litestar HTTP API: commands go to the application services, reads to projection tables."""
