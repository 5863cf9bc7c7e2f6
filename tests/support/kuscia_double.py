"""Kuscia API emulator: an in-memory stand-in for kusciaapi (and the BFIA job-create port) for tests.

It is an emulator, not Kuscia: it keeps servings (KusciaDeployments), jobs (KusciaJobs) and AppImages
in dicts, advances their state on a clock instead of running pods, and reproduces the wire behaviour
of Kuscia's KusciaAPI: mTLS with client certificates required, the
``Token`` check on every path, POST-only routing with gin's 404 text, HTTP 200 envelopes with
EmitUnpopulated shapes, Kuscia's validation order, messages and error codes.

On top of that it injects faults (HTTP 5xx, error codes, 401, held or dropped connections, a server
certificate from another CA, going down) and counts calls per route, through a Python API and a
Token-protected control API under ``/_emulator/`` on the same TLS port.

``KusciaDouble`` runs in the caller's event loop; ``KusciaDoubleThread`` runs it in a thread of its
own for synchronous tests.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import datetime as dt
import json
import logging
import math
import random
import re
import ssl
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from support.certs import Pki, ensure_pki, generate_foreign_pki
from support.kuscia_wire import ROUTES, bind, encode, interconn_common_pb2, interconn_job_pb2

logger = logging.getLogger("kuscia_emulator")

CROSS_DOMAIN = "cross-domain"
K3S_REGEX = r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$"
SERVICE_NAME_PREFIX_REGEX = r"^[a-z]([-a-z0-9]{0,46}[a-z0-9])?$"
QUANTITY_REGEX = r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$"
DEFAULT_APPIMAGES = ("secretflow-serving-image", "secretflow-image")

# Error codes (proto/api/v1alpha1/errorcode/error_code.proto).
VALIDATE = 11100
UNEXPECTED = 11101
CREATE_JOB, QUERY_JOB, QUERY_JOB_STATUS, DELETE_JOB, STOP_JOB = 11201, 11202, 11203, 11204, 11205
CREATE_SERVING, QUERY_SERVING, UPDATE_SERVING, DELETE_SERVING = 11600, 11601, 11603, 11604
APPIMAGE_NOT_EXISTS, APPIMAGE_EXISTS = 13105, 13106

CONTROL_PREFIX = "/_emulator/"
FAULT_KINDS = frozenset({"http_500", "http_503", "code", "auth_401", "timeout", "drop"})
SERVING_STATES = frozenset({"Pending", "Progressing", "PartialAvailable", "Available", "Failed"})

_JSON = "application/json"


# --------------------------------------------------------------------------------------------------
# Wire helpers
# --------------------------------------------------------------------------------------------------


class _BadRequest(Exception):
    """The body could not be bound to the request message: Kuscia answers 11101 without details/data."""


def _success() -> dict[str, Any]:
    return {"code": 0, "message": "success", "details": []}


def _ok(data: Any = None, *, has_data: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"status": _success()}
    if has_data:
        body["data"] = data
    return body


def _fail(code: int, message: str, *, has_data: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"status": {"code": code, "message": message, "details": []}}
    if has_data:
        body["data"] = None
    return body


def _k8s_not_found(resource: str, name: str) -> str:
    return f'{resource}.kuscia.secretflow "{name}" not found'


def _k8s_exists(resource: str, name: str) -> str:
    return f'{resource}.kuscia.secretflow "{name}" already exists'


def _invalid_name(value: str, field_name: str, regex: str = K3S_REGEX) -> str:
    return (
        f"Field '{field_name}' is invalid, Invalid value: '{value}': regex used for validation is '{regex}' "
    )


def _rfc3339(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


def _str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _BadRequest(f"invalid value for string field {key}: {json.dumps(value)}")
    return value


def _int(body: Mapping[str, Any], key: str, default: int | None = 0) -> int | None:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        raise _BadRequest(f"invalid value for integer field {key}: {json.dumps(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise _BadRequest(f"invalid value for integer field {key}: {json.dumps(value)}")


def _bool(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _BadRequest(f"invalid value for bool field {key}: {json.dumps(value)}")
    return value


def _list(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _BadRequest(f"invalid value for repeated field {key}: {json.dumps(value)}")
    return value


def _obj(body: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _BadRequest(f"invalid value for message field {key}: {json.dumps(value)}")
    return value


def _str_map(body: Mapping[str, Any], key: str) -> dict[str, str]:
    value = _obj(body, key) or {}
    if not all(isinstance(v, str) for v in value.values()):
        raise _BadRequest(f"invalid value for map field {key}")
    return dict(value)


def _str_list(body: Mapping[str, Any], key: str) -> list[str]:
    items = _list(body, key)
    if not all(isinstance(item, str) for item in items):
        raise _BadRequest(f"invalid value for repeated string field {key}")
    return items


def _service_name(prefix: str, port_name: str) -> str:
    """Kuscia's GenerateServiceName: ``<prefix>-<port>``, ``svc-`` before a leading digit, hashed past 63."""
    prefix, port_name = prefix.strip("-"), port_name.strip("-")
    name = f"{prefix}-{port_name}"
    if name[0].isdigit():
        name = "svc-" + name
    if len(name) > 63:
        digest = format(zlib.crc32(name.encode()), "08x") * 2
        keep = 63 - 16 - len(port_name) - 6
        name = f"svc-{prefix[:keep]}-{port_name}-{digest[:16]}"
    return name


