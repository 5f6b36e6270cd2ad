"""A state controller and memory server alone in a process, for tests that measure the
servers' own memory apart from the test's. Prints both addresses, serves until stdin closes.

    python tests/state/server_proc.py DATA_DIR BLOCK_SIZE NUM_BLOCKS LEASE_MS [MEMORY_BUDGET]
"""

from __future__ import annotations

import asyncio
import sys

from taureau.state.service import start_state_services


async def main(data_dir: str, block_size: int, num_blocks: int, lease_ms: int, budget: int) -> None:
    services = await start_state_services(
        controller_port=0,
        block_size=block_size,
        num_blocks=num_blocks,
        lease_ms=lease_ms,
        data_dir=data_dir,
        memory_server_process=False,
        memory_budget=budget or None,
    )
    assert services.memory_server is not None
    print(services.controller_address, services.memory_server.address, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # EOF: the test is done
    await services.close()


if __name__ == "__main__":
    budget = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), budget))
