// Sketches: each sketch function's newest merged window: a top-k table, a quantile chart, a
// distinct count or a sample, and a form for the kinds asked about one item (count-min, Bloom).
import { ApiError, getJSON, inEachNamespace } from "../api";
import { QuantileChart } from "../chart";
import { h, replace, table } from "../dom";
import { count, time } from "../format";
import { live, type Sample } from "../live";

interface SketchInfo {
  name: string;
  kind: string;
  inputs: string[];
}

type Kinds = Record<string, { queries: string[] }>;

interface Estimate {
  item: string;
  estimate: number;
  lower: number;
  upper: number;
}

interface Answer {
  n: number;
  top?: Estimate[];
  quantiles?: { rank: number; value: number }[];
  min?: number;
  max?: number;
  empty?: boolean;
  distinct?: number;
  bounds?: { lower: number; upper: number }[] | Record<string, number>;
  sample?: { item: string; weight: number }[];
  estimate?: number;
  lower?: number;
  upper?: number;
  mightContain?: boolean;
  windows: { count: number; firstStartMs: number; lastEndMs: number };
}

const RANKS = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99];
const MAX_SHOWN = 20; // sketches on the page, each re-queried when its function processed more

function fixed(n: number): string {
  return Number.isInteger(n) ? count(n) : n.toPrecision(6);
}

class SketchCard {
  readonly el: HTMLElement;
  private readonly answer = h("div", { class: "answer", "data-testid": "answer" });
  private chart: QuantileChart | null = null;
  private readonly base: string;
  private readonly standing: string | null; // the query asked on its own, if the kind has one
  private queriedAt = 0;
  private processed = -1;

  constructor(readonly fqfn: string, readonly info: SketchInfo, queries: string[]) {
    this.base = `/admin/v3/sketches/${fqfn.split("/").map(encodeURIComponent).join("/")}/query`;
    if (queries.includes("top")) this.standing = "top=10";
    else if (queries.includes("quantiles")) this.standing = `quantiles=${RANKS.join(",")}`;
    else if (queries.includes("distinct")) this.standing = "distinct=true";
    else if (queries.includes("sample")) this.standing = "sample=10";
    else this.standing = null;
    const askable = ["key", "contains"].find((q) => queries.includes(q));
    let form: HTMLElement | null = null;
    if (askable) {
      const input = h("input", { type: "text", name: askable, placeholder: askable === "key" ? "a key" : "an item", required: true });
      const result = h("span", { class: "probe", "data-testid": "probe" });
      form = h("form", {
        onsubmit: (event: Event) => {
          event.preventDefault();
          void this.probe(`${askable}=${encodeURIComponent(input.value)}`, result);
        },
      }, input, " ", h("button", { type: "submit" }, askable === "key" ? "Estimate" : "Might contain?"), " ", result);
    }
    this.el = h("section", { class: "function sketch", "data-sketch": fqfn },
      h("h3", {}, `${fqfn} `, h("span", { class: "kind" }, info.kind)),
      h("p", { class: "empty" }, `inputs: ${info.inputs.join(", ")}`),
      form, this.answer);
  }

  private async probe(query: string, into: HTMLElement): Promise<void> {
    try {
      const a = await getJSON<Answer>(`${this.base}?${query}`);
      into.textContent = a.mightContain !== undefined
        ? (a.mightContain ? "might be there" : "not there")
        : `≈ ${fixed(a.estimate ?? 0)} (${fixed(a.lower ?? 0)} – ${fixed(a.upper ?? 0)})`;
    } catch (err) {
      into.textContent = String(err);
    }
  }

  async refresh(): Promise<void> {
    this.queriedAt = Date.now();
    if (!this.standing) return;
    let a: Answer;
    try {
      a = await getJSON<Answer>(`${this.base}?${this.standing}`);
    } catch (err) {
      const text = err instanceof ApiError && err.status === 404 ? "No window merged yet." : String(err);
      replace(this.answer, h("p", { class: "empty" }, text));
      return;
    }
    const header = h("p", {}, `${count(a.n)} items in the window ending ${time(a.windows.lastEndMs)}`);
    if (a.top) {
      const rows = a.top.map((e) => h("tr", { class: "top-item" }, h("td", {}, e.item), h("td", { class: "num" }, fixed(e.estimate)),
        h("td", { class: "num" }, fixed(e.lower)), h("td", { class: "num" }, fixed(e.upper))));
      replace(this.answer, header, table(["Item", "Estimate", "Lower", "Upper"], rows, "No items"));
    } else if (a.quantiles || a.empty) {
      const box = h("div", { class: "chart" });
      replace(this.answer, header, a.empty ? h("p", { class: "empty" }, "empty") : h("p", {},
        `min ${fixed(a.min ?? 0)} · p50 ${fixed(a.quantiles![4].value)} · p99 ${fixed(a.quantiles![8].value)} · max ${fixed(a.max ?? 0)}`), box);
      this.chart?.destroy();
      this.chart = null;
      if (a.quantiles) {
        this.chart = new QuantileChart(box);
        this.chart.update(a.quantiles.map((q) => q.rank), a.quantiles.map((q) => q.value));
      }
    } else if (a.distinct !== undefined) {
      replace(this.answer, header, h("p", { class: "distinct" }, `≈ ${fixed(a.distinct)} distinct`));
    } else if (a.sample) {
      const rows = a.sample.map((s) => h("tr", {}, h("td", {}, s.item), h("td", { class: "num" }, fixed(s.weight))));
      replace(this.answer, header, table(["Item", "Weight"], rows, "Empty sample"));
    }
  }

  onSample(processed: number | undefined): void {
    // Asked again when its function processed more, or every 10 s (windows close on a timer).
    const now = Date.now();
    const changed = processed !== undefined && processed !== this.processed;
    if ((changed && now - this.queriedAt > 2000) || now - this.queriedAt > 10_000) {
      if (processed !== undefined) this.processed = processed;
      void this.refresh();
    }
  }

  destroy(): void {
    this.chart?.destroy();
  }
}

export function sketches(root: HTMLElement): () => void {
  const list = h("div", {}, h("p", { class: "empty" }, "Loading sketches…"));
  root.append(h("h2", {}, "Sketches"), list);
  const cards: SketchCard[] = [];

  const load = async () => {
    try {
      const kinds = await getJSON<Kinds>("/admin/v3/sketches/kinds");
      const found = await inEachNamespace(async (ns, path) =>
        (await getJSON<SketchInfo[]>(`/admin/v3/sketches/${path}`)).map((info) => ({ ns, info })));
      for (const { ns, info } of found) {
        if (cards.length < MAX_SHOWN) cards.push(new SketchCard(`${ns}/${info.name}`, info, kinds[info.kind]?.queries ?? []));
      }
    } catch (err) {
      const text = err instanceof ApiError && err.status === 404 ? "The functions worker is not running." : String(err);
      replace(list, h("p", { class: "error" }, text));
      return;
    }
    replace(list, ...(cards.length ? cards.map((c) => c.el) : [h("p", { class: "empty" }, "No sketches.")]));
    for (const c of cards) void c.refresh();
  };

  const onSample = (sample: Sample) => {
    const processed = new Map((sample.functions ?? []).map((r) => [r.fqfn, r.processed]));
    for (const c of cards) c.onSample(processed.get(c.fqfn));
  };

  void load();
  const unsubscribe = live.subscribe(onSample);
  return () => {
    unsubscribe();
    for (const c of cards) c.destroy();
  };
}
