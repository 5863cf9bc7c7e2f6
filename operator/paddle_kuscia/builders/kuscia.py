"""Custom resources -> Kuscia API requests (Kuscia's snake_case wire shapes), pure.

PaddleService (backend kuscia) and KusciaDeployment become serving create/update requests, KusciaJob a job
create request or a BFIA interconnection job. What Kuscia's serving API cannot express is reported by
`unsupported_on_kuscia`, never dropped silently.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..models.kuscia import KusciaDeploymentSpec, KusciaJobSpec
from ..models.paddleservice import DEFAULT_CPU, DEFAULT_MEMORY, PaddleServiceSpec

APPIMAGE_PORT_NAME = "service"
BFIA_ROLES = ("arbiter", "host", "guest")


def kuscia_port_env(port_name: str) -> str:
    """The variable through which Kuscia hands a container the number it allocated for a named port."""
    return f"KUSCIA_PORT_{port_name.upper().replace('-', '_')}_NUMBER"


def serving_id(name: str, spec: PaddleServiceSpec) -> str:
    return (spec.kuscia.serving_id if spec.kuscia and spec.kuscia.serving_id else None) or name


def unsupported_on_kuscia(spec: PaddleServiceSpec) -> list[str]:
    """Fields that only mean something on Knative; each one named, so the user knows what to remove."""
    problems = []
    if spec.canary is not None:
        problems.append("spec.canary (Kuscia servings have no traffic split)")
    if spec.canary_traffic_percent not in (None, 0, 100) or (
        spec.canary is None and spec.canary_traffic_percent
    ):
        problems.append("spec.canaryTrafficPercent (Kuscia servings have no traffic split)")
    if spec.accelerator is not None:
        problems.append("spec.accelerator (Kuscia's serving API requests only cpu and memory)")
    for name in ("nvidia.com/gpu", "baidu.com/xpu", "kunlunxin.com/xpu"):
        if spec.resources and name in {**(spec.resources.limits or {}), **(spec.resources.requests or {})}:
            problems.append(f"spec.resources[{name}] (Kuscia's serving API requests only cpu and memory)")
    svc = spec.service
    if svc is not None:
        if svc.min_scale == 0:
            problems.append("spec.service.minScale: 0 (Kuscia cannot scale a serving to zero)")
        knative_only = [
            "autoscaler",
            "metric",
            "window",
            "panic_window",
            "panic_threshold",
            "max_scale",
            "target",
            "target_utilization",
            "initial_scale",
            "scale_down_delay",
            "scale_to_zero_pod_retention_period",
            "container_concurrency",
            "timeout_seconds",
            "rollout_duration",
        ]
        for field in knative_only:
            if getattr(svc, field) is not None:
                alias = type(svc).model_fields[field].alias or field
                problems.append(f"spec.service.{alias} (Knative autoscaling; Kuscia runs fixed replicas)")
    for field, label in (
        ("node_selector", "nodeSelector"),
        ("tolerations", "tolerations"),
        ("affinity", "affinity"),
        ("runtime_class_name", "runtimeClassName"),
        ("volumes", "volumes"),
        ("volume_mounts", "volumeMounts"),
    ):
        if getattr(spec, field):
            problems.append(f"spec.{label} (not part of Kuscia's serving API)")
    return problems


def appimage_name(owner_name: str, spec: PaddleServiceSpec) -> str:
    """An AppImage per distinct content: `<name>-<hash of what is registered>`, a valid Kuscia id."""
    blob = json.dumps(_appimage_body(spec), sort_keys=True)
    return f"{owner_name[:50]}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def appimage_command(arg: str) -> str:
    """`arg` as run under `/bin/bash -c`, with `PORT` set to the port Kuscia allocated for `service`.

    Kuscia picks the port number itself and passes it in KUSCIA_PORT_SERVICE_NUMBER; ElasticServing's
    `arg` is a shell line, so exporting PORT first lets it listen where Kuscia sends traffic.
    """
    return f'export PORT="${{{kuscia_port_env(APPIMAGE_PORT_NAME)}}}"; {arg}'


def _appimage_body(spec: PaddleServiceSpec) -> dict[str, Any]:
    endpoint = spec.default
    # A port has a name, protocol and scope; its number is Kuscia's to allocate (spec.default.port is
    # for the Knative backend only).
    container: dict[str, Any] = {
        "name": "paddleserving",
        "ports": [{"name": APPIMAGE_PORT_NAME, "protocol": "HTTP", "scope": "Domain"}],
    }
    if endpoint.arg:
        container["command"] = ["/bin/bash", "-c"]
        container["args"] = [appimage_command(endpoint.arg)]
    if spec.working_dir:
        container["working_dir"] = spec.working_dir
    return {
        "image": {"name": endpoint.container_image, "tag": endpoint.tag, "id": "", "sign": ""},
        "config_templates": {},
        "deploy_templates": [
            {
                "name": "paddleserving",
                "role": "",
                "replicas": 1,
                "restart_policy": "Always",
                "containers": [container],
            }
        ],
    }


def build_appimage(owner_name: str, spec: PaddleServiceSpec) -> dict[str, Any]:
    """The AppImage that runs spec.default on Kuscia, `arg` listening on the port Kuscia allocates."""
    return {"name": appimage_name(owner_name, spec), **_appimage_body(spec)}


def _serving_resources(spec: PaddleServiceSpec) -> list[dict[str, str]]:
    res = spec.resources
    requests = {k: str(v) for k, v in ((res and res.requests) or {}).items()}
    limits = {k: str(v) for k, v in ((res and res.limits) or {}).items()}
    if not requests and not limits:
        return []
    return [
        {
            "container_name": "",
            "min_cpu": requests.get("cpu", limits.get("cpu", DEFAULT_CPU)),
            "max_cpu": limits.get("cpu", requests.get("cpu", DEFAULT_CPU)),
            "min_memory": requests.get("memory", limits.get("memory", DEFAULT_MEMORY)),
            "max_memory": limits.get("memory", requests.get("memory", DEFAULT_MEMORY)),
        }
    ]


def _config_string(config: dict[str, Any] | None) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":")) if config else ""


def paddleservice_parties(spec: PaddleServiceSpec, app_image: str | None) -> list[dict[str, Any]]:
    assert spec.kuscia is not None
    default_replicas = spec.service.min_scale if spec.service and spec.service.min_scale else 1
    resources = _serving_resources(spec)
    parties = []
    for party in spec.kuscia.parties:
        entry: dict[str, Any] = {
            "domain_id": party.domain_id,
            "role": party.role or "",
            "app_image": party.app_image or app_image or "",
            "replicas": party.replicas if party.replicas is not None else default_replicas,
        }
        if party.update_strategy is not None:
            entry["update_strategy"] = {
                "type": party.update_strategy.type,
                "max_surge": party.update_strategy.max_surge or "",
                "max_unavailable": party.update_strategy.max_unavailable or "",
            }
        if resources:
            entry["resources"] = resources
        if party.service_name_prefix:
            entry["service_name_prefix"] = party.service_name_prefix
        parties.append(entry)
    return parties


def paddleservice_create_request(name: str, spec: PaddleServiceSpec, app_image: str | None) -> dict[str, Any]:
    assert spec.kuscia is not None
    request: dict[str, Any] = {
        "serving_id": serving_id(name, spec),
        "serving_input_config": _config_string(spec.kuscia.serving_input_config),
        "initiator": spec.kuscia.initiator,
        "parties": paddleservice_parties(spec, app_image),
    }
    if spec.kuscia.affinity_mode:
        request["affinity_mode"] = spec.kuscia.affinity_mode
    return request


def update_request(create: dict[str, Any]) -> dict[str, Any]:
    """Kuscia's update takes the id, the config and the parties (matched by domain_id and role)."""
    return {k: create[k] for k in ("serving_id", "serving_input_config", "parties")}


