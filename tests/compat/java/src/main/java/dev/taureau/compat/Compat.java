package dev.taureau.compat;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.pulsar.client.api.CompressionType;
import org.apache.pulsar.client.api.Consumer;
import org.apache.pulsar.client.api.Message;
import org.apache.pulsar.client.api.MessageId;
import org.apache.pulsar.client.api.MessageIdAdv;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.ProducerBuilder;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.PulsarClientException;
import org.apache.pulsar.client.api.Reader;
import org.apache.pulsar.client.api.SubscriptionInitialPosition;
import org.apache.pulsar.client.api.SubscriptionType;
import org.apache.pulsar.client.api.transaction.Transaction;

/**
 * Compatibility checks of the official Java client: Compat SERVICE_URL TOPIC_PREFIX [CHECK...].
 * Prints one line per check, "CHECK name ok" or "CHECK name FAIL why", and exits 0 once all ran;
 * tests/compat/test_native_clients.py runs it and asserts each line. Each check uses its own topic.
 */
public final class Compat {
    private static final int WAIT_S = 10;
    // A check that takes longer has hung (a client that reconnects forever, say): it fails, and
    // the next check runs. Creating a producer takes milliseconds on a healthy broker.
    private static final int CHECK_LIMIT_S = 60;
    private static final int CREATE_LIMIT_S = 5;
    private final PulsarClient client;

    private Compat(PulsarClient client) {
        this.client = client;
    }

    interface Check {
        void run(String topic) throws Exception;
    }

    public static void main(String[] args) throws Exception {
        String prefix = args[1];
        try (PulsarClient client = PulsarClient.builder().serviceUrl(args[0])
                .operationTimeout(15, TimeUnit.SECONDS).build()) {
            Compat c = new Compat(client);
            Map<String, Check> checks = new LinkedHashMap<>();
            checks.put("exclusive", c::exclusive);
            checks.put("shared", c::shared);
            checks.put("failover", c::failover);
            checks.put("key_shared", c::keyShared);
            checks.put("batching", c::batching);
            for (CompressionType codec : List.of(CompressionType.LZ4, CompressionType.ZLIB,
                    CompressionType.ZSTD, CompressionType.SNAPPY)) {
                checks.put("compression_" + codec.name().toLowerCase(), t -> c.compression(t, codec));
            }
            checks.put("reader", c::reader);
            checks.put("seek", c::seek);
            checks.put("transaction", t -> transaction(args[0], t));
            List<String> only = List.of(args).subList(2, args.length);
            for (Map.Entry<String, Check> check : checks.entrySet()) {
                if (!only.isEmpty() && !only.contains(check.getKey())) {
                    continue;
                }
                String topic = prefix + "-" + check.getKey().replace('_', '-');
                CompletableFuture<Void> run = CompletableFuture.runAsync(() -> {
                    try {
                        check.getValue().run(topic);
                    } catch (Exception e) {
                        throw new CompletionException(e);
                    }
                });
                try {
                    run.get(CHECK_LIMIT_S, TimeUnit.SECONDS);
                    System.out.println("CHECK " + check.getKey() + " ok");
                } catch (ExecutionException e) {
                    Throwable why = e.getCause() instanceof CompletionException ? e.getCause().getCause() : e.getCause();
                    System.out.println("CHECK " + check.getKey() + " FAIL " + String.valueOf(why).replace('\n', ' '));
                } catch (TimeoutException e) {
                    System.out.println("CHECK " + check.getKey() + " FAIL hung for " + CHECK_LIMIT_S + " s");
                }
                System.out.flush();
            }
        }
        System.exit(0);  // a hung check's threads must not keep the JVM alive
    }

    static void expect(Object actual, Object expected, String what) {
        if (!Objects.equals(actual, expected)) {
            throw new AssertionError(what + ": expected " + expected + ", got " + actual);
        }
    }

    static String text(Message<byte[]> m) {
        return new String(m.getData(), StandardCharsets.UTF_8);
    }

    static List<String> numbers(int from, int to) {
        List<String> out = new ArrayList<>();
        for (int i = from; i < to; i++) {
            out.add(Integer.toString(i));
        }
        return out;
    }

    private Producer<byte[]> producer(String topic, boolean batching) throws Exception {
        return created(client.newProducer().topic(topic).enableBatching(batching));
    }

