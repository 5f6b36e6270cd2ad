"""`taureau standalone` as a whole: the state controller and memory server run beside the broker."""

import pulsar

from taureau.state import StateClient
from tests.e2e.harness import Standalone


def test_standalone_serves_broker_and_state_together(tmp_path):
    server = Standalone(
        tmp_path / "data", "--state-blocks", "4", "--state-block-size", "1MiB", state=True
    ).start()
    try:
        state = StateClient(f"127.0.0.1:{server.state_port}")
        table = state.open_or_create_hash_table("/jobs/j1/shuffle/0", num_blocks=1)
        table.put(b"k", b"v")
        assert table.get(b"k") == b"v"
        stats = state.stats()
        assert stats["blocks_total"] == 4 and stats["blocks_free"] == 3
        state.remove("/jobs/j1")
        state.disconnect()
        client = pulsar.Client(server.service_url)
        client.create_producer("persistent://public/default/with-state").send(b"x")
        client.close()
        print(f"standalone with state ready after {server.startup_seconds:.2f}s (process start to ready)")
    finally:
        assert server.stop() == 0