def deployment_create_request(name: str, spec: KusciaDeploymentSpec) -> dict[str, Any]:
    """A KusciaDeployment as Kuscia's serving API would have created it."""
    parties = []
    for party in spec.parties:
        template = party.template
        entry: dict[str, Any] = {
            "domain_id": party.domain_id,
            "role": party.role or "",
            "app_image": party.app_image_ref,
        }
        if template is not None and template.replicas is not None:
            entry["replicas"] = template.replicas
        strategy = (template.strategy if template else None) or {}
        if strategy.get("type"):
            rolling = strategy.get("rollingUpdate") or {}
            entry["update_strategy"] = {
                "type": strategy["type"],
                "max_surge": str(rolling.get("maxSurge", "")),
                "max_unavailable": str(rolling.get("maxUnavailable", "")),
            }
        resources = []
        for container in ((template.spec if template else None) or {}).get("containers") or []:
            res = container.get("resources") or {}
            req, lim = res.get("requests") or {}, res.get("limits") or {}
            if req or lim:
                resources.append(
                    {
                        "container_name": container.get("name", ""),
                        "min_cpu": str(req.get("cpu", lim.get("cpu", ""))),
                        "max_cpu": str(lim.get("cpu", req.get("cpu", ""))),
                        "min_memory": str(req.get("memory", lim.get("memory", ""))),
                        "max_memory": str(lim.get("memory", req.get("memory", ""))),
                    }
                )
        if resources:
            entry["resources"] = resources
        if party.service_name_prefix:
            entry["service_name_prefix"] = party.service_name_prefix
        parties.append(entry)
    return {
        "serving_id": name,
        "serving_input_config": spec.input_config,
        "initiator": spec.initiator,
        "parties": parties,
    }


