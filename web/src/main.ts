// The dashboard's shell: navigation, the live-stream indicator and a hash router.
import "uplot/dist/uPlot.min.css";
import { h, replace } from "./dom";
import { live } from "./live";
import { functions } from "./pages/functions";
import { overview } from "./pages/overview";
import { sketches } from "./pages/sketches";
import { state } from "./pages/state";
import { topic } from "./pages/topic";

const indicator = h("span", { class: "live off", "data-testid": "live" }, "connecting");
const main = h("main", {});
document.body.append(
  h("header", {},
    h("h1", {}, "Taureau"),
    h("nav", {}, h("a", { href: "#/" }, "Overview"), h("a", { href: "#/functions" }, "Functions"), h("a", { href: "#/sketches" }, "Sketches"), h("a", { href: "#/state" }, "State")),
    indicator),
  main,
);

let cleanup: () => void = () => {};

function route(): void {
  cleanup();
  replace(main);
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  if (hash.startsWith("topic/")) cleanup = topic(main, hash.slice("topic/".length));
  else if (hash === "functions") cleanup = functions(main);
  else if (hash === "sketches") cleanup = sketches(main);
  else if (hash === "state") cleanup = state(main);
  else cleanup = overview(main);
}

live.start((connected) => {
  indicator.textContent = connected ? "live" : "reconnecting";
  indicator.className = connected ? "live on" : "live off";
});
window.addEventListener("hashchange", route);
route();
