// State: memory servers with their blocks as a map (used / free), blocks held per top-level
// directory against its quota, structures, and splits and merges over time. All of it from
// the live stream (the controller's stats, as /metrics shows them).
import { identity } from "../auth";
import { RateChart } from "../chart";
import { card, h, replace, table } from "../dom";
import { bytes, count } from "../format";
import { live, type MemoryServer, type Sample } from "../live";

const SQUARES = 256; // a block map draws at most this many squares, each then several blocks

function blockMap(s: MemoryServer): HTMLElement {
  const squares = Math.min(s.blocks, SQUARES);
  const perSquare = s.blocks / Math.max(squares, 1);
  const used = Math.round(s.used / perSquare);
  const cells = Array.from({ length: squares }, (_, i) => h("span", { class: i < used ? "block used" : "block free" }));
  return h("div", { class: "blockmap", "data-testid": "blockmap", title: `${s.used} of ${s.blocks} blocks used` }, ...cells);
}

export function state(root: HTMLElement): () => void {
  if (!identity.superuser) {
    // The live stream carries the state layer to superusers only: it is the whole server's.
    root.append(h("h2", {}, "State"), h("p", { class: "error", "data-testid": "forbidden" },
      `Not allowed for role ${identity.role}: only superusers see the state layer.`));
    return () => {};
  }
  const cards = h("div", { class: "cards" });
  const servers = h("div", {});
  const namespaces = h("div", {});
  const counters = h("div", {});
  const chartBox = h("div", { class: "chart" });
  root.append(h("h2", {}, "State"), cards, h("h3", {}, "Memory servers"), servers,
    h("h3", {}, "Blocks by directory"), namespaces,
    h("h3", {}, "Splits and merges since start"), chartBox, counters);
  const chart = new RateChart(chartBox, ["splits", "merges"], (v) => (Number.isInteger(v) ? count(v) : ""));

  const render = (sample: Sample) => {
    const st = sample.state;
    if (!st) {
      replace(cards, h("p", { class: "empty" }, "The state layer is not running (taureau standalone --no-state?)."));
      return;
    }
    const total = st.servers.reduce((a, s) => a + s.blocks, 0);
    const used = st.servers.reduce((a, s) => a + s.used, 0);
    replace(cards,
      card("Structures", count(st.structures), "structures"),
      card("Memory servers", count(st.servers.length), "servers"),
      card("Blocks used", `${count(used)} / ${count(total)}`, "blocks"),
      card("Memory used", bytes(st.servers.reduce((a, s) => a + s.used_bytes, 0)), "memory"));
    replace(servers, ...st.servers.map((s) =>
      h("section", { class: "function", "data-server": s.address },
        h("p", {}, h("b", {}, s.address), ` · ${s.state} · ${count(s.used)} of ${count(s.blocks)} blocks of ${bytes(s.block_size)} used`,
          ` · memory ${bytes(s.used_bytes)} of ${bytes(s.budget_bytes)}`),
        blockMap(s))));
    if (st.servers.length === 0) replace(servers, h("p", { class: "empty" }, "No memory server has joined."));
    const rows = st.namespaces.map((n) => h("tr", {}, h("td", {}, n.path), h("td", { class: "num" }, count(n.blocks)),
      h("td", { class: "num" }, n.quota === null ? "none" : count(n.quota))));
    replace(namespaces, table(["Directory", "Blocks", "Quota"], rows, "No structure holds blocks."));
    const cRows = Object.entries(st.counters).map(([k, v]) => h("tr", {}, h("td", {}, k.replace(/_/g, " ")), h("td", { class: "num" }, count(v))));
    replace(counters, table(["Event", "Since start"], cRows, ""));
    chart.update(live.stateEvents);
  };

  const unsubscribe = live.subscribe(render);
  return () => {
    unsubscribe();
    chart.destroy();
  };
}