class InvalidKusciaJob(ValueError):
    """A KusciaJob that Kuscia would accept and then fail, or could not run: refused before sending."""


def job_task_problems(spec: KusciaJobSpec) -> list[str]:
    """What Kuscia's job controller fails a job for (dependencies on an alias no task has, cyclic
    dependencies), and task aliases or ids used twice. Dependencies name task aliases, as in Kuscia."""
    problems = []
    aliases = [task.alias for task in spec.tasks]
    for alias in sorted({a for a in aliases if aliases.count(a) > 1}):
        problems.append(f"{aliases.count(alias)} tasks have the alias {alias!r}")
    ids = [task.task_id for task in spec.tasks if task.task_id]
    for task_id in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"{ids.count(task_id)} tasks have the taskID {task_id!r}")
    known = set(aliases)
    for task in spec.tasks:
        for dep in task.dependencies or []:
            if dep not in known:
                problems.append(f"task {task.alias!r} depends on {dep!r}, which is no task's alias")
    cycle = _dependency_cycle({t.alias: [d for d in t.dependencies or [] if d in known] for t in spec.tasks})
    if cycle:
        problems.append("tasks depend on each other in a cycle: " + " -> ".join(cycle))
    return problems


def _dependency_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One cycle in `alias -> dependencies`, as the path that closes it (first alias repeated), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def check_job(spec: KusciaJobSpec) -> None:
    problems = job_task_problems(spec)
    if problems:
        raise InvalidKusciaJob("Kuscia would fail this job: " + "; ".join(problems) + ".")


def job_create_request(name: str, spec: KusciaJobSpec) -> dict[str, Any]:
    check_job(spec)
    tasks = []
    for task in spec.tasks:
        parties = []
        for party in task.parties:
            entry: dict[str, Any] = {"domain_id": party.domain_id, "role": party.role or ""}
            res = party.resources
            if res is not None:
                pick = {**(res.requests or {}), **(res.limits or {})}
                resources = {
                    k: str(pick[src])
                    for k, src in (("cpu", "cpu"), ("memory", "memory"), ("bandwidth", "kuscia.io/bandwidth"))
                    if src in pick
                }
                if resources:
                    entry["resources"] = resources
            if party.bandwidth_limits:
                entry["bandwidth_limits"] = [
                    {"destination_id": b.destination_id, "limit_kbps": str(b.limit_k_bps)}
                    for b in party.bandwidth_limits
                ]
            parties.append(entry)
        item: dict[str, Any] = {
            "app_image": task.app_image,
            "parties": parties,
            "alias": task.alias,
            "task_id": task.task_id or "",
            "dependencies": list(task.dependencies or []),
            "task_input_config": task.task_input_config,
            "priority": task.priority or 0,
            "tolerable": bool(task.tolerable),
        }
        sc = task.schedule_config
        if sc is not None:
            item["schedule_config"] = {
                "task_timeout_seconds": sc.lifecycle_seconds or 0,
                "resource_reserved_seconds": sc.resource_reserved_seconds or 0,
                "resource_reallocation_interval_seconds": sc.retry_interval_seconds or 0,
            }
        tasks.append(item)
    return {
        "job_id": name,
        "initiator": spec.initiator,
        "max_parallelism": spec.max_parallelism or 1,
        "tasks": tasks,
    }


class InvalidBfiaTask(InvalidKusciaJob):
    pass


def _bfia_config(task_alias: str, raw: str) -> dict[str, Any]:
    try:
        tic = json.loads(raw)
    except json.JSONDecodeError as err:
        raise InvalidBfiaTask(f"task {task_alias}: taskInputConfig is not JSON: {err.msg}") from err
    if not isinstance(tic, dict):
        raise InvalidBfiaTask(f"task {task_alias}: taskInputConfig must be a JSON object")
    return tic


