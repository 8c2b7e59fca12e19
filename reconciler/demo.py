"""``dsfleet demo``: the live loop on one machine, start to finish, in under three minutes.

It installs what is missing (as root on Debian: ``docker.io``, ``busybox-static``), starts ``dockerd`` with the
safe flags when none answers, builds the stand-in DeepStream image, starts an embedded Tansu broker on a free
loopback port (unless ``--bootstrap-servers`` names one), the coordinator on a copy of ``manifests/`` (images
pointed at the stub) and one ``dsfleet-agent run`` per node of the manifests — keys set up as an operator does:
the coordinator's signing key made up front (``dsfleet keys init``), every agent trusting it (``--trust-key``), every
agent's own key enrolled for its node (``dsfleet nodes approve``) — then shows, step by step with how
long each took: containers coming up and the status table, a live edit (one camera moved between instances)
converging, a container killed by hand healed, and a bad commit rejected while the fleet keeps running.

On Ctrl-C or at the end it removes what it started and nothing else: its processes (by PID), the containers and
volumes of the demo's nodes (by label), dockerd when it started it. Everything it writes is under
``.dsfleet/demo/``. Docker is driven through its CLI (the coordinator side never imports the Docker SDK).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from dsfleet.schemas.errors import ExitCode
from dsfleet.schemas.findings import plural
from dsfleet.schemas.labels import LABEL_NODE, LABEL_SPEC_HASH

if TYPE_CHECKING:
    from dsfleet.plumbing.signing import SigningKey

__all__ = ["add_parser", "cmd_demo"]

ROOT = Path(__file__).resolve().parent.parent
STUB_IMAGE = "dsfleet/deepstream-stub:latest"
ORIGINAL_IMAGE = "nvcr.io/nvidia/deepstream:7.0-triton-multiarch"
DOCKERD_FLAGS = ("--bridge=none", "--iptables=false", "--ip6tables=false")
STEP_TIMEOUT = 60.0
AGENT_KEY_FILE = "agent.key"
"""The agent's own key in its state directory (the agent makes it there on its first start when absent)."""
T = TypeVar("T")


class DemoError(Exception):
    pass


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the live loop on this machine: broker, coordinator, one agent per node, real containers",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        epilog="exit: 0 every step converged, 1 a step did not converge in time, 2 prerequisites missing",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=0.0,
        metavar="S",
        help="keep the fleet running (status every few seconds) this many seconds after the steps (default 0)",
    )
    p.add_argument(
        "--bootstrap-servers", metavar="HOST:PORT", help="use this broker instead of an embedded one"
    )
    p.add_argument(
        "--manifests", default=str(ROOT / "manifests"), metavar="DIR", help="the fleet (manifests/)"
    )
    p.add_argument(
        "--workdir", default=".dsfleet/demo", metavar="DIR", help="where the demo writes (.dsfleet/demo)"
    )
    p.set_defaults(handler=cmd_demo)


# --- small helpers -------------------------------------------------------------------------------------------------


