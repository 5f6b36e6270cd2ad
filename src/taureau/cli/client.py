"""`taureau client produce|consume`: the `pulsar-client` tool, on the official Python client."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from taureau.cli import args as checked
from taureau.cli import credentials


def _service_url_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--service-url",
        type=checked.service_url,
        default=default,
        help="broker URL (env TAUREAU_SERVICE_URL, default pulsar://localhost:6650)",
    )


def register(sub) -> None:
    client = sub.add_parser("client", help="produce and consume messages (like pulsar-client)")
    _service_url_option(client, os.environ.get("TAUREAU_SERVICE_URL", "pulsar://localhost:6650"))
    credentials.add_options(client)
    verbs = client.add_subparsers(dest="verb", metavar="VERB", title="verbs")
    verbs.required = True

    produce = verbs.add_parser("produce", help="send messages to a topic")
    _service_url_option(produce, argparse.SUPPRESS)  # also after the verb; given there, it wins
    credentials.add_options(produce, after_verb=True)
    produce.add_argument("topic", type=checked.topic)
    produce.add_argument("-m", "--messages", action="append", required=True, help="message body (repeatable)")
    produce.add_argument("-n", "--num-produce", type=int, default=1, help="times to send each message")
    produce.add_argument("-k", "--key", default=None, help="partition key")
    produce.add_argument("-p", "--property", action="append", default=[], help="KEY=VALUE (repeatable)")
    produce.set_defaults(func=_produce)

    consume = verbs.add_parser("consume", help="receive messages from a topic")
    _service_url_option(consume, argparse.SUPPRESS)
    credentials.add_options(consume, after_verb=True)
    consume.add_argument("topic", type=checked.topic)
    consume.add_argument("-s", "--subscription-name", required=True)
    consume.add_argument("-n", "--num-messages", type=int, default=1, help="0 consumes forever")
    consume.add_argument(
        "-t",
        "--subscription-type",
        default="Exclusive",
        choices=["Exclusive", "Shared", "Failover", "Key_Shared"],
    )
    consume.add_argument("-p", "--subscription-position", default="Latest", choices=["Latest", "Earliest"])
    consume.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for each message (not with -n 0)"
    )
    consume.set_defaults(func=_consume)


def _produce(args: argparse.Namespace) -> int:

    properties = {}
    for item in args.property:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: property {item!r} is not KEY=VALUE", file=sys.stderr)
            return 1
        properties[key] = value
    client = _open_client(args)
    if client is None:
        return 1
    try:
        producer = client.create_producer(args.topic)
        sent = 0
        for _ in range(args.num_produce):
            for body in args.messages:
                producer.send(body.encode(), properties=properties or None, partition_key=args.key)
                sent += 1
        producer.close()
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"{sent} messages successfully produced")
    return 0


# The longest a receive waits before the loop looks at Ctrl-C again.
_RECEIVE_SLICE_S = 1.0


def _consume(args: argparse.Namespace) -> int:
    import pulsar

    client = _open_client(args)
    if client is None:
        return 1
    # Ctrl-C only raises a flag that the loop reads between waits. A KeyboardInterrupt raised
    # wherever the signal lands could leave the official client half way through a call of its
    # own, and its close (or the interpreter's exit) could then wait forever.
    interrupted = threading.Event()

    def on_interrupt(_signum: int, _frame: object) -> None:
        interrupted.set()
        # A second Ctrl-C ends the process at once (the system's default action), even inside
        # a call of the official client that does not return.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    received = 0
    try:
        consumer = client.subscribe(
            args.topic,
            args.subscription_name,
            consumer_type=getattr(pulsar.ConsumerType, args.subscription_type.replace("_", "")),
            initial_position=getattr(pulsar.InitialPosition, args.subscription_position),
        )
        forever = args.num_messages == 0  # as pulsar-client: consume until interrupted
        give_up_at = time.monotonic() + args.timeout
        while not interrupted.is_set() and (forever or received < args.num_messages):
            wait_s = _RECEIVE_SLICE_S if forever else min(_RECEIVE_SLICE_S, give_up_at - time.monotonic())
            try:
                msg = consumer.receive(timeout_millis=max(1, int(wait_s * 1000)))
            except pulsar.Timeout:
                if not forever and time.monotonic() >= give_up_at:
                    print(f"error: no message within {args.timeout}s", file=sys.stderr)
                    return 1
                continue
            data = msg.data()
            try:
                text = data.decode()
            except UnicodeDecodeError:
                text = data.hex()
            print(
                f"----- got message -----\nkey:[{msg.partition_key()}], properties:{msg.properties()}, content:{text}",
                flush=True,
            )
            consumer.acknowledge(msg)
            received += 1
            give_up_at = time.monotonic() + args.timeout
        consumer.close()
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
        signal.signal(signal.SIGINT, previous)
    print(f"{received} messages successfully consumed")
    return 0


def _open_client(args: argparse.Namespace):
    """The official client with the credentials the options name; None (said why) if they are bad."""
    import pulsar

    try:
        auth = credentials.from_args(args)
    except credentials.CredentialsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    return pulsar.Client(args.service_url, logger=_quiet_logger(), **auth.pulsar_options())


def _quiet_logger():
    # The C++ client's own console logger: a Python logger would be called from the
    # client's threads while the interpreter shuts down, which aborts the process.
    import pulsar

    return pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)
