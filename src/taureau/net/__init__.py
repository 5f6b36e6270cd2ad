"""The only place that touches sockets: asyncio TCP servers with coalesced writes."""
