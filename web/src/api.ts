// The admin REST API, the dashboard's only source besides the live stream. Every call
// carries the token (auth.ts); a 401 asks for it again, a 403 becomes a readable error.
import { headers, identity, refused } from "./auth";

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }

  override toString(): string {
    return this.message;
  }
}

export async function reasonOf(response: Response): Promise<string> {
  try {
    const body = await response.json();
    if (body && typeof body.reason === "string") return body.reason;
  } catch {
    // not JSON: keep the status text
  }
  return response.statusText;
}

export async function checked(response: Response): Promise<Response> {
  if (response.ok) return response;
  const reason = await reasonOf(response);
  if (response.status === 401) refused(reason);
  if (response.status === 403) throw new ApiError(403, `Not allowed for role ${identity.role}: ${reason}`);
  throw new ApiError(response.status, `${response.status}: ${reason}`);
}

export function request(path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(path, { ...init, headers: headers((init.headers ?? {}) as Record<string, string>) });
}

export async function getJSON<T>(path: string): Promise<T> {
  return (await checked(await request(path, { headers: { Accept: "application/json" } }))).json() as Promise<T>;
}

export async function post(path: string): Promise<void> {
  await checked(await request(path, { method: "POST" }));
}

// What `list` answers for each namespace, skipping those where the role may not ask (403):
// a role sees the functions or sketches of the namespaces it holds `functions` in.
export async function inEachNamespace<T>(list: (namespace: string, path: string) => Promise<T[]>): Promise<T[]> {
  const out: T[] = [];
  for (const { namespaces } of await namespaceTree(false)) {
    for (const ns of namespaces) {
      try {
        out.push(...(await list(ns.name, ns.name.split("/").map(encodeURIComponent).join("/"))));
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 403)) throw err;
      }
    }
  }
  return out;
}

// "tenant/namespace/topic" of a persistent topic name, each part URL-encoded.
export function topicPath(name: string): string {
  return name.replace(/^persistent:\/\//, "").split("/").map(encodeURIComponent).join("/");
}

export interface Peeked {
  id: string;
  publishTime: number;
  key: string | null;
  properties: Record<string, string>;
  batchSize: number;
  payload: Uint8Array;
  schema: { version: number; type: string } | null; // the version the producer wrote with
  value?: unknown; // the payload decoded by that schema
  decodeError?: string; // a schema is known, but the payload was not decoded: why
}

interface Decoded {
  messageId: string;
  publishTime: number;
  key: string | null;
  properties: Record<string, string>;
  batchSize: number;
  payload: string; // base64
  schema: { version: number; type: string } | null;
  value?: unknown;
  decodeError?: string;
}

// The n-th stored entry from the earliest (1 = the first), or null when there is none:
// counted from the start so that messages published meanwhile do not shift a listing. Read
// through Taureau's examinemessage/decoded, which decodes the payload by its schema.
export async function examine(name: string, n: number): Promise<Peeked | null> {
  const url = `/admin/v2/persistent/${topicPath(name)}/examinemessage/decoded?initialPosition=earliest&messagePosition=${n}`;
  const response = await request(url);
  if (response.status === 404) return null;
  const d = (await (await checked(response)).json()) as Decoded;
  return {
    id: d.messageId,
    publishTime: d.publishTime,
    key: d.key,
    properties: d.properties,
    batchSize: d.batchSize,
    payload: Uint8Array.from(atob(d.payload), (c) => c.charCodeAt(0)),
    schema: d.schema,
    value: d.value,
    decodeError: d.decodeError,
  };
}

export interface Tree {
  tenant: string;
  namespaces: { name: string; topics: string[] }[];
}

// Tenants, their namespaces and stored topics: read once per page, not on every sample. A
// superuser lists every tenant; another role sees the tenants it administers and the
// namespaces where it holds a grant (whoami), since it may not list the others.
export async function namespaceTree(withTopics: boolean): Promise<Tree[]> {
  const tenants = identity.superuser ? await getJSON<string[]>("/admin/v2/tenants") : identity.tenants;
  const granted = new Map<string, string[]>();
  if (!identity.superuser) {
    for (const ns of identity.namespaces) {
      const tenant = ns.split("/")[0];
      granted.set(tenant, [...(granted.get(tenant) ?? []), ns]);
    }
  }
  const all = [...tenants, ...[...granted.keys()].filter((t) => !tenants.includes(t))];
  return Promise.all(
    all.map(async (tenant) => {
      const names = tenants.includes(tenant)
        ? await getJSON<string[]>(`/admin/v2/namespaces/${encodeURIComponent(tenant)}`)
        : (granted.get(tenant) ?? []);
      const namespaces = await Promise.all(
        names.map(async (full) => {
          const topics = withTopics ? await getJSON<string[]>(`/admin/v2/persistent/${full.split("/").map(encodeURIComponent).join("/")}`) : [];
          return { name: full, topics };
        }),
      );
      return { tenant, namespaces };
    }),
  );
}
