"""``dsfleet coordinator`` and ``dsfleet topics create``: the commands of the live loop."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dsfleet.plumbing.settings import KafkaSettings
from dsfleet.reconciler.cli.options import add_bootstrap_servers, add_db, settings_of
from dsfleet.schemas.errors import DsfleetError, ExitCode

log = logging.getLogger("dsfleet.coordinator")


def _kafka_client(args: argparse.Namespace) -> dict[str, str]:
    """librdkafka settings: ``bootstrap.servers``, ``[kafka]``'s keys with a dot (security.protocol, sasl.*,
    ssl.*, …), ``sasl.password`` from ``sasl_password_file``, then ``-X key=value`` flags."""
    client = settings_of(args).kafka.client_config()
    for item in getattr(args, "kafka_option", None) or []:
        key, _, value = item.partition("=")
        client[key.strip()] = value
    return client


def _bootstrap(args: argparse.Namespace) -> str | None:
    return settings_of(args).kafka.bootstrap_servers or None


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "coordinator",
        help="run the coordinator: watch the manifests, apply, publish node configs, ingest agent reports",
        description="Long-running: watches DIR (debounced; editor temp files and dot-directories ignored), "
        "applies every accepted revision (--sync auto) or only stores its plan until an UpdateConfig request "
        "(--sync manual), publishes the outbox to Kafka (only changed node configs), ingests AgentInfo and "
        "AgentResponse, names unnamed agents, marks silent nodes offline and re-publishes configs of nodes "
        "that fall behind. Runs on with the broker down (the outbox grows) and catches up when it returns. "
        "One coordinator per store. Stops cleanly on SIGTERM/SIGINT.",
        epilog="exit: 0 stopped by a signal, 2 usage error, unusable store, or another coordinator holds the store",
    )
    p.add_argument(
        "--manifests", metavar="DIR", help="the manifests directory to watch ([coordinator] manifests)"
    )
    add_db(p)
    add_bootstrap_servers(p)
    p.add_argument(
        "--sync",
        choices=("auto", "manual"),
        default=None,
        help="auto: apply every accepted revision; manual: store the plan until UpdateConfig "
        "(default: [coordinator] sync, else the fleet's Policy spec.sync.mode, else auto)",
    )
    p.add_argument("--topic-prefix", metavar="PREFIX", default=None, help="prefix of the six topic names")
    p.add_argument(
        "--partitions", type=int, default=None, metavar="N", help="partitions of the topics it creates (12)"
    )
    p.add_argument(
        "--replication-factor",
        type=int,
        default=None,
        metavar="N",
        help="replication of the topics it creates (1)",
    )
    p.add_argument(
        "--resync-grace",
        type=float,
        default=None,
        metavar="S",
        help="seconds an online node may stay behind its desired generation before its config is re-published",
    )
    p.add_argument(
        "-X",
        dest="kafka_option",
        action="append",
        metavar="KEY=VALUE",
        help="a librdkafka client setting passed through (security.protocol=SASL_SSL, sasl.mechanism=…)",
    )
    p.add_argument(
        "--standby",
        action="store_true",
        default=None,
        help="when another coordinator holds the store, wait and take over when it stops or dies "
        "([coordinator] standby)",
    )
    from dsfleet.reconciler.cli.serve import add_http_options

    add_http_options(p, required=False)
    p.set_defaults(handler=cmd_coordinator)

    t = sub.add_parser(
        "topics", help="manage the Kafka topics", description="Manage dsfleet's six Kafka topics."
    )
    tsub = t.add_subparsers(dest="topics_command", metavar="ACTION")
    tsub.required = True
    c = tsub.add_parser(
        "create",
        help="create the six topics (idempotent)",
        description="Create AgentInfo, AgentCommand, AgentConfig (compacted), AgentResponse, UpdateConfig and "
        "Refresh (names with [kafka] topic_prefix). Topics that exist are left as they are.",
        epilog="exit: 0 created or already there, 2 broker unreachable or refused",
    )
    add_bootstrap_servers(c)
    c.add_argument(
        "--partitions", type=int, default=None, metavar="N", help="partitions per topic (default 12)"
    )
    c.add_argument(
        "--replication-factor", type=int, default=None, metavar="N", help="replication factor (default 1)"
    )
    c.add_argument("--topic-prefix", metavar="PREFIX", default=None, help="prefix of the topic names")
    c.add_argument(
        "--max-message-bytes", type=int, default=None, metavar="N", help="max.message.bytes (default 1000000)"
    )
    c.add_argument("-X", dest="kafka_option", action="append", metavar="KEY=VALUE", help="librdkafka setting")
    c.set_defaults(handler=cmd_topics_create)


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (logged), for a long-running command's loop."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal=%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def _kafka(args: argparse.Namespace) -> KafkaSettings:
    """``[kafka]`` with this command's flags applied."""
    kafka = settings_of(args).kafka
    flags = {
        "topic_prefix": args.topic_prefix,
        "partitions": getattr(args, "partitions", None),
        "replication_factor": getattr(args, "replication_factor", None),
        "max_message_bytes": getattr(args, "max_message_bytes", None),
    }
    return kafka.model_copy(update={k: v for k, v in flags.items() if v is not None})