def _task_id_for(job_id: str, alias: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", alias.lower()).strip("-") or "task"
    return f"{job_id}-{cleaned}"[:63].rstrip("-.")


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass
class _Serving:
    serving_id: str
    initiator: str
    input_config: str
    affinity_mode: str
    parties: list[dict[str, Any]]
    created: dt.datetime
    epoch: float  # clock time the current rollout started
    port: int
    updates: int = 0
    forced: tuple[str, str, str] | None = None  # (state, reason, message) set through the control API

    def public(self) -> dict[str, Any]:
        return {
            "serving_id": self.serving_id,
            "initiator": self.initiator,
            "serving_input_config": self.input_config,
            "affinity_mode": self.affinity_mode,
            "parties": copy.deepcopy(self.parties),
            "updates": self.updates,
        }


@dataclass
class _Job:
    job_id: str
    initiator: str
    max_parallelism: int
    tasks: list[dict[str, Any]]
    custom_fields: dict[str, str]
    created: dt.datetime
    epoch: float
    protocol: str = "kuscia"
    flow_id: str = ""
    stage: str = "Create"
    stage_version: int = 1
    stopped_at: float | None = None
    stop_reason: str = ""
    forced_failure: tuple[float, str] | None = None  # (clock time, message)

    def public(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "initiator": self.initiator,
            "max_parallelism": self.max_parallelism,
            "tasks": copy.deepcopy(self.tasks),
            "custom_fields": dict(self.custom_fields),
            "protocol": self.protocol,
            "flow_id": self.flow_id,
            "stage": self.stage,
            "stop_reason": self.stop_reason,
        }


@dataclass
class _Fault:
    kind: str
    remaining: int | None  # None: until cleared
    code: int = VALIDATE
    message: str = "injected by the Kuscia emulator"
    delay: float = 30.0


# --------------------------------------------------------------------------------------------------
# The in-memory Kuscia: validation, storage and lifecycle
# --------------------------------------------------------------------------------------------------


class _Store:
    """Kuscia's services and controllers reduced to dicts and a clock. Every method returns a body."""

    def __init__(
        self,
        *,
        step_seconds: float,
        domain: str,
        p2p: bool,
        appimages: Iterable[str],
        shuffle: bool,
        seed: int | None,
        strict_appimages: bool,
        clock: Callable[[], float],
        wall: Callable[[], dt.datetime],
    ) -> None:
        if step_seconds <= 0:
            raise ValueError("step_seconds must be positive (use advance() to move time by hand)")
        self.step_seconds = step_seconds
        self.domain = domain
        self.p2p = p2p
        self.shuffle = shuffle
        self.strict_appimages = strict_appimages
        self._clock = clock
        self._wall = wall
        self._offset = 0.0
        self._rng = random.Random(seed)
        self._next_port = 20000
        self.lock = threading.RLock()
        self.servings: dict[str, _Serving] = {}
        self.jobs: dict[str, _Job] = {}
        self.appimages: dict[str, dict[str, Any]] = {name: _default_appimage(name) for name in appimages}

    # -- clock ------------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock() + self._offset

    def advance(self, steps: float = 1) -> None:
        """Move the emulated controllers forward without waiting."""
        with self.lock:
            self._offset += steps * self.step_seconds

    def _position(self, start: float, moment: float | None = None) -> float:
        """Emulated controller steps elapsed between ``start`` and ``moment`` (default: now)."""
        return ((self.now() if moment is None else moment) - start) / self.step_seconds + 1e-9

    def _steps_since(self, start: float) -> int:
        return math.floor(self._position(start))

    def _wall_at(self, created: dt.datetime, steps: float) -> dt.datetime:
        return created + dt.timedelta(seconds=steps * self.step_seconds)

    def _shuffled(self, items: list[Any]) -> list[Any]:
        if self.shuffle:
            self._rng.shuffle(items)
        return items

    # -- health -----------------------------------------------------------------------------------

    def health(self, body: dict[str, Any]) -> dict[str, Any]:
        return _ok({"ready": True})

    # -- servings ---------------------------------------------------------------------------------

    def _party_spec(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise _BadRequest("invalid value for message field parties")
        strategy = _obj(raw, "update_strategy")
        resources = []
        for item in _list(raw, "resources"):
            if not isinstance(item, dict):
                raise _BadRequest("invalid value for message field resources")
            resources.append(
                {
                    k: _str(item, k)
                    for k in ("container_name", "min_cpu", "max_cpu", "min_memory", "max_memory")
                }
            )
        return {
            "domain_id": _str(raw, "domain_id"),
            "role": _str(raw, "role"),
            "app_image": _str(raw, "app_image"),
            "replicas": _int(raw, "replicas", None),
            "update_strategy": None
            if strategy is None
            else {k: _str(strategy, k) for k in ("type", "max_surge", "max_unavailable")},
            "resources": resources,
            "service_name_prefix": _str(raw, "service_name_prefix"),
        }

    @staticmethod
    def _strategy_error(party: dict[str, Any]) -> str | None:
        strategy = party["update_strategy"]
        if strategy is not None and strategy["type"] not in ("Recreate", "RollingUpdate"):
            return (
                "update strategy type should be Recreate or RollingUpdate for party/role "
                f"{party['domain_id']}/{party['role']}"
            )
        return None

    @staticmethod
    def _stored_strategy(party: dict[str, Any]) -> dict[str, str]:
        strategy = party["update_strategy"]
        if strategy is not None and strategy["type"] == "Recreate":
            return {"type": "Recreate", "max_surge": "", "max_unavailable": ""}
        result = {"type": "RollingUpdate", "max_surge": "25%", "max_unavailable": "25%"}
        if strategy is not None:
            result["max_surge"] = strategy["max_surge"] or "25%"
            result["max_unavailable"] = strategy["max_unavailable"] or "25%"
        return result

    def _appimage_error(self, name: str) -> str | None:
        if name in self.appimages:
            return None
        return f"can not get appimage {name} from cluster, {_k8s_not_found('appimages', name)}"

    @staticmethod
    def _resource_error(party: dict[str, Any]) -> str | None:
        for res in party["resources"]:
            for key in ("min_cpu", "max_cpu", "min_memory", "max_memory"):
                value = res[key]
                if value and not re.fullmatch(QUANTITY_REGEX, value):
                    return (
                        f"resource {key} {value} format is invalid for party domain_id/role "
                        f"{party['domain_id']}/{party['role']}, quantities must match the regular "
                        f"expression '{QUANTITY_REGEX}'"
                    )
        return None

    def create_serving(self, body: dict[str, Any]) -> dict[str, Any]:
        serving_id = _str(body, "serving_id")
        initiator = _str(body, "initiator")
        input_config = _str(body, "serving_input_config")
        affinity = _str(body, "affinity_mode")
        parties = [self._party_spec(p) for p in _list(body, "parties")]

        def invalid(message: str) -> dict[str, Any]:
            return _fail(VALIDATE, message, has_data=False)

        if not serving_id:
            return invalid("serving id can not be empty")
        if not re.fullmatch(K3S_REGEX, serving_id):
            return invalid(_invalid_name(serving_id, "serving_id"))
        if not initiator:
            return invalid("initiator can not be empty")
        if self.p2p and initiator != self.domain:
            return invalid(f"initiator must be {self.domain} in P2P")
        if not parties:
            return invalid("parties can not be empty")
        for index, party in enumerate(parties):
            if not party["app_image"]:
                return invalid(f"appimage can't be empty in parties[{index}]")
            if not party["domain_id"]:
                return invalid(f"domain id can't be empty in parties[{index}]")
            prefix = party["service_name_prefix"]
            if prefix and not re.fullmatch(SERVICE_NAME_PREFIX_REGEX, prefix):
                detail = _invalid_name(prefix, "service_name_prefix", SERVICE_NAME_PREFIX_REGEX)
                return invalid(f"service name prefix is invalid in parties[{index}], {detail}")
        if initiator not in {p["domain_id"] for p in parties}:
            return invalid(f"initiator {initiator} should be one of the parties")
        with self.lock:
            if serving_id in self.servings:
                message = (
                    f'serving "{CROSS_DOMAIN}/{serving_id}" already exists, '
                    "please ensure that the name is not duplicated"
                )
                return _fail(CREATE_SERVING, message, has_data=False)
            for party in parties:
                if party["resources"]:
                    error = self._appimage_error(party["app_image"]) or self._resource_error(party)
                    if error:
                        return _fail(CREATE_SERVING, error, has_data=False)
                error = self._strategy_error(party)
                if error:
                    return _fail(CREATE_SERVING, error, has_data=False)
            for party in parties:
                party["update_strategy"] = self._stored_strategy(party)
            self.servings[serving_id] = _Serving(
                serving_id=serving_id,
                initiator=initiator,
                input_config=input_config,
                affinity_mode=affinity,
                parties=parties,
                created=self._wall(),
                epoch=self.now(),
                port=self._allocate_port(),
            )
        logger.info("Emulator created serving serving_id=%s parties=%d", serving_id, len(parties))
        return _ok(has_data=False)

    def _allocate_port(self) -> int:
        self._next_port += 1
        return self._next_port

    def update_serving(self, body: dict[str, Any]) -> dict[str, Any]:
        serving_id = _str(body, "serving_id")
        input_config = _str(body, "serving_input_config")
        raw_parties = _list(body, "parties")
        if not serving_id:
            return _fail(VALIDATE, "serving id can not be empty", has_data=False)
        if not input_config and not raw_parties:
            return _ok(has_data=False)  # Kuscia returns before even looking the serving up
        updates = [self._party_spec(p) for p in raw_parties]
        with self.lock:
            serving = self.servings.get(serving_id)
            if serving is None:
                return _fail(UPDATE_SERVING, _k8s_not_found("kusciadeployments", serving_id), has_data=False)
            parties = copy.deepcopy(serving.parties)
            changed = bool(input_config) and input_config != serving.input_config
            for update in updates:
                current = next(
                    (
                        p
                        for p in parties
                        if (p["domain_id"], p["role"]) == (update["domain_id"], update["role"])
                    ),
                    None,
                )
                if current is None:
                    message = f"party domain_id/role {update['domain_id']}/{update['role']} does not exist"
                    return _fail(UPDATE_SERVING, message, has_data=False)
                if update["app_image"] and update["app_image"] != current["app_image"]:
                    error = self._appimage_error(update["app_image"])
                    if error:
                        return _fail(UPDATE_SERVING, error, has_data=False)
                    current["app_image"] = update["app_image"]
                    changed = True
                if update["replicas"] is not None and update["replicas"] != current["replicas"]:
                    current["replicas"] = update["replicas"]
                    changed = True
                if update["update_strategy"] is not None:
                    error = self._strategy_error(update)
                    if error:
                        return _fail(UPDATE_SERVING, error, has_data=False)
                    strategy = self._stored_strategy(update)
                    if strategy != current["update_strategy"]:
                        current["update_strategy"] = strategy
                        changed = True
                if update["resources"]:
                    error = self._resource_error(update)
                    if error:
                        return _fail(UPDATE_SERVING, error, has_data=False)
                    if update["resources"] != current["resources"]:
                        current["resources"] = update["resources"]
                        changed = True
            if changed:
                serving.parties = parties
                if input_config:
                    serving.input_config = input_config
                serving.updates += 1
                serving.epoch = self.now()
                serving.forced = None
                logger.info("Emulator updated serving serving_id=%s rollout=%d", serving_id, serving.updates)
        return _ok(has_data=False)

    def delete_serving(self, body: dict[str, Any]) -> dict[str, Any]:
        serving_id = _str(body, "serving_id")
        if not serving_id:
            return _fail(VALIDATE, "serving id can not be empty", has_data=False)
        with self.lock:
            if self.servings.pop(serving_id, None) is None:
                return _fail(DELETE_SERVING, _k8s_not_found("kusciadeployments", serving_id), has_data=False)
        logger.info("Emulator deleted serving serving_id=%s", serving_id)
        return _ok(has_data=False)

    def query_serving(self, body: dict[str, Any]) -> dict[str, Any]:
        serving_id = _str(body, "serving_id")
        if not serving_id:
            return _fail(VALIDATE, "serving id can not be empty")
        with self.lock:
            serving = self.servings.get(serving_id)
            if serving is None:
                return _fail(QUERY_SERVING, _k8s_not_found("kusciadeployments", serving_id))
            if self.strict_appimages:
                for party in serving.parties:
                    error = self._appimage_error(party["app_image"])
                    if error:
                        return _fail(QUERY_SERVING, error)
            parties = []
            for party in serving.parties:
                wire: dict[str, Any] = {
                    "domain_id": party["domain_id"],
                    "role": party["role"],
                    "app_image": party["app_image"],
                }
                if party["replicas"] is not None:  # proto3 optional: absent when never set
                    wire["replicas"] = party["replicas"]
                wire["update_strategy"] = dict(party["update_strategy"])
                wire["resources"] = copy.deepcopy(party["resources"])
                wire["service_name_prefix"] = party["service_name_prefix"]
                parties.append(wire)
            data = {
                "serving_input_config": serving.input_config,
                "initiator": serving.initiator,
                "parties": parties,
                "status": self._serving_status(serving),
            }
        return _ok(data)

    def batch_query_serving_status(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = _str_list(body, "serving_ids")
        if not ids:
            return _fail(VALIDATE, "serving ids can not be empty")
        if any(not i for i in ids):
            return _fail(VALIDATE, "serving id can not be empty")
        servings = []
        with self.lock:
            for serving_id in ids:
                serving = self.servings.get(serving_id)
                if serving is None:
                    continue  # unknown ids are skipped, the call still succeeds
                servings.append({"serving_id": serving_id, "status": self._serving_status(serving)})
        return _ok({"servings": servings})

    def _serving_status(self, serving: _Serving) -> dict[str, Any] | None:
        steps = self._steps_since(serving.epoch)
        failing = any("fail" in p["app_image"] for p in serving.parties)
        reason = message = ""
        if serving.forced is not None:
            state, reason, message = serving.forced
            if state == "Pending":
                return None
        elif serving.updates == 0 and steps == 0:
            return None  # the KusciaDeployment controller has not reported any party yet
        elif failing and steps >= 2:
            state = "Failed"
            reason = "CreateDeploymentFailed"
            message = "create deployment failed: the emulator fails app images whose name contains 'fail'"
        elif serving.updates == 0:
            state = "Progressing" if steps == 1 else "Available"
        else:
            state = "Progressing" if steps == 0 else "Available"
        if state == "Progressing" and failing:
            bad = next(p["domain_id"] for p in serving.parties if "fail" in p["app_image"])
            reason = f"domainID: {bad}, reason: ImagePullBackOff"

        parties = []
        available_parties = 0
        for party in serving.parties:
            replicas = party["replicas"] if party["replicas"] is not None else 1
            party_state = state
            if state == "Failed" and "fail" not in party["app_image"] and serving.forced is None:
                party_state = "Available"
            available = {
                "Available": replicas,
                "PartialAvailable": replicas // 2,
            }.get(party_state, 0)
            if party_state == "Available":
                available_parties += 1
            base = party["service_name_prefix"] or serving.serving_id
            namespace = party["domain_id"]
            endpoints = self._shuffled(
                [
                    {
                        "port_name": "service",
                        "scope": "Domain",
                        "endpoint": f"{_service_name(base, 'service')}.{namespace}.svc:{serving.port}",
                    },
                    {
                        "port_name": "communication",
                        "scope": "Cluster",
                        "endpoint": f"{_service_name(base, 'communication')}.{namespace}.svc",
                    },
                ]
            )
            parties.append(
                {
                    "domain_id": party["domain_id"],
                    "role": party["role"],
                    "state": party_state,
                    "replicas": replicas,
                    "available_replicas": available,
                    "unavailable_replicas": replicas - available,
                    "updatedReplicas": replicas,
                    "create_time": _rfc3339(serving.created),
                    "endpoints": endpoints,
                }
            )
        return {
            "state": state,
            "reason": reason,
            "message": message,
            "total_parties": len(serving.parties),
            "available_parties": available_parties,
            "create_time": _rfc3339(serving.created),
            "party_statuses": self._shuffled(parties),
        }

    def force_serving_state(self, serving_id: str, state: str, reason: str = "", message: str = "") -> None:
        if state not in SERVING_STATES:
            raise ValueError(f"state must be one of {sorted(SERVING_STATES)}")
        with self.lock:
            self.servings[serving_id].forced = (state, reason, message)

    # -- jobs -------------------------------------------------------------------------------------

    def _job_task(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise _BadRequest("invalid value for message field tasks")
        parties = []
        for item in _list(raw, "parties"):
            if not isinstance(item, dict):
                raise _BadRequest("invalid value for message field parties")
            resources = _obj(item, "resources")
            limits = []
            for limit in _list(item, "bandwidth_limits"):
                if not isinstance(limit, dict):
                    raise _BadRequest("invalid value for message field bandwidth_limits")
                limits.append(
                    {"destination_id": _str(limit, "destination_id"), "limit_kbps": _int(limit, "limit_kbps")}
                )
            parties.append(
                {
                    "domain_id": _str(item, "domain_id"),
                    "role": _str(item, "role"),
                    "resources": None
                    if resources is None
                    else {k: _str(resources, k) for k in ("cpu", "memory", "bandwidth")},
                    "bandwidth_limits": limits,
                }
            )
        schedule = _obj(raw, "schedule_config")
        alias = _str(raw, "alias")
        return {
            "app_image": _str(raw, "app_image"),
            "parties": parties,
            "alias": alias,
            "task_id": _str(raw, "task_id"),
            "dependencies": _str_list(raw, "dependencies"),
            "task_input_config": _str(raw, "task_input_config"),
            "priority": _int(raw, "priority"),
            "schedule_config": None
            if schedule is None
            else {
                k: _int(schedule, k)
                for k in (
                    "task_timeout_seconds",
                    "resource_reserved_seconds",
                    "resource_reallocation_interval_seconds",
                )
            },
            "tolerable": _bool(raw, "tolerable"),
        }

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job_id = _str(body, "job_id")
        initiator = _str(body, "initiator")
        max_parallelism = _int(body, "max_parallelism") or 0
        tasks = [self._job_task(t) for t in _list(body, "tasks")]
        custom_fields = _str_map(body, "custom_fields")

        def invalid(message: str) -> dict[str, Any]:
            return _fail(VALIDATE, message)

        if not job_id:
            return invalid("job id can not be empty")
        if not re.fullmatch(K3S_REGEX, job_id):
            return invalid(_invalid_name(job_id, "job_id"))
        if not initiator:
            return invalid("initiator can not be empty")
        if self.p2p and initiator != self.domain:
            return invalid(f"request.initiator is {initiator}, but initiator must be {self.domain} in P2P")
        if max_parallelism <= 0:
            max_parallelism = 1
        if not tasks:
            return invalid("tasks can not be empty")
        for index, task in enumerate(tasks):
            if not task["alias"]:
                return invalid(f"task alias can not be empty on tasks[{index}]")
            if not task["parties"]:
                return invalid(f"parties can not be empty on tasks[{index}]")
            for party in task["parties"]:
                if not party["domain_id"]:
                    return invalid("party domain id can not be empty")
                for key, value in (party["resources"] or {}).items():
                    if value and not re.fullmatch(QUANTITY_REGEX, value):
                        return invalid(
                            f"party {party['domain_id']} resource {key} {value} is not a valid quantity"
                        )
                for limit in party["bandwidth_limits"]:
                    if not limit["destination_id"]:
                        return invalid(f"bandwidth limit destination id can not be empty on tasks[{index}]")
                    if (limit["limit_kbps"] or 0) <= 0:
                        return invalid(f"bandwidth limit limit_kbps must be greater than 0 on tasks[{index}]")
        with self.lock:
            if job_id in self.jobs:
                return _fail(CREATE_JOB, _k8s_exists("kusciajobs", job_id))
            self._store_job(job_id, initiator, max_parallelism, tasks, custom_fields)
        return _ok({"job_id": job_id})

    def _store_job(
        self,
        job_id: str,
        initiator: str,
        max_parallelism: int,
        tasks: list[dict[str, Any]],
        custom_fields: dict[str, str],
        *,
        protocol: str = "kuscia",
        flow_id: str = "",
    ) -> None:
        for task in tasks:
            if not task["task_id"]:
                task["task_id"] = _task_id_for(job_id, task["alias"])
        self.jobs[job_id] = _Job(
            job_id=job_id,
            initiator=initiator,
            max_parallelism=max_parallelism,
            tasks=tasks,
            custom_fields=custom_fields,
            created=self._wall(),
            epoch=self.now(),
            protocol=protocol,
            flow_id=flow_id,
        )
        logger.info("Emulator created job job_id=%s tasks=%d protocol=%s", job_id, len(tasks), protocol)

    def query_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job_id = _str(body, "job_id")
        if not job_id:
            return _fail(VALIDATE, "job id can not be empty")
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return _fail(QUERY_JOB, _k8s_not_found("kusciajobs", job_id))
            tasks = []
            for task in job.tasks:
                config = {k: copy.deepcopy(v) for k, v in task.items() if k != "tolerable"}
                for party in config["parties"]:
                    for limit in party["bandwidth_limits"]:
                        limit["limit_kbps"] = str(limit["limit_kbps"])  # uint64 travels as a string
                tasks.append(config)
            data = {
                "job_id": job.job_id,
                "initiator": job.initiator,
                "max_parallelism": job.max_parallelism,
                "tasks": tasks,
                "status": self._job_status(job),
                "custom_fields": dict(job.custom_fields),
            }
        return _ok(data)

    def batch_query_job_status(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = _str_list(body, "job_ids")
        if not ids:
            return _fail(VALIDATE, "job ids can not be empty")
        if any(not i for i in ids):
            return _fail(VALIDATE, "job id can not be empty")
        jobs = []
        with self.lock:
            for job_id in ids:
                job = self.jobs.get(job_id)
                if job is None:
                    # One unknown id fails the whole call.
                    return _fail(QUERY_JOB_STATUS, _k8s_not_found("kusciajobs", job_id))
                jobs.append({"job_id": job_id, "status": self._job_status(job)})
        return _ok({"jobs": jobs})

    def stop_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job_id = _str(body, "job_id")
        if not job_id:
            return _fail(VALIDATE, "job id can not be empty")
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return _fail(STOP_JOB, _k8s_not_found("kusciajobs", job_id))
            if job.stage != "Stop":
                job.stage = "Stop"
                job.stage_version += 1
                job.stop_reason = _str(body, "reason")
                if self._job_status(job)["state"] not in ("Succeeded", "Failed"):
                    job.stopped_at = self.now()
                logger.info("Emulator stopped job job_id=%s", job_id)
        return _ok({"job_id": job_id})

    def delete_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job_id = _str(body, "job_id")
        if not job_id:
            return _fail(VALIDATE, "job id can not be empty")
        with self.lock:
            if self.jobs.pop(job_id, None) is None:
                return _fail(DELETE_JOB, _k8s_not_found("kusciajobs", job_id))
        logger.info("Emulator deleted job job_id=%s", job_id)
        return _ok({"job_id": job_id})

    def fail_job(self, job_id: str, message: str = "failed by the Kuscia emulator") -> None:
        with self.lock:
            job = self.jobs[job_id]
            if self._job_status(job)["state"] not in ("Succeeded", "Failed"):
                job.forced_failure = (self.now(), message)

    @staticmethod
    def _validation_error(job: _Job) -> str:
        """Kuscia's job controller check (kusciaJobValidate): every dependency names a task alias, and
        the dependencies form no cycle. A job failing it is created, then Failed with this message."""
        aliases = {task["alias"] for task in job.tasks}
        for task in job.tasks:
            for dep in task["dependencies"]:
                if dep not in aliases:
                    return f"validate failed: task {task['alias']} has not exist dependency task {dep}"
        pending = {task["alias"]: set(task["dependencies"]) for task in job.tasks}
        while True:  # peel off tasks without dependencies until none is left or none can go
            free = {alias for alias, deps in pending.items() if not deps}
            if not free:
                break
            pending = {alias: deps - free for alias, deps in pending.items() if alias not in free}
        return "validate failed: cycled dependencies" if pending else ""

    @staticmethod
    def _task_levels(job: _Job) -> dict[str, int]:
        """Depth of every task in the dependency graph (dependencies name task aliases, as in Kuscia)."""
        by_alias = {task["alias"]: task for task in job.tasks}
        levels: dict[str, int] = {}

        def level(task: dict[str, Any]) -> int:
            key = task["task_id"]
            if key not in levels:
                deps = [by_alias[d] for d in task["dependencies"]]
                levels[key] = 1 + max((level(d) for d in deps), default=-1)
            return levels[key]

        for task in job.tasks:
            level(task)
        return levels

    def _invalid_job_status(self, job: _Job, error: str) -> dict[str, Any]:
        """Pending for one step, then Failed with the validation message; no task is ever created."""
        failed = self._steps_since(job.epoch) >= 1
        tasks = [
            {
                "task_id": task["task_id"],
                "state": "Pending",
                "err_msg": "",
                "create_time": "",
                "start_time": "",
                "end_time": "",
                "parties": [],
                "alias": task["alias"],
                "progress": 0.0,
            }
            for task in job.tasks
        ]
        return {
            "state": "Failed" if failed else "Pending",
            "err_msg": error if failed else "",
            "create_time": _rfc3339(job.created),
            "start_time": "",
            "end_time": _rfc3339(self._wall_at(job.created, 1)) if failed else "",
            "tasks": tasks,
            "stage_status_list": [],
            "approve_status_list": [],
        }

    def _job_status(self, job: _Job) -> dict[str, Any]:
        """Pending for one step; then every task runs for one step per dependency level.

        A task whose app_image contains "fail" fails when it ends; a stop or a forced failure fails
        the job at once. Either way the job halts: tasks not started by then are never created and
        the running ones fail.
        """
        error = self._validation_error(job)
        if error:
            return self._invalid_job_status(job, error)
        position = self._position(job.epoch)
        steps = math.floor(position)
        levels = self._task_levels(job)
        halts: dict[float, str] = {}  # position -> error message of the event halting the job there
        natural = [2 + levels[t["task_id"]] for t in job.tasks if "fail" in t["app_image"]]
        if natural:
            halts.setdefault(float(min(natural)), "stopped because another task of the job failed")
        if job.forced_failure is not None:
            halts[self._position(job.epoch, job.forced_failure[0])] = job.forced_failure[1]
        if job.stopped_at is not None:
            halts[self._position(job.epoch, job.stopped_at)] = "KusciaJobStopped"
        halt = min(halts) if halts else None
        halted = halt is not None and position >= halt

        tasks = []
        failures: list[str] = []
        for task in job.tasks:
            start = 1 + levels[task["task_id"]]
            end = start + 1
            state, err, progress, ended = "Pending", "", 0.0, None
            created = start <= steps and (halt is None or start < halt)
            if created:
                if end <= steps and (halt is None or end <= halt):
                    ended = end
                    if "fail" in task["app_image"]:
                        state, err = "Failed", "the emulator fails app images whose name contains 'fail'"
                    else:
                        state, progress = "Succeeded", 1.0
                elif halted:
                    state, err, ended = "Failed", halts[halt], halt  # type: ignore[index]
                else:
                    state, progress = "Running", 0.5
            domains = list(dict.fromkeys(p["domain_id"] for p in task["parties"]))
            if state == "Failed":
                failures.extend(f"Task[{task['alias']}]-Party[{d}]: {err}" for d in domains)
            tasks.append(
                {
                    "task_id": task["task_id"],
                    "state": state,
                    "err_msg": err,
                    "create_time": _rfc3339(self._wall_at(job.created, start)) if created else "",
                    "start_time": _rfc3339(self._wall_at(job.created, start)) if created else "",
                    "end_time": _rfc3339(self._wall_at(job.created, ended)) if ended is not None else "",
                    "parties": [
                        {"domain_id": d, "state": state, "err_msg": err, "endpoints": []} for d in domains
                    ]
                    if created
                    else [],
                    "alias": task["alias"],
                    "progress": progress,
                }
            )

        end_step: float | None = None
        if halted:
            job_state, end_step = "Failed", halt
        elif all(t["state"] == "Succeeded" for t in tasks):
            job_state, end_step = "Succeeded", max(2 + lvl for lvl in levels.values())
        else:
            job_state = "Running" if steps >= 1 else "Pending"
        err_msg = ""
        if job_state == "Failed":
            err_msg = "; ".join(failures) or halts[halt]  # type: ignore[index]
            if job.stopped_at is not None and job.stop_reason:
                err_msg += f"; stop reason: {job.stop_reason}"

        domains = list(dict.fromkeys(p["domain_id"] for t in job.tasks for p in t["parties"]))
        stage_state = "JobStopStageSucceeded" if job.stage == "Stop" else "JobCreateStageSucceeded"
        return {
            "state": job_state,
            "err_msg": err_msg,
            "create_time": _rfc3339(job.created),
            "start_time": _rfc3339(self._wall_at(job.created, 1)) if steps >= 1 else "",
            "end_time": _rfc3339(self._wall_at(job.created, end_step)) if end_step is not None else "",
            "tasks": tasks,
            "stage_status_list": [{"domain_id": d, "state": stage_state} for d in domains]
            if steps >= 1
            else [],
            "approve_status_list": [],
        }

    # -- app images -------------------------------------------------------------------------------

    def create_appimage(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _str(body, "name")
        image = _obj(body, "image")
        config_templates = _str_map(body, "config_templates")
        templates = _list(body, "deploy_templates")

        def invalid(message: str) -> dict[str, Any]:
            return _fail(VALIDATE, message, has_data=False)

        if not name:
            return invalid("appimage name can not be empty")
        if image is None or not _str(image, "name"):
            return invalid("base image name can not be empty")
        if not templates:
            return invalid("deploy templates can not be empty")
        stored_templates = []
        for template in templates:
            if not isinstance(template, dict):
                raise _BadRequest("invalid value for message field deploy_templates")
            if not _str(template, "name"):
                return invalid("deploy template name can not be empty")
            containers = _list(template, "containers")
            if not containers:
                return invalid("containers can not be empty")
            if (_int(template, "replicas") or 0) < 0:
                return invalid("replicas can not be less than 0")
            if any(not isinstance(c, dict) or not _str(c, "name") for c in containers):
                return invalid("container name can not be empty")
            stored_templates.append(
                {
                    "name": _str(template, "name"),
                    "role": _str(template, "role"),
                    "replicas": _int(template, "replicas"),
                    "restart_policy": _str(template, "restart_policy"),
                    "containers": copy.deepcopy(containers),
                }
            )
        if not re.fullmatch(K3S_REGEX, name):
            return invalid(_invalid_name(name, "appimage_id"))
        with self.lock:
            if name in self.appimages:
                return _fail(APPIMAGE_EXISTS, _k8s_exists("appimages", name), has_data=False)
            self.appimages[name] = {
                "name": name,
                "image": {k: _str(image, k) for k in ("name", "tag", "id", "sign")},
                "config_templates": config_templates,
                "deploy_templates": stored_templates,
            }
        return _ok(has_data=False)

    def query_appimage(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _str(body, "name")
        if not name:
            return _fail(VALIDATE, "appimage name can not be empty")
        with self.lock:
            image = self.appimages.get(name)
            if image is None:
                return _fail(APPIMAGE_NOT_EXISTS, _k8s_not_found("appimages", name))
            return _ok(copy.deepcopy(image))

    def delete_appimage(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _str(body, "name")
        if not name:
            return _fail(VALIDATE, "appimage name can not be empty", has_data=False)
        with self.lock:
            if self.appimages.pop(name, None) is None:
                return _fail(13103, _k8s_not_found("appimages", name), has_data=False)
        return _ok(has_data=False)

    # -- BFIA -------------------------------------------------------------------------------------

    def bfia_create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """BFIA job create: validates like the interconn handler, then stores a KusciaJob (§10.4)."""
        job_id = body.get("job_id") or ""
        dag = body.get("dag")
        config = body.get("config")
        if not job_id:
            return {"code": 400, "message": "job_id can not be empty"}
        if not dag:
            return {"code": 400, "message": "dag can not be empty"}
        if not config:
            return {"code": 400, "message": "config can not be empty"}
        initiator = ((config.get("initiator") or {}).get("node_id")) or ""
        if not initiator:
            return {"code": 400, "msg": "initiator node_id can not be empty", "data": None}
        with self.lock:
            if job_id in self.jobs:
                return {"code": 400, "msg": "Job already exists", "data": None}
            tasks = _bfia_tasks(job_id, dag, config)
            self._store_job(
                job_id, initiator, 2, tasks, {}, protocol="bfia", flow_id=body.get("flow_id") or ""
            )
        return {"code": 200, "msg": "", "data": {"status": "PENDING"}}


def _default_appimage(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": {"name": f"secretflow/{name}", "tag": "latest", "id": "", "sign": ""},
        "config_templates": {},
        "deploy_templates": [
            {"name": name, "role": "", "replicas": 1, "restart_policy": "", "containers": [{"name": name}]}
        ],
    }


def _bfia_tasks(job_id: str, dag: Mapping[str, Any], config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One task per DAG component; parties from the roles whose task_params mention the component."""
    components = list(dag.get("components") or [])
    roles = config.get("role") or {}
    task_params = config.get("task_params") or {}
    outputs = {
        (c.get("name"), o.get("type"), o.get("key")) for c in components for o in c.get("output") or []
    }
    tasks = []
    for component in components:
        name = component.get("name") or ""
        task_id = _task_id_for(job_id, name)
        dependencies = []
        for item in component.get("input") or []:
            upstream, _, out_key = str(item.get("key") or "").partition(".")
            if (upstream, item.get("type"), out_key) in outputs:
                dependencies.append(upstream)  # the upstream component's name is its task's alias
        parties = []
        narrowed: dict[str, Any] = {}
        for role in ("arbiter", "host", "guest"):
            per_index = task_params.get(role) or {}
            for index, params in per_index.items():
                if isinstance(params, dict) and name in params:
                    members = roles.get(role) or []
                    if int(index) < len(members):
                        parties.append(
                            {
                                "domain_id": members[int(index)],
                                "role": role,
                                "resources": None,
                                "bandwidth_limits": [],
                            }
                        )
                    narrowed.setdefault(role, {})[index] = params[name]
        narrowed["common"] = (task_params.get("common") or {}).get(name, {})
        input_config = {
            "name": name,
            "module_name": component.get("module_name") or "",
            "input": component.get("input") or [],
            "output": component.get("output") or [],
            "role": roles,
            "initiator": config.get("initiator") or {},
            "task_params": narrowed,
        }
        tasks.append(
            {
                "app_image": component.get("code") or "",
                "parties": parties,
                "alias": name,
                "task_id": task_id,
                "dependencies": dependencies,
                "task_input_config": json.dumps(input_config, sort_keys=True),
                "priority": 0,
                "schedule_config": None,
                "tolerable": False,
            }
        )
    return tasks


# --------------------------------------------------------------------------------------------------
# HTTP servers, faults and statistics
# --------------------------------------------------------------------------------------------------


def _normalize_route(route: str) -> str:
    if route == "*" or route.startswith("/"):
        return route
    if route.lower() == "healthz":
        return "/healthZ"
    return "/api/v1/" + route


class KusciaDouble:
    """The Kuscia API emulator in the current event loop.

    ``step_seconds`` paces the emulated controllers; ``p2p=True`` enforces that every initiator is
    ``domain`` (autonomy mode), the default accepts any initiator (a centralized master).
    """

    def __init__(
        self,
        certs_dir: str | Path,
        *,
        step_seconds: float = 1.0,
        domain: str = "alice",
        p2p: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        bfia_port: int = 0,
        appimages: Iterable[str] = DEFAULT_APPIMAGES,
        shuffle: bool = True,
        seed: int | None = None,
        strict_appimages: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC).replace(microsecond=0),
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the Kuscia emulator listens on loopback only")
        self.pki: Pki = ensure_pki(certs_dir)
        self.host = host
        self.port = port
        self.bfia_port = bfia_port
        self.store = _Store(
            step_seconds=step_seconds,
            domain=domain,
            p2p=p2p,
            appimages=appimages,
            shuffle=shuffle,
            seed=seed,
            strict_appimages=strict_appimages,
            clock=clock,
            wall=wall,
        )
        self._token = self.pki.token()
        self._lock = threading.Lock()
        self._faults: dict[str, list[_Fault]] = {}
        self._stats: dict[str, int] = {}
        self._refuse_tls = False
        self._down = False
        self._ssl: ssl.SSLContext | None = None
        self._foreign_ssl: ssl.SSLContext | None = None
        self._foreign_dir: tempfile.TemporaryDirectory[str] | None = None
        self._runner: web.AppRunner | None = None
        self._bfia_runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._bfia_server: asyncio.Server | None = None
        self._closing: asyncio.Event | None = None
        self._revive: asyncio.Task[None] | None = None
        #: Fields Kuscia would have dropped from our requests without a word: (path, field). A test
        #: asserts this stays empty, so a field Kuscia does not know cannot pass unnoticed.
        self.unknown_fields: list[tuple[str, str]] = []
        #: The last requests received, (path, body as sent), for contract tests.
        self.requests: collections.deque[tuple[str, Any]] = collections.deque(maxlen=2000)
        self._routes: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], bool]] = {
            "/healthZ": (self.store.health, True),
            "/api/v1/serving/create": (self.store.create_serving, False),
            "/api/v1/serving/update": (self.store.update_serving, False),
            "/api/v1/serving/delete": (self.store.delete_serving, False),
            "/api/v1/serving/query": (self.store.query_serving, True),
            "/api/v1/serving/status/batchQuery": (self.store.batch_query_serving_status, True),
            "/api/v1/job/create": (self.store.create_job, True),
            "/api/v1/job/query": (self.store.query_job, True),
            "/api/v1/job/stop": (self.store.stop_job, True),
            "/api/v1/job/delete": (self.store.delete_job, True),
            "/api/v1/job/status/batchQuery": (self.store.batch_query_job_status, True),
            "/api/v1/appimage/create": (self.store.create_appimage, False),
            "/api/v1/appimage/query": (self.store.query_appimage, True),
            "/api/v1/appimage/delete": (self.store.delete_appimage, False),
        }

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def token(self) -> str:
        return self._token

    @property
    def base_url(self) -> str:
        return f"https://{self._url_host}:{self.port}"

    @property
    def bfia_url(self) -> str:
        return f"http://{self._url_host}:{self.bfia_port}"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def _server_context(self, pki: Pki) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.pki.ca_cert))
        context.load_cert_chain(pki.server_cert, pki.server_key)
        context.verify_mode = ssl.CERT_REQUIRED  # Go's RequireAndVerifyClientCert; no CN/SAN check
        return context

    def _select_context(self, sock: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        # Called for every handshake (with or without SNI): swap in a certificate from another CA on demand.
        if self._refuse_tls and self._foreign_ssl is not None:
            sock.context = self._foreign_ssl

    async def start(self) -> str:
        """Start both servers; returns the HTTPS base URL of the Kuscia API."""
        self._closing = asyncio.Event()
        self._ssl = self._server_context(self.pki)
        self._ssl.sni_callback = self._select_context
        self._foreign_dir = tempfile.TemporaryDirectory(prefix="kuscia-emulator-foreign-")
        self._foreign_ssl = self._server_context(generate_foreign_pki(self._foreign_dir.name))

        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handle_signals=False)
        await self._runner.setup()
        bfia = web.Application()
        bfia.router.add_route("*", "/{tail:.*}", self._handle_bfia)
        self._bfia_runner = web.AppRunner(bfia, access_log=None, shutdown_timeout=0.5, handle_signals=False)
        await self._bfia_runner.setup()
        await self._listen()
        logger.info("Kuscia emulator listening url=%s bfia_url=%s", self.base_url, self.bfia_url)
        return self.base_url

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._runner is not None and self._bfia_runner is not None
        assert self._runner.server is not None and self._bfia_runner.server is not None
        self._server = await loop.create_server(
            self._runner.server, self.host, self.port, ssl=self._ssl, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._bfia_server = await loop.create_server(
            self._bfia_runner.server, self.host, self.bfia_port, reuse_address=True
        )
        self.bfia_port = self._bfia_server.sockets[0].getsockname()[1]
        self._down = False

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._revive is not None:
            self._revive.cancel()
        await self._close_listeners()
        for runner in (self._runner, self._bfia_runner):
            if runner is not None:
                await runner.cleanup()
        self._runner = self._bfia_runner = None
        if self._foreign_dir is not None:
            self._foreign_dir.cleanup()
            self._foreign_dir = None
        logger.info("Kuscia emulator stopped")

    async def _close_listeners(self) -> None:
        for server in (self._server, self._bfia_server):
            if server is not None:
                server.close()
        for runner in (self._runner, self._bfia_runner):
            if runner is not None and runner.server is not None:
                for connection in runner.server.connections:
                    if connection.transport is not None:
                        connection.transport.abort()
        self._server = self._bfia_server = None

    async def down(self, seconds: float | None = None) -> None:
        """Stop listening and reset open connections; come back after ``seconds`` if given."""
        await self._close_listeners()
        self._down = True
        logger.info("Kuscia emulator went down seconds=%s", seconds)
        if seconds is not None:
            self._revive = asyncio.get_running_loop().create_task(self._up_later(seconds))

    async def _up_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.up()

    async def up(self) -> None:
        if self._down and self._runner is not None:
            await self._listen()
            logger.info("Kuscia emulator is up again url=%s", self.base_url)

    @property
    def is_down(self) -> bool:
        return self._down

    # -- test API ---------------------------------------------------------------------------------

    def inject(
        self,
        route: str,
        fault: str,
        count: int | None = 1,
        *,
        code: int = VALIDATE,
        message: str = "injected by the Kuscia emulator",
        delay: float = 30.0,
    ) -> None:
        """Queue ``fault`` for the next ``count`` calls of ``route`` (a path, a short name such as
        ``job/status/batchQuery``, or ``*`` for every route); ``count=None`` lasts until cleared."""
        if fault not in FAULT_KINDS:
            raise ValueError(f"fault must be one of {sorted(FAULT_KINDS)}")
        with self._lock:
            self._faults.setdefault(_normalize_route(route), []).append(
                _Fault(fault, count, code=code, message=message, delay=delay)
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def set_refuse_tls(self, enabled: bool = True) -> None:
        """Present a server certificate from an unrelated CA on new handshakes."""
        self._refuse_tls = enabled

    def stats(self) -> dict[str, int]:
        """Requests received per path since the last reset (control routes excluded)."""
        with self._lock:
            return dict(self._stats)

    def calls(self, route: str) -> int:
        with self._lock:
            return self._stats.get(_normalize_route(route), 0)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats.clear()

    def advance(self, steps: float = 1) -> None:
        self.store.advance(steps)

    @property
    def servings(self) -> dict[str, dict[str, Any]]:
        with self.store.lock:
            return {k: v.public() for k, v in self.store.servings.items()}

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        with self.store.lock:
            return {k: v.public() for k, v in self.store.jobs.items()}

    @property
    def appimages(self) -> dict[str, dict[str, Any]]:
        with self.store.lock:
            return copy.deepcopy(self.store.appimages)

    def serving_status(self, serving_id: str) -> dict[str, Any] | None:
        with self.store.lock:
            return self.store._serving_status(self.store.servings[serving_id])

    def job_status(self, job_id: str) -> dict[str, Any]:
        with self.store.lock:
            return self.store._job_status(self.store.jobs[job_id])

    def fail_serving(
        self,
        serving_id: str,
        reason: str = "CreateDeploymentFailed",
        message: str = "failed by the Kuscia emulator",
    ) -> None:
        self.store.force_serving_state(serving_id, "Failed", reason, message)

    def set_serving_state(self, serving_id: str, state: str, reason: str = "", message: str = "") -> None:
        """Pin a serving's state (``Pending`` means no party status) until its next real update."""
        self.store.force_serving_state(serving_id, state, reason, message)

    def fail_job(self, job_id: str, message: str = "failed by the Kuscia emulator") -> None:
        self.store.fail_job(job_id, message)

    def remove_serving(self, serving_id: str) -> None:
        """Delete a serving behind the client's back (someone else removed the KusciaDeployment)."""
        with self.store.lock:
            self.store.servings.pop(serving_id, None)

    def remove_job(self, job_id: str) -> None:
        with self.store.lock:
            self.store.jobs.pop(job_id, None)

    def add_appimage(self, name: str) -> None:
        with self.store.lock:
            self.store.appimages.setdefault(name, _default_appimage(name))

    # -- request handling -------------------------------------------------------------------------

    def _count(self, path: str) -> None:
        if not path.startswith(CONTROL_PREFIX):
            with self._lock:
                self._stats[path] = self._stats.get(path, 0) + 1

    def _take_fault(self, path: str) -> _Fault | None:
        if path.startswith(CONTROL_PREFIX):
            return None
        with self._lock:
            for key in (path, "*"):
                queue = self._faults.get(key) or []
                for fault in queue:
                    if fault.remaining is None:
                        return fault
                    if fault.remaining > 0:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            queue.remove(fault)
                        return fault
        return None

    async def _apply_fault(
        self, request: web.Request, fault: _Fault, has_data: bool
    ) -> web.StreamResponse | None:
        if fault.kind in ("http_500", "http_503"):
            status = int(fault.kind[5:])
            return web.Response(status=status, text="emulated server error", content_type="text/plain")
        if fault.kind == "auth_401":
            return web.Response(status=401)
        if fault.kind == "code":
            return _json_response(_fail(fault.code, fault.message, has_data=has_data))
        if fault.kind == "timeout":
            assert self._closing is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), fault.delay)
        # timeout (after holding) and drop: close the connection without answering; nothing was applied.
        if request.transport is not None:
            request.transport.abort()
        raise _Dropped

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self._count(path)
        if request.headers.get("Token") != self._token:
            return web.Response(status=401)
        route = self._routes.get(path)
        fault = self._take_fault(path)
        if fault is not None:
            try:
                response = await self._apply_fault(request, fault, route[1] if route else True)
            except _Dropped:
                return web.Response(status=499)  # never reaches the client: the transport is gone
            if response is not None:
                return response
        if request.method != "POST":
            return _not_found()
        if path.startswith(CONTROL_PREFIX):
            return await self._control(path, request)
        if route is None:
            return _not_found()
        handler = route[0]
        request_class, response_class = ROUTES[path]
        try:
            raw = await request.read()
        except (
            ConnectionResetError
        ):  # the client went away mid-request (a killed operator): nothing to answer
            return web.Response(status=499)
        try:
            body = json.loads(raw) if raw.strip() else {}
            self.requests.append((path, body))
            bound = bind(request_class, body)
            self._note_unknown(path, bound.unknown)
            answer = handler(bound.data)
        except (ValueError, _BadRequest) as exc:
            # Framework-level binding failure: plain protojson rendering, no details and no data.
            return _json_response({"status": {"code": UNEXPECTED, "message": f"bind request failed: {exc}"}})
        return _json_response(encode(response_class, answer))

    def _note_unknown(self, path: str, unknown: Iterable[str]) -> None:
        for name in unknown:
            logger.warning("Emulator dropped a field Kuscia does not know path=%s field=%s", path, name)
            with self._lock:
                self.unknown_fields.append((path, name))

    async def _handle_bfia(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self._count(path)
        fault = self._take_fault(path)
        if fault is not None:
            try:
                response = await self._apply_fault(request, fault, True)
            except _Dropped:
                return web.Response(status=499)
            if response is not None:
                return response
        if request.method != "POST" or path != "/v1/interconn/schedule/job/create":
            return _not_found()
        try:
            body = json.loads(await request.read())
            self.requests.append((path, body))
            bound = bind(interconn_job_pb2.CreateJobRequest, body)
        except ValueError as exc:  # WireError included
            return _json_response({"code": 400, "message": f"bind request failed: {exc}"})
        self._note_unknown(path, bound.unknown)
        answer = self.store.bfia_create_job(_integral(bound.data))
        if "msg" not in answer:  # the framework's validation answer, outside CommonResponse
            return _json_response(answer)
        return _json_response(encode(interconn_common_pb2.CommonResponse, answer))

    async def _control(self, path: str, request: web.Request) -> web.StreamResponse:
        try:
            raw = await request.read()
            body = json.loads(raw) if raw.strip() else {}
            action = path[len(CONTROL_PREFIX) :]
            if action == "stats":
                return _json_response({"stats": self.stats()})
            if action == "reset-stats":
                self.reset_stats()
            elif action == "fault":
                count = body.get("count", 1)
                self.inject(
                    body["route"],
                    body["fault"],
                    None if count is None or count < 0 else int(count),
                    code=int(body.get("code", VALIDATE)),
                    message=str(body.get("message", "injected by the Kuscia emulator")),
                    delay=float(body.get("delay", 30.0)),
                )
            elif action == "clear-faults":
                self.clear_faults()
            elif action == "refuse-tls":
                self.set_refuse_tls(bool(body.get("enabled", True)))
            elif action == "down":
                # Answer first, then go down: the caller would otherwise never see the reply.
                seconds = float(body.get("seconds", 5.0))
                asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(self.down(seconds)))
            elif action == "advance":
                self.advance(float(body.get("steps", 1)))
            elif action == "serving/fail":
                self.fail_serving(
                    body["serving_id"],
                    body.get("reason", "CreateDeploymentFailed"),
                    body.get("message", "failed by the Kuscia emulator"),
                )
            elif action == "serving/state":
                self.set_serving_state(
                    body["serving_id"], body["state"], body.get("reason", ""), body.get("message", "")
                )
            elif action == "serving/remove":
                self.remove_serving(body["serving_id"])
            elif action == "job/fail":
                self.fail_job(body["job_id"], body.get("message", "failed by the Kuscia emulator"))
            elif action == "job/remove":
                self.remove_job(body["job_id"])
            elif action == "appimage/add":
                self.add_appimage(body["name"])
            elif action == "dump":
                return _json_response(
                    {"servings": self.servings, "jobs": self.jobs, "appimages": self.appimages}
                )
            else:
                return _not_found()
        except (KeyError, ValueError, TypeError) as exc:
            return _json_response({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, status=400)
        return _json_response({"ok": True})


def _integral(value: Any) -> Any:
    """Struct numbers are doubles; Go writes a whole one as ``10``, Python's json_format as ``10.0``."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


class _Dropped(Exception):
    """The connection was aborted on purpose."""


def _json_response(body: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        content_type=_JSON,
        charset="utf-8",
    )


def _not_found() -> web.Response:
    return web.Response(status=404, text="404 page not found", content_type="text/plain")


# --------------------------------------------------------------------------------------------------
# Thread wrapper for synchronous tests
# --------------------------------------------------------------------------------------------------


class KusciaDoubleThread:
    """Runs a KusciaDouble in its own event loop thread; use as a context manager.

    Attribute access falls through to the KusciaDouble (``inject``, ``stats``, ``servings``, ...);
    ``down``/``up``/``stop`` are wrapped so they can be called from the test thread.
    """

    def __init__(self, certs_dir: str | Path, **kwargs: Any) -> None:
        self.double = KusciaDouble(certs_dir, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.double, name)

    def _run(self, coro: Any, timeout: float = 30.0) -> Any:
        assert self._loop is not None, "the emulator thread is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> str:
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=main, name="kuscia-emulator", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self._run(self.double.start())

    def stop(self) -> None:
        if self._loop is None:
            return
        try:
            self._run(self.double.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(10)
            self._loop = None

    def down(self, seconds: float | None = None) -> None:
        self._run(self.double.down(seconds))

    def up(self) -> None:
        self._run(self.double.up())

    def __enter__(self) -> KusciaDoubleThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _write_atomically(path: str, text: str) -> None:
    target = Path(path)
    scratch = target.with_name(f".{target.name}.tmp")
    scratch.write_text(text)
    scratch.replace(target)  # readers polling for the file never see it half written


def run_forever(
    double: KusciaDouble, *, port_file: str | None = None, bfia_port_file: str | None = None
) -> None:
    """Serve until SIGTERM/SIGINT (used by ``hack/kuscia-sandbox``)."""
    import signal

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        url = await double.start()
        if port_file:
            _write_atomically(port_file, f"{double.port}\n")
        if bfia_port_file:
            _write_atomically(bfia_port_file, f"{double.bfia_port}\n")
        print(f"Kuscia emulator serving {url}", flush=True)
        print(f"Kuscia emulator BFIA endpoint {double.bfia_url}", flush=True)
        print(f"Kuscia emulator certificates and token in {double.pki.directory}", flush=True)
        await stop.wait()
        await double.stop()

    asyncio.run(main())