    /** create() retries for ever when the broker's answer breaks the connection: bound it. */
    private static Producer<byte[]> created(ProducerBuilder<byte[]> builder) throws Exception {
        try {
            return builder.createAsync().get(CREATE_LIMIT_S, TimeUnit.SECONDS);
        } catch (TimeoutException e) {
            throw new AssertionError("producer not created in " + CREATE_LIMIT_S + " s");
        }
    }

    private Consumer<byte[]> consumer(String topic, SubscriptionType type, String name) throws PulsarClientException {
        return client.newConsumer().topic(topic).subscriptionName("sub").subscriptionType(type).consumerName(name)
                .receiverQueueSize(5).subscriptionInitialPosition(SubscriptionInitialPosition.Earliest).subscribe();
    }

    private static List<MessageId> sendNumbers(Producer<byte[]> producer, int from, int to) throws Exception {
        List<MessageId> ids = new ArrayList<>();
        for (String n : numbers(from, to)) {
            ids.add(producer.send(n.getBytes(StandardCharsets.UTF_8)));
        }
        return ids;
    }

    /** Every message until none arrives for idleMs, acknowledged if ack. */
    private static List<Message<byte[]>> drain(Consumer<byte[]> c, int idleMs, boolean ack) throws Exception {
        List<Message<byte[]>> out = new ArrayList<>();
        Message<byte[]> m;
        while ((m = c.receive(idleMs, TimeUnit.MILLISECONDS)) != null) {
            if (ack) {
                c.acknowledge(m);
            }
            out.add(m);
        }
        return out;
    }

    /** Poll the consumers in turn until total messages came, then until all are idle; returns
     * the index of the consumer that got each message, keyed by the message. */
    private static Map<Message<byte[]>, Integer> collect(List<Consumer<byte[]>> cs, int total, boolean ack)
            throws Exception {
        Map<Message<byte[]>, Integer> got = new LinkedHashMap<>();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
        while (true) {
            boolean progressed = false;
            for (int i = 0; i < cs.size(); i++) {
                for (Message<byte[]> m : drain(cs.get(i), got.size() < total ? 200 : 1000, ack)) {
                    got.put(m, i);
                    progressed = true;
                }
            }
            if (got.size() >= total && !progressed) {
                return got;
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("only " + got.size() + " of " + total + " messages arrived");
            }
        }
    }

