"""dsfleet agent: converges one GPU host's DeepStream containers to its node config (docs/operating/agent.md).

Pure core (no I/O, no clock, no logging; table-tested):

- ``dsfleet.agent.containers``: the container plan — desired instances against observed managed containers → actions
  (make before break by the instance's update strategy, resuming a replacement an agent died in); the labels; the
  engine volume per image; the container request handed to the runtime.
- ``dsfleet.agent.conditions``: failed actions retried with backoff and jitter, host-side problems, image pulls, as
  conditions.
- ``dsfleet.agent.logreplies``: the reply to a ``logs`` command (redacted, capped).
- ``dsfleet.agent.drift``: drift kinds and rules (stopped, removed, relabelled, file-edited, file-missing).
- ``dsfleet.agent.observations``: ``InstanceStatus`` from observations, crash-loop (``backoff``) detection, the ``**PERF:`` parser.
- ``dsfleet.agent.configfiles``: fill ``${secret:<ref>}`` placeholders, plan file writes as data.
- ``dsfleet.agent.desiredconfigs``: parse and check an AgentConfig message or a NodeConfig; judge one AgentConfig record
  (valid, then fleet, generation and config hash against what the agent runs).
- ``dsfleet.agent.credentials``: the credential type and the secret-store port. ``dsfleet.agent.ports``: runtime, bus, clock ports.

Adapters: ``dsfleet.agent.runtime`` (Docker SDK; the only importer of ``docker``), ``dsfleet.agent.bus`` (Kafka through
``dsfleet.plumbing.kafka``), ``dsfleet.agent.filestore`` (the state dir), ``dsfleet.agent.secrets`` (the local secret store),
``dsfleet.agent.hostinfo`` (hostname, machine id, GPUs).

The loop (the shell that calls the core; no decisions): ``dsfleet.agent.loop`` (``Agent``: run, step, reconcile) composes
one mixin per concern over ``dsfleet.agent.loopstate`` (settings, host facts, the state kept between ticks):
``dsfleet.agent.intake`` (desired config and commands from the bus, fleet and generation binding, refusals, the
agent's name), ``dsfleet.agent.acting`` (carrying out the plan: create, replace, start, stop, image pulls; failures and
backoff), ``dsfleet.agent.reporting`` (statuses, ``AgentResponse``/``AgentInfo``, log digests, drift, log replies).
``dsfleet.agent.cli``: ``dsfleet-agent run`` / ``materialize``. ``dsfleet.agent.errors``: ``AgentError`` →
``TemporaryError`` / ``PermanentError``.

**Label and state-dir contract.** A managed container is named ``dsfleet-<instance>`` (``dsfleet-<instance>.next`` while
it replaces one) and carries the labels of
:mod:`dsfleet.schemas.labels` (managed, instance and manifest labels from its spec; node, *container spec* hash and
creation generation from the agent: labels cannot change, and a files-only change only restarts the container, so
they stay true). The agent records in ``<state-dir>/applied.json`` per instance the container id, the spec hash and the **files hash
it last (re)started that container with**; ``AgentResponse`` reports ``specHash`` (from the label), ``filesHash``
(the recorded one) and the ``configHash`` of what runs. Engine volumes are one per image, labelled with it
(``<instance>_engine-<hash>``). ``<state-dir>/desired.json`` keeps the last good desired config (fail static),
``<state-dir>/binding.json`` the fleet and the generation last accepted, ``<state-dir>/node-name`` the name the
coordinator gave, ``<state-dir>/instances/<instance>/`` the rendered files (bind-mounted read-only at
``/workspace/configs``).

May import ``schemas`` and ``plumbing`` and the standard library (import-linter).
"""
