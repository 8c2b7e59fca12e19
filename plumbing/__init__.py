"""Plumbing both long-running sides need, kept in one small package because ``reconciler`` and ``agent`` must
never import each other and this code does I/O (so it cannot live in ``schemas``):

- ``dsfleet.plumbing.settings``: the settings models of every section (``[coordinator]``, ``[agent]``, ``[kafka]``,
  ``[api]``) and the one loader (``settings.toml`` < ``DSFLEET_*`` environment < flags);
- ``dsfleet.plumbing.kafka``: the Kafka client wrapper (the only importer of ``confluent_kafka``): producer with delivery
  reports, explicit-partition consumers with end-of-partition catch-up, topic administration;
- ``dsfleet.plumbing.logs``: logging configured once per process (text or JSON, key=value context, redaction).

It imports ``schemas`` and libraries only.
"""
