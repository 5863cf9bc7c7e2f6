"""`paddle-kuscia describe KIND NAME [-n NS] [-o text|json]`: the command line around tree, render and read."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from . import render, tree

KINDS = {
    **dict.fromkeys(("ps", "paddleservice", "paddleservices"), "PaddleService"),
    **dict.fromkeys(("kd", "kusciadeployment", "kusciadeployments"), "KusciaDeployment"),
    **dict.fromkeys(("kj", "kusciajob", "kusciajobs"), "KusciaJob"),
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "describe",
        help="explain a PaddleService, KusciaJob or KusciaDeployment: conditions, the tree below it, what is wrong",
    )
    p.add_argument(
        "kind", type=str.lower, choices=sorted(KINDS), metavar="KIND", help="ps, kd or kj (or full names)"
    )
    p.add_argument("name")
    p.add_argument("-n", "--namespace", default=None, help="default: the kubeconfig context's namespace")
    p.add_argument("--context", default=None, help="kubeconfig context to use")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(func=run)


def build(kind: str, objects: dict[str, Any]) -> tree.Description:
    """The description of what `read` returned for `kind`."""
    if kind == "PaddleService":
        return tree.describe_paddleservice(
            objects["ps"],
            knative_service=objects.get("knative_service"),
            revisions=objects.get("revisions"),
            route=objects.get("route"),
        )
    if kind == "KusciaJob":
        return tree.describe_kuscia_job(objects["obj"])
    return tree.describe_kuscia_deployment(objects["obj"])


def run(args: argparse.Namespace) -> int:
    from . import read

    kind = KINDS[args.kind]
    try:
        cluster = read.connect(args.context)
        namespace = args.namespace or cluster.namespace
        if kind == "PaddleService":
            objects = read.read_paddleservice(cluster, namespace, args.name)
        else:
            objects = {"obj": read.read_kuscia(cluster, kind, namespace, args.name)}
    except read.ReadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    description = build(kind, objects)
    if args.output == "json":
        print(render.to_json(description))
    else:
        colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        sys.stdout.write(render.to_text(description, colour=colour))
    return 0
