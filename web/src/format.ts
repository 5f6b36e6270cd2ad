const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function bytes(n: number): string {
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i === 0 ? n.toFixed(0) : n.toFixed(1)} ${UNITS[i]}`;
}

export function rate(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M/s`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k/s`;
  return `${n.toFixed(n > 0 && n < 10 ? 1 : 0)}/s`;
}

export function count(n: number): string {
  return n.toLocaleString("en-US");
}

export function time(ms: number): string {
  return ms > 0 ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "never";
}

// A payload as text when it is UTF-8, else as hex: for messages the schema did not decode.
export function payload(data: Uint8Array, limit = 2048): string {
  const shown = data.subarray(0, limit);
  const more = data.length > limit ? ` … (${count(data.length)} bytes)` : "";
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(shown) + more;
  } catch {
    return "hex: " + Array.from(shown.subarray(0, 256), (b) => b.toString(16).padStart(2, "0")).join(" ") + more;
  }
}

// A value decoded by the topic's schema, as compact JSON, cut at `limit` characters.
export function decoded(value: unknown, limit = 2048): string {
  const text = JSON.stringify(value);
  return text.length > limit ? `${text.slice(0, limit)} … (${count(text.length)} characters)` : text;
}
