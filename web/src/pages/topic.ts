// One topic: live rates and chart, producers, subscriptions (skip / reset with confirmation),
// and a peek at its last messages.
import { examine, getJSON, post, topicPath, type Peeked } from "../api";
import { RateChart } from "../chart";
import { confirmAction } from "../confirm";
import { card, h, replace, table } from "../dom";
import { bytes, count, decoded, payload, rate, time } from "../format";
import { live, type Sample } from "../live";

interface Consumer {
  consumerName: string;
  unackedMessages: number;
  availablePermits: number;
  address: string;
}

interface SubscriptionStats {
  type: string;
  msgBacklog: number;
  unackedMessages: number;
  consumers: Consumer[];
  markDeletePosition: string;
}

interface Producer {
  producerName: string;
  address: string;
  msgInCounter: number;
  accessMode: string;
  connectedSince: string;
}

interface TopicStats {
  msgInCounter: number;
  entriesCount: number;
  storageSize: number;
  publishers: Producer[];
  subscriptions: Record<string, SubscriptionStats>;
}

const PEEK = 10;

export function topic(root: HTMLElement, path: string): () => void {
  const name = `persistent://${path}`;
  const base = `/admin/v2/persistent/${topicPath(name)}`;
  const cards = h("div", { class: "cards" });
  const chartBox = h("div", { class: "chart" });
  const status = h("p", { class: "status", "data-testid": "action-status" });
  const producers = h("div", {});
  const subscriptions = h("div", {});
  const peeked = h("div", { "data-testid": "peeked" });
  const peekButton = h("button", { "data-testid": "peek", onclick: () => void peek() }, `Peek the last ${PEEK} messages`);
  root.append(
    h("p", {}, h("a", { href: "#/" }, "← Overview")),
    h("h2", { "data-testid": "topic-name" }, name),
    cards,
    h("h3", {}, "Messages per second"),
    chartBox,
    status,
    h("h3", {}, "Producers"),
    producers,
    h("h3", {}, "Subscriptions"),
    subscriptions,
    h("h3", {}, "Last messages"),
    peekButton,
    peeked,
  );
  const chart = new RateChart(chartBox, ["published", "dispatched"]);
  let shown = "";
  let fetchedAt = 0;

  const act = async (what: string, url: string) => {
    try {
      await post(url);
      status.textContent = `${what}: done`;
      status.className = "status ok";
    } catch (err) {
      status.textContent = `${what}: ${err instanceof Error ? err.message : err}`;
      status.className = "status error";
    }
    void refresh();
  };

  const subscriptionRow = (sub: string, s: SubscriptionStats) => {
    const subUrl = `${base}/subscription/${encodeURIComponent(sub)}`;
    const skip = async () => {
      const n = await confirmAction("Skip messages", `Skip messages of ${sub}: they are acknowledged, never delivered.`, {
        label: "How many", value: "1", type: "number",
      });
      if (n !== null) await act(`skip ${n} on ${sub}`, `${subUrl}/skip/${Math.max(0, Math.floor(Number(n)))}`);
    };
    const skipAll = async () => {
      if ((await confirmAction("Skip all", `Acknowledge the whole backlog of ${sub} (${count(s.msgBacklog)} entries)?`)) !== null) {
        await act(`skip all on ${sub}`, `${subUrl}/skip_all`);
      }
    };
    const reset = async () => {
      const minutes = await confirmAction("Reset cursor", `Move ${sub} back to the messages published since:`, {
        label: "Minutes ago", value: "10", type: "number",
      });
      if (minutes !== null) {
        const ts = Date.now() - Math.max(0, Number(minutes)) * 60_000;
        await act(`reset ${sub}`, `${subUrl}/resetcursor/${Math.floor(ts)}`);
      }
    };
    return h(
      "tr",
      { "data-subscription": sub },
      h("td", {}, sub),
      h("td", {}, s.type),
      h("td", { class: "num backlog" }, count(s.msgBacklog)),
      h("td", { class: "num" }, count(s.unackedMessages)),
      h("td", {}, s.consumers.length ? s.consumers.map((c) => `${c.consumerName} (${c.address})`).join(", ") : "none"),
      h("td", { class: "actions" },
        h("button", { onclick: () => void skip(), "data-testid": "skip" }, "Skip…"),
        h("button", { onclick: () => void skipAll(), "data-testid": "skip-all" }, "Skip all…"),
        h("button", { onclick: () => void reset(), "data-testid": "reset" }, "Reset…"),
      ),
    );
  };

  const refresh = async () => {
    fetchedAt = Date.now();
    let stats: TopicStats;
    try {
      stats = await getJSON<TopicStats>(`${base}/stats`);
    } catch (err) {
      replace(subscriptions, h("p", { class: "error" }, String(err)));
      return;
    }
    const pRows = stats.publishers.map((p) =>
      h("tr", {}, h("td", {}, p.producerName), h("td", {}, p.address), h("td", {}, p.accessMode),
        h("td", { class: "num" }, count(p.msgInCounter)), h("td", {}, p.connectedSince)),
    );
    replace(producers, table(["Name", "Address", "Access", "Messages", "Since"], pRows, "No producers connected"));
    const sRows = Object.entries(stats.subscriptions).sort().map(([sub, s]) => subscriptionRow(sub, s));
    replace(subscriptions, table(["Name", "Type", "Backlog", "Unacked", "Consumers", ""], sRows, "No subscriptions"));
  };

  const peek = async () => {
    peekButton.disabled = true;
    const messages: Peeked[] = [];
    try {
      const { entriesCount } = await getJSON<TopicStats>(`${base}/stats`);
      for (let n = entriesCount; n > Math.max(entriesCount - PEEK, 0); n--) {
        const m = await examine(name, n);
        if (!m) break;
        messages.push(m);
      }
      const rows = messages.map((m) =>
        h("tr", { class: "message" },
          h("td", {}, m.id), h("td", {}, time(m.publishTime)), h("td", {}, m.key ?? ""),
          h("td", {}, Object.keys(m.properties).length ? JSON.stringify(m.properties) : ""),
          h("td", { class: "schema" }, m.schema ? `${m.schema.type} v${m.schema.version}` : "none"),
          h("td", { class: m.value !== undefined ? "payload decoded" : "payload" },
            m.value !== undefined ? decoded(m.value) : payload(m.payload),
            m.decodeError ? h("div", { class: "error" }, `not decoded: ${m.decodeError}`) : null,
            m.batchSize > 1 ? ` (first of a batch of ${m.batchSize})` : "")),
      );
      replace(peeked, table(["Id", "Published", "Key", "Properties", "Schema", "Payload"], rows, "The topic holds no messages"));
    } catch (err) {
      replace(peeked, h("p", { class: "error" }, String(err)));
    } finally {
      peekButton.disabled = false;
    }
  };

  const onSample = (sample: Sample) => {
    const row = sample.topics.find((r) => r.name === name);
    replace(
      cards,
      card("Published", rate(row?.rateIn ?? 0), "rate-in"),
      card("Dispatched", rate(row?.rateOut ?? 0), "rate-out"),
      card("Backlog", count(row?.backlog ?? 0), "backlog"),
      card("Storage", bytes(row?.storage ?? 0), "storage"),
    );
    chart.update(live.topics.get(name));
    // Producers and subscriptions are read again only when the sample says they changed.
    const summary = row ? `${row.producers}/${row.subscriptions}/${row.backlog}` : "";
    if (summary !== shown && Date.now() - fetchedAt > 2000) {
      shown = summary;
      void refresh();
    }
  };

  void refresh();
  const unsubscribe = live.subscribe(onSample);
  return () => {
    unsubscribe();
    chart.destroy();
  };
}
