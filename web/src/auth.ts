// Who the page talks as. With authentication on, the token the user typed is kept in
// sessionStorage (gone when the tab closes) and sent as `Authorization: Bearer` on every REST
// call and on the live stream (read with fetch, so the token never goes into a URL).
import { h } from "./dom";

const KEY = "taureau.token";

export interface Identity {
  role: string | null;
  authentication: boolean;
  superuser: boolean;
  tenants: string[]; // administered (a superuser: every tenant)
  namespaces: string[]; // outside those tenants, where the role holds a grant
}

export let identity: Identity = { role: null, authentication: false, superuser: true, tenants: [], namespaces: [] };

export function setIdentity(who: Identity): void {
  identity = who;
}

export function headers(extra: Record<string, string> = {}): Record<string, string> {
  const token = sessionStorage.getItem(KEY);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

export function forget(): void {
  sessionStorage.removeItem(KEY);
}

let onExpired: (reason: string) => void = () => {};

// Called by every request answered 401: the token is wrong or expired; ask again.
export function whenRefused(handler: (reason: string) => void): void {
  onExpired = handler;
}

export function refused(reason: string): void {
  forget();
  onExpired(reason);
}

// The login form; resolves once a token was typed (and stored). `reason`: why it is asked.
export function askForToken(root: HTMLElement, reason: string): Promise<void> {
  return new Promise((resolve) => {
    const input = h("input", { type: "password", name: "token", autocomplete: "off", required: true, "data-testid": "token", size: 60 });
    const form = h(
      "form",
      { class: "login", "data-testid": "login" },
      h("h2", {}, "Sign in"),
      h("p", {}, "This server requires authentication. Paste a token (", h("code", {}, "taureau tokens create"), ")."),
      reason.trim() ? h("p", { class: "error", "data-testid": "login-reason" }, reason) : null,
      h("label", {}, "Token ", input),
      h("div", {}, h("button", { type: "submit", "data-testid": "sign-in" }, "Sign in")),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, input.value.trim());
      form.remove();
      resolve();
    });
    root.replaceChildren(form);
    input.focus();
  });
}
