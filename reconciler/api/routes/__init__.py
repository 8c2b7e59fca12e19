"""The routes of the HTTP API, one :class:`fastapi.APIRouter` per area: ``status`` (the status document and
events), ``inventory`` (nodes, cameras, instances, the older system's agents), ``logs`` (an instance's log,
fetched from its node), ``revisions`` (revisions and the diff), ``actions`` (apply, refresh, the git webhook) and
``service`` (health, metrics, the dashboard). The ``/api/v1`` routers leave the token check of reads to
:func:`dsfleet.reconciler.api.app.create_app`, which includes them."""
