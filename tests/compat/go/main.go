// Compatibility checks of the official Go client: compat SERVICE_URL TOPIC_PREFIX [CHECK...].
// Prints one line per check, "CHECK name ok" or "CHECK name FAIL why", and exits 0 once all ran;
// tests/compat/test_native_clients.py runs it and asserts each line. Each check has its own topic.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/sirupsen/logrus"
)

const (
	wait       = 10 * time.Second
	checkLimit = 60 * time.Second // a check that takes longer has hung: it fails, the next one runs
)

type check struct {
	name string
	run  func(topic string) error
}

var client pulsar.Client

func main() {
	logger := logrus.StandardLogger()
	logger.SetLevel(logrus.WarnLevel)
	logger.SetOutput(os.Stderr)
	var err error
	client, err = newClient(false)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(2)
	}
	checks := []check{
		{"exclusive", exclusive}, {"shared", shared}, {"failover", failover}, {"key_shared", keyShared},
		{"batching", batching},
	}
	for _, codec := range []struct {
		name string
		kind pulsar.CompressionType
	}{{"lz4", pulsar.LZ4}, {"zlib", pulsar.ZLib}, {"zstd", pulsar.ZSTD}, {"snappy", pulsar.SNAPPY}} {
		kind := codec.kind
		checks = append(checks, check{"compression_" + codec.name, func(t string) error { return compression(t, kind) }})
	}
	checks = append(checks, check{"reader", reader}, check{"seek", seek}, check{"transaction", transaction})
	only := os.Args[3:]
	for _, c := range checks {
		if len(only) > 0 && !contains(only, c.name) {
			continue
		}
		topic := os.Args[2] + "-" + strings.ReplaceAll(c.name, "_", "-")
		done := make(chan error, 1)
		go func() { done <- c.run(topic) }()
		select {
		case err := <-done:
			if err != nil {
				fmt.Printf("CHECK %s FAIL %s\n", c.name, strings.ReplaceAll(err.Error(), "\n", " "))
			} else {
				fmt.Printf("CHECK %s ok\n", c.name)
			}
		case <-time.After(checkLimit):
			fmt.Printf("CHECK %s FAIL hung for %s\n", c.name, checkLimit)
		}
	}
	os.Exit(0) // a hung check's goroutines must not keep the process alive
}

