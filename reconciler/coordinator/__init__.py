"""The coordinator: a long-running process that watches the manifests, applies them through the same path as
``dsfleet apply``, publishes the outbox over Kafka, ingests what agents report and keeps every online node on
its desired generation (anti-entropy).

Pure decisions (``liveness``, ``identities``, ``resyncs``) are apart from the wiring (``loop``) and the adapters
(``watcher``; the bus in :mod:`dsfleet.reconciler.bus`; the store in :mod:`dsfleet.reconciler.store`).
``logreplies`` hands the agents' replies to ``logs`` commands to the API request that waits for them.
"""
