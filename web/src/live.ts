// The one live stream (server-sent events): the history of totals first, then a sample a
// second. Per-topic and per-function series are kept here from the moment the page opened.
// Read with fetch rather than EventSource, which cannot send the Authorization header: the
// token then never has to travel in the URL, where logs would keep it.
import { reasonOf } from "./api";
import { headers, refused } from "./auth";

const RETRY_MS = 2000; // after a stream ends or fails, as the server's `retry:` says
const MAX_EVENT = 8 << 20; // an event longer than this is a broken stream, not a sample
export interface Totals {
  rateIn: number;
  rateOut: number;
  throughputIn: number;
  throughputOut: number;
  backlog: number;
  storage: number;
}

export interface TopicRow extends Totals {
  name: string;
  producers: number;
  subscriptions: number;
}

export interface FunctionRow {
  fqfn: string;
  instances: number;
  running: number;
  processed: number;
  failed: number;
  processedRate: number;
  failedRate: number;
  backlog: number;
}

export interface MemoryServer {
  address: string;
  state: string;
  block_size: number;
  blocks: number;
  used: number;
  free: number;
  used_bytes: number;
  budget_bytes: number;
}

export interface StateSample {
  servers: MemoryServer[];
  namespaces: { path: string; blocks: number; quota: number | null }[];
  structures: number;
  counters: Record<string, number>;
}

export interface Sample {
  t: number;
  totals: Totals;
  topics: TopicRow[];
  topicCount: number;
  functions?: FunctionRow[];
  state?: StateSample;
}

const POINTS = 900; // 15 minutes at one sample a second
const TRACKED = 200; // series kept per kind; the least recently seen goes first

export class Series {
  readonly t: number[] = [];
  readonly a: number[] = [];
  readonly b: number[] = [];

  push(tMs: number, a: number, b: number): void {
    this.t.push(tMs / 1000);
    this.a.push(a);
    this.b.push(b);
    if (this.t.length > POINTS) {
      this.t.shift();
      this.a.shift();
      this.b.shift();
    }
  }
}

function track(map: Map<string, Series>, key: string): Series {
  let series = map.get(key);
  if (series) map.delete(key); // re-inserted: the map's order is least recently seen first
  else series = new Series();
  map.set(key, series);
  if (map.size > TRACKED) map.delete(map.keys().next().value as string);
  return series;
}

type Listener = (sample: Sample) => void;

class Live {
  latest: Sample | null = null;
  readonly totals = new Series();
  readonly topics = new Map<string, Series>();
  readonly functions = new Map<string, Series>();
  readonly stateEvents = new Series(); // splits and merges since start, one point a sample
  private readonly listeners = new Set<Listener>();
  private statusListener: (connected: boolean) => void = () => {};

  private generation = 0; // a stop or a new start ends the loop of the one before
  private abort: AbortController | null = null;

  start(onStatus: (connected: boolean) => void): void {
    this.statusListener = onStatus;
    void this.run(++this.generation);
  }

  // Signed out: no reconnects until start() again.
  stop(): void {
    this.generation += 1;
    this.abort?.abort();
  }

  private async run(generation: number): Promise<void> {
    const current = () => generation === this.generation;
    while (current()) {
      let wait = RETRY_MS;
      this.abort = new AbortController();
      try {
        const response = await fetch("/admin/taureau/live", { headers: headers({ Accept: "text/event-stream" }), signal: this.abort.signal });
        if (response.status === 401) {
          if (current()) refused(await reasonOf(response));
          return;
        }
        if (response.ok && response.body) {
          this.statusListener(true);
          await this.read(response.body);
        } else if (response.status === 503) {
          wait = Number(response.headers.get("Retry-After") ?? 5) * 1000;
        }
      } catch {
        // the connection failed or was aborted: retry below
      }
      if (!current()) return;
      this.statusListener(false);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  // Server-sent events: blocks of `field: value` lines ended by an empty line.
  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        this.dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
      if (buffer.length > MAX_EVENT) throw new Error("live stream event too long");
    }
  }

  private dispatch(block: string): void {
    let kind = "message";
    let data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) kind = line.slice(7);
      else if (line.startsWith("data: ")) data += line.slice(6);
    }
    if (kind === "history") {
      const points = JSON.parse(data) as ({ t: number } & Totals)[];
      if (this.totals.t.length > 0) return; // a reconnect: keep what we have
      for (const p of points) this.totals.push(p.t, p.rateIn, p.rateOut);
    } else if (kind === "sample") {
      this.onSample(JSON.parse(data) as Sample);
    }
  }

  private onSample(sample: Sample): void {
    this.latest = sample;
    this.totals.push(sample.t, sample.totals.rateIn, sample.totals.rateOut);
    for (const row of sample.topics) track(this.topics, row.name).push(sample.t, row.rateIn, row.rateOut);
    for (const row of sample.functions ?? []) {
      track(this.functions, row.fqfn).push(sample.t, row.processedRate, row.failedRate);
    }
    if (sample.state) this.stateEvents.push(sample.t, sample.state.counters.splits ?? 0, sample.state.counters.merges ?? 0);
    for (const listener of this.listeners) listener(sample);
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    if (this.latest) listener(this.latest);
    return () => this.listeners.delete(listener);
  }
}

export const live = new Live();
