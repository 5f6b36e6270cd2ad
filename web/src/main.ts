// The dashboard's shell: who the page talks as (asking for a token when the server requires
// one), navigation, the live-stream indicator and a hash router.
import "uplot/dist/uPlot.min.css";
import { reasonOf, request } from "./api";
import { askForToken, forget, headers, identity, setIdentity, whenRefused, type Identity } from "./auth";
import { h, replace } from "./dom";
import { live } from "./live";
import { cluster } from "./pages/cluster";
import { functions } from "./pages/functions";
import { overview } from "./pages/overview";
import { sketches } from "./pages/sketches";
import { state } from "./pages/state";
import { topic } from "./pages/topic";

const indicator = h("span", { class: "live off", "data-testid": "live" }, "connecting");
const who = h("span", { class: "who", "data-testid": "role" });
const main = h("main", {});
document.body.append(
  h("header", {},
    h("h1", {}, "Taureau"),
    h("nav", {}, h("a", { href: "#/" }, "Overview"), h("a", { href: "#/functions" }, "Functions"), h("a", { href: "#/sketches" }, "Sketches"), h("a", { href: "#/state" }, "State"), h("a", { href: "#/cluster" }, "Cluster")),
    indicator, who),
  main,
);

let cleanup: () => void = () => {};
let signedIn = false;

function route(): void {
  if (!signedIn) return;
  cleanup();
  replace(main);
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  if (hash.startsWith("topic/")) cleanup = topic(main, hash.slice("topic/".length));
  else if (hash === "functions") cleanup = functions(main);
  else if (hash === "sketches") cleanup = sketches(main);
  else if (hash === "state") cleanup = state(main);
  else if (hash === "cluster") cleanup = cluster(main);
  else cleanup = overview(main);
}

// Who the server says we are; asks for a token for as long as it answers 401.
async function signIn(reason: string): Promise<void> {
  for (;;) {
    if (reason) await askForToken(main, reason);
    const hadToken = "Authorization" in headers();
    const response = await request("/admin/taureau/whoami");
    if (response.status === 401) {
      const why = await reasonOf(response);
      forget();
      reason = hadToken ? `The server refused the token: ${why}` : " ";
      continue;
    }
    if (!response.ok) {
      replace(main, h("p", { class: "error" }, `Cannot reach the server: ${response.status} ${await reasonOf(response)}`));
      return;
    }
    setIdentity((await response.json()) as Identity);
    break;
  }
  replace(who);
  if (identity.authentication) {
    const signOut = () => {
      forget();
      stop();
      void signIn(" ");
    };
    who.append(`${identity.role}${identity.superuser ? " (superuser)" : ""} `,
      h("button", { onclick: signOut, "data-testid": "sign-out" }, "Sign out"));
  }
  signedIn = true;
  live.start((connected) => {
    indicator.textContent = connected ? "live" : "reconnecting";
    indicator.className = connected ? "live on" : "live off";
  });
  route();
}

function stop(): void {
  signedIn = false;
  live.stop();
  cleanup();
  cleanup = () => {};
  replace(who);
}

// A 401 from any call (an expired or revoked token): stop everything and ask again, once.
whenRefused((reason) => {
  if (!signedIn) return;
  stop();
  void signIn(`The server refused the token: ${reason}`);
});
window.addEventListener("hashchange", route);
void signIn("");
