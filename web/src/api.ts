// The admin REST API, the dashboard's only source besides the live stream.
export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

async function checked(response: Response): Promise<Response> {
  if (response.ok) return response;
  let reason = response.statusText;
  try {
    const body = await response.json();
    if (body && typeof body.reason === "string") reason = body.reason;
  } catch {
    // not JSON: keep the status text
  }
  throw new ApiError(response.status, `${response.status}: ${reason}`);
}

export async function getJSON<T>(path: string): Promise<T> {
  return (await checked(await fetch(path, { headers: { Accept: "application/json" } }))).json() as Promise<T>;
}

export async function post(path: string): Promise<void> {
  await checked(await fetch(path, { method: "POST" }));
}

// "tenant/namespace/topic" of a persistent topic name, each part URL-encoded.
export function topicPath(name: string): string {
  return name.replace(/^persistent:\/\//, "").split("/").map(encodeURIComponent).join("/");
}

export interface Peeked {
  id: string;
  publishTime: number;
  key: string | null;
  properties: string | null;
  batchSize: number;
  payload: Uint8Array;
}

// The n-th stored entry from the earliest (1 = the first), or null when there is none:
// counted from the start so that messages published meanwhile do not shift a listing.
export async function examine(name: string, n: number): Promise<Peeked | null> {
  const url = `/admin/v2/persistent/${topicPath(name)}/examinemessage?initialPosition=earliest&messagePosition=${n}`;
  const response = await fetch(url);
  if (response.status === 404) return null;
  await checked(response);
  const header = (k: string) => response.headers.get(k);
  return {
    id: header("X-Pulsar-Message-ID") ?? "?",
    publishTime: Number(header("X-Pulsar-publish-time") ?? 0),
    key: header("X-Pulsar-partition-key"),
    properties: header("X-Pulsar-PROPERTY"),
    batchSize: Number(header("X-Pulsar-num-batch-message") ?? 1),
    payload: new Uint8Array(await response.arrayBuffer()),
  };
}

export interface Tree {
  tenant: string;
  namespaces: { name: string; topics: string[] }[];
}

// Tenants, their namespaces and stored topics: read once per page, not on every sample.
export async function namespaceTree(withTopics: boolean): Promise<Tree[]> {
  const tenants = await getJSON<string[]>("/admin/v2/tenants");
  return Promise.all(
    tenants.map(async (tenant) => {
      const names = await getJSON<string[]>(`/admin/v2/namespaces/${encodeURIComponent(tenant)}`);
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
