"""Network partitions of a broker and of a bookie, on three hosts made of Linux network namespaces.

Each host has its own address and one veth link to each other host (tests/e2e/netns.py);
host zk runs ZooKeeper. Skipped, with the reason, where namespaces cannot be made (not
root) or ZooKeeper is not installed.

A broker: host a runs two bookies and broker A; host b broker B and a producer (the
official client) publishing through B. B owns the topic, then is cut off: only from
ZooKeeper (it still reaches the bookies and A), or from everything. Its ZooKeeper session
expires; A takes the topic on a lookup (its recovery fences B's ledger on the bookies) and
acknowledges a producer of its own. Healed, B learns its session expired and exits 1; B's
producer goes on through A. Every message either producer saw acknowledged is read back
through A: B acknowledged nothing A's topic does not hold (no split brain).

A bookie: host b holds one of the two bookies of the topic's ledger, host a the other, a
spare started later, the broker and its producer. Host b is cut off from everything: the
broker's add to its bookie times out, the ledger changes ensemble onto the spare (which
registered after the ledger was created) and publishing goes on; once the cut-off bookie's
session expired, auto-recovery copies what it held of the ledger's earlier segment (the
ledger is still OPEN); healed, the bookie learns its session expired and exits 1. Every
acknowledged message is read back and no ledger of the topic names the lost bookie.
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


class Run:
    """What one test starts in its hosts (ZooKeeper in host zk, servers, clients), all killed
    at the end whatever happened."""

    def __init__(self, hosts: Hosts, root: Path, chroot: str) -> None:
        self.hosts = hosts
        self.root = root
        self.zk = HostZooKeeper(hosts, root / "zk")
        self.url = f"zk://{hosts.addr['zk']}:2181/{chroot}"
        self._servers: list[BookieProcess | BrokerProcess] = []
        self._clients: list[Client] = []

    def __enter__(self) -> Run:
        self.zk.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for client in self._clients:
            client.kill()
        for server in reversed(self._servers):
            server.kill()
        self.zk.kill()

    def bookie(self, role: str, name: str, *extra: str) -> BookieProcess:
        return BookieProcess(self.root / name, self.url, *extra, host=self.hosts.addr[role], wrap=self.hosts.wrap(role))

    def broker(self, role: str, name: str) -> BrokerProcess:
        return BrokerProcess(self.root / name, self.url, session_timeout_s=SESSION_S, host=self.hosts.addr[role],
                             wrap=self.hosts.wrap(role))

    def start(self, server: BookieProcess | BrokerProcess) -> None:
        self._servers.append(server)
        server.start()

    def client(self, role: str, *args: str) -> Client:
        client = Client(self.hosts, role, *args)
        self._clients.append(client)
        return client

    def subscribe(self, role: str, service_url: str) -> None:
        """The subscription that reads everything at the end, made before anything is
        published: a topic keeps no backlog for subscriptions that do not exist yet (Pulsar's
        default)."""
        self.client(role, "consume", service_url, TOPIC, "check", "--quiet", "0.5").finish()

    def read_back(self, service_url: str, acked: list[str]) -> list[str]:
        """Everything the subscription holds, read through host a; every `acked` must be there."""
        reader = self.client("a", "consume", service_url, TOPIC, "check", "--quiet", "10")
        reader.finish()
        got = reader.lines("GOT")
        seen = set(got)
        missing = [p for p in acked if p not in seen]
        assert missing == [], f"acknowledged but not read back: {missing[:20]} ({len(missing)})"
        return got


def _exits_on_expiry(server: BookieProcess | BrokerProcess) -> None:
    """Healed, a cut-off server learns its ZooKeeper session expired and exits 1."""
    assert server.proc is not None
    code = server.proc.wait(90)
    output = "".join(server.output)
    assert code == 1 and "session expired" in output, output[-2000:]
    server.proc = None


def _until(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout:g}s: {what}"
        time.sleep(0.2)


@pytest.mark.parametrize("cut", ["zookeeper-link", "all-links"])
def test_a_partitioned_owner_gives_up_its_topic_and_nothing_acknowledged_is_lost(tmp_path, hosts, cut):
    with Run(hosts, tmp_path, "partition") as run:
        for i in range(2):
            run.start(run.bookie("a", f"bookie-{i}", "--no-autorecovery"))
        broker_b, broker_a = run.broker("b", "broker-b"), run.broker("a", "broker-a")
        run.start(broker_b)  # alone: the first lookup places the topic on B
        run.subscribe("b", broker_b.service_url)
        stop = tmp_path / "stop-producing"
        from_b = run.client("b", "produce", f"{broker_b.service_url},{broker_a.service_url[len('pulsar://'):]}",
                            TOPIC, "b", "--stop-file", str(stop))
        from_b.wait_for(lambda: len(from_b.lines("ACK")) >= 20, "B acknowledges")
        run.start(broker_a)
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
        taker = run.client("a", "produce", broker_a.service_url, TOPIC, "a", "--count", "20")
        taker.finish()
        assert taker.lines("ACK") == [f"a-{i}" for i in range(20)], taker.output[-10:]

        hosts.heal()
        _exits_on_expiry(broker_b)
        # B's producer goes on through A.
        acked_until_exit = len(from_b.lines("ACK"))
        from_b.wait_for(lambda: len(from_b.lines("ACK")) >= acked_until_exit + 20, "B's producer goes on through A")
        stop.touch()
        from_b.finish()

        acked_b = from_b.lines("ACK")
        got = run.read_back(broker_a.service_url, acked_b + taker.lines("ACK"))
        # B's messages are in the order they were acknowledged (a resend may repeat one).
        first_seen: dict[str, int] = {}
        for index, payload in enumerate(got):
            first_seen.setdefault(payload, index)
        order = [first_seen[p] for p in acked_b]
        assert order == sorted(order)
        print(f"\n{cut}: B's producer had {len(acked_b)} acknowledged ({acked_at_cut} before the cut, "
              f"{acked_until_exit - acked_at_cut} from the cut to B's exit), "
              f"failed {len(from_b.lines('FAIL'))}; A's producer 20; read {len(got)}")


def test_a_partitioned_bookie_is_replaced_and_its_entries_re_replicated(tmp_path, hosts):
    recovery = ("--lost-bookie-recovery-delay", "0", "--audit-interval", "2")
    with Run(hosts, tmp_path, "bookie-partition") as run:
        # Two bookies only at first, so the topic's first ledger is on both: one in host b.
        far = run.bookie("b", "bookie-b", *recovery)
        run.start(far)
        run.start(run.bookie("a", "bookie-a0", *recovery))
        broker = run.broker("a", "broker")
        run.start(broker)
        run.subscribe("a", broker.service_url)
        stop = tmp_path / "stop-producing"
        producer = run.client("a", "produce", broker.service_url, TOPIC, "p", "--stop-file", str(stop))
        producer.wait_for(lambda: len(producer.lines("ACK")) >= 20, "the broker acknowledges")
        run.start(run.bookie("a", "bookie-a1", *recovery))  # the spare

        def ledgers() -> list[dict]:
            def get() -> list[dict]:
                with httpx.Client(timeout=10) as http:
                    path = TOPIC.replace("persistent://", "/admin/taureau/persistent/") + "/ledgers"
                    return http.get(broker.web_url + path).json()["ledgers"]
            return hosts.in_host("a", get)

        assert far.bookie_id in ledgers()[-1]["ensembles"][0]["bookies"]
        hosts.cut("b")
        acked_at_cut = len(producer.lines("ACK"))
        # The add to the cut-off bookie times out (the broker's bookie add timeout, 5 s), the
        # ledger changes ensemble onto the spare, and publishing goes on.
        producer.wait_for(lambda: len(producer.lines("ACK")) >= acked_at_cut + 20, "publishing goes on", 120)

        def named_anywhere() -> bool:
            return any(far.bookie_id in segment["bookies"] for ledger in ledgers() for segment in ledger["ensembles"])

        _until(lambda: not named_anywhere(), "no ledger of the topic names the cut-off bookie", 60)
        healed = [(x["ledgerId"], x["state"], [s["bookies"] for s in x["ensembles"]]) for x in ledgers()]
        # The ledger written when the bookie was cut off changed ensemble (its first segment,
        # re-replicated, now names the spare), or was closed if the change could not be made.
        assert len(healed[0][2]) == 2 or healed[0][1] == "CLOSED", healed
        hosts.heal()
        _exits_on_expiry(far)
        # An unload makes the broker close the ledger it writes, over the segment copied
        # under it: its writer adopts the copy (a failure would say the metadata changed
        # under it, or that another client recovers the ledger).
        def unload() -> int:
            with httpx.Client(timeout=30) as http:
                return http.put(f"{broker.web_url}/admin/v2/namespaces/public/default/unload").status_code

        assert hosts.in_host("a", unload) == 204
        acked_at_unload = len(producer.lines("ACK"))
        producer.wait_for(lambda: len(producer.lines("ACK")) >= acked_at_unload + 20, "publishing goes on")
        first = ledgers()[0]
        assert first["state"] == "CLOSED" and not named_anywhere(), first
        output = "".join(broker.output)
        assert "changed under the writer" not in output and "recovered by another client" not in output, output
        stop.touch()
        producer.finish()
        run.read_back(broker.service_url, producer.lines("ACK"))
        print(f"\nbookie cut off: {len(producer.lines('ACK'))} acknowledged ({acked_at_cut} before the cut), "
              f"failed {len(producer.lines('FAIL'))}; ledgers once healed: {healed}")
