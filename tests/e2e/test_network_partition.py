"""Network partitions of a broker and of a bookie, on three hosts made of Linux network namespaces.

Host zk runs ZooKeeper; host a two bookies and broker A; host b broker B and a producer
(the official client) publishing through B. Each host has its own address and one veth link
to each other host (tests/e2e/netns.py). B owns the topic, then is cut off: only from
ZooKeeper (it still reaches the bookies and A), or from everything. Its ZooKeeper session
expires; A takes the topic on a lookup (its recovery fences B's ledger on the bookies) and
acknowledges a producer of its own. Healed, B learns its session expired and exits 1; B's
producer goes on through A. Every message either producer saw acknowledged is read back
through A: B acknowledged nothing A's topic does not hold (no split brain). Skipped, with
the reason, where namespaces cannot be made (not root) or ZooKeeper is not installed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest

from taureau.testing.zookeeper import ZooKeeperServer, four_letter
from taureau.testing.zookeeper import missing_reason as zookeeper_missing
from tests.e2e.bookies import BookieProcess
from tests.e2e.brokers import BrokerProcess
from tests.e2e.harness import spawn_until_ready
from tests.e2e.netns import Hosts
from tests.e2e.netns import missing_reason as netns_missing

ROOT = str(Path(__file__).resolve().parents[2])
TOPIC = "persistent://public/default/partitioned-owner"
SESSION_S = 2.0


@pytest.fixture
def hosts():
    reason = netns_missing() or zookeeper_missing()
    if reason is not None:
        pytest.skip(reason)
    with Hosts("zk", "a", "b") as made:
        yield made


class HostZooKeeper(ZooKeeperServer):
    """ZooKeeper in host zk, probed from there."""

    def __init__(self, hosts: Hosts, data_dir: Path) -> None:
        super().__init__(str(data_dir), 2181, host=hosts.addr["zk"], command_prefix=hosts.wrap("zk"))
        self._hosts = hosts

    def probe(self) -> bytes:
        return self._hosts.in_host("zk", lambda: four_letter(self.port, b"srvr", 1.0, self.host))


class Client:
    """tests/e2e/netns_client.py in a host; its lines collected as they come."""

    def __init__(self, hosts: Hosts, role: str, *args: str) -> None:
        self.output: list[str] = []
        command = [*hosts.wrap(role), sys.executable, "-m", "tests.e2e.netns_client", *args]
        ready = "READY" if args[0] == "produce" else "DONE"
        self.proc = spawn_until_ready(command, ready, self.output, 120, f"client in host {role}",
                                      {"PYTHONPATH": ROOT})

    def lines(self, kind: str) -> list[str]:
        return [line.split()[1] for line in list(self.output) if line.startswith(kind + " ")]

    def wait_for(self, predicate, what: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc.poll() is None or predicate(), f"client exited: {''.join(self.output[-20:])}"
            assert time.monotonic() < deadline, f"not within {timeout:g}s: {what}; last: {self.output[-5:]}"
            time.sleep(0.1)

    def finish(self, timeout: float = 120.0) -> None:
        self.wait_for(lambda: any(line.startswith("DONE") for line in self.output), "the client is done", timeout)
        self.proc.wait(30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _until(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout:g}s: {what}"
        time.sleep(0.2)


@pytest.mark.parametrize("cut", ["zookeeper-link", "all-links"])
def test_a_partitioned_owner_gives_up_its_topic_and_nothing_acknowledged_is_lost(tmp_path, hosts, cut):
    zk = HostZooKeeper(hosts, tmp_path / "zk")
    started: list = []
    clients: list[Client] = []
    try:
        zk.start()
        url = f"zk://{hosts.addr['zk']}:2181/partition"
        for i in range(2):
            started.append(BookieProcess(tmp_path / f"bookie-{i}", url, "--no-autorecovery",
                                         host=hosts.addr["a"], wrap=hosts.wrap("a")).start())
        broker_b = BrokerProcess(tmp_path / "broker-b", url, session_timeout_s=SESSION_S,
                                 host=hosts.addr["b"], wrap=hosts.wrap("b"))
        broker_a = BrokerProcess(tmp_path / "broker-a", url, session_timeout_s=SESSION_S,
                                 host=hosts.addr["a"], wrap=hosts.wrap("a"))
        started.append(broker_b.start())  # alone: the first lookup places the topic on B
        # The subscription that reads everything at the end exists from the start: a topic
        # keeps no backlog for subscriptions that do not exist yet (Pulsar's default).
        Client(hosts, "b", "consume", broker_b.service_url, TOPIC, "check", "--quiet", "0.5").finish()
        stop = tmp_path / "stop-producing"
        from_b = Client(hosts, "b", "produce", f"{broker_b.service_url},{broker_a.service_url[len('pulsar://'):]}",
                        TOPIC, "b", "--stop-file", str(stop))
        clients.append(from_b)
        from_b.wait_for(lambda: len(from_b.lines("ACK")) >= 20, "B acknowledges")
        started.append(broker_a.start())
        acked_before_cut = len(from_b.lines("ACK"))
        from_b.wait_for(lambda: len(from_b.lines("ACK")) >= acked_before_cut + 20, "B goes on acknowledging")

        hosts.cut("b", "zk" if cut == "zookeeper-link" else None)
        acked_at_cut = len(from_b.lines("ACK"))

        def brokers_seen_by_a() -> list[str]:
            def get() -> list[str]:
                with httpx.Client(timeout=10) as http:
                    return http.get(f"{broker_a.web_url}/admin/v2/brokers/standalone").json()
            return hosts.in_host("a", get)

        _until(lambda: broker_b.broker_id not in brokers_seen_by_a(), "B's session expires", 60)
        # A lookup at A now places the topic on A, which fences B's ledger and serves it.
        taker = Client(hosts, "a", "produce", broker_a.service_url, TOPIC, "a", "--count", "20")
        clients.append(taker)
        taker.finish()
        assert taker.lines("ACK") == [f"a-{i}" for i in range(20)], taker.output[-10:]

        hosts.heal()
        assert broker_b.proc is not None
        code = broker_b.proc.wait(90)  # it learns its session expired, and stops
        output = "".join(broker_b.output)
        assert code == 1 and "session expired" in output, output[-2000:]
        broker_b.proc = None
        # B's producer goes on through A.
        acked_until_exit = len(from_b.lines("ACK"))
        from_b.wait_for(lambda: len(from_b.lines("ACK")) >= acked_until_exit + 20, "B's producer goes on through A")
        stop.touch()
        from_b.finish()

        reader = Client(hosts, "a", "consume", broker_a.service_url, TOPIC, "check", "--quiet", "10")
        clients.append(reader)
        reader.finish()
        got = reader.lines("GOT")
        acked_b, acked_a = from_b.lines("ACK"), taker.lines("ACK")
        missing = [p for p in acked_b + acked_a if p not in set(got)]
        assert missing == [], f"acknowledged but not in A's topic: {missing[:20]} ({len(missing)})"
        # B's messages are in the order they were acknowledged (a resend may repeat one).
        first_seen = {}
        for index, payload in enumerate(got):
            first_seen.setdefault(payload, index)
        order = [first_seen[p] for p in acked_b]
        assert order == sorted(order)
        print(f"\n{cut}: B's producer had {len(acked_b)} acknowledged ({acked_at_cut} before the cut, "
              f"{acked_until_exit - acked_at_cut} from the cut to B's exit), "
              f"failed {len(from_b.lines('FAIL'))}; A's producer 20; read {len(got)}")
    finally:
        for client in clients:
            client.kill()
        for proc in reversed(started):
            proc.kill()
        zk.kill()


def test_a_partitioned_bookie_is_replaced_and_its_entries_re_replicated(tmp_path, hosts):
    zk = HostZooKeeper(hosts, tmp_path / "zk")
    started: list = []
    clients: list[Client] = []
    recovery = ("--lost-bookie-recovery-delay", "0", "--audit-interval", "2")
    try:
        zk.start()
        url = f"zk://{hosts.addr['zk']}:2181/bookie-partition"
        # Two bookies only at first, so the topic's first ledger is on both: one in host b.
        far = BookieProcess(tmp_path / "bookie-b", url, *recovery, host=hosts.addr["b"], wrap=hosts.wrap("b"))
        near = [BookieProcess(tmp_path / f"bookie-a{i}", url, *recovery, host=hosts.addr["a"], wrap=hosts.wrap("a"))
                for i in range(2)]
        started += [far.start(), near[0].start()]
        broker = BrokerProcess(tmp_path / "broker", url, session_timeout_s=SESSION_S, host=hosts.addr["a"],
                               wrap=hosts.wrap("a"))
        started.append(broker.start())
        Client(hosts, "a", "consume", broker.service_url, TOPIC, "check", "--quiet", "0.5").finish()
        stop = tmp_path / "stop-producing"
        producer = Client(hosts, "a", "produce", broker.service_url, TOPIC, "p", "--stop-file", str(stop))
        clients.append(producer)
        producer.wait_for(lambda: len(producer.lines("ACK")) >= 20, "the broker acknowledges")
        started.append(near[1].start())  # the spare

        def ledgers() -> list[dict]:
            def get() -> list[dict]:
                with httpx.Client(timeout=10) as http:
                    path = TOPIC.replace("persistent://", "/admin/taureau/persistent/") + "/ledgers"
                    return http.get(broker.web_url + path).json()["ledgers"]
            return hosts.in_host("a", get)

        assert far.bookie_id in ledgers()[-1]["ensembles"][0]["bookies"]
        hosts.cut("b")
        acked_at_cut = len(producer.lines("ACK"))
        # The add to the cut-off bookie times out (the broker's 30 s request timeout), the
        # ledger moves to the spare, and publishing goes on.
        producer.wait_for(lambda: len(producer.lines("ACK")) >= acked_at_cut + 20, "publishing goes on", 120)

        def named_anywhere() -> bool:
            return any(far.bookie_id in segment["bookies"] for ledger in ledgers() for segment in ledger["ensembles"])

        _until(lambda: not named_anywhere(), "no ledger of the topic names the cut-off bookie", 60)
        healed = [(x["ledgerId"], x["state"], [s["bookies"] for s in x["ensembles"]]) for x in ledgers()]
        hosts.heal()
        assert far.proc is not None
        code = far.proc.wait(90)
        assert code == 1 and "session expired" in "".join(far.output), "".join(far.output)[-2000:]
        far.proc = None
        stop.touch()
        producer.finish()
        reader = Client(hosts, "a", "consume", broker.service_url, TOPIC, "check", "--quiet", "10")
        clients.append(reader)
        reader.finish()
        got = set(reader.lines("GOT"))
        missing = [p for p in producer.lines("ACK") if p not in got]
        assert missing == [], f"acknowledged but not read: {missing[:20]} ({len(missing)})"
        print(f"\nbookie cut off: {len(producer.lines('ACK'))} acknowledged ({acked_at_cut} before the cut), "
              f"failed {len(producer.lines('FAIL'))}; ledgers once healed: {healed}")
    finally:
        for client in clients:
            client.kill()
        for proc in reversed(started):
            proc.kill()
        zk.kill()
