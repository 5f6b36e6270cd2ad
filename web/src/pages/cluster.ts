// Cluster: brokers (URLs, what each owns when known), bookies (kind, writable, disk use) and
// the ledgers of one topic with their ensembles and quorums. Superusers only (the server
// answers 403 to anyone else, shown as such). Read when opened and every 10 s.
import { getJSON, topicPath } from "../api";
import { h, replace, table } from "../dom";
import { bytes, count, time } from "../format";

interface Broker {
  id: string;
  webServiceUrl: string;
  brokerServiceUrl: string;
  self: boolean;
  bundles: string[] | null;
  topics: string[];
  topicCount: number;
}

interface Bookie {
  id: string;
  kind: string;
  writable: boolean;
  readOnly: boolean;
  diskUsageBytes: number | null;
  registeredMs?: number | null;
}

interface Summary {
  cluster: string;
  brokers: Broker[];
  bookies: Bookie[];
}

interface Ledger {
  ledgerId: number;
  entries: number;
  size: number;
  state: string;
  ensembleSize: number;
  writeQuorum: number;
  ackQuorum: number;
  ensembles: { firstEntry: number; bookies: string[] }[];
}

const REFRESH_MS = 10_000;

export function cluster(root: HTMLElement): () => void {
  const title = h("h2", {}, "Cluster");
  const brokers = h("div", {});
  const bookies = h("div", {});
  const picker = h("select", { "data-testid": "ledger-topic", onchange: () => void showLedgers() });
  const ledgers = h("div", { "data-testid": "ledgers" });
  root.append(title, h("h3", {}, "Brokers"), brokers, h("h3", {}, "Bookies"), bookies,
    h("h3", {}, "Ledgers of a topic"), h("label", {}, "Topic ", picker), ledgers);

  const showLedgers = async () => {
    const topic = picker.value;
    if (!topic) return replace(ledgers, h("p", { class: "empty" }, "No topic loaded."));
    try {
      const answer = await getJSON<{ ledgers: Ledger[]; ledgerCount: number }>(`/admin/taureau/persistent/${topicPath(topic)}/ledgers`);
      const rows = answer.ledgers.map((l) =>
        h("tr", { "data-ledger": l.ledgerId },
          h("td", {}, String(l.ledgerId)), h("td", {}, l.state),
          h("td", { class: "num" }, count(l.entries)), h("td", { class: "num" }, bytes(l.size)),
          h("td", { class: "quorums" }, `${l.ensembleSize} / ${l.writeQuorum} / ${l.ackQuorum}`),
          h("td", { class: "ensemble" }, l.ensembles.map((e) => `from entry ${e.firstEntry}: ${e.bookies.join(", ")}`).join("; "))));
      replace(ledgers, table(["Ledger", "State", "Entries", "Size", "E / Qw / Qa", "Ensemble"], rows, "No ledgers yet."),
        answer.ledgerCount > answer.ledgers.length ? h("p", { class: "empty" }, `The newest ${answer.ledgers.length} of ${answer.ledgerCount}.`) : null);
    } catch (err) {
      replace(ledgers, h("p", { class: "error" }, String(err)));
    }
  };

  const load = async () => {
    let summary: Summary;
    try {
      summary = await getJSON<Summary>("/admin/taureau/cluster");
    } catch (err) {
      replace(brokers, h("p", { class: "error", "data-testid": "forbidden" }, String(err)));
      return;
    }
    title.textContent = `Cluster ${summary.cluster}`;
    replace(brokers, table(["Broker", "Web service", "Broker service", "Bundles", "Topics loaded"],
      summary.brokers.map((b) => h("tr", { "data-broker": b.id },
        h("td", {}, b.id + (b.self ? " (this one)" : "")), h("td", {}, b.webServiceUrl), h("td", {}, b.brokerServiceUrl),
        h("td", {}, b.bundles === null ? (b.self ? "all (a broker alone)" : "not reported") : b.bundles.join(", ")),
        h("td", { class: "num" }, count(b.topicCount)))), "No brokers registered."));
    replace(bookies, table(["Bookie", "Kind", "State", "Disk used", "Registered"],
      summary.bookies.map((b) => h("tr", { "data-bookie": b.id },
        h("td", {}, b.id), h("td", {}, b.kind), h("td", { class: "bookie-state" }, b.readOnly ? "read-only" : b.writable ? "writable" : "down"),
        h("td", { class: "num" }, b.diskUsageBytes === null ? "not reported" : bytes(b.diskUsageBytes)),
        h("td", {}, b.registeredMs ? time(b.registeredMs) : ""))), "No bookies registered."));
    const topics = [...new Set(summary.brokers.flatMap((b) => b.topics))].filter((t) => t.startsWith("persistent://")).sort();
    const chosen = picker.value;
    if (topics.join() !== Array.from(picker.options, (o) => o.value).join()) {
      replace(picker, ...topics.map((t) => h("option", { value: t }, t)));
      picker.value = topics.includes(chosen) ? chosen : topics[0] ?? "";
      void showLedgers();
    }
  };

  void load();
  const timer = window.setInterval(() => void load(), REFRESH_MS);
  return () => window.clearInterval(timer);
}
