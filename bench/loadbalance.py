"""Load shedding: publish throughput to two busy topics while both their bundles are on broker
A, against the same after the load manager moved one of them to broker B, and how long the
move took.

One run starts a private ZooKeeper (Debian's `zookeeper` package), 2 bookies (E2/Qw2/Qa2) and
broker A (shedding rounds every 3 s, a broker 20 msg/s above the average sheds). The peer is
the "before": two topics in two bundles of A, published to at once by the official client
(async sends, batching on, 1 KiB messages). Then broker B joins idle; the client goes on
publishing until a lookup of one of the topics answers B ("moved after", from B's start);
then, after a short warm-up, the same publish again ("after"). The ratio is after / before, in the same run.

    python bench/loadbalance.py                  # 20,000 messages per measurement
    python bench/loadbalance.py --messages 50000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cluster import throughput_topics  # noqa: E402
from taureau.broker.ownership.bundles import bundle_for  # noqa: E402
from taureau.common.names import TopicName  # noqa: E402
from taureau.testing.zookeeper import ZooKeeperServer  # noqa: E402
from tests.e2e.bookies import BookieProcess  # noqa: E402
from tests.e2e.brokers import BrokerProcess  # noqa: E402

LOAD_BALANCER = ["--load-balancer-shedding-interval-minutes", "0.05", "--load-balancer-min-unload-msg-rate", "20"]
MOVE_TIMEOUT_S = 180.0


def _two_bundles() -> list[str]:
    stamp = time.monotonic_ns()
    first = f"persistent://public/default/lb-{stamp}-0"
    other = next(f"persistent://public/default/lb-{stamp}-{i}" for i in range(1, 200)
                 if bundle_for(TopicName.parse(f"persistent://public/default/lb-{stamp}-{i}"), 4)
                 != bundle_for(TopicName.parse(first), 4))
    return [first, other]


def _owner(at: BrokerProcess, topic: str) -> str:
    """The service URL serving `topic` by the HTTP lookup at `at`; "" while it is being moved."""
    local = TopicName.parse(topic).local_name
    try:
        with urllib.request.urlopen(f"{at.web_url}/lookup/v2/topic/persistent/public/default/{local}",
                                    timeout=30) as got:
            return json.loads(got.read())["brokerUrl"]
    except urllib.error.HTTPError:
        return ""  # 503: the bundle is being let go


def run(messages: int, size: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="taureau-loadbalance-bench-"))
    zk = ZooKeeperServer(str(root / "zk"))
    zk.start()
    url = f"{zk.url}/loadbalance"
    started: list[BookieProcess | BrokerProcess] = []
    try:
        started += [BookieProcess(root / f"bookie-{i}", url).start() for i in range(2)]
        a = BrokerProcess(root / "broker-a", url, *LOAD_BALANCER).start()
        started.append(a)
        topics = _two_bundles()
        throughput_topics(a.service_url, max(messages // 10, 1000), size, names=topics)  # warm-up, as after
        before = throughput_topics(a.service_url, messages, size, names=topics)
        assert all(_owner(a, t) == a.service_url for t in topics), "both bundles should be on A"
        print(f"{'both bundles on broker A':34s} {before:10.0f} msg/s   1.00x")
        b = BrokerProcess(root / "broker-b", url, *LOAD_BALANCER).start()
        started.append(b)
        joined = time.monotonic()
        while not any(_owner(a, t) == b.service_url for t in topics):
            if time.monotonic() - joined > MOVE_TIMEOUT_S:
                raise RuntimeError(f"no bundle moved to B within {MOVE_TIMEOUT_S} s")
            throughput_topics(a.service_url, max(messages // 10, 1000), size, names=topics)
        moved_s = time.monotonic() - joined
        # Warm-up: the moved topic's first producer on B opens (and recovers) its ledger there.
        throughput_topics(a.service_url, max(messages // 10, 1000), size, names=topics)
        after = throughput_topics(a.service_url, messages, size, names=topics)
        print(f"{'one bundle shed to broker B':34s} {after:10.0f} msg/s   {after / before:.2f}x")
        print(f"{'  moved after B joined':34s} {moved_s:10.1f} s")
    finally:
        for process in reversed(started):
            process.kill()
        zk.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    run(args.messages, args.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
