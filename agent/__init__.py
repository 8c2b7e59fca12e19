"""dsfleet agent: converges one GPU host's DeepStream containers to its node config (docs/operating/agent.md).

Pure core (no I/O, no clock, no logging; table-tested):

- ``dsfleet.agent.containers``: the container plan — desired instances against observed managed containers → actions;
  the labels; the container request handed to the runtime.
- ``dsfleet.agent.drift``: drift kinds and rules (stopped, removed, relabelled, file-edited, file-missing).
- ``dsfleet.agent.observations``: ``InstanceStatus`` from observations, crash-loop (``backoff``) detection, the ``**PERF:`` parser.
- ``dsfleet.agent.configfiles``: fill ``${secret:<ref>}`` placeholders, plan file writes as data.
- ``dsfleet.agent.desiredconfigs``: parse and check an AgentConfig message or a NodeConfig; judge one AgentConfig record.
- ``dsfleet.agent.credentials``: the credential type and the secret-store port. ``dsfleet.agent.ports``: runtime, bus, clock ports.

Adapters: ``dsfleet.agent.runtime`` (Docker SDK; the only importer of ``docker``), ``dsfleet.agent.bus`` (Kafka through
``dsfleet.plumbing.kafka``), ``dsfleet.agent.filestore`` (the state dir), ``dsfleet.agent.secrets`` (the local secret store),
``dsfleet.agent.hostinfo`` (hostname, machine id, GPUs). Wiring: ``dsfleet.agent.loop`` (no decisions), ``dsfleet.agent.cli``
(``dsfleet-agent run`` / ``materialize``). ``dsfleet.agent.errors``: ``AgentError`` → ``TemporaryError`` / ``PermanentError``.

**Label and state-dir contract.** A managed container is named ``dsfleet-<instance>`` and carries the labels of
:mod:`dsfleet.schemas.labels` (managed, instance and manifest labels from its spec; node, *container spec* hash and
creation generation from the agent: labels cannot change, and a files-only change only restarts the container, so
they stay true). The agent records in ``<state-dir>/applied.json`` per instance the container id, the spec hash and the **files hash
it last (re)started that container with**; ``AgentResponse`` reports ``specHash`` (from the label), ``filesHash``
(the recorded one) and the desired instance ``configHash``. The engine volume ``<instance>_engine`` is labelled with its
image and recreated when a container is (re)created for another image.
``<state-dir>/desired.json`` keeps the last good desired config (fail static), ``<state-dir>/node-name`` the name
the coordinator gave, ``<state-dir>/instances/<instance>/`` the rendered files (bind-mounted read-only at
``/workspace/configs``).

May import ``schemas`` and ``plumbing`` and the standard library (import-linter).
"""
