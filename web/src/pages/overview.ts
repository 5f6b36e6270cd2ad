// Overview: totals, the 15-minute rate chart, and every namespace's topics with live rates.
import { namespaceTree, type Tree } from "../api";
import { RateChart } from "../chart";
import { card, h, replace, table } from "../dom";
import { bytes, count, rate } from "../format";
import { live, type Sample, type TopicRow } from "../live";

export function topicHref(name: string): string {
  return "#/topic/" + name.replace(/^persistent:\/\//, "");
}

function topicRow(name: string, row: TopicRow | undefined): HTMLTableRowElement {
  const cell = (text: string, cls: string) => h("td", { class: `num ${cls}` }, row ? text : "–");
  return h(
    "tr",
    { "data-topic": name },
    h("td", {}, h("a", { href: topicHref(name) }, name.split("/").pop() ?? name)),
    cell(rate(row?.rateIn ?? 0), "rate-in"),
    cell(rate(row?.rateOut ?? 0), "rate-out"),
    cell(bytes(row?.throughputIn ?? 0) + "/s", "throughput-in"),
    cell(count(row?.backlog ?? 0), "backlog"),
    cell(bytes(row?.storage ?? 0), "storage"),
    cell(String(row?.producers ?? 0), "producers"),
    cell(String(row?.subscriptions ?? 0), "subscriptions"),
  );
}

export function overview(root: HTMLElement): () => void {
  const cards = h("div", { class: "cards" });
  const chartBox = h("div", { class: "chart" });
  const tables = h("div", {}, h("p", { class: "empty" }, "Loading namespaces…"));
  root.append(h("h2", {}, "Overview"), cards, h("h3", {}, "Messages per second, last 15 minutes"), chartBox, tables);
  const chart = new RateChart(chartBox, ["published", "dispatched"]);
  let tree: Tree[] | null = null;
  let loadedAt = 0;

  const load = async () => {
    loadedAt = Date.now();
    try {
      tree = await namespaceTree(true);
    } catch (err) {
      replace(tables, h("p", { class: "error" }, `Cannot list namespaces: ${err}`));
      return;
    }
    if (live.latest) render(live.latest);
  };

  const render = (sample: Sample) => {
    const t = sample.totals;
    replace(
      cards,
      card("Published", rate(t.rateIn), "total-rate-in"),
      card("Dispatched", rate(t.rateOut), "total-rate-out"),
      card("Backlog", count(t.backlog), "total-backlog"),
      card("Storage", bytes(t.storage), "total-storage"),
      card("Loaded topics", count(sample.topicCount), "topic-count"),
    );
    chart.update(live.totals);
    if (!tree) return;
    const rows = new Map(sample.topics.map((r) => [r.name, r]));
    const known = new Set<string>();
    const sections: HTMLElement[] = [];
    for (const { tenant, namespaces } of tree) {
      sections.push(h("h3", { class: "tenant" }, `Tenant ${tenant}`));
      for (const ns of namespaces) {
        const names = new Set(ns.topics);
        for (const r of sample.topics) if (r.name.startsWith(`persistent://${ns.name}/`)) names.add(r.name);
        names.forEach((n) => known.add(n));
        const trs = [...names].sort().map((n) => topicRow(n, rows.get(n)));
        const headers = ["Topic", "In", "Out", "Bytes in", "Backlog", "Storage", "Producers", "Subscriptions"];
        sections.push(h("section", { class: "namespace", "data-namespace": ns.name }, h("h4", {}, ns.name), table(headers, trs, "No topics")));
      }
    }
    replace(tables, ...sections);
    // A topic of a namespace created since the tree was read: read it again, at most every 5 s.
    if (sample.topics.some((r) => !known.has(r.name)) && Date.now() - loadedAt > 5000) void load();
  };

  void load();
  const unsubscribe = live.subscribe(render);
  return () => {
    unsubscribe();
    chart.destroy();
  };
}