def _bfia_roles(spec: KusciaJobSpec, configs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """config.role: the role map the tasks' configs carry (their task_params indexes point into it),
    or, when none does, one built from the parties in order of appearance."""
    roles: dict[str, list[str]] = {role: [] for role in BFIA_ROLES}
    given = [tic["role"] for tic in configs if isinstance(tic.get("role"), dict)]
    for task, tic in zip(spec.tasks, configs, strict=True):
        if isinstance(tic.get("role"), dict) and tic["role"] != given[0]:
            raise InvalidBfiaTask(f"task {task.alias}: every task must carry the same BFIA role map")
    if given:
        for role in BFIA_ROLES:
            roles[role] = [str(node) for node in given[0].get(role) or []]
        return roles
    for task in spec.tasks:
        for party in task.parties:
            members = roles.get(party.role or "")
            if members is None:
                raise InvalidBfiaTask(
                    f"task {task.alias}: BFIA party role must be host, guest or arbiter, not {party.role!r}"
                )
            if party.domain_id not in members:
                members.append(party.domain_id)
    return roles


def bfia_create_request(name: str, spec: KusciaJobSpec) -> dict[str, Any]:
    """The BFIA job-create body whose conversion by Kuscia (GenerateKusciaJobFrom) gives back this job.

    Each task's taskInputConfig is the BFIA component config Kuscia itself writes: name, module_name,
    input, output, role, initiator and task_params narrowed to the component ({role: {index: params},
    common: params}); here the narrowing is undone into the job's task_params, keyed by component name.
    Parties listed on a task but absent from its task_params get an empty entry, so Kuscia derives them.
    """
    check_job(spec)
    configs = [_bfia_config(task.alias, task.task_input_config) for task in spec.tasks]
    roles = _bfia_roles(spec, configs)
    components = []
    task_params: dict[str, Any] = {role: {} for role in BFIA_ROLES}
    task_params["common"] = {}
    initiator: dict[str, Any] = {}
    for task, tic in zip(spec.tasks, configs, strict=True):
        component = tic.get("name") or task.alias
        components.append(
            {
                "code": task.app_image,
                "name": component,
                "module_name": tic.get("module_name", ""),
                "version": tic.get("version", "v1.0.0"),
                "input": tic.get("input") or [],
                "output": tic.get("output") or [],
            }
        )
        if not initiator and isinstance(tic.get("initiator"), dict):
            initiator = tic["initiator"]
        narrowed = tic.get("task_params") or {}
        for role in BFIA_ROLES:
            for index, params in (narrowed.get(role) or {}).items():
                if not isinstance(params, dict):
                    raise InvalidBfiaTask(f"task {task.alias}: task_params.{role}.{index} must be an object")
                if not str(index).isdigit() or int(index) >= len(roles[role]):
                    raise InvalidBfiaTask(
                        f"task {task.alias}: task_params.{role}.{index} names no member of role {role}"
                    )
                task_params[role].setdefault(str(index), {})[component] = params
        for party in task.parties:
            role = party.role or ""
            if role not in BFIA_ROLES or party.domain_id not in roles[role]:
                raise InvalidBfiaTask(
                    f"task {task.alias}: party {party.domain_id} with role {role!r} is not in the BFIA role map"
                )
            index = str(roles[role].index(party.domain_id))
            task_params[role].setdefault(index, {}).setdefault(component, {})
        if "common" in narrowed:
            task_params["common"][component] = narrowed["common"]
    if not initiator:
        role = next((r for r in ("guest", "host", "arbiter") if spec.initiator in roles[r]), "")
        initiator = {"role": role, "node_id": spec.initiator}
    job_params: dict[str, dict[str, dict[str, Any]]] = {
        role: {str(i): {} for i in range(len(ids))} for role, ids in roles.items() if ids
    }
    return {
        "job_id": name,
        "flow_id": spec.flow_id or "",
        "dag": {"version": "2.0.0", "components": components},
        "config": {
            "role": {role: ids for role, ids in roles.items() if ids},
            "initiator": {
                "role": initiator.get("role", ""),
                "node_id": initiator.get("node_id") or spec.initiator,
            },
            "job_params": job_params,
            "task_params": {k: v for k, v in task_params.items() if v},
            "version": "2.0.0",
        },
    }
