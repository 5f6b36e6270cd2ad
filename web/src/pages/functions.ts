// Functions: each function's instances, status, last exception, processed / failed rates,
// backlog and last scaling decision; start, stop and restart.
import { ApiError, getJSON, inEachNamespace, post } from "../api";
import { RateChart } from "../chart";
import { confirmAction } from "../confirm";
import { h, replace, table } from "../dom";
import { count, rate, time } from "../format";
import { live, type FunctionRow, type Sample } from "../live";

interface Exception {
  exceptionString: string;
  stackTrace: string;
  timestampMs: number;
}

interface InstanceStatus {
  running: boolean;
  state: string;
  error: string | null;
  numRestarts: number;
  numReceived: number;
  numSuccessfullyProcessed: number;
  numUserExceptions: number;
  numSystemExceptions: number;
  latestUserExceptions: Exception[];
  latestSystemExceptions: Exception[];
}

interface FunctionStatus {
  numInstances: number;
  numRunning: number;
  instances: { instanceId: number; status: InstanceStatus }[];
  backlog: number;
  targetInstances: number;
  lastScalingDecision: { timeMs: number; from: number; to: number; reason: string } | null;
}

function lastException(s: InstanceStatus): HTMLElement | string {
  const all = [...s.latestUserExceptions, ...s.latestSystemExceptions].sort((a, b) => a.timestampMs - b.timestampMs);
  const last = all[all.length - 1];
  if (!last && !s.error) return "none";
  if (!last) return s.error ?? "";
  return h("details", { class: "exception" },
    h("summary", {}, `${last.exceptionString} (${time(last.timestampMs)})`),
    h("pre", {}, last.stackTrace));
}

class FunctionCard {
  readonly el: HTMLElement;
  private readonly summary = h("div", { class: "summary" });
  private readonly body = h("div", {});
  private readonly status = h("p", { class: "status" });
  readonly chart: RateChart;
  private shown = "";
  private fetchedAt = 0;

  constructor(readonly fqfn: string) {
    const base = `/admin/v3/functions/${fqfn.split("/").map(encodeURIComponent).join("/")}`;
    const action = async (verb: "start" | "stop" | "restart", instance?: number) => {
      const target = instance === undefined ? fqfn : `instance ${instance} of ${fqfn}`;
      if (verb !== "start" && (await confirmAction(`${verb[0].toUpperCase()}${verb.slice(1)}`, `${verb} ${target}?`)) === null) return;
      try {
        await post(instance === undefined ? `${base}/${verb}` : `${base}/${instance}/${verb}`);
        this.status.textContent = `${verb} ${target}: done`;
        this.status.className = "status ok";
      } catch (err) {
        this.status.textContent = `${verb} ${target}: ${err instanceof Error ? err.message : err}`;
        this.status.className = "status error";
      }
      void this.refresh();
    };
    const chartBox = h("div", { class: "chart" });
    this.el = h("section", { class: "function", "data-function": fqfn },
      h("h3", {}, fqfn),
      h("div", { class: "actions" },
        h("button", { onclick: () => void action("start"), "data-testid": "start" }, "Start"),
        h("button", { onclick: () => void action("stop"), "data-testid": "stop" }, "Stop…"),
        h("button", { onclick: () => void action("restart"), "data-testid": "restart" }, "Restart…")),
      this.status, this.summary, chartBox, this.body);
    this.chart = new RateChart(chartBox, ["processed", "failed"]);
    this.restartInstance = (id: number) => void action("restart", id);
  }

  private readonly restartInstance: (id: number) => void;

  async refresh(): Promise<void> {
    this.fetchedAt = Date.now();
    let status: FunctionStatus;
    try {
      status = await getJSON<FunctionStatus>(`/admin/v3/functions/${this.fqfn.split("/").map(encodeURIComponent).join("/")}/status`);
    } catch (err) {
      replace(this.body, h("p", { class: "error" }, String(err)));
      return;
    }
    const rows = status.instances.map(({ instanceId, status: s }) =>
      h("tr", { "data-instance": instanceId },
        h("td", {}, String(instanceId)),
        h("td", { class: `state ${s.running ? "running" : "stopped"}`, "data-testid": "instance-state" }, s.state),
        h("td", { class: "num" }, count(s.numRestarts)),
        h("td", { class: "num" }, count(s.numReceived)),
        h("td", { class: "num" }, count(s.numSuccessfullyProcessed)),
        h("td", { class: "num" }, count(s.numUserExceptions + s.numSystemExceptions)),
        h("td", {}, lastException(s)),
        h("td", {}, h("button", { onclick: () => this.restartInstance(instanceId) }, "Restart…"))),
    );
    const scaling = status.lastScalingDecision;
    replace(this.body,
      h("p", {}, `Target instances: ${status.targetInstances}. Last scaling: `,
        scaling ? `${scaling.from} → ${scaling.to} at ${time(scaling.timeMs)} (${scaling.reason})` : "none"),
      table(["Instance", "State", "Restarts", "Received", "Processed", "Failed", "Last exception", ""], rows, "No instances (stopped)"));
  }

  onSample(row: FunctionRow | undefined): void {
    replace(this.summary,
      h("span", { "data-testid": "running" }, `${row?.running ?? 0} of ${row?.instances ?? 0} running`),
      ` · processed ${rate(row?.processedRate ?? 0)} · failed ${rate(row?.failedRate ?? 0)} · backlog ${count(row?.backlog ?? 0)}`);
    this.chart.update(live.functions.get(this.fqfn));
    const summary = row ? `${row.running}/${row.instances}/${row.processed}/${row.failed}` : "";
    if (summary !== this.shown && Date.now() - this.fetchedAt > 2000) {
      this.shown = summary;
      void this.refresh();
    }
  }

  destroy(): void {
    this.chart.destroy();
  }
}

export function functions(root: HTMLElement): () => void {
  const list = h("div", {}, h("p", { class: "empty" }, "Loading functions…"));
  root.append(h("h2", {}, "Functions"), list);
  const cards = new Map<string, FunctionCard>();
  let loadedAt = 0;

  const load = async () => {
    loadedAt = Date.now();
    let names: string[];
    try {
      names = await inEachNamespace(async (ns, path) =>
        (await getJSON<string[]>(`/admin/v3/functions/${path}`)).map((fn) => `${ns}/${fn}`));
    } catch (err) {
      const text = err instanceof ApiError && err.status === 404 ? "The functions worker is not running." : String(err);
      replace(list, h("p", { class: "error" }, text));
      return;
    }
    for (const [fqfn, c] of cards) if (!names.includes(fqfn)) { c.destroy(); cards.delete(fqfn); }
    for (const fqfn of names) if (!cards.has(fqfn)) cards.set(fqfn, new FunctionCard(fqfn));
    replace(list, ...(cards.size ? [...cards.values()].map((c) => c.el) : [h("p", { class: "empty" }, "No functions deployed.")]));
    for (const c of cards.values()) {
      c.chart.resize();
      void c.refresh();
    }
    if (live.latest) onSample(live.latest);
  };

  const onSample = (sample: Sample) => {
    const rows = new Map((sample.functions ?? []).map((r) => [r.fqfn, r]));
    for (const c of cards.values()) c.onSample(rows.get(c.fqfn));
    // A function deployed since the list was read: read it again, at most every 5 s.
    if ([...rows.keys()].some((f) => !cards.has(f)) && Date.now() - loadedAt > 5000) void load();
  };

  void load();
  const unsubscribe = live.subscribe(onSample);
  return () => {
    unsubscribe();
    for (const c of cards.values()) c.destroy();
  };
}
