"""`paddle-kuscia run | render`: the operator's command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from .builders.knative import Owner, build_knative_service, named_template
from .builders.kuscia import (
    bfia_create_request,
    build_appimage,
    deployment_create_request,
    job_create_request,
    paddleservice_create_request,
    unsupported_on_kuscia,
)
from .models.kuscia import KusciaDeployment, KusciaJob
from .models.observed import ConditionState, KnativeObservation, RevisionState
from .models.paddleservice import Backend, PaddleService
from .runtime.context import Config


def config_from(args: argparse.Namespace) -> Config:
    """The operator's settings from parsed `run` arguments (whose defaults come from `Config`)."""
    return Config(
        namespaces=() if args.all_namespaces else tuple(args.namespace or ()),
        workers=args.workers,
        kuscia_url=args.kuscia_url,
        kuscia_credentials_dir=args.kuscia_credentials_dir,
        bfia_url=args.bfia_url,
        mirror_all=args.mirror_kuscia_resources,
        kuscia_poll_interval=args.kuscia_poll_interval,
        kuscia_timeout=args.kuscia_timeout,
        backoff_base=args.backoff_base,
        backoff_max=args.backoff_max,
        leader_elect=args.leader_elect,
        leader_election_namespace=args.leader_election_namespace,
        leader_election_name=args.leader_election_name,
        liveness=args.liveness,
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
        log_format=args.log_format,
        verbose=args.verbose,
    )


def _import_kopf() -> Any:
    """kopf, without the `kubernetes` package: kopf imports it, when installed, only to recognise its model
    classes in helpers we never give them to, and it costs each operator process about 11 MiB. The operator
    reads its credentials itself (`adapters.kubeconfig`); `paddle-kuscia describe` still uses the package."""
    if "kopf" in sys.modules or "kubernetes" in sys.modules:
        import kopf

        return kopf
    sys.modules["kubernetes"] = None  # type: ignore[assignment]  # "import kubernetes" now fails fast
    try:
        import kopf
    finally:
        del sys.modules["kubernetes"]
    return kopf


