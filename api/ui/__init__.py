"""The web dashboard under ``/ui/``: server-rendered pages over the same services and queries
as the API (``api/ui/router.py`` composes it)."""
