"""``dsfleet-agent`` — the host-side command line (argparse).

Commands: ``run`` — the long-running agent (:mod:`dsfleet.agent.loop`: AgentConfig from Kafka, Docker containers, status
reports); ``materialize`` — write a node config's files into the state directory with the camera credentials
filled in from the local secret store.

Settings of ``run`` (``dsfleet.plumbing.settings.load_settings``): flags, over ``DSFLEET_AGENT_*`` (``NODE_NAME``,
``STATE_DIR``, ``RUNTIME``, ``DOCKER_URL``, ``HEARTBEAT_SECONDS``, ``RESYNC_SECONDS``, ``SELF_HEAL``, ``FLEET_ID``,
``IMAGE_PULL``) and
``DSFLEET_KAFKA_*`` (``BOOTSTRAP_SERVERS``, ``TOPIC_PREFIX``, ``FETCH_WAIT_MAX_MS``, librdkafka keys in
``[kafka]``) environment variables, over ``[agent]``/``[kafka]`` of the settings file, over the defaults.

Exit codes: 0 ok; 1 the input cannot be applied (invalid config, missing or badly protected secrets);
2 usage (bad arguments, unknown instance, unreadable config file) or the state directory cannot be written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsfleet.agent.errors import AgentError, PermanentError, SecretError
from dsfleet.plumbing.logs import LEVELS, configure_logging
from dsfleet.plumbing.settings import AgentSettings, KafkaSettings, load_settings

if TYPE_CHECKING:
    from dsfleet.agent.trust import Trust

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_ERROR = 2

PROG = "dsfleet-agent"

DESCRIPTION = """\
dsfleet-agent runs on each GPU host of a dsfleet fleet. It turns the node's desired config (compiled by the
dsfleet coordinator from the manifests) into files and DeepStream containers on this host.

Commands:

  run           the long-running agent: read this node's desired config from the AgentConfig topic (kept in
                <state-dir>/desired.json, so it restarts without a broker), converge Docker containers
                dsfleet-<instance> to it, heal drift, report AgentInfo and AgentResponse. SIGTERM stops the agent;
                the containers keep running.
  key           print this agent's public key and its id (made on first use as <state-dir>/agent.key), for
                `dsfleet nodes approve NODE --key ID`
  materialize   write a node config's rendered files to <state-dir>/instances/<instance>/, with the
                ${secret:<ref>} placeholders of camera URLs replaced by credentials from the local secret
                store (${secret:<ref>:password} by a value kept whole, e.g. a broker connection string), and
                keep the config as <state-dir>/desired.json

Secret store: files <state-dir>/secrets/<ref>/username and .../password (mode 0600; one trailing newline is
ignored), overridden key by key by env DSFLEET_SECRET_<REF>_USERNAME / _PASSWORD (<REF> upper-cased, '-' → '_').
Secret values are never printed.
"""

EPILOG = """\
exit codes: 0 ok; 1 invalid config (nothing written) or missing/unprotected secrets (no instance file
            written; desired.json is updated, the config itself being valid);
            2 usage, unknown instance, unreadable config file or unwritable state directory.
examples:
  dsfleet-agent run --bootstrap-servers 127.0.0.1:9092 --node-name gpu-01 --state-dir /var/lib/dsfleet \
      --trust-key ed25519:... --enroll-token dsfleet-enroll-...
  dsfleet-agent materialize --config node.json --state-dir /var/lib/dsfleet
  dsfleet-agent materialize --config node.json --state-dir /var/lib/dsfleet --instance ccm-gate
"""


MATERIALIZE_DESCRIPTION = """\
Write the rendered files of every instance of a node config (or of one instance) to
<state-dir>/instances/<instance>/, atomically: files with credentials 0600, the others 0644, stale files
removed, unchanged files left alone. Placeholders ${secret:<ref>} are replaced by the percent-encoded
user:password of <ref> from the local secret store, and ${secret:<ref>:password} (or :username) by that
value verbatim, escaped for the file (a broker connection string kept whole in a secret; such a secret may
have a password file only); every secret is checked before any instance file is written. The config is
kept as <state-dir>/desired.json (0600, no secret values).
Prints one line per instance ("instance NAME: N files written, M removed"); never prints a secret.
"""


RUN_DESCRIPTION = """\
Run the agent until SIGTERM/SIGINT. It reads its own key of the AgentConfig topic without a consumer group (from
the beginning of its partition; the last value wins), converges the containers dsfleet manages
on this node, and reports. Without a reachable broker it converges from <state-dir>/desired.json.