// newClient connects to os.Args[1]; with transactions, the client finds the broker's
// transaction coordinators first (and fails if there are none).
func newClient(transactions bool) (pulsar.Client, error) {
	logger := logrus.StandardLogger()
	return pulsar.NewClient(pulsar.ClientOptions{
		URL:               os.Args[1],
		OperationTimeout:  15 * time.Second,
		ConnectionTimeout: 10 * time.Second,
		Logger:            log.NewLoggerWithLogrus(logger),
		EnableTransaction: transactions,
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func numbers(from, to int) []string {
	out := []string{}
	for i := from; i < to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

func expect(actual, expected any, what string) error {
	if !reflect.DeepEqual(actual, expected) {
		return fmt.Errorf("%s: expected %v, got %v", what, expected, actual)
	}
	return nil
}

func texts(msgs []pulsar.Message) []string {
	out := []string{}
	for _, m := range msgs {
		out = append(out, string(m.Payload()))
	}
	return out
}

func producer(topic string, options pulsar.ProducerOptions) (pulsar.Producer, error) {
	options.Topic = topic
	return client.CreateProducer(options)
}

func consumer(topic string, kind pulsar.SubscriptionType, name string) (pulsar.Consumer, error) {
	return client.Subscribe(pulsar.ConsumerOptions{
		Topic: topic, SubscriptionName: "sub", Type: kind, Name: name, ReceiverQueueSize: 5,
		SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest,
	})
}

func sendNumbers(p pulsar.Producer, from, to int) ([]pulsar.MessageID, error) {
	ids := []pulsar.MessageID{}
	for _, n := range numbers(from, to) {
		id, err := p.Send(context.Background(), &pulsar.ProducerMessage{Payload: []byte(n)})
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// drain returns every message until none arrives for idle, acknowledged if ack.
func drain(c pulsar.Consumer, idle time.Duration, ack bool) ([]pulsar.Message, error) {
	out := []pulsar.Message{}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), idle)
		m, err := c.Receive(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return out, nil
		} else if err != nil {
			return out, err
		}
		if ack {
			if err := c.Ack(m); err != nil {
				return out, err
			}
		}
		out = append(out, m)
	}
}

type delivery struct {
	consumer int
	msg      pulsar.Message
}

// collect polls the consumers in turn until total messages came, then until all are idle.
func collect(cs []pulsar.Consumer, total int, ack bool) ([]delivery, error) {
	got := []delivery{}
	deadline := time.Now().Add(15 * time.Second)
	for {
		progressed := false
		for i, c := range cs {
			idle := 200 * time.Millisecond
			if len(got) >= total {
				idle = time.Second
			}
			msgs, err := drain(c, idle, ack)
			if err != nil {
				return got, err
			}
			for _, m := range msgs {
				got = append(got, delivery{i, m})
				progressed = true
			}
		}
		if len(got) >= total && !progressed {
			return got, nil
		}
		if time.Now().After(deadline) {
			return got, fmt.Errorf("only %d of %d messages arrived", len(got), total)
		}
	}
}

func twoConsumers(topic string, kind pulsar.SubscriptionType) ([]pulsar.Consumer, error) {
	a, err := consumer(topic, kind, "a")
	if err != nil {
		return nil, err
	}
	b, err := consumer(topic, kind, "b")
	if err != nil {
		return nil, err
	}
	return []pulsar.Consumer{a, b}, nil
}

// deliver subscribes two consumers of one kind, sends count numbered messages, collects them.
func deliver(topic string, kind pulsar.SubscriptionType, count int, ack bool) ([]pulsar.Consumer, []delivery, error) {
	cs, err := twoConsumers(topic, kind)
	if err != nil {
		return nil, nil, err
	}
	p, err := producer(topic, pulsar.ProducerOptions{DisableBatching: true})
	if err != nil {
		return nil, nil, err
	}
	if _, err := sendNumbers(p, 0, count); err != nil {
		return nil, nil, err
	}
	got, err := collect(cs, count, ack)
	return cs, got, err
}

func exclusive(topic string) error {
	c, err := consumer(topic, pulsar.Exclusive, "a")
	if err != nil {
		return err
	}
	p, err := producer(topic, pulsar.ProducerOptions{DisableBatching: true})
	if err != nil {
		return err
	}
	ids := []pulsar.MessageID{}
	for i := 0; i < 5; i++ {
		id, err := p.Send(context.Background(), &pulsar.ProducerMessage{
			Payload: []byte(fmt.Sprintf("m%d", i)), Key: fmt.Sprintf("k%d", i),
			Properties: map[string]string{"i": strconv.Itoa(i)}, EventTime: time.UnixMilli(int64(1000 + i)),
		})
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	msgs, err := drain(c, 2*time.Second, true)
	if err != nil {
		return err
	}
	if err := expect(len(msgs), 5, "messages"); err != nil {
		return err
	}
	for i, m := range msgs {
		got := []any{string(m.Payload()), m.Key(), m.Properties()["i"], m.EventTime().UnixMilli(), m.ID().String()}
		want := []any{fmt.Sprintf("m%d", i), fmt.Sprintf("k%d", i), strconv.Itoa(i), int64(1000 + i), ids[i].String()}
		if err := expect(got, want, fmt.Sprintf("message %d", i)); err != nil {
			return err
		}
	}
	_, err = consumer(topic, pulsar.Exclusive, "b")
	if err == nil || !strings.Contains(err.Error(), "ConsumerBusy") {
		return fmt.Errorf("a second exclusive consumer: expected ConsumerBusy, got %v", err)
	}
	return nil
}

func shared(topic string) error {
	_, got, err := deliver(topic, pulsar.Shared, 40, true)
	if err != nil {
		return err
	}
	values, who := []int{}, map[int]bool{}
	for _, d := range got {
		n, _ := strconv.Atoi(string(d.msg.Payload()))
		values = append(values, n)
		who[d.consumer] = true
	}
	sort.Ints(values)
	want := []int{}
	for i := 0; i < 40; i++ {
		want = append(want, i)
	}
	if err := expect(values, want, "messages, each once"); err != nil {
		return err
	}
	return expect(who, map[int]bool{0: true, 1: true}, "consumers that got messages")
}

func failover(topic string) error {
	cs, got, err := deliver(topic, pulsar.Failover, 10, false)
	if err != nil {
		return err
	}
	active := got[0].consumer
	msgs := []pulsar.Message{}
	for _, d := range got {
		if d.consumer != active {
			return fmt.Errorf("both failover consumers got messages")
		}
		msgs = append(msgs, d.msg)
	}
	if err := expect(texts(msgs), numbers(0, 10), "messages to the active consumer"); err != nil {
		return err
	}
	for _, m := range msgs[:4] {
		if err := cs[active].Ack(m); err != nil {
			return err
		}
	}
	cs[active].Close()
	rest, err := drain(cs[1-active], 3*time.Second, true)
	if err != nil {
		return err
	}
	return expect(texts(rest), numbers(4, 10), "unacknowledged messages moved to the standby")
}

func keyShared(topic string) error {
	cs, err := twoConsumers(topic, pulsar.KeyShared)
	if err != nil {
		return err
	}
	p, err := producer(topic, pulsar.ProducerOptions{DisableBatching: true})
	if err != nil {
		return err
	}
	for i := 0; i < 10; i++ {
		for k := 0; k < 8; k++ {
			msg := &pulsar.ProducerMessage{Payload: []byte(strconv.Itoa(i)), Key: fmt.Sprintf("key-%d", k)}
			if _, err := p.Send(context.Background(), msg); err != nil {
				return err
			}
		}
	}
	got, err := collect(cs, 80, true)
	if err != nil {
		return err
	}
	owners, order := map[string]map[int]bool{}, map[string][]string{}
	for _, d := range got {
		key := d.msg.Key()
		if owners[key] == nil {
			owners[key] = map[int]bool{}
		}
		owners[key][d.consumer] = true
		order[key] = append(order[key], string(d.msg.Payload()))
	}
	for k := 0; k < 8; k++ {
		key := fmt.Sprintf("key-%d", k)
		if err := expect(len(owners[key]), 1, "consumers of "+key); err != nil {
			return err
		}
		if err := expect(order[key], numbers(0, 10), "order of "+key); err != nil {
			return err
		}
	}
	return nil
}

// sendAllAsync sends every payload without waiting, then flushes.
func sendAllAsync(p pulsar.Producer, payloads []string) error {
	failed := make(chan error, len(payloads))
	for _, body := range payloads {
		p.SendAsync(context.Background(), &pulsar.ProducerMessage{Payload: []byte(body)},
			func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
				if err != nil {
					failed <- err
				}
			})
	}
	if err := p.Flush(); err != nil {
		return err
	}
	select {
	case err := <-failed:
		return err
	default:
		return nil
	}
}

// roundTrip sends payloads with a batching producer, then reads them all back from the start.
func roundTrip(topic string, options pulsar.ProducerOptions, payloads []string) ([]pulsar.Message, error) {
	p, err := producer(topic, options)
	if err != nil {
		return nil, err
	}
	if err := sendAllAsync(p, payloads); err != nil {
		return nil, err
	}
	c, err := consumer(topic, pulsar.Exclusive, "a")
	if err != nil {
		return nil, err
	}
	return drain(c, 2*time.Second, true)
}

func batching(topic string) error {
	options := pulsar.ProducerOptions{BatchingMaxMessages: 10, BatchingMaxPublishDelay: 100 * time.Millisecond}
	msgs, err := roundTrip(topic, options, numbers(0, 100))
	if err != nil {
		return err
	}
	if err := expect(texts(msgs), numbers(0, 100), "messages"); err != nil {
		return err
	}
	highest := int32(-1)
	for _, m := range msgs {
		if m.ID().BatchIdx() > highest {
			highest = m.ID().BatchIdx()
		}
	}
	return expect(highest, int32(9), "highest batch index (batches of 10)")
}

func compression(topic string, kind pulsar.CompressionType) error {
	sent := []string{}
	for i := 0; i < 200; i++ {
		sent = append(sent, strconv.Itoa(i)+"-"+strings.Repeat("abc", i))
	}
	msgs, err := roundTrip(topic, pulsar.ProducerOptions{BatchingMaxMessages: 50, CompressionType: kind}, sent)
	if err != nil {
		return err
	}
	return expect(texts(msgs), sent, "decompressed messages")
}

func readAll(options pulsar.ReaderOptions) ([]string, error) {
	r, err := client.CreateReader(options)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	out := []string{}
	for r.HasNext() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		m, err := r.Next(ctx)
		cancel()
		if err != nil {
			return out, err
		}
		out = append(out, string(m.Payload()))
	}
	return out, nil
}

func reader(topic string) error {
	p, err := producer(topic, pulsar.ProducerOptions{DisableBatching: true})
	if err != nil {
		return err
	}
	ids, err := sendNumbers(p, 0, 6)
	if err != nil {
		return err
	}
	cases := []struct {
		what    string
		options pulsar.ReaderOptions
		want    []string
	}{
		{"from earliest", pulsar.ReaderOptions{StartMessageID: pulsar.EarliestMessageID()}, numbers(0, 6)},
		{"from latest", pulsar.ReaderOptions{StartMessageID: pulsar.LatestMessageID()}, numbers(0, 0)},
		{"after a message id", pulsar.ReaderOptions{StartMessageID: ids[2]}, numbers(3, 6)},
		{"from a message id, inclusive", pulsar.ReaderOptions{StartMessageID: ids[2], StartMessageIDInclusive: true}, numbers(2, 6)},
	}
	for _, c := range cases {
		c.options.Topic = topic
		got, err := readAll(c.options)
		if err != nil {
			return err
		}
		if err := expect(got, c.want, c.what); err != nil {
			return err
		}
	}
	return nil
}

func seek(topic string) error {
	p, err := producer(topic, pulsar.ProducerOptions{DisableBatching: true})
	if err != nil {
		return err
	}
	c, err := consumer(topic, pulsar.Exclusive, "a")
	if err != nil {
		return err
	}
	ids, err := sendNumbers(p, 0, 3)
	if err != nil {
		return err
	}
	time.Sleep(100 * time.Millisecond)
	middle := time.Now()
	time.Sleep(100 * time.Millisecond)
	more, err := sendNumbers(p, 3, 6)
	if err != nil {
		return err
	}
	ids = append(ids, more...)
	steps := []struct {
		what string
		move func() error
		want []string
	}{
		{"first pass", func() error { return nil }, numbers(0, 6)},
		{"after seek to a time", func() error { return c.SeekByTime(middle) }, numbers(3, 6)},
		// The Go client refuses Seek(EarliestMessageID()) ("invalid partition index -1"), Pulsar
		// or not: a time before the first message is its way back to the start.
		{"after seek to the start", func() error { return c.SeekByTime(time.UnixMilli(0)) }, numbers(0, 6)},
		// Last: after a seek to an id the client drops messages up to that id, whatever comes next.
		{"after seek to id 4 (it is skipped)", func() error { return c.Seek(ids[4]) }, numbers(5, 6)},
	}
	for _, s := range steps {
		if err := s.move(); err != nil {
			return err
		}
		msgs, err := drain(c, time.Second, true)
		if err != nil {
			return err
		}
		if err := expect(texts(msgs), s.want, s.what); err != nil {
			return err
		}
	}
	return nil
}

// receiveOne waits for the next message (error if none within wait).
func receiveOne(c pulsar.Consumer) (pulsar.Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return c.Receive(ctx)
}

// transaction: two messages sent and one acknowledged in a transaction are invisible (and the
// ack pending) until the commit; an aborted transaction's message never shows and the message
// it acknowledged comes back.
func transaction(topic string) error {
	txnClient, err := newClient(true)
	if err != nil {
		return fmt.Errorf("client with transactions: %w", err)
	}
	defer txnClient.Close()
	p, err := txnClient.CreateProducer(pulsar.ProducerOptions{Topic: topic, DisableBatching: true})
	if err != nil {
		return err
	}
	defer p.Close()
	c, err := txnClient.Subscribe(pulsar.ConsumerOptions{
		Topic: topic, SubscriptionName: "sub", Type: pulsar.Shared,
		SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := p.Send(ctx, &pulsar.ProducerMessage{Payload: []byte("input")}); err != nil {
		return err
	}
	input, err := receiveOne(c)
	if err != nil {
		return fmt.Errorf("input: %w", err)
	}
	txn, err := txnClient.NewTransaction(30 * time.Second)
	if err != nil {
		return fmt.Errorf("new transaction: %w", err)
	}
	for _, body := range []string{"t1", "t2"} {
		if _, err := p.Send(ctx, &pulsar.ProducerMessage{Payload: []byte(body), Transaction: txn}); err != nil {
			return fmt.Errorf("send in transaction: %w", err)
		}
	}
	if err := c.AckWithTxn(input, txn); err != nil {
		return fmt.Errorf("ack in transaction: %w", err)
	}
	early, err := drain(c, time.Second, false)
	if err != nil {
		return err
	}
	if err := expect(texts(early), []string{}, "before the commit"); err != nil {
		return err
	}
	if err := txn.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	committed, err := drain(c, 2*time.Second, true)
	if err != nil {
		return err
	}
	if err := expect(texts(committed), []string{"t1", "t2"}, "after the commit"); err != nil {
		return err
	}
	if _, err := p.Send(ctx, &pulsar.ProducerMessage{Payload: []byte("input2")}); err != nil {
		return err
	}
	input2, err := receiveOne(c)
	if err != nil {
		return fmt.Errorf("input2: %w", err)
	}
	aborted, err := txnClient.NewTransaction(30 * time.Second)
	if err != nil {
		return err
	}
	if _, err := p.Send(ctx, &pulsar.ProducerMessage{Payload: []byte("never"), Transaction: aborted}); err != nil {
		return err
	}
	if err := c.AckWithTxn(input2, aborted); err != nil {
		return err
	}
	if err := aborted.Abort(ctx); err != nil {
		return fmt.Errorf("abort: %w", err)
	}
	after, err := drain(c, 2*time.Second, true)
	if err != nil {
		return err
	}
	if err := expect(texts(after), []string{"input2"}, "after the abort (redelivered, aborted one invisible)"); err != nil {
		return err
	}
	late, err := txnClient.NewTransaction(30 * time.Second)
	if err != nil {
		return err
	}
	if err := late.Commit(ctx); err != nil {
		return fmt.Errorf("commit of an empty transaction: %w", err)
	}
	if err := late.Commit(ctx); err == nil {
		return errors.New("a second commit of the same transaction succeeded")
	}
	return nil
}