def _run(args: argparse.Namespace) -> int:
    kopf = _import_kopf()

    from .handlers import Operator

    config = config_from(args)
    kopf.configure(
        verbose=config.verbose,
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    operator = Operator(config)
    registry = kopf.OperatorRegistry()
    operator.register(registry)
    if config.metrics_port:
        from .runtime import metrics

        def sources() -> list[tuple[str, list[dict[str, Any]]]]:
            ctx = operator.started
            if ctx is None:
                return []
            return [
                ("PaddleService", [o for _, o in ctx.paddleservices.items()]),
                ("KusciaDeployment", [o for _, o in ctx.kuscia_deployments.items()]),
                ("KusciaJob", [o for _, o in ctx.kuscia_jobs.items()]),
            ]

        metrics.serve(config.metrics_port, sources, addr=config.metrics_address)
    # Always standalone: kopf's peering is never used (it would pause this operator whenever another kopf
    # operator of higher priority shares its peering); several instances coordinate with --leader-elect.
    # kopf serves no resource (the informers watch the namespaces in `config`), so it is run cluster-wide:
    # that way it does not watch namespaces for nothing.
    kopf.run(
        registry=registry,
        clusterwide=True,
        standalone=True,
        liveness_endpoint=config.liveness,
    )
    return 0


def _ready_observation(revisions: list[str]) -> KnativeObservation:
    """What Knative reports once every revision is ready: render shows the final split, not step one."""
    return KnativeObservation(
        revisions={name: RevisionState(name, ConditionState("True", "", "")) for name in revisions}
    )


def render_documents(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the operator would send for each object: Knative Services and Kuscia requests."""
    out: list[dict[str, Any]] = []
    for doc in docs:
        kind = doc.get("kind")
        meta = doc.get("metadata") or {}
        name = meta.get("name", "")
        namespace = meta.get("namespace", "default")
        if kind == "PaddleService":
            ps = PaddleService.model_validate(doc)
            if ps.spec.effective_backend == Backend.KUSCIA:
                problems = unsupported_on_kuscia(ps.spec)
                if problems:
                    raise ValueError(
                        f"PaddleService {name}: not supported on the Kuscia backend: {'; '.join(problems)}"
                    )
                image = None
                if any(p.app_image is None for p in ps.spec.kuscia.parties):  # type: ignore[union-attr]
                    appimage = build_appimage(name, ps.spec)
                    image = appimage["name"]
                    out.append({"kuscia": "/api/v1/appimage/create", "body": appimage})
                out.append(
                    {
                        "kuscia": "/api/v1/serving/create",
                        "body": paddleservice_create_request(name, ps.spec, image),
                    }
                )
                continue
            owner = Owner(
                name,
                namespace,
                meta.get("uid", "00000000-0000-0000-0000-000000000000"),
                meta.get("labels") or {},
            )
            names = [named_template(owner, ps.spec, ps.spec.default)[0]]
            if ps.spec.canary is not None:
                names.append(named_template(owner, ps.spec, ps.spec.canary)[0])
            ksvc, _ = build_knative_service(owner, ps.spec, _ready_observation(names))
            out.append(ksvc)
        elif kind == "KusciaDeployment":
            kd = KusciaDeployment.model_validate(doc)
            out.append({"kuscia": "/api/v1/serving/create", "body": deployment_create_request(name, kd.spec)})
        elif kind == "KusciaJob":
            kj = KusciaJob.model_validate(doc)
            if (meta.get("annotations") or {}).get("paddle-kuscia.io/protocol") == "bfia":
                out.append(
                    {"bfia": "/v1/interconn/schedule/job/create", "body": bfia_create_request(name, kj.spec)}
                )
            else:
                out.append({"kuscia": "/api/v1/job/create", "body": job_create_request(name, kj.spec)})
    return out


def _render(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.filename == "-" else Path(args.filename).read_text()
    docs = [d for d in yaml.safe_load_all(text) if d]
    try:
        rendered = render_documents(docs)
    except (ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(rendered if len(rendered) != 1 else rendered[0], indent=2))
    else:
        print(yaml.safe_dump_all(rendered, sort_keys=False), end="")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="paddle-kuscia", description="PaddleService on Knative or Kuscia; Kuscia mirrors."
    )
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    default = Config.from_environment(os.environ)
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", help="watch this namespace (repeatable; globs allowed)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument("-v", "--verbose", action="store_true", default=default.verbose)
    run.add_argument("--log-format", choices=["plain", "json"], default=default.log_format)
    run.add_argument(
        "--standalone",
        action="store_true",
        help="accepted for compatibility: the operator never uses kopf peering (HA: --leader-elect)",
    )
    run.add_argument(
        "--leader-elect",
        action="store_true",
        default=default.leader_elect,
        help="HA: several instances, only the holder of a Lease reconciles",
    )
    run.add_argument("--leader-election-namespace", default=default.leader_election_namespace)
    run.add_argument(
        "--leader-election-name",
        default=default.leader_election_name,
        help="the Lease's name: one per shard when instances split the namespaces between them",
    )
    run.add_argument(
        "--liveness",
        default=default.liveness,
        help="kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz",
    )
    run.add_argument("--metrics-port", type=int, default=default.metrics_port)
    run.add_argument("--metrics-address", default=default.metrics_address)
    run.add_argument("--workers", type=int, default=default.workers, help="concurrent reconciles per kind")
    run.add_argument("--kuscia-url", default=default.kuscia_url)
    run.add_argument("--kuscia-credentials-dir", default=default.kuscia_credentials_dir)
    run.add_argument("--bfia-url", default=default.bfia_url)
    run.add_argument(
        "--mirror-kuscia-resources",
        action="store_true",
        default=default.mirror_all,
        help="mirror every KusciaJob/KusciaDeployment, not only annotated ones",
    )
    run.add_argument("--kuscia-poll-interval", type=float, default=default.kuscia_poll_interval)
    run.add_argument(
        "--kuscia-timeout",
        type=float,
        default=default.kuscia_timeout,
        help="seconds one Kuscia API attempt may take (KUSCIA_API_TIMEOUT)",
    )
    run.add_argument(
        "--backoff-base",
        type=float,
        default=default.backoff_base,
        help="first retry delay after a failed reconcile",
    )
    run.add_argument("--backoff-max", type=float, default=default.backoff_max)
    run.set_defaults(func=_run)

    render = sub.add_parser("render", help="print what the operator would apply, without a cluster")
    render.add_argument(
        "-f", "--filename", required=True, help="YAML file with PaddleService/Kuscia objects, or -"
    )
    render.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    render.set_defaults(func=_render)

    from .describe.command import add_parser as add_describe_parser

    add_describe_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "run" and not args.namespace and not args.all_namespaces:
        args.all_namespaces = True
    for noisy in ("httpx", "httpcore", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
