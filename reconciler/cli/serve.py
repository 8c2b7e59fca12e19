"""``dsfleet serve``: the HTTP API and the dashboard as a process of their own, and the wiring of the API server
that ``dsfleet coordinator --http`` shares.

``dsfleet serve`` reads the store the coordinator writes (read-only; it writes only the webhook deliveries it has
seen) and forwards ``POST apply`` and ``POST refresh`` to the running coordinator over the bus (``UpdateConfig``,
``Refresh``), so a flood of HTTP clients costs the API's process, never the coordinator's loop. Every record it
sends is signed with the API's own key (Ed25519, :func:`~dsfleet.reconciler.cli.keys.api_key_path`: ``keys/api.key`` next to the SQLite store,
``./.dsfleet/keys/api.key`` for PostgreSQL; made on first start, 0600, never logged): the coordinator obeys only
requests signed by a key it trusts, and agents answer log requests only from keys they are given
(``[agent] log_request_keys``). In the coordinator's process, the API's requests are signed with the same API key
and its log requests with the coordinator's key.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsfleet.plumbing.settings import CoordinatorSettings
from dsfleet.reconciler.cli.coordinator import _bootstrap, _kafka, _kafka_client, _stop_on_signals
from dsfleet.reconciler.cli.keys import api_key_path
from dsfleet.reconciler.cli.options import settings_of
from dsfleet.schemas.errors import DsfleetError, ExitCode

if TYPE_CHECKING:
    from dsfleet.plumbing.signing import SigningKey

log = logging.getLogger("dsfleet.api")

__all__ = ["add_http_options", "add_parser", "api_signing_key", "cmd_serve", "start_api"]

REQUESTS = ("update-config", "refresh")
"""What the API asks the coordinator (signed with the API's key)."""
COMMANDS = ("agent-command",)
"""What the API asks agents (log requests)."""


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "serve",
        help="serve the HTTP API and dashboard in a process of their own (reads from the store, requests over Kafka)",
        description="Serve /api/v1/ (status, nodes, cameras, instances, revisions, diff), /metrics and the "
        "dashboard from the store a coordinator writes; POST apply and refresh are sent to that coordinator over "
        "Kafka (UpdateConfig, Refresh), signed with the API's own key (keys/api.key next to the store, made on "
        "first start; the coordinator must trust it). Its load never reaches the coordinator's loop. Stops on "
        "SIGTERM/SIGINT.",
        epilog="exit: 0 stopped by a signal, 2 usage error, unusable store, key or address",
    )
    s.add_argument("--manifests", required=True, metavar="DIR", help="the manifests directory (for diff)")
    s.add_argument("--db", metavar="URL", help="store URL (default: settings)")
    s.add_argument(
        "--bootstrap-servers", metavar="HOST:PORT", help="Kafka (none: POST apply/refresh answer 503)"
    )
    s.add_argument("--topic-prefix", metavar="PREFIX", default=None, help="prefix of the six topic names")
    s.add_argument("-X", dest="kafka_option", action="append", metavar="KEY=VALUE", help="librdkafka setting")
    add_http_options(s, required=True)
    s.set_defaults(handler=cmd_serve, partitions=None, replication_factor=None)


def add_http_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument(
        "--http",
        required=required,
        metavar="HOST:PORT",
        help="serve the HTTP API, /metrics and the dashboard here (e.g. 127.0.0.1:8080; default: [coordinator] "
        "http; beyond loopback only with a token)",
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="the API bearer token, read from FILE (default: [api] token / token_file, DSFLEET_API_TOKEN)",
    )


def _read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise DsfleetError(
            f"{path}: error: {what}: cannot read ({exc.strerror or type(exc).__name__})"
        ) from None