def cmd_topics_create(args: argparse.Namespace) -> int:
    from dsfleet.plumbing.kafka import Admin, topic_specs

    try:
        if _bootstrap(args) is None:
            print(
                "dsfleet topics create: error: no broker: give --bootstrap-servers HOST:PORT", file=sys.stderr
            )
            return ExitCode.ERROR
        kafka = _kafka(args)
        specs = topic_specs(
            kafka.topic_prefix,
            partitions=kafka.partitions,
            replication_factor=kafka.replication_factor,
            max_message_bytes=kafka.max_message_bytes,
        )
        created = Admin(_kafka_client(args)).ensure_topics(specs)
    except DsfleetError as exc:
        print(f"dsfleet topics create: error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    for spec in specs:
        state = "created" if spec.name in created else "exists"
        print(f"{spec.name}: {state}")
    return ExitCode.OK


def cmd_coordinator(args: argparse.Namespace) -> int:
    from dsfleet.reconciler.bus import BusSettings, CoordinatorBus
    from dsfleet.reconciler.coordinator.loop import Coordinator, CoordinatorOptions
    from dsfleet.reconciler.coordinator.resyncs import Timing
    from dsfleet.reconciler.coordinator.watcher import Watcher
    from dsfleet.reconciler.loading.yamlfiles import loader_limits
    from dsfleet.reconciler.store import Store

    try:
        settings = settings_of(args)
        kafka = _kafka(args)
        servers = _bootstrap(args)
        client = _kafka_client(args) if servers else {}
    except DsfleetError as exc:
        print(f"dsfleet coordinator: error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    conf = settings.coordinator
    manifests = Path(args.manifests) if args.manifests else conf.manifests
    if manifests is None:
        print(
            "dsfleet coordinator: error: give --manifests DIR (or [coordinator] manifests)", file=sys.stderr
        )
        return ExitCode.ERROR
    if not manifests.is_dir():
        print(f"dsfleet coordinator: error: {manifests}: no such directory", file=sys.stderr)
        return ExitCode.ERROR
    grace = args.resync_grace if args.resync_grace is not None else conf.resync_grace_seconds
    options = CoordinatorOptions(
        manifests=manifests,
        sync=args.sync or conf.sync,
        topic_prefix=kafka.topic_prefix,
        limits=loader_limits(conf),
        heartbeat_misses=conf.heartbeat_misses,
        timing=Timing(grace=timedelta(seconds=grace)),
        max_message_bytes=kafka.max_message_bytes,
        watch_debounce_ms=conf.debounce_ms,
        fault_point=os.environ.get("DSFLEET_FAULT_POINT") or None,
        retire_after=timedelta(seconds=conf.retire_after_seconds),
        handover_timeout=timedelta(seconds=conf.handover_timeout_seconds),
        directory_resync_seconds=conf.directory_resync_seconds,
        broker=servers,
        events_max_age=timedelta(days=conf.events_max_age_days),
        events_max_rows=conf.events_max_rows,
    )
    from dsfleet.reconciler.cli.keys import coordinator_keys, operator_keys, signing_key_path
    from dsfleet.reconciler.cli.plan import ensure_parent

    stop = _stop_on_signals()  # before the first log line: a SIGTERM while starting is a clean stop too
    ensure_parent(conf.db)
    try:
        signing_key, made = coordinator_keys(conf)
        if args.http or conf.http:  # the API of this process signs its requests: made before they are trusted
            from dsfleet.reconciler.cli.serve import api_signing_key

            api_signing_key(conf)
        operator_keys(conf)  # a bad key file stops the start here; later reads keep the last good keys
    except DsfleetError as exc:
        print(f"dsfleet coordinator: error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    if made:
        log.warning(
            "made the coordinator's signing key path=%s key=%s: give every agent --trust-key %s",
            signing_key_path(conf),
            signing_key.id,
            signing_key.public.text(),
        )
    log.info("signing with key=%s public=%s", signing_key.id, signing_key.public.text())
    try:
        store = Store.open(conf.db)
    except DsfleetError as exc:
        print(f"dsfleet coordinator: error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    from dsfleet.reconciler.store.locks import Standby, StandbyStopped

    standby = None
    if args.standby or conf.standby:

        def waiting(holder: str) -> None:
            log.warning(
                "standby: %s holds the store %s; taking over when it stops or dies", holder, store.where
            )

        def hung() -> str | None:
            beat = store.coordinator_heartbeat()
            if beat is None or beat.stopped_at is not None:
                return None
            now = datetime.now(UTC)
            age = (now - beat.seen_at).total_seconds()
            if age <= conf.takeover_after_seconds:
                return None
            claim = store.leadership() or {}
            since = datetime.fromisoformat(claim["since"]) if claim.get("since") else None
            if since is not None and (now - since).total_seconds() <= conf.takeover_after_seconds:
                return (
                    None  # a leader that has just started (its first heartbeat comes after its first apply)
                )
            return f"the coordinator pid {beat.pid} on {beat.host} wrote no heartbeat for {age:.0f} s"

        def took_over(why: str, sessions: int) -> None:
            log.warning("standby: taking over: %s; its %d database sessions ended", why, sessions)

        standby = Standby(stop, waiting, hung=hung, took_over=took_over)
    waited = time.monotonic()
    try:
        with store, store.coordinator_lock(standby):
            if standby is not None:
                log.info(
                    "standby: the store's lock is ours after %.1f s: starting", time.monotonic() - waited
                )
            epoch = store.claim_leadership(f"{socket.gethostname()} pid {os.getpid()}", datetime.now(UTC))
            log.info("leadership epoch=%d: writes of an earlier leader are refused from now on", epoch)
            bus = None
            if servers is not None:
                bus = CoordinatorBus(
                    BusSettings(
                        bootstrap_servers=servers,
                        client=client,
                        topic_prefix=kafka.topic_prefix,
                        partitions=kafka.partitions,
                        replication_factor=kafka.replication_factor,
                        max_message_bytes=kafka.max_message_bytes,
                        # one group per fleet: a coordinator of another fleet on this broker never takes
                        # this one's share of the agents' messages
                        group_id=f"dsfleet-coordinator-{store.fleet_id()}",
                    )
                )
            else:
                log.warning("no broker configured: revisions are stored, nothing is published")
            coordinator = Coordinator(
                options, store, bus, signing_key=signing_key, operator_keys=lambda: operator_keys(conf)
            )
            watcher = Watcher(manifests, step_ms=options.watch_step_ms, debounce_ms=options.watch_debounce_ms)
            from dsfleet.reconciler.cli.serve import start_api

            api = start_api(args, manifests, coordinator)
            watcher.start()
            log.info(
                "coordinator started manifests=%s store=%s broker=%s sync=%s fleet=%s",
                manifests,
                store.where,
                servers or "-",
                options.sync or "policy",
                coordinator.fleet,
            )
            try:
                coordinator.run(stop, changed=watcher.take)
            finally:
                if api is not None:
                    api.stop()
                watcher.stop()
                coordinator.close()
                log.info("coordinator stopped")
            if store.deposed is not None:
                print(f"dsfleet coordinator: error: deposed: {store.deposed}", file=sys.stderr)
                return ExitCode.ERROR
    except StandbyStopped:
        log.info("stopped on standby (never took over)")
    except DsfleetError as exc:
        print(f"dsfleet coordinator: error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    return ExitCode.OK
