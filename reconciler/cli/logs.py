"""``dsfleet logs INSTANCE``: the newest lines of an instance's container, fetched from its node through the HTTP
API (``GET /api/v1/instances/{name}/logs``) of a running coordinator or ``dsfleet serve``.

``--follow`` asks again every ``--interval`` seconds for the lines since the newest one printed and prints only the
new ones, until Ctrl-C: lines led by their time are asked for from the newest time printed; other lines from a
little before the previous reply, the lines that come back again recognised by their overlap with what was
printed.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dsfleet.reconciler.cli.options import settings_of
from dsfleet.schemas.errors import DsfleetError, ExitCode

__all__ = ["Follow", "add_parser", "api_url", "cmd_logs", "line_time"]

DEFAULT_TAIL = 200
REQUEST_SECONDS = 20.0
"""The API waits up to 10 s for the node; this leaves room for the rest."""
FOLLOW_MARGIN = timedelta(seconds=10)
"""``--follow`` over lines without times asks from this long before the previous reply (the host's clock may lag
the API's); what comes back twice is recognised by its overlap with what was printed."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "logs",
        help="print an instance's container log, fetched from its node (through the HTTP API)",
        description="Ask the instance's node for the newest lines of its container (both streams, at most "
        "64 KB, credentials masked on the host and again by the API) through the HTTP API of a running "
        "`dsfleet coordinator --http` or `dsfleet serve`. The API's address is --api, else "
        "http://HOST:PORT of the settings' [coordinator] http (DSFLEET_COORDINATOR_HTTP); the token, when the "
        "API requires one for reads, is --token-file, else [api] token / token_file (DSFLEET_API_TOKEN).",
        epilog="exit: 0 printed (or --follow stopped by Ctrl-C), 1 the node could not give the log (no "
        "answer, no container, not placed), 2 usage error, unknown instance, API unreachable or refused",
    )
    p.add_argument("instance", metavar="INSTANCE", help="the DsInstance name")
    p.add_argument(
        "--tail",
        type=int,
        default=DEFAULT_TAIL,
        metavar="N",
        help=f"the newest N lines (1-10000, default {DEFAULT_TAIL})",
    )
    p.add_argument(
        "--since",
        metavar="T",
        help="only lines newer than T: a duration back from now (90s, 10m, 2h, 1d) or an ISO 8601 time",
    )
    p.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C (polls the API)"
    )
    p.add_argument(
        "--interval", type=float, default=2.0, metavar="S", help="--follow: seconds between polls (default 2)"
    )
    p.add_argument(
        "--api", metavar="URL", help="the HTTP API (default: http://[coordinator] http, e.g. 127.0.0.1:8080)"
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="the API bearer token, read from FILE (default: [api] token / token_file, DSFLEET_API_TOKEN)",
    )
    p.set_defaults(handler=cmd_logs)


# ------------------------------------------------------------------------------------------------ pure parts


def api_url(flag: str | None, listen: str | None) -> str | None:
    """The API's base URL: ``--api``, else the coordinator's listen address (a wildcard host means this host)."""
    if flag:
        return flag.rstrip("/") if "://" in flag else f"http://{flag.rstrip('/')}"
    if not listen:
        return None
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:[.,](\d{1,9}))?(Z|[+-]\d\d:?\d\d)?(?=\s|$)")


def line_time(line: str) -> str | None:
    """The time that leads ``line`` (Docker's ``--timestamps``, RFC 3339 with up to nanoseconds), normalised so
    that times compare as strings (``2026-01-01T12:00:00.123000000Z``); None when it has none."""
    m = _STAMP.match(line)
    if not m:
        return None
    whole, fraction, zone = m[1], (m[2] or "").ljust(9, "0"), m[3] or "Z"
    if zone not in ("Z", "+00:00", "+0000", "-00:00"):
        try:
            utc = datetime.fromisoformat(whole + zone).astimezone(UTC)
        except ValueError:
            return None
        whole = utc.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{fraction}Z"


@dataclass
class Follow:
    """What ``--follow`` printed so far: the newest line time and the lines printed at that time (a poll asks
    again from that time, so those come back), or, for lines without times, the last lines printed."""

    newest: str | None = None
    at_newest: set[str] = field(default_factory=set)
    recent: list[str] = field(default_factory=list)

    def take(self, text: str) -> list[str]:
        """The lines of a reply not printed yet, and remember them."""
        lines = text.splitlines()
        times = [line_time(line) for line in lines]
        stamped = [(t, line) for t, line in zip(times, lines, strict=True) if t is not None]
        if lines and len(stamped) == len(lines):
            new = [line for t, line in stamped if self._unseen(t, line)]
            for t, line in stamped:
                if self.newest is None or t > self.newest:
                    self.newest, self.at_newest = t, {line}
                elif t == self.newest:
                    self.at_newest.add(line)
        else:
            new = lines[_overlap(self.recent, lines) :]
        self.recent = (self.recent + new)[-1000:]
        return new

    def _unseen(self, time: str, line: str) -> bool:
        if self.newest is None or time > self.newest:
            return True
        return time == self.newest and line not in self.at_newest

    def since(self) -> str | None:
        """The ``since`` of the next poll: the newest line time (microseconds, as ISO 8601)."""
        if self.newest is None:
            return None
        return f"{self.newest[:26]}+00:00"