def _wait(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _run(
    args: Sequence[str], *, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if check and out.returncode != 0:
        raise DemoError(f"{' '.join(args[:3])}: {out.stderr.strip()[-500:] or out.stdout.strip()[-500:]}")
    return out


@dataclass
class Say:
    out: TextIO
    bold: bool

    def step(self, title: str) -> None:
        b, r = ("\033[1m", "\033[0m") if self.bold else ("", "")
        print(f"\n{b}== {title}{r}", file=self.out, flush=True)

    def line(self, text: str) -> None:
        print(f"   {text}", file=self.out, flush=True)


# --- what the demo started ------------------------------------------------------------------------------------------


@dataclass
class Started:
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    dockerd: subprocess.Popen[bytes] | None = None
    nodes: list[str] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)

    def spawn(self, name: str, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        fh = log.open("ab")
        try:
            proc = subprocess.Popen(
                list(args),
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                cwd=ROOT,
                start_new_session=True,  # Ctrl-C reaches the demo only; it stops them in order
            )
        finally:
            fh.close()
        self.processes.append((name, proc))

    def stop(self, say: Say) -> None:
        for name, proc in reversed(self.processes):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            say.line(f"stopped {name} (pid {proc.pid})")
        self.processes.clear()
        if shutil.which("docker") and self.nodes:
            removed = 0
            for node in self.nodes:
                for inst in self.instances:
                    # only the demo's own: its node label AND its instance's container name
                    ids = _run(
                        [
                            "docker",
                            "ps",
                            "-aq",
                            "--filter",
                            f"label={LABEL_NODE}={node}",
                            "--filter",
                            f"name=^dsfleet-{inst}$",
                        ],
                        check=False,
                    ).stdout
                    for cid in ids.split():
                        _run(["docker", "rm", "-f", cid], check=False)
                        removed += 1
                vols = _run(
                    ["docker", "volume", "ls", "-q", "--filter", f"label={LABEL_NODE}={node}"], check=False
                ).stdout
                for vol in vols.split():
                    if vol.removesuffix("_engine") in self.instances:
                        _run(["docker", "volume", "rm", "-f", vol], check=False)
            say.line(
                f"removed {removed} container(s) of nodes {', '.join(self.nodes)} and their engine volumes"
            )
        if self.dockerd is not None and self.dockerd.poll() is None:
            os.kill(self.dockerd.pid, signal.SIGTERM)
            try:
                self.dockerd.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.dockerd.pid, signal.SIGKILL)
            say.line(f"stopped the dockerd the demo started (pid {self.dockerd.pid})")
            self.dockerd = None


# --- prerequisites --------------------------------------------------------------------------------------------------


def ensure_packages(say: Say) -> None:
    need = []
    if shutil.which("dockerd") is None:
        need.append("docker.io")
    if not Path("/bin/busybox").exists() or _run(["/bin/busybox", "--list"], check=False).returncode != 0:
        need.append("busybox-static")
    if not need:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DemoError(f"missing system packages: {' '.join(need)} (apt-get install -y {' '.join(need)})")
    say.line(f"installing {' '.join(need)} (apt-get)")
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    _run(["apt-get", *lock, "update", "-qq"], timeout=600)
    env_install = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", *lock, "install", "-y", "-qq"]
    _run([*env_install, "--no-install-recommends", *need], timeout=900)


def docker_answers() -> bool:
    return (
        shutil.which("docker") is not None
        and _run(["docker", "info"], check=False, timeout=20).returncode == 0
    )


def ensure_dockerd(started: Started, workdir: Path, say: Say) -> None:
    if docker_answers():
        say.line("a Docker engine answers; using it")
        return
    if os.geteuid() != 0:
        raise DemoError("no Docker engine answers and starting dockerd needs root")
    log = (workdir / "dockerd.log").open("ab")
    started.dockerd = subprocess.Popen(
        ["dockerd", *DOCKERD_FLAGS],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    _wait(docker_answers, 60, "dockerd to answer", 0.3)
    say.line(f"started dockerd {' '.join(DOCKERD_FLAGS)} (pid {started.dockerd.pid})")


def build_stub(say: Say) -> None:
    script = ROOT / "scripts" / "stub-image.sh"
    if not script.is_file():
        raise DemoError(f"{script} not found: run the demo from a dsfleet source tree (make demo)")
    out = _run(["bash", str(script)], timeout=300)
    say.line(f"stand-in DeepStream image {out.stdout.split()[0] if out.stdout else STUB_IMAGE}")


def start_broker(started: Started, workdir: Path) -> str:
    """The embedded broker of ``dsfleet broker`` on a free loopback port (stopped with the demo's processes)."""
    from dsfleet.reconciler.cli.broker import Address, BrokerError, start_embedded_broker

    try:
        with (workdir / "broker.log").open("ab") as log:
            broker = start_embedded_broker(Address("127.0.0.1", 0), output=log)
    except BrokerError as exc:
        raise DemoError(str(exc)) from None
    started.processes.append(("tansu broker", broker.process))
    return broker.bootstrap


# --- the fleet ------------------------------------------------------------------------------------------------------


def set_up_keys(db: str, state_dirs: Sequence[Path], nodes: Sequence[str]) -> SigningKey:
    """What an operator does before the first start: the coordinator's signing key made where the coordinator
    looks for it (next to the store), and each agent's key made in its state directory and enrolled for its node
    (``dsfleet nodes approve``). The coordinator's key, which every agent is given."""
    from datetime import UTC, datetime

    from dsfleet.plumbing.settings import CoordinatorSettings
    from dsfleet.plumbing.signing import load_or_create_key
    from dsfleet.reconciler.cli.keys import coordinator_keys
    from dsfleet.reconciler.store import Store

    key, _made = coordinator_keys(CoordinatorSettings(db=db))
    with Store.open(db) as store:
        for node, state in zip(nodes, state_dirs, strict=True):
            agent, _ = load_or_create_key(state / AGENT_KEY_FILE)
            store.enroll_key(
                node, agent.id, by="dsfleet demo", at=datetime.now(UTC), public_key=agent.public.text()
            )
    return key


def write_fleet(src: Path, dest: Path) -> None:
    """A copy of the manifests with the stub image (allowed by the fleet policy)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    for path in dest.rglob("*.yaml"):
        text = path.read_text()
        new = text.replace(ORIGINAL_IMAGE, STUB_IMAGE)
        if "allowedImages:" in new:
            new = new.replace("allowedImages:\n", f"allowedImages:\n    - {STUB_IMAGE}\n", 1)
        if new != text:
            path.write_text(new)


def plant_secrets(state_dir: Path, refs: Sequence[str]) -> None:
    for ref in refs:
        d = state_dir / "secrets" / ref
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)
        for name, value in (("username", "viewer"), ("password", f"demo-{uuid.uuid4().hex[:8]}")):
            (d / name).write_text(value)
            (d / name).chmod(0o600)


@dataclass
class Fleet:
    workdir: Path
    manifests: Path
    db: str
    bootstrap: str
    prefix: str

    def desired(self) -> dict[str, dict[str, Any]]:
        from dsfleet.reconciler.store import Store

        with Store.open(self.db, readonly=True) as s:
            return {n: {"generation": c.generation, **c.payload} for n, c in s.latest_node_configs().items()}

    def converged(self) -> str | None:
        """None when every instance runs its node's latest config (store and Docker agree), else why not."""
        from dsfleet.reconciler.store import Store

        desired = self.desired()
        if not desired:
            return "no revision stored yet"
        with Store.open(self.db, readonly=True) as s:
            observed = {(r["node"], r["instance"]): r for r in s.observed_details()}
            statuses = {r.node: r for r in s.node_statuses()}
        for node, cfg in sorted(desired.items()):
            st = statuses.get(node)
            if st is None or st.observed_generation != cfg["generation"]:
                return f"{node} at generation {st and st.observed_generation} of {cfg['generation']}"
            for inst in cfg["instances"]:
                row = observed.get((node, inst["name"]))
                if row is None or row["state"] != "running" or row["config_hash"] != inst["configHash"]:
                    return f"{inst['name']} {row and row['state']}"
                if container_hash(inst["name"]) != inst["specHash"]:
                    return f"{inst['name']}: container not running its spec yet"
        return None

    def wait_converged(self, timeout: float = STEP_TIMEOUT) -> float:
        t0 = time.monotonic()
        why: list[str | None] = [None]

        def check() -> bool:
            why[0] = self.converged()
            return why[0] is None

        try:
            _wait(check, timeout, "the fleet to converge", 0.1)
        except DemoError as exc:
            raise DemoError(f"{exc}: {why[0]}") from None
        return time.monotonic() - t0

    def status_lines(self) -> list[str]:
        from dsfleet.reconciler.store import Store

        with Store.open(self.db, readonly=True) as s:
            nodes = s.node_statuses()
            rows = s.observed_details()
            revs = s.revisions(limit=1)
        lines = [f"{'NODE':<14} {'ONLINE':<7} {'GENERATION':<11}"]
        desired = self.desired()
        for n in nodes:
            want = desired.get(n.node, {}).get("generation", "-")
            lines.append(f"{n.node:<14} {'yes' if n.online else 'no':<7} {n.observed_generation}/{want}")
        lines.append(
            f"{'INSTANCE':<18} {'NODE':<12} {'STATE':<10} {'GEN':<4} {'RESTARTS':<8} {'FPS':<6} HASH"
        )
        for r in rows:
            fps = r.get("fps") or {}
            avg = sum(fps.values()) / len(fps) if fps else 0.0
            lines.append(
                f"{r['instance']:<18} {r['node']:<12} {r['state']:<10} {r['generation']!s:<4} "
                f"{r['restarts'] or 0:<8} {avg:<6.1f} {(r['config_hash'] or '')[:12]}"
            )
        if revs:
            rev = revs[0]
            verdict = "accepted" if rev.accepted else f"rejected ({plural(len(rev.errors), 'error')})"
            lines.append(f"last revision: {rev.id} ({rev.source}) {verdict}")
        return lines


def container_hash(instance: str) -> str | None:
    out = _run(
        [
            "docker",
            "inspect",
            "-f",
            f'{{{{.State.Running}}}} {{{{index .Config.Labels "{LABEL_SPEC_HASH}"}}}}',
            f"dsfleet-{instance}",
        ],
        check=False,
        timeout=20,
    )
    running, _, label = out.stdout.strip().partition(" ")
    return label if out.returncode == 0 and running == "true" else None


def started_at(instance: str) -> str | None:
    out = _run(
        ["docker", "inspect", "-f", "{{.State.StartedAt}} {{.State.Running}}", f"dsfleet-{instance}"],
        check=False,
    )
    return out.stdout.strip() if out.returncode == 0 else None


# --- the steps ------------------------------------------------------------------------------------------------------


def move_camera(manifests: Path) -> tuple[str, str, str] | None:
    """Move one camera selected by label into another instance's zone: (camera, from zone, to zone)."""
    zones: dict[str, list[tuple[Path, str]]] = {}
    for path in sorted((manifests / "cameras").glob("*.yaml")):
        for m in re.finditer(r"name: ([\w-]+)\n  labels:\n    zone: (\w+)", path.read_text()):
            zones.setdefault(m.group(2), []).append((path, m.group(1)))
    selected = set(
        re.findall(r"zone: (\w+)", "".join(p.read_text() for p in (manifests / "instances").glob("*")))
    )
    usable = [z for z in zones if z in selected]
    if len(usable) < 2:
        return None
    src, dst = usable[-1], usable[0]
    path, camera = zones[src][-1]
    text = path.read_text()
    old = f"name: {camera}\n  labels:\n    zone: {src}"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text.replace(old, old.replace(f"zone: {src}", f"zone: {dst}"), 1))
    tmp.replace(path)
    return camera, src, dst


def bad_commit(manifests: Path) -> Path:
    """A typo'd key and an inline password in one camera file (rejected; the password never echoed)."""
    path = sorted((manifests / "cameras").glob("*.yaml"))[0]
    text = path.read_text()
    text = text.replace("cameraId:", "cameraID:", 1)
    text = re.sub(r"url: rtsp://", "url: rtsp://admin:hunter2@", text, count=1)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def run_demo(args: argparse.Namespace, say: Say, started: Started) -> int:
    t_all = time.monotonic()
    workdir = Path(args.workdir).resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)

    say.step("0. Prerequisites: packages, Docker engine, stand-in image, broker")
    t0 = time.monotonic()
    ensure_packages(say)
    ensure_dockerd(started, workdir, say)
    build_stub(say)
    if args.bootstrap_servers:
        bootstrap = args.bootstrap_servers
        say.line(f"using the broker at {bootstrap}")
    else:
        bootstrap = start_broker(started, workdir)
        say.line(f"embedded Tansu broker on {bootstrap} (memory storage)")
    say.line(f"ready in {time.monotonic() - t0:.1f} s")

    manifests = workdir / "manifests"
    write_fleet(Path(args.manifests), manifests)
    from dsfleet.reconciler.compiling.desired import desired_state

    desired = desired_state([manifests])
    if not desired.loaded.ok or desired.configs is None:
        raise DemoError(f"the example fleet does not validate: {plural(len(desired.loaded.errors), 'error')}")
    configs = desired.configs
    nodes = sorted(configs)
    started.nodes = nodes
    started.instances = sorted(i.name for c in configs.values() for i in c.instances)
    refs = sorted(
        {c.spec.credentials.secretRef for c in desired.fleet.cameras.values() if c.spec.credentials}
    )
    prefix = "" if not args.bootstrap_servers else f"dsfleet-demo-{uuid.uuid4().hex[:6]}."
    fleet = Fleet(workdir, manifests, f"sqlite:///{workdir / 'state.db'}", bootstrap, prefix)

    say.step(f"1. Start the coordinator and one agent per node ({', '.join(nodes)}); containers come up")
    t0 = time.monotonic()
    trust = set_up_keys(fleet.db, [workdir / "agents" / node for node in nodes], nodes)
    say.line(
        f"coordinator key {trust.id} made (every agent is given --trust-key); "
        f"{plural(len(nodes), 'agent key')} enrolled for their nodes"
    )
    py = sys.executable
    fast = ["-X", "fetch.wait.max.ms=10"]
    started.spawn(
        "coordinator",
        [
            py,
            "-m",
            "dsfleet.reconciler.cli",
            "coordinator",
            "--manifests",
            str(manifests),
            "--db",
            fleet.db,
            "--bootstrap-servers",
            bootstrap,
            "--topic-prefix",
            prefix,
            "--partitions",
            "3",
            "--resync-grace",
            "5",
            *fast,
        ],
        workdir / "coordinator.log",
    )
    for node in nodes:
        state = workdir / "agents" / node
        plant_secrets(state, refs)
        started.spawn(
            f"agent {node}",
            [
                py,
                "-m",
                "dsfleet.agent.cli",
                "run",
                "--bootstrap-servers",
                bootstrap,
                "--topic-prefix",
                prefix,
                "--node-name",
                node,
                "--state-dir",
                str(state),
                "--heartbeat-seconds",
                "1",
                "--resync-seconds",
                "10",
                "--trust-key",
                trust.public.text(),
            ],
            workdir / f"agent-{node}.log",
            # the stand-in image is built on this machine: the demo's agents never reach for a registry
            env={"DSFLEET_KAFKA_FETCH_WAIT_MAX_MS": "10", "DSFLEET_AGENT_IMAGE_PULL": "never"},
        )
    say.line(
        f"secrets for {plural(len(refs), 'camera')} planted under {workdir / 'agents'}/<node>/secrets/ (0600)"
    )
    fleet.wait_converged()
    say.line(
        f"all {plural(sum(len(c.instances) for c in configs.values()), 'instance')} running "
        f"in {time.monotonic() - t0:.1f} s (from process start)"
    )
    for line in fleet.status_lines():
        say.line(line)

    say.step("2. A live edit: one camera moved between instances (a manifest file rewritten)")
    before = {n: c["generation"] for n, c in fleet.desired().items()}
    t0 = time.monotonic()
    moved = move_camera(manifests)
    if moved is None:
        say.line("(no two camera zones selected by instances: skipped)")
    else:
        camera, src, dst = moved
        _wait(
            lambda: (
                fleet.desired() != {}
                and any(c["generation"] != before.get(n) for n, c in fleet.desired().items())
            ),
            20,
            "the edit to be stored",
        )
        changed = sorted(n for n, c in fleet.desired().items() if c["generation"] != before.get(n))
        fleet.wait_converged()
        say.line(
            f"camera {camera} moved from zone {src} to zone {dst}: nodes {', '.join(changed)} at their new "
            f"generation, containers running the new config {time.monotonic() - t0:.2f} s after the write"
        )

    say.step("3. A container killed by hand (docker kill) is healed")
    victim = sorted(i["name"] for c in fleet.desired().values() for i in c["instances"])[0]
    before_start = started_at(victim)
    t0 = time.monotonic()
    _run(["docker", "kill", f"dsfleet-{victim}"])
    say.line(f"$ docker kill dsfleet-{victim}")
    _wait(
        lambda: (s := started_at(victim)) is not None and s != before_start and s.endswith("true"),
        STEP_TIMEOUT,
        f"{victim} to run again",
    )
    fleet.wait_converged()
    say.line(f"{victim} running again with its config in {time.monotonic() - t0:.2f} s")

    say.step("4. A bad commit (a typo and a password in a URL) is rejected; the fleet keeps running")
    hashes = {i["name"]: container_hash(i["name"]) for c in fleet.desired().values() for i in c["instances"]}
    from dsfleet.reconciler.store import Store

    with Store.open(fleet.db, readonly=True) as s:
        last = s.revisions(limit=1)[0].id
    t0 = time.monotonic()
    path = bad_commit(manifests)

    def rejected() -> Any:
        with Store.open(fleet.db, readonly=True) as s:
            revs = s.revisions(limit=1)
        return revs[0] if revs and revs[0].id != last and not revs[0].accepted else None

    rev = _wait(rejected, 20, "the bad commit to be rejected")
    say.line(
        f"{path.name}: revision {rev.id} rejected in {time.monotonic() - t0:.2f} s with {plural(len(rev.errors), 'error')}:"
    )
    for err in rev.errors[:4]:
        say.line(f"  {err.get('file', '')}:{err.get('line', '')}: {err.get('message', err)}")
    fleet.wait_converged()  # a container Docker is restarting right now is not a change of the fleet
    still = {name: container_hash(name) for name in hashes}
    if still != hashes:
        raise DemoError("the fleet changed after a rejected commit")
    say.line(f"all {plural(len(hashes), 'container')} still run the last accepted revision (no restart)")

    if args.duration > 0:
        say.step(f"5. The fleet keeps running for {args.duration:.0f} s (status every 5 s)")
        end = time.monotonic() + args.duration
        while time.monotonic() < end:
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            for line in fleet.status_lines():
                say.line(line)
    say.step(f"demo done in {time.monotonic() - t_all:.1f} s; cleaning up")
    return ExitCode.OK


def cmd_demo(args: argparse.Namespace) -> int:
    say = Say(sys.stdout, sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    started = Started()

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    code: int = ExitCode.FAILED
    try:
        code = run_demo(args, say, started)
    except KeyboardInterrupt:
        say.step("interrupted; cleaning up")
        code = ExitCode.FAILED
    except DemoError as exc:
        print(f"dsfleet demo: error: {exc}", file=sys.stderr)
        tail = Path(args.workdir) / "coordinator.log"
        if tail.exists():
            print(f"(logs under {Path(args.workdir).resolve()})", file=sys.stderr)
        code = ExitCode.FAILED
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            started.stop(say)
    return code
