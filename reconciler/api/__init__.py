"""The HTTP API and dashboard (FastAPI + uvicorn): the only package that imports them (an import-linter contract).

``app`` builds the FastAPI application from an :class:`~dsfleet.reconciler.api.context.ApiContext` (the store to read, the
manifests directory, the token, how to ask for an apply or a refresh) out of ``routes`` (one router per area:
status, inventory, revisions, actions, service); ``models`` are the typed bodies every response is checked against
and ``/openapi.json`` documents; ``errors`` the one error body and its handlers; ``dependencies`` the token checks
and the status read (one store snapshot per request); ``server`` runs the app with uvicorn in a thread of the
coordinator (``dsfleet coordinator --http``) or of ``dsfleet serve``; ``metrics`` is the Prometheus collector
(counters of the coordinator, gauges computed from the store on every scrape); ``webhooks`` verifies GitHub, GitLab
and Gitea push signatures; ``dashboard`` is the one static page served at ``/``.
"""
