// A 15-minute rate chart of two series (uPlot), redrawn on each sample.
import uPlot from "uplot";
import type { Series } from "./live";
import { rate } from "./format";

const WINDOW_S = 15 * 60;

export class RateChart {
  private readonly plot: uPlot;
  private readonly onResize = () => this.plot.setSize({ width: this.width(), height: 220 });

  constructor(private readonly parent: HTMLElement, labels: [string, string], format: (v: number) => string = rate) {
    const options: uPlot.Options = {
      width: this.width(),
      height: 220,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(max * 1.1, 1)] } },
      series: [
        {},
        { label: labels[0], stroke: "#2f7ed8", width: 2, value: (_u, v) => (v == null ? "–" : format(v)) },
        { label: labels[1], stroke: "#e4572e", width: 2, value: (_u, v) => (v == null ? "–" : format(v)) },
      ],
      axes: [{}, { values: (_u, ticks) => ticks.map((v) => format(v)), size: 70 }],
    };
    this.plot = new uPlot(options, [[], [], []], parent);
    window.addEventListener("resize", this.onResize);
  }

  private width(): number {
    return Math.max(this.parent.clientWidth - 8, 320);
  }

  update(series: Series | undefined): void {
    const now = Date.now() / 1000;
    const data: uPlot.AlignedData = series ? [series.t, series.a, series.b] : [[], [], []];
    this.plot.setData(data, false);
    this.plot.setScale("x", { min: now - WINDOW_S, max: now });
  }

  // Charts made before their element was attached start narrow: size them once it is.
  resize(): void {
    this.onResize();
  }

  destroy(): void {
    window.removeEventListener("resize", this.onResize);
    this.plot.destroy();
  }
}

// A sketch's quantile function: value (y) at each rank (x) of the newest window.
export class QuantileChart {
  private readonly plot: uPlot;

  constructor(parent: HTMLElement) {
    const options: uPlot.Options = {
      width: Math.max(parent.clientWidth - 8, 320),
      height: 180,
      scales: { x: { time: false, range: [0, 1] } },
      series: [{ label: "rank" }, { label: "value", stroke: "#2f7ed8", width: 2, points: { show: true } }],
      axes: [{ label: "rank" }, { size: 70 }],
    };
    this.plot = new uPlot(options, [[], []], parent);
  }

  update(ranks: number[], values: number[]): void {
    this.plot.setData([ranks, values]);
  }

  destroy(): void {
    this.plot.destroy();
  }
}