def _read_tokens(path: Path) -> tuple[Any, ...]:
    """The entries of ``[api] tokens_file`` (``name:role:sha256`` lines)."""
    from dsfleet.reconciler.api.roles import TokensFileError, parse_tokens

    try:
        return parse_tokens(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise DsfleetError(
            f"{path}: error: tokens file: cannot read ({exc.strerror or type(exc).__name__})"
        ) from None
    except TokensFileError as exc:
        raise DsfleetError(f"error: {exc}") from None


def start_api(args: argparse.Namespace, manifests: Path, coordinator: Any = None) -> Any:
    """The API server of this process, listening (None without --http / [coordinator] http)."""
    settings = settings_of(args)
    where = args.http or settings.coordinator.http
    if not where:
        return None
    from dsfleet.reconciler.api.connections import ConnectionLimits
    from dsfleet.reconciler.api.context import ApiContext
    from dsfleet.reconciler.api.gates import Gate, allowed_hosts, reads_need_token
    from dsfleet.reconciler.api.server import ApiServer, parse_listen
    from dsfleet.reconciler.loading.yamlfiles import loader_limits

    api = settings.api
    listen = parse_listen(where)
    gate = Gate(
        allowed_hosts=allowed_hosts(api.allowed_hosts, listen.host, loopback=listen.loopback),
        max_body_bytes=api.max_body_bytes,
        webhook_max_body_bytes=api.webhook_max_body_bytes,
        body_timeout=api.body_timeout_seconds,
        max_requests=api.max_requests,
    )
    limits = ConnectionLimits(
        max_connections=api.max_connections,
        header_timeout=api.header_timeout_seconds,
        keep_alive=api.keep_alive_seconds,
    )
    token = api.token
    token_file = Path(args.token_file) if args.token_file else api.token_file
    if token_file is not None:
        token = _read_secret(token_file, "API token file")
    secret = api.webhook_secret
    if api.webhook_secret_file is not None:
        secret = _read_secret(api.webhook_secret_file, "webhook secret file")
    tokens = _read_tokens(api.tokens_file) if api.tokens_file is not None else ()
    send = _request_sender(args, _signers(settings.coordinator, coordinator)) if _bootstrap(args) else None
    ctx = ApiContext(
        db=settings.coordinator.db,
        manifests=manifests,
        token=token or None,
        read_requires_token=reads_need_token(api.read_requires_token, loopback=listen.loopback),
        webhook_secret=secret or None,
        limits=loader_limits(settings.coordinator),
        coordinator=coordinator,
        send=send,
        logs=_log_source(args, send, coordinator),
        gate=gate,
        tokens=tokens,
        camera_metrics=api.camera_metrics,
        edits_push=(api.edits_push_remote, api.edits_push_branch or "") if api.edits_push_remote else None,
    )
    return ApiServer(ctx, listen, limits).start()


def api_signing_key(conf: CoordinatorSettings) -> SigningKey:
    """The API's signing key (:func:`~dsfleet.reconciler.cli.keys.api_key_path`), made now when there is none
    (the public key is logged, never the private one)."""
    from dsfleet.plumbing.signing import load_or_create_key

    path = api_key_path(conf)
    key, made = load_or_create_key(path)
    if made:
        log.warning(
            "made the API's signing key path=%s key=%s: a coordinator on this store trusts it within a "
            "second; elsewhere add %s to [coordinator] operator_keys",
            path,
            key.id,
            key.public.text(),
        )
    return key


def _signers(conf: CoordinatorSettings, coordinator: Any) -> dict[str, SigningKey]:
    """The key that signs each kind of record the API sends: its own for requests to the coordinator; for
    commands to agents, the coordinator's in its process, else its own."""
    key = api_signing_key(conf)
    log.info("api requests signed with key=%s public=%s", key.id, key.public.text())
    own: SigningKey | None = getattr(coordinator, "signing_key", None)
    return {**dict.fromkeys(REQUESTS, key), **dict.fromkeys(COMMANDS, own or key)}


def _log_source(args: argparse.Namespace, send: Any, coordinator: Any) -> Any:
    """How the API fetches instance logs: the commands go out through ``send``; the replies are read by the
    coordinator of this process, or else by a reader of the API's own (None without a broker)."""
    if send is None:
        return None
    from dsfleet.reconciler.coordinator.logreplies import LogFetcher

    if coordinator is not None and coordinator.bus is not None:
        return LogFetcher(send, coordinator.log_replies)
    kafka = _kafka(args)
    config = {"bootstrap.servers": _bootstrap(args) or "", **_kafka_client(args)}
    return LogFetcher.reading(send, config, kafka.topic_prefix, kafka.max_message_bytes)


def _request_sender(args: argparse.Namespace, signers: Mapping[str, SigningKey]) -> Any:
    """``send(kind, key, value)``: UpdateConfig/Refresh (and the API's ``logs`` commands) through a send-only
    bus, each record signed with its kind's key over its signed fields (schema, issue time, fleet)."""
    from dsfleet.plumbing.signing import sign_record
    from dsfleet.reconciler.bus import BusSettings, CoordinatorBus
    from dsfleet.schemas.errors import TemporaryError
    from dsfleet.schemas.wire import Decoded, Topic, decode, signed_fields_of

    kafka = _kafka(args)
    bus = CoordinatorBus(
        BusSettings(
            bootstrap_servers=_bootstrap(args) or "",
            client=_kafka_client(args),
            topic_prefix=kafka.topic_prefix,
            partitions=kafka.partitions,
            replication_factor=kafka.replication_factor,
            max_message_bytes=kafka.max_message_bytes,
        ),
        read=False,
    )
    lock = threading.Lock()
    topics = {
        "update-config": Topic.UPDATE_CONFIG,
        "refresh": Topic.REFRESH,
        "agent-command": Topic.AGENT_COMMAND,
    }

    def send(kind: str, key: str | None, value: bytes) -> None:
        topic = topics[kind]
        decoded = decode(topic, key, value, max_bytes=kafka.max_message_bytes)
        if not isinstance(decoded, Decoded):
            raise DsfleetError(f"refusing to send a malformed {kind} record")
        headers = sign_record(signers[kind], signed_fields_of(decoded.message), key, value)
        with lock:
            try:
                bus.send(topic, key, value, headers=headers)
            except TemporaryError:
                bus.ensure_topics(timeout=5.0)
                bus.send(topic, key, value, headers=headers)
            if bus.flush(5.0):
                raise TemporaryError("the broker did not acknowledge the request within 5 s")

    return send


def cmd_serve(args: argparse.Namespace) -> int:
    manifests = Path(args.manifests)
    if not manifests.is_dir():
        print(f"dsfleet serve: error: {manifests}: no such directory", file=sys.stderr)
        return ExitCode.ERROR
    stop = _stop_on_signals()
    try:
        server = start_api(args, manifests)
    except DsfleetError as exc:
        print(f"dsfleet serve: error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    try:
        stop.wait()
    finally:
        server.stop()
        log.info("http api stopped")
    return ExitCode.OK
