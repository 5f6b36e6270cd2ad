// Bundle the dashboard (our TypeScript and uPlot) into ../src/taureau/dashboard/static/app.{js,css}.
// The output is never committed: it contains third-party code fetched by npm.
import { copyFileSync } from "node:fs";
import { build } from "esbuild";

await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  sourcemap: false,
  target: ["es2020"],
  format: "iife",
  legalComments: "linked",
  outfile: "../src/taureau/dashboard/static/app.js",
  logLevel: "warning",
});
// uPlot keeps no licence comment in its bundle: its licence file travels beside ours.
copyFileSync("node_modules/uplot/LICENSE", "../src/taureau/dashboard/static/uPlot.LICENSE.txt");
