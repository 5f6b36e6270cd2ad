"""The systems bench/messaging.py compares, one module each, and the plumbing they share.

A peer module has NAME, missing() (an install hint or None), start(workdir) -> Server, and
run(job, barrier) -> WorkerResult, which runs in a worker process: it connects, sets up,
waits at the barrier, then produces, consumes or measures latency for job.duration seconds.
"""