def _overlap(printed: Sequence[str], lines: Sequence[str]) -> int:
    """How many leading ``lines`` are the last lines of ``printed`` (the longest such run)."""
    for n in range(min(len(printed), len(lines)), 0, -1):
        if list(printed[-n:]) == list(lines[:n]):
            return n
    return 0


# ------------------------------------------------------------------------------------------------ the command


class _Failed(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _token(args: argparse.Namespace) -> str | None:
    api = settings_of(args).api
    path = Path(args.token_file) if args.token_file else api.token_file
    if path is None:
        return api.token or None
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise _Failed(ExitCode.ERROR, f"{path}: cannot read the API token ({exc.strerror})") from None


def _get(url: str, token: str | None) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_SECONDS) as resp:
            body: dict[str, Any] = json.load(resp)
            return body
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        code = ExitCode.FAILED if exc.code in (409, 503, 504) else ExitCode.ERROR
        raise _Failed(code, message) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Failed(
            ExitCode.ERROR, f"the API at {url.split('/api/', 1)[0]} cannot be reached ({reason})"
        ) from None


def _fetch(base: str, args: argparse.Namespace, token: str | None, since: str | None) -> dict[str, Any]:
    query = {"tail": str(args.tail), **({"since": since} if since else {})}
    path = f"/api/v1/instances/{urllib.parse.quote(args.instance, safe='')}/logs"
    return _get(f"{base}{path}?{urllib.parse.urlencode(query)}", token)


def _print(lines: Sequence[str]) -> None:
    for line in lines:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()


def cmd_logs(args: argparse.Namespace) -> int:
    if not 1 <= args.tail <= 10_000:
        print("dsfleet logs: error: --tail must be between 1 and 10000", file=sys.stderr)
        return ExitCode.ERROR
    if args.interval <= 0:
        print("dsfleet logs: error: --interval must be above 0", file=sys.stderr)
        return ExitCode.ERROR
    try:
        base = api_url(args.api, settings_of(args).coordinator.http)
        if base is None:
            raise _Failed(
                ExitCode.ERROR, "no API address: give --api URL (or set [coordinator] http in the settings)"
            )
        token = _token(args)
        reply = _fetch(base, args, token, args.since)
    except (_Failed, DsfleetError) as exc:
        message, code = (exc.message, exc.code) if isinstance(exc, _Failed) else (str(exc), ExitCode.ERROR)
        print(f"dsfleet logs: error: {message}", file=sys.stderr)
        return code
    if reply.get("error"):
        print(f"dsfleet logs: error: node {reply['node']}: {reply['error']}", file=sys.stderr)
        if not args.follow:
            return ExitCode.FAILED
    if reply.get("truncated") and not args.follow:
        print("dsfleet logs: older lines left out (64 KB per reply); use --tail or --since", file=sys.stderr)
    follow = Follow()
    _print(follow.take(reply.get("text", "")))
    if not args.follow:
        return ExitCode.OK
    return _follow(base, args, token, follow, reply.get("fetchedAt"))


def _before(fetched: str | None) -> str | None:
    """:data:`FOLLOW_MARGIN` before the API's time of the previous reply (ISO 8601)."""
    if not fetched:
        return None
    try:
        return (datetime.fromisoformat(fetched) - FOLLOW_MARGIN).isoformat()
    except ValueError:
        return None


def _follow(
    base: str, args: argparse.Namespace, token: str | None, follow: Follow, fetched: str | None
) -> int:
    """Poll until Ctrl-C; a problem (API unreachable, node silent, container gone) is said once, and again when
    it is over."""
    stop = threading.Event()
    problem: str | None = None
    # Ctrl-C ends it, also when it was started with SIGINT ignored (in the background of a non-interactive shell,
    # where Python installs no KeyboardInterrupt handler); SIGTERM too
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        while not stop.wait(args.interval):
            now: str | None = None
            reply: dict[str, Any] = {}
            try:
                reply = _fetch(base, args, token, follow.since() or _before(fetched))
            except _Failed as exc:
                now = exc.message
            else:
                if reply.get("error"):
                    now = f"node {reply['node']}: {reply['error']}"
            if now is not None and now != problem:
                print(f"dsfleet logs: {now}; still trying", file=sys.stderr)
            elif now is None and problem is not None:
                print("dsfleet logs: the log can be read again", file=sys.stderr)
            problem = now
            fetched = reply.get("fetchedAt") or fetched
            _print(follow.take(reply.get("text", "")))
    except KeyboardInterrupt:
        pass
    return ExitCode.OK
