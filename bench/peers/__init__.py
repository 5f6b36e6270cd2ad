"""The systems bench/messaging.py compares, one module each, and the plumbing they share.

A peer module has NAME, missing() (an install hint or None), start(workdir) -> Server, and
run(job, barrier) -> WorkerResult, which runs in a worker process: it connects, sets up,
waits at the barrier, then produces, consumes or measures latency for job.duration seconds.
Roles (job.role): produce, consume, latency (paced sends, each timed to its acknowledgement and
stamped with its send time) and receive (the consumer of an e2e-latency pair, which times each
message from that stamp to its receipt; runner.Link connects the two processes).
"""