Trust: it believes only configs and commands signed by a coordinator key it is given (--trust-key, repeatable,
or [agent] trusted_keys / trusted_keys_file; `dsfleet keys show` prints the coordinator's). Without one it refuses
every config and says so. It signs its own reports with <state-dir>/agent.key (made on first start); the
coordinator takes them once that key is enrolled: `dsfleet nodes approve NODE`, or at once with a one-time
--enroll-token from `dsfleet nodes token create`.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 on usage errors, as the contract says
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


class _Version(argparse.Action):
    """``--version``, resolved only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ver = version("dsfleet")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            ver = "unknown"
        print(f"{PROG} {ver}")
        parser.exit(EXIT_OK)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "materialize",
        help="write a node config's files (secrets filled in) into the state directory",
        description=MATERIALIZE_DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        required=True,
        type=Path,
        metavar="FILE",
        help="JSON: an AgentConfig message (topic 210) or a NodeConfig as compiled by the coordinator",
    )
    p.add_argument(
        "--state-dir",
        required=True,
        type=Path,
        metavar="DIR",
        help="the agent's state directory (holds secrets/, instances/ and desired.json)",
    )
    p.add_argument("--instance", metavar="NAME", help="write only this instance's files")
    p.set_defaults(handler=cmd_materialize)

    r = sub.add_parser(
        "run",
        help="the long-running agent: converge this node's DeepStream containers, report status",
        description=RUN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument(
        "--bootstrap-servers", metavar="HOST:PORT", help="Kafka brokers (env DSFLEET_KAFKA_BOOTSTRAP_SERVERS)"
    )
    r.add_argument(
        "--node-name", metavar="NAME", help="this node's name (default: kept or given by the coordinator)"
    )
    r.add_argument("--state-dir", type=Path, metavar="DIR", help="state directory (default .dsfleet/agent)")
    r.add_argument("--runtime", choices=["docker"], help="container runtime (docker)")
    r.add_argument(
        "--docker-url", metavar="URL", help="Docker engine (default: DOCKER_HOST or the local socket)"
    )
    r.add_argument("--topic-prefix", metavar="PREFIX", help="prefix of the six topic names")
    r.add_argument("--heartbeat-seconds", type=float, metavar="S", help="AgentInfo/AgentResponse period (5)")
    r.add_argument("--resync-seconds", type=float, metavar="S", help="full resync period (30)")
    r.add_argument(
        "--self-heal", action=argparse.BooleanOptionalAction, default=None, help="heal drift (default on)"
    )
    r.add_argument(
        "--fleet-id",
        metavar="ID",
        help="bind the agent to this fleet (the store's id); default: the fleet of the first config it accepts",
    )
    r.add_argument(
        "--trust-key",
        action="append",
        metavar="KEY",
        help="a coordinator public key (ed25519:...) to believe; repeat it while a key rotates "
        "(adds to [agent] trusted_keys)",
    )
    r.add_argument("--trusted-keys-file", type=Path, metavar="FILE", help="more coordinator keys, one a line")
    r.add_argument(
        "--enroll-token", metavar="TOKEN", help="a one-time enrollment token (`dsfleet nodes token create`)"
    )
    r.add_argument(
        "--enroll-token-file", type=Path, metavar="FILE", help="read the enrollment token from FILE"
    )
    r.add_argument(
        "--insecure-accept-unsigned",
        action="store_true",
        default=None,
        help="accept unsigned configs and commands from anyone who can write to the broker (labs only)",
    )
    r.add_argument(
        "--image-pull",
        choices=["missing", "never"],
        help="pull an absent image when its registry answers (missing, the default), or never",
    )
    r.add_argument(
        "--log-level",
        type=str.lower,
        choices=LEVELS,
        default="info",
        help="log level, any case (default: info)",
    )
    r.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log line format (default: text)"
    )
    r.set_defaults(handler=cmd_run)

    k = sub.add_parser(
        "key",
        help="print this agent's public key and id (made on first use)",
        description="Print the agent's public key (ed25519:...) and its id; the key pair is made as "
        "<state-dir>/agent.key (mode 0600) when there is none. The coordinator shows the same id for a pending "
        "enrollment: approve it with `dsfleet nodes approve NODE --key ID`.",
    )
    k.add_argument("--state-dir", type=Path, metavar="DIR", help="state directory (default .dsfleet/agent)")
    k.set_defaults(handler=cmd_key)
    return parser


def cmd_key(args: argparse.Namespace) -> int:
    from dsfleet.agent.identity import load_identity

    settings = load_settings(overrides={"agent": {"state_dir": args.state_dir}}).agent
    key, created = load_identity(settings.state_dir)
    print(f"key id: {key.id}{' (made now)' if created else ''}")
    print(f"public key: {key.public.text()}")
    return EXIT_OK


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def cmd_materialize(args: argparse.Namespace) -> int:
    from dsfleet.agent.desiredconfigs import parse_config, select_instances
    from dsfleet.agent.filestore import save_desired, write_node_files
    from dsfleet.agent.secrets import LocalSecretStore

    try:
        data = args.config.read_bytes()
    except OSError as exc:
        _error(f"{args.config}: cannot read: {exc.strerror}")
        return EXIT_ERROR
    config = parse_config(data, str(args.config))
    try:
        instances = select_instances(config, args.instance)
    except LookupError as exc:
        _error(str(exc.args[0]))
        return EXIT_ERROR
    save_desired(args.state_dir, config)
    results = write_node_files(args.state_dir, instances, LocalSecretStore(args.state_dir))
    for name, result in results:
        print(f"instance {name}: {_files(len(result.changed))} written, {len(result.removed)} removed")
    return EXIT_OK


def agent_settings(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> tuple[AgentSettings, KafkaSettings]:
    """Settings of ``run``: flags over ``DSFLEET_AGENT_*``/``DSFLEET_KAFKA_*`` over the settings file
    (``dsfleet.plumbing.settings.load_settings``; ``DSFLEET_CONFIG`` or ``./settings.toml``) over defaults."""
    settings = load_settings(
        environ=environ,
        overrides={
            "agent": {
                "node_name": args.node_name,
                "state_dir": args.state_dir,
                "runtime": args.runtime,
                "docker_url": args.docker_url,
                "heartbeat_seconds": args.heartbeat_seconds,
                "resync_seconds": args.resync_seconds,
                "self_heal": args.self_heal,
                "fleet_id": args.fleet_id,
                "image_pull": args.image_pull,
                "trusted_keys_file": args.trusted_keys_file,
                "insecure_accept_unsigned": args.insecure_accept_unsigned,
                "enroll_token": args.enroll_token,
                "enroll_token_file": args.enroll_token_file,
            },
            "kafka": {"bootstrap_servers": args.bootstrap_servers, "topic_prefix": args.topic_prefix},
        },
    )
    agent = settings.agent
    if args.trust_key:
        agent = agent.model_copy(update={"trusted_keys": (*agent.trusted_keys, *args.trust_key)})
    return agent, settings.kafka


def agent_trust(settings: AgentSettings) -> tuple[Trust, str | None]:
    """The keys the agent believes and its enrollment token, from its settings (files read here)."""
    from dsfleet.agent.trust import Trust
    from dsfleet.plumbing.signing import Keyring, load_public_keys

    keys = load_public_keys(settings.trusted_keys, settings.trusted_keys_file, what="[agent] trusted_keys")
    logs = load_public_keys(settings.log_request_keys, what="[agent] log_request_keys")
    token = settings.enroll_token
    if settings.enroll_token_file is not None:
        try:
            token = settings.enroll_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PermanentError(f"{settings.enroll_token_file}: cannot read: {exc.strerror}") from None
    trust = Trust(Keyring.of(keys), Keyring.of(logs), accept_unsigned=settings.insecure_accept_unsigned)
    return trust, token or None


def cmd_run(args: argparse.Namespace) -> int:
    import signal
    import threading
    from importlib.metadata import PackageNotFoundError, version

    from dsfleet.agent.hostinfo import host_facts
    from dsfleet.agent.identity import load_identity
    from dsfleet.agent.loop import Agent, LoopSettings
    from dsfleet.agent.runtime import DockerRuntime
    from dsfleet.agent.secrets import LocalSecretStore

    # a SIGTERM that arrives while the agent is still starting stops it cleanly too (handlers before any log line)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    settings, kafka = agent_settings(args)
    configure_logging(args.log_level, args.log_format)
    trust, token = agent_trust(settings)
    identity, _created = load_identity(settings.state_dir)
    try:
        agent_version = version("dsfleet")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        agent_version = "unknown"
    runtime = DockerRuntime(settings.docker_url, pull=settings.image_pull == "missing")
    bus = None
    if kafka.bootstrap_servers:
        from dsfleet.agent.bus import KafkaBus

        bus = KafkaBus(
            {"fetch.wait.max.ms": str(kafka.fetch_wait_max_ms), **kafka.client_config()},
            prefix=kafka.topic_prefix,
            identity=identity,
        )
    else:
        logging.getLogger("dsfleet.agent").warning("no bootstrap servers: running from desired.json only")
    agent = Agent(
        LoopSettings(
            state_dir=settings.state_dir,
            node=settings.node_name,
            heartbeat_seconds=settings.heartbeat_seconds,
            resync_seconds=settings.resync_seconds,
            self_heal=settings.self_heal,
            fleet_id=settings.fleet_id,
            admission=settings.admission,
            trust=trust,
            enroll_token=token,
        ),
        runtime,
        bus,
        LocalSecretStore(settings.state_dir),
        host_facts(agent_version),
        identity=identity,
    )
    try:
        agent.run(stop)
    finally:
        if bus is not None:
            bus.close()
        runtime.close()
    return EXIT_OK


def _error(message: str) -> None:
    lines = message.splitlines() or [""]
    for line in lines:
        # gcc-style lines (``FILE:...: error: ...``) already say what they are
        print(line if ": error: " in line else f"{PROG}: error: {line}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except SecretError as exc:
        _error(str(exc))
        n = len(exc.refs)
        _error(f"{n} secret{'' if n == 1 else 's'} unavailable; no instance file was written")
        return EXIT_FAIL
    except PermanentError as exc:
        _error(str(exc))
        return EXIT_FAIL
    except AgentError as exc:
        _error(str(exc))
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
