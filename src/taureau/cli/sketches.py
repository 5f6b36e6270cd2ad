"""`taureau sketches create|query|list|delete|get|kinds`: sketch functions over the admin API.

Names and the spec are checked before any request; every error is one line, exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from taureau.sketches import registry
from taureau.sketches.client import SketchesClient
from taureau.sketches.errors import SketchError
from taureau.sketches.spec import check_names


def _params(a: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if a.params:
        try:
            params = json.loads(a.params)
        except ValueError:
            raise SketchError(f"--params is a JSON object, not {a.params!r}") from None
        if not isinstance(params, dict):
            raise SketchError("--params is a JSON object")
    for flag in ("relative_error", "confidence", "lg_k", "lg_max_k", "k", "expected_items", "false_positive_rate"):
        value = getattr(a, flag)
        if value is not None:
            params[flag] = value
    return params


def _names(a: argparse.Namespace) -> None:
    check_names(a.tenant, a.namespace, a.name)


def _create(c: SketchesClient, a: argparse.Namespace) -> str:
    fields = {"params": _params(a), "key_field": a.key_field, "value_field": a.value_field,
              "weight_field": a.weight_field, "window_ms": a.window_duration_ms, "parallelism": a.parallelism,
              "output": a.output, "retained": a.retained}
    fields = {k: v for k, v in fields.items() if v is not None}
    inputs = [t for t in (a.inputs or "").split(",") if t]
    spec = c.create(a.name, a.kind, inputs, tenant=a.tenant, namespace=a.namespace, **fields)
    return f"Created sketch {spec.fqfn} ({spec.kind}); merged windows go to {spec.output_topic}"


def _query(c: SketchesClient, a: argparse.Namespace) -> str:
    _names(a)
    quantiles = ranks = None
    try:
        if a.quantiles:
            quantiles = [float(q) for q in a.quantiles.split(",")]
        if a.ranks:
            ranks = [float(r) for r in a.ranks.split(",")]
    except ValueError:
        raise SketchError("--quantiles and --ranks take comma-separated numbers") from None
    answer = c.query(a.name, tenant=a.tenant, namespace=a.namespace, key=a.key, top=a.top, quantiles=quantiles,
                     ranks=ranks, distinct=a.distinct, contains=a.contains, sample=a.sample,
                     windows=a.windows, window=a.window)
    return json.dumps(answer, indent=2)


def _list(c: SketchesClient, a: argparse.Namespace) -> str:
    rows = c.list(a.tenant, a.namespace)
    return "\n".join(f"{r['name']}\t{r['kind']}\t{','.join(r['inputs'])}" for r in rows)


def _delete(c: SketchesClient, a: argparse.Namespace) -> str:
    _names(a)
    c.delete(a.name, a.tenant, a.namespace)
    return f"Deleted sketch {a.tenant}/{a.namespace}/{a.name}"


def _get(c: SketchesClient, a: argparse.Namespace) -> str:
    _names(a)
    return json.dumps(c.get(a.name, a.tenant, a.namespace), indent=2)


def _kinds(_c: SketchesClient, _a: argparse.Namespace) -> str:
    return "\n".join(f"{name}\t{registry.kind(name).input}\tqueries: {', '.join(sorted(registry.kind(name).queries))}"
                     f"\tparams: {json.dumps(dict(registry.kind(name).defaults))}" for name in registry.kinds())


def _run(handler):
    def run(a: argparse.Namespace) -> int:
        client = SketchesClient(a.admin_url)
        try:
            text = handler(client, a)
        except SketchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            client.close()
        if text:
            print(text)
        return 0

    return run


def _name_flags(p: argparse.ArgumentParser, positional: bool) -> None:
    if positional:
        p.add_argument("name", help="the sketch's name")
    else:
        p.add_argument("--name", required=True, help="the sketch's name")
    p.add_argument("--tenant", default="public")
    p.add_argument("--namespace", default="default")


def register(sub) -> None:
    p = sub.add_parser("sketches", help="streaming sketches as functions: create, query, list, delete")
    p.add_argument("--admin-url", default=os.environ.get("TAUREAU_ADMIN_URL", "http://localhost:8080"),
                   help="admin REST URL (env TAUREAU_ADMIN_URL, default http://localhost:8080)")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    v = verbs.add_parser("create", help="deploy a sketch function on input topics")
    _name_flags(v, positional=False)
    v.add_argument("--kind", required=True, choices=registry.kinds())
    v.add_argument("-i", "--inputs", required=True, help="comma-separated input topics")
    v.add_argument("--key-field", help="JSON field holding the item (default: the whole message)")
    v.add_argument("--value-field", help="JSON field holding the number (quantile kinds)")
    v.add_argument("--weight-field", help="JSON field holding a weight (count-min, frequent-items, var-opt)")
    v.add_argument("--window-duration-ms", type=int, help="window length (default 60000)")
    v.add_argument("--parallelism", type=int, help="instances (default 1)")
    v.add_argument("-o", "--output", help="topic of merged windows (default <name>-sketches)")
    v.add_argument("--retained", type=int, help="windows kept queryable (default 30)")
    v.add_argument("--params", help="the kind's parameters as JSON, e.g. '{\"lg_k\": 12}'")
    v.add_argument("--relative-error", type=float, help="count-min")
    v.add_argument("--confidence", type=float, help="count-min")
    v.add_argument("--lg-k", type=int, help="hll, cpc, theta")
    v.add_argument("--lg-max-k", type=int, help="frequent-items")
    v.add_argument("--k", type=int, help="kll, req, t-digest, reservoir, var-opt")
    v.add_argument("--expected-items", type=int, help="bloom")
    v.add_argument("--false-positive-rate", type=float, help="bloom")
    v.set_defaults(func=_run(_create))

    v = verbs.add_parser("query", help="ask a sketch: --key, --top, --quantiles, --distinct, --contains, --sample")
    _name_flags(v, positional=True)
    v.add_argument("--key", help="count-min, frequent-items: estimate of one item")
    v.add_argument("--top", type=int, help="frequent-items: the N heaviest items")
    v.add_argument("--quantiles", help="kll, req, t-digest: ranks, e.g. 0.5,0.99")
    v.add_argument("--ranks", help="kll, req, t-digest: values whose rank to give")
    v.add_argument("--distinct", action="store_true", help="hll, cpc, theta: distinct count")
    v.add_argument("--contains", help="bloom: whether an item may have been seen")
    v.add_argument("--sample", type=int, help="reservoir, var-opt: up to N sampled items")
    v.add_argument("--windows", type=int, help="merge the newest N windows (default 1)")
    v.add_argument("--window", type=int, help="the window ending at this time (ms)")
    v.set_defaults(func=_run(_query))

    v = verbs.add_parser("list", help="the sketches of a namespace")
    v.add_argument("--tenant", default="public")
    v.add_argument("--namespace", default="default")
    v.set_defaults(func=_run(_list))

    v = verbs.add_parser("get", help="a sketch's spec, windows and instances")
    _name_flags(v, positional=True)
    v.set_defaults(func=_run(_get))

    v = verbs.add_parser("delete", help="stop a sketch function and forget its windows")
    _name_flags(v, positional=True)
    v.set_defaults(func=_run(_delete))

    v = verbs.add_parser("kinds", help="the sketch kinds, their input, queries and parameters")
    v.set_defaults(func=_run(_kinds))
