"""What signed records cost (part of ``make bench``; ``python benchmarks/signing.py`` alone): the AgentConfig of a
node that runs 10 instances, built from a generated fleet, then

* **sign**: the coordinator's Ed25519 signature over the record's signed line (schema, fleet, node, generation,
  issue time, payload bytes), as each outbox row gets it;
* **verify**: the agent's check of that record against a keyring of two trusted keys (a key rotation under way)
  before the payload is parsed (:class:`dsfleet.agent.trust.Trust`);
* beside them, for scale: encoding the record (the same row without a signature) and decoding it on the agent.

Each figure is the median over several batches, in µs per record. Results: a table on stdout and
``benchmarks/out/signing.json``. Nothing is asserted.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.fleetgen import generate  # noqa: E402
from dsfleet.agent.trust import Trust  # noqa: E402
from dsfleet.plumbing.signing import Keyring, generate_key  # noqa: E402
from dsfleet.reconciler.cli.keys import signer_of  # noqa: E402
from dsfleet.reconciler.compiling.desired import desired_state  # noqa: E402
from dsfleet.schemas.wire import Topic, agent_config_record, decode  # noqa: E402

INSTANCES = 10
BATCH = 500
BATCHES = 7


def per_record_us(fn: Callable[[], Any]) -> float:
    """Median over :data:`BATCHES` batches of :data:`BATCH` calls, in µs per call."""
    fn()
    samples = []
    for _ in range(BATCHES):
        start = time.perf_counter()
        for _ in range(BATCH):
            fn()
        samples.append((time.perf_counter() - start) / BATCH * 1e6)
    return statistics.median(samples)


def node_payload() -> tuple[str, dict[str, Any]]:
    """A node config of :data:`INSTANCES` instances from a generated fleet (its stored payload)."""
    with tempfile.TemporaryDirectory() as tmp:
        fleet = generate(
            Path(tmp) / "fleet", nodes=2, cameras=2 * INSTANCES * 4, instances_per_node=INSTANCES
        )
        desired = desired_state([fleet])
    assert desired.configs is not None, "the generated fleet does not compile"
    node, config = next((n, c) for n, c in sorted(desired.configs.items()) if len(c.instances) == INSTANCES)
    return node, config.model_dump(mode="json", by_alias=True)


def main() -> dict[str, Any]:
    node, payload = node_payload()
    coordinator, next_key = generate_key(), generate_key()
    sign = signer_of(coordinator)
    sent_at = datetime.now(UTC).isoformat()
    fleet = "0f3c9a6b2d7e4f18"
    _, key, value, headers = agent_config_record(node, 7, payload, sent_at, fleet=fleet, sign=sign)
    assert value is not None
    trust = Trust(Keyring.of([next_key.public, coordinator.public]))
    fields, refused = trust.check(key, value, headers)
    assert refused is None and fields is not None, refused

    unsigned_us = per_record_us(lambda: agent_config_record(node, 7, payload, sent_at, fleet=fleet))
    signed_us = per_record_us(lambda: agent_config_record(node, 7, payload, sent_at, fleet=fleet, sign=sign))
    sign_us = per_record_us(lambda: sign(fields, key, value))
    verify_us = per_record_us(lambda: trust.check(key, value, headers))
    decode_us = per_record_us(lambda: decode(Topic.AGENT_CONFIG, key, value))
    results = {
        "instances": INSTANCES,
        "payloadBytes": len(value),
        "signatureHeaderBytes": sum(len(k) + len(v) for k, v in headers.items()),
        "signUs": round(sign_us, 1),
        "verifyUs": round(verify_us, 1),
        "signAndVerifyUs": round(sign_us + verify_us, 1),
        "encodeUnsignedUs": round(unsigned_us, 1),
        "encodeSignedUs": round(signed_us, 1),
        "decodeUs": round(decode_us, 1),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "signing.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"signed AgentConfig of a {INSTANCES}-instance node ({len(value):,} payload bytes), µs per record:")
    print("| step | µs |")
    print("|---|---:|")
    print(f"| sign (Ed25519 over the signed line) | {sign_us:.1f} |")
    print(f"| verify on the agent (keyring of 2 keys) | {verify_us:.1f} |")
    print(f"| sign + verify | {sign_us + verify_us:.1f} |")
    print(f"| build the record, unsigned (for scale) | {unsigned_us:.1f} |")
    print(f"| build the record, signed | {signed_us:.1f} |")
    print(f"| decode on the agent (for scale) | {decode_us:.1f} |")
    return results


if __name__ == "__main__":
    main()