    void exclusive(String topic) throws Exception {
        Consumer<byte[]> c = consumer(topic, SubscriptionType.Exclusive, "a");
        Producer<byte[]> p = producer(topic, false);
        List<MessageId> ids = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            ids.add(p.newMessage().key("k" + i).property("i", "" + i).eventTime(1000 + i)
                    .value(("m" + i).getBytes(StandardCharsets.UTF_8)).send());
        }
        for (int i = 0; i < 5; i++) {
            Message<byte[]> m = c.receive(WAIT_S, TimeUnit.SECONDS);
            Objects.requireNonNull(m, "message " + i + " did not arrive");
            expect(text(m), "m" + i, "payload");
            expect(m.getKey(), "k" + i, "key");
            expect(m.getProperty("i"), "" + i, "property");
            expect(m.getEventTime(), 1000L + i, "event time");
            expect(m.getMessageId(), ids.get(i), "message id");
            c.acknowledge(m);
        }
        try {
            consumer(topic, SubscriptionType.Exclusive, "b");
            throw new AssertionError("a second exclusive consumer was accepted");
        } catch (PulsarClientException.ConsumerBusyException expected) {
            // as Pulsar: the subscription has its one consumer
        }
    }

    void shared(String topic) throws Exception {
        List<Consumer<byte[]>> cs = List.of(consumer(topic, SubscriptionType.Shared, "a"),
                consumer(topic, SubscriptionType.Shared, "b"));
        sendNumbers(producer(topic, false), 0, 40);
        Map<Message<byte[]>, Integer> got = collect(cs, 40, true);
        List<Integer> values = got.keySet().stream().map(m -> Integer.parseInt(text(m))).sorted().toList();
        expect(values.stream().map(String::valueOf).toList(), numbers(0, 40), "messages, each once");
        expect(new HashSet<>(got.values()), Set.of(0, 1), "consumers that got messages");
    }

    void failover(String topic) throws Exception {
        List<Consumer<byte[]>> cs = List.of(consumer(topic, SubscriptionType.Failover, "a"),
                consumer(topic, SubscriptionType.Failover, "b"));
        sendNumbers(producer(topic, false), 0, 10);
        Map<Message<byte[]>, Integer> got = collect(cs, 10, false);
        expect(new HashSet<>(got.values()).size(), 1, "consumers that got messages");
        int active = got.values().iterator().next();
        List<Message<byte[]>> msgs = new ArrayList<>(got.keySet());
        expect(msgs.stream().map(Compat::text).toList(), numbers(0, 10), "messages to the active consumer");
        for (Message<byte[]> m : msgs.subList(0, 4)) {
            cs.get(active).acknowledge(m);
        }
        cs.get(active).close();
        List<String> rest = drain(cs.get(1 - active), 3000, true).stream().map(Compat::text).toList();
        expect(rest, numbers(4, 10), "unacknowledged messages moved to the standby");
    }

    void keyShared(String topic) throws Exception {
        List<Consumer<byte[]>> cs = List.of(consumer(topic, SubscriptionType.Key_Shared, "a"),
                consumer(topic, SubscriptionType.Key_Shared, "b"));
        Producer<byte[]> p = producer(topic, false);
        for (int i = 0; i < 10; i++) {
            for (int k = 0; k < 8; k++) {
                p.newMessage().key("key-" + k).value(("" + i).getBytes(StandardCharsets.UTF_8)).send();
            }
        }
        Map<String, Set<Integer>> owners = new HashMap<>();
        Map<String, List<String>> order = new HashMap<>();
        for (Map.Entry<Message<byte[]>, Integer> e : collect(cs, 80, true).entrySet()) {
            owners.computeIfAbsent(e.getKey().getKey(), k -> new HashSet<>()).add(e.getValue());
            order.computeIfAbsent(e.getKey().getKey(), k -> new ArrayList<>()).add(text(e.getKey()));
        }
        for (int k = 0; k < 8; k++) {
            expect(owners.get("key-" + k).size(), 1, "consumers of key-" + k);
            expect(order.get("key-" + k), numbers(0, 10), "order of key-" + k);
        }
    }

    void batching(String topic) throws Exception {
        Producer<byte[]> p = created(client.newProducer().topic(topic).enableBatching(true).batchingMaxMessages(10)
                .batchingMaxPublishDelay(100, TimeUnit.MILLISECONDS));
        for (String n : numbers(0, 100)) {
            p.sendAsync(n.getBytes(StandardCharsets.UTF_8));
        }
        p.flush();
        Consumer<byte[]> c = consumer(topic, SubscriptionType.Exclusive, "a");
        List<Message<byte[]>> got = drain(c, 2000, true);
        expect(got.stream().map(Compat::text).toList(), numbers(0, 100), "messages");
        int maxIndex = got.stream().mapToInt(m -> ((MessageIdAdv) m.getMessageId()).getBatchIndex()).max().orElse(-1);
        expect(maxIndex, 9, "highest batch index (batches of 10)");
    }

    void compression(String topic, CompressionType codec) throws Exception {
        Producer<byte[]> p = created(client.newProducer().topic(topic).enableBatching(true).batchingMaxMessages(50)
                .compressionType(codec));
        List<String> sent = new ArrayList<>();
        for (int i = 0; i < 200; i++) {
            String body = i + "-" + "abc".repeat(i);
            sent.add(body);
            p.sendAsync(body.getBytes(StandardCharsets.UTF_8));
        }
        p.flush();
        Consumer<byte[]> c = consumer(topic, SubscriptionType.Exclusive, "a");
        expect(drain(c, 2000, true).stream().map(Compat::text).toList(), sent, "decompressed messages");
    }

    private List<String> readAll(Reader<byte[]> r) throws Exception {
        List<String> out = new ArrayList<>();
        while (r.hasMessageAvailable()) {
            out.add(text(r.readNext(WAIT_S, TimeUnit.SECONDS)));
        }
        r.close();
        return out;
    }

    void reader(String topic) throws Exception {
        List<MessageId> ids = sendNumbers(producer(topic, false), 0, 6);
        expect(readAll(client.newReader().topic(topic).startMessageId(MessageId.earliest).create()),
                numbers(0, 6), "from earliest");
        expect(readAll(client.newReader().topic(topic).startMessageId(MessageId.latest).create()),
                List.of(), "from latest");
        expect(readAll(client.newReader().topic(topic).startMessageId(ids.get(2)).create()),
                numbers(3, 6), "after a message id");
        expect(readAll(client.newReader().topic(topic).startMessageId(ids.get(2)).startMessageIdInclusive()
                .create()), numbers(2, 6), "from a message id, inclusive");
    }

    void seek(String topic) throws Exception {
        Producer<byte[]> p = producer(topic, false);
        Consumer<byte[]> c = consumer(topic, SubscriptionType.Exclusive, "a");
        List<MessageId> ids = sendNumbers(p, 0, 3);
        Thread.sleep(100);
        long middle = System.currentTimeMillis();
        Thread.sleep(100);
        ids.addAll(sendNumbers(p, 3, 6));
        expect(drain(c, 1000, true).stream().map(Compat::text).toList(), numbers(0, 6), "first pass");
        c.seek(MessageId.earliest);
        expect(drain(c, 1000, true).stream().map(Compat::text).toList(), numbers(0, 6), "after seek to earliest");
        c.seek(middle);
        expect(drain(c, 1000, true).stream().map(Compat::text).toList(), numbers(3, 6), "after seek to a time");
        // Last, as in the Go program (whose client drops messages up to a sought id afterwards).
        c.seek(ids.get(4));
        expect(drain(c, 1000, true).stream().map(Compat::text).toList(), numbers(5, 6), "after seek to id 4 (it is skipped)");
    }

    /** Two messages sent and one acknowledged in a transaction are invisible (the ack pending)
     * until the commit; an aborted transaction's message never shows and the message it
     * acknowledged comes back. Its own client: transactions must be enabled on it. */
    static void transaction(String serviceUrl, String topic) throws Exception {
        try (PulsarClient txnClient = PulsarClient.builder().serviceUrl(serviceUrl)
                .operationTimeout(15, TimeUnit.SECONDS).enableTransaction(true).build()) {
            // A producer used in transactions must not time sends out (the client requires it).
            // Apache Pulsar recovers a topic's transaction buffer before its first producer is
            // ready, which takes seconds: a longer bound than created() gives.
            Producer<byte[]> p = txnClient.newProducer().topic(topic).enableBatching(false)
                    .sendTimeout(0, TimeUnit.SECONDS).createAsync().get(30, TimeUnit.SECONDS);
            Consumer<byte[]> c = txnClient.newConsumer().topic(topic).subscriptionName("sub")
                    .subscriptionType(SubscriptionType.Shared)
                    .subscriptionInitialPosition(SubscriptionInitialPosition.Earliest).subscribe();
            p.send("input".getBytes(StandardCharsets.UTF_8));
            Message<byte[]> input = c.receive(WAIT_S, TimeUnit.SECONDS);
            expect(input == null ? null : text(input), "input", "the input message");
            Transaction txn = txnClient.newTransaction().withTransactionTimeout(30, TimeUnit.SECONDS).build()
                    .get(WAIT_S, TimeUnit.SECONDS);
            for (String body : List.of("t1", "t2")) {
                p.newMessage(txn).value(body.getBytes(StandardCharsets.UTF_8)).sendAsync()
                        .get(WAIT_S, TimeUnit.SECONDS);
            }
            c.acknowledgeAsync(input.getMessageId(), txn).get(WAIT_S, TimeUnit.SECONDS);
            expect(drain(c, 1000, false).stream().map(Compat::text).toList(), List.of(), "before the commit");
            txn.commit().get(WAIT_S, TimeUnit.SECONDS);
            expect(drain(c, 2000, true).stream().map(Compat::text).toList(), List.of("t1", "t2"), "after the commit");

            p.send("input2".getBytes(StandardCharsets.UTF_8));
            Message<byte[]> input2 = c.receive(WAIT_S, TimeUnit.SECONDS);
            expect(input2 == null ? null : text(input2), "input2", "the second input message");
            Transaction aborted = txnClient.newTransaction().withTransactionTimeout(30, TimeUnit.SECONDS).build()
                    .get(WAIT_S, TimeUnit.SECONDS);
            p.newMessage(aborted).value("never".getBytes(StandardCharsets.UTF_8)).sendAsync()
                    .get(WAIT_S, TimeUnit.SECONDS);
            c.acknowledgeAsync(input2.getMessageId(), aborted).get(WAIT_S, TimeUnit.SECONDS);
            aborted.abort().get(WAIT_S, TimeUnit.SECONDS);
            expect(drain(c, 2000, true).stream().map(Compat::text).toList(), List.of("input2"),
                    "after the abort (redelivered, the aborted one invisible)");
            c.close();
            p.close();
        }
    }
}
