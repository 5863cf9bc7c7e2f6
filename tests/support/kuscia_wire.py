"""Kuscia's own protobuf messages as the wire contract for the emulator and the contract tests.

The PyPI package ``kuscia`` (0.0.3b0) ships the messages Kuscia generates from its ``.proto`` files. Our
emulator reads every request through them and writes every answer through them, and the unit tests parse
every body our clients send with ``json_format.Parse(..., ignore_unknown_fields=False)``, so neither side
can drift from Kuscia on its own.

Two gaps are filled by hand, each said where it is:

* the package dates from 2024-07; fields Kuscia added since are listed in ``NEWER_FIELDS`` with a release
  that has them, and pass through the contract with the shape Kuscia gives them;
* the AppImage API is not in the package at all: its messages are written out below from Kuscia's
  ``proto/api/v1alpha1/kusciaapi/appimage.proto`` (the subset the operator and the emulator use).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from kuscia.proto.api.v1.interconn import common_pb2 as interconn_common_pb2
from kuscia.proto.api.v1.interconn import job_pb2 as interconn_job_pb2
from kuscia.proto.api.v1alpha1 import common_pb2
from kuscia.proto.api.v1alpha1.kusciaapi import health_pb2, job_pb2, serving_pb2

__all__ = [
    "NEWER_FIELDS",
    "ROUTES",
    "Bound",
    "WireError",
    "appimage_pb2",
    "bind",
    "contract_parse",
    "encode",
    "health_pb2",
    "interconn_common_pb2",
    "interconn_job_pb2",
    "job_pb2",
    "serving_pb2",
]

_API = "kuscia.proto.api.v1alpha1.kusciaapi"


class WireError(ValueError):
    """A body that does not fit the message: wrong type, or a field the message does not have."""


# --------------------------------------------------------------------------------------------------
# Fields newer than the packaged messages
# --------------------------------------------------------------------------------------------------


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise WireError(f"expected a string, got {json.dumps(value)}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise WireError(f"expected a bool, got {json.dumps(value)}")
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(f"expected a number, got {json.dumps(value)}")
    return float(value)


def _integer(value: Any, *, unsigned: bool = False, as_string: bool = False) -> int | str:
    # protojson accepts 64-bit integers as numbers or strings and writes them as strings.
    if isinstance(value, bool):
        raise WireError(f"expected an integer, got {json.dumps(value)}")
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        number = int(value)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise WireError(f"expected an integer, got {json.dumps(value)}")
    if unsigned and number < 0:
        raise WireError(f"expected an unsigned integer, got {number}")
    return str(number) if as_string else number


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _message(fields: dict[str, Callable[[Any], Any]]) -> Callable[[Any], dict[str, Any] | None]:
    def read(value: Any) -> dict[str, Any] | None:
        if value is None:
            return None  # null: the sub-message is unset
        if not isinstance(value, dict):
            raise WireError(f"expected an object, got {json.dumps(value)}")
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = _snake(key)
            if name not in fields:
                raise WireError(f"unknown field {key!r}")
            out[name] = fields[name](item)
        for name, read_field in fields.items():  # Kuscia emits every field
            out.setdefault(name, read_field(_ZERO[read_field]))
        return out

    return read


def _repeated(item: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    def read(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise WireError(f"expected a list, got {json.dumps(value)}")
        return [item(v) for v in value]

    return read


def _int32(value: Any) -> int | str:
    return _integer(value)


def _uint64(value: Any) -> int | str:
    return _integer(value, unsigned=True, as_string=True)


# The zero value each reader emits for a field absent from the body (Kuscia emits every field).
_ZERO: dict[Callable[[Any], Any], Any] = {_string: "", _bool: False, _float: 0.0, _int32: 0, _uint64: "0"}

_SCHEDULE_CONFIG = _message(
    {
        "task_timeout_seconds": _int32,
        "resource_reserved_seconds": _int32,
        "resource_reallocation_interval_seconds": _int32,
    }
)
_BANDWIDTH_LIMITS = _repeated(_message({"destination_id": _string, "limit_kbps": _uint64}))


@dataclass(frozen=True)
class Newer:
    """A field current Kuscia has and the packaged messages lack."""

    read: Callable[[Any], Any]
    release: str


#: (message, field) -> how to read it. The release named is one that has the field (the one the package was
#: compared with), not necessarily the first. Everything else must be in the packaged messages.
NEWER_FIELDS: dict[tuple[str, str], Newer] = {
    # "none" | "affinity" | "anti-affinity": spreads a serving's replicas over nodes.
    (f"{_API}.CreateServingRequest", "affinity_mode"): Newer(_string, "v1.1.0b0"),
    # Per-task timeouts and resource reservation.
    (f"{_API}.Task", "schedule_config"): Newer(_SCHEDULE_CONFIG, "v1.1.0b0"),
    # A tolerable task may fail without failing its job.
    (f"{_API}.Task", "tolerable"): Newer(_bool, "v1.1.0b0"),
    # Requested bandwidth in Mbps (the operator sends a party's kuscia.io/bandwidth here).
    (f"{_API}.JobResource", "bandwidth"): Newer(_string, "v1.1.0b0"),
    # Per-destination bandwidth caps; limit_kbps is a uint64 (a JSON string).
    (f"{_API}.Party", "bandwidth_limits"): Newer(_BANDWIDTH_LIMITS, "v1.1.0b0"),
    # 0..1, how far a task has come.
    (f"{_API}.TaskStatus", "progress"): Newer(_float, "v1.1.0b0"),
    # The query answer's copy of Task.schedule_config (TaskConfig mirrors Task without `tolerable`).
    (f"{_API}.TaskConfig", "schedule_config"): Newer(_SCHEDULE_CONFIG, "v1.1.0b0"),
}


# --------------------------------------------------------------------------------------------------
# The AppImage API, by hand (not in the kuscia package)
# --------------------------------------------------------------------------------------------------


def _appimage_file() -> descriptor_pb2.FileDescriptorProto:
    """Kuscia's appimage.proto, written out: same package, names, numbers and types (probes, env_from
    and the batch/update routes left out: the operator sends none of them)."""
    string, int32, msg = (
        FieldDescriptor.TYPE_STRING,
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_MESSAGE,
    )
    one, many = FieldDescriptor.LABEL_OPTIONAL, FieldDescriptor.LABEL_REPEATED
    file = descriptor_pb2.FileDescriptorProto(
        name="kuscia/proto/api/v1alpha1/kusciaapi/appimage.proto",
        package=_API,
        syntax="proto3",
        dependency=["kuscia/proto/api/v1alpha1/common.proto"],
    )

    def add(name: str, *fields: tuple[str, int, int, int, str]) -> descriptor_pb2.DescriptorProto:
        message = file.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            entry = message.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                entry.type_name = type_name
        return message

    header = ("header", 1, msg, one, ".kuscia.proto.api.v1alpha1.RequestHeader")
    status = ("status", 1, msg, one, ".kuscia.proto.api.v1alpha1.Status")
    templates = (
        f".{_API}.CreateAppImageRequest.ConfigTemplatesEntry",
        f".{_API}.QueryAppImageResponseData.ConfigTemplatesEntry",
    )
    create = add(
        "CreateAppImageRequest",
        header,
        ("name", 2, string, one, ""),
        ("image", 3, msg, one, f".{_API}.AppImageInfo"),
        ("config_templates", 4, msg, many, templates[0]),
        ("deploy_templates", 5, msg, many, f".{_API}.DeployTemplate"),
    )
    add(
        "AppImageInfo",
        ("name", 1, string, one, ""),
        ("tag", 2, string, one, ""),
        ("id", 3, string, one, ""),
        ("sign", 4, string, one, ""),
    )
    add(
        "DeployTemplate",
        ("name", 1, string, one, ""),
        ("role", 2, string, one, ""),
        ("replicas", 3, int32, one, ""),
        ("restart_policy", 4, string, one, ""),
        ("containers", 5, msg, many, f".{_API}.Container"),
    )
    add(
        "Container",
        ("name", 1, string, one, ""),
        ("command", 2, string, many, ""),
        ("args", 3, string, many, ""),
        ("working_dir", 4, string, one, ""),
        ("config_volume_mounts", 5, msg, many, f".{_API}.ConfigVolumeMount"),
        # No port number: Kuscia allocates it and hands it to the container as KUSCIA_PORT_<NAME>_NUMBER.
        ("ports", 6, msg, many, f".{_API}.ContainerPort"),
        ("env", 8, msg, many, f".{_API}.EnvVar"),
        ("resources", 9, msg, one, f".{_API}.ResourceRequirements"),
        ("image_pull_policy", 13, string, one, ""),
    )
    add("ConfigVolumeMount", ("mount_path", 1, string, one, ""), ("sub_path", 2, string, one, ""))
    add(
        "ContainerPort",
        ("name", 1, string, one, ""),
        ("protocol", 2, string, one, ""),
        ("scope", 3, string, one, ""),
    )
    add("EnvVar", ("name", 1, string, one, ""), ("value", 2, string, one, ""))
    add(
        "ResourceRequirements",
        ("limits", 1, msg, one, f".{_API}.ResourceSpec"),
        ("requests", 2, msg, one, f".{_API}.ResourceSpec"),
    )
    add("ResourceSpec", ("cpu", 1, string, one, ""), ("memory", 2, string, one, ""))
    add("CreateAppImageResponse", status)
    add("DeleteAppImageRequest", header, ("name", 2, string, one, ""))
    add("DeleteAppImageResponse", status)
    add("QueryAppImageRequest", header, ("name", 2, string, one, ""))
    add(
        "QueryAppImageResponse",
        status,
        ("data", 2, msg, one, f".{_API}.QueryAppImageResponseData"),
    )
    data = add(
        "QueryAppImageResponseData",
        ("name", 1, string, one, ""),
        ("image", 2, msg, one, f".{_API}.AppImageInfo"),
        ("config_templates", 3, msg, many, templates[1]),
        ("deploy_templates", 4, msg, many, f".{_API}.DeployTemplate"),
    )
    for owner in (create, data):
        entry = owner.nested_type.add(name="ConfigTemplatesEntry")
        entry.options.map_entry = True
        entry.field.add(name="key", number=1, type=string, label=one)
        entry.field.add(name="value", number=2, type=string, label=one)
    return file


class _AppImageMessages:
    """Message classes of the hand-written AppImage file, as attributes like a generated ``_pb2``."""

    def __init__(self) -> None:
        pool = descriptor_pool.Default()
        try:
            file = pool.FindFileByName("kuscia/proto/api/v1alpha1/kusciaapi/appimage.proto")
        except KeyError:
            file = pool.Add(_appimage_file())
            file = pool.FindFileByName("kuscia/proto/api/v1alpha1/kusciaapi/appimage.proto")
        for name in file.message_types_by_name:
            setattr(self, name, message_factory.GetMessageClass(file.message_types_by_name[name]))

    def __getattr__(self, name: str) -> type[Message]:  # for type checkers; real ones are set above
        raise AttributeError(name)


_ = common_pb2  # RequestHeader and Status must be in the pool before the AppImage file refers to them
appimage_pb2 = _AppImageMessages()


# --------------------------------------------------------------------------------------------------
# Reading and writing through the messages
# --------------------------------------------------------------------------------------------------

Path = tuple[str | int, ...]


@dataclass
class _Split:
    newer: list[tuple[Path, str, Any]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def _is_plain_message(fd: FieldDescriptor) -> bool:
    """A sub-message we walk into (not a map entry, not a well-known type such as Struct or Any)."""
    mt = fd.message_type
    return (
        mt is not None and not mt.GetOptions().map_entry and not mt.full_name.startswith("google.protobuf.")
    )


def _walk(desc: Descriptor, obj: Any, path: Path, split: _Split, *, drop_unknown: bool) -> Any:
    """Take newer fields (and, with ``drop_unknown``, unknown ones) out of ``obj``, noting where."""
    if not isinstance(obj, dict):
        return obj  # a type error: ParseDict reports it
    by_name: dict[str, FieldDescriptor] = {}
    for fd in desc.fields:
        by_name[fd.name] = fd
        by_name[fd.json_name] = fd
    out: dict[str, Any] = {}
    for key, value in obj.items():
        fd = by_name.get(key)
        if fd is None:
            newer = NEWER_FIELDS.get((desc.full_name, _snake(key)))
            if newer is not None:
                try:
                    split.newer.append((path, _snake(key), newer.read(value)))
                except WireError as err:
                    raise WireError(f"{'.'.join(map(str, (*path, key)))}: {err}") from None
                continue
            split.unknown.append(".".join(map(str, (*path, key))))
            if not drop_unknown:
                out[key] = value
            continue
        if _is_plain_message(fd) and value is not None:
            if fd.is_repeated and isinstance(value, list):
                value = [
                    _walk(fd.message_type, item, (*path, fd.name, i), split, drop_unknown=drop_unknown)
                    for i, item in enumerate(value)
                ]
            else:
                value = _walk(fd.message_type, value, (*path, fd.name), split, drop_unknown=drop_unknown)
        out[key] = value
    return out


def _place(data: dict[str, Any], path: Path, name: str, value: Any) -> None:
    target: Any = data
    for step in path:
        target = target[step]
    target[name] = value


def _nulls(message: Message, data: dict[str, Any]) -> None:
    """protojson with EmitUnpopulated writes an unset sub-message as null; MessageToDict leaves it out."""
    for fd in message.DESCRIPTOR.fields:
        if fd.message_type is None or fd.message_type.GetOptions().map_entry:
            continue
        walk = _is_plain_message(fd)  # not into Struct or Any: their JSON is their content
        if fd.is_repeated:
            if walk:
                for item, item_data in zip(getattr(message, fd.name), data.get(fd.name, []), strict=True):
                    _nulls(item, item_data)
        elif message.HasField(fd.name):
            if walk:
                _nulls(getattr(message, fd.name), data[fd.name])
        elif fd.containing_oneof is None:
            data[fd.name] = None


def _to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


@dataclass(frozen=True)
class Bound:
    """A request as Kuscia's server sees it: every field present, snake_case, plus what it dropped."""

    data: dict[str, Any]
    unknown: tuple[str, ...]


def bind(message_class: type[Message], body: Any) -> Bound:
    """Read a JSON request like Kuscia's binder (protojson, DiscardUnknown): unknown fields are dropped
    but reported, a wrong type raises ``WireError`` (Kuscia answers 11101 then)."""
    if not isinstance(body, dict):
        raise WireError("request body is not a JSON object")
    split = _Split()
    clean = _walk(message_class.DESCRIPTOR, body, (), split, drop_unknown=True)
    message = message_class()
    try:
        json_format.ParseDict(clean, message, ignore_unknown_fields=False)
    except json_format.ParseError as err:
        raise WireError(str(err)) from None
    data = _to_dict(message)
    for path, name, value in split.newer:
        _place(data, path, name, value)
    return Bound(data, tuple(split.unknown))


def encode(message_class: type[Message], body: dict[str, Any]) -> dict[str, Any]:
    """An answer in Kuscia's encoding (snake_case, every field present, unset sub-messages null, 64-bit
    integers as strings). Anything the message cannot carry raises: the emulator must not invent fields."""
    split = _Split()
    clean = _walk(message_class.DESCRIPTOR, body, (), split, drop_unknown=True)
    if split.unknown:
        raise WireError(f"{message_class.DESCRIPTOR.name} has no field(s) {', '.join(split.unknown)}")
    message = message_class()
    json_format.ParseDict(clean, message, ignore_unknown_fields=False)
    data = _to_dict(message)
    _nulls(message, data)
    for path, name, value in split.newer:
        _place(data, path, name, value)
    return data


def contract_parse(message_class: type[Message], body: Any) -> tuple[Message, dict[str, Any]]:
    """Parse ``body`` strictly (``json_format.Parse(..., ignore_unknown_fields=False)``) after taking out
    only the fields in ``NEWER_FIELDS``; returns the message and those fields by path."""
    split = _Split()
    rest = _walk(message_class.DESCRIPTOR, body, (), split, drop_unknown=False)
    message = json_format.Parse(json.dumps(rest), message_class(), ignore_unknown_fields=False)
    newer = {".".join(map(str, (*path, name))): value for path, name, value in split.newer}
    return message, newer


#: Kuscia API path -> (request message, response message); ``/healthZ`` included.
ROUTES: dict[str, tuple[type[Message], type[Message]]] = {
    "/healthZ": (health_pb2.HealthRequest, health_pb2.HealthResponse),
    "/api/v1/serving/create": (serving_pb2.CreateServingRequest, serving_pb2.CreateServingResponse),
    "/api/v1/serving/update": (serving_pb2.UpdateServingRequest, serving_pb2.UpdateServingResponse),
    "/api/v1/serving/delete": (serving_pb2.DeleteServingRequest, serving_pb2.DeleteServingResponse),
    "/api/v1/serving/query": (serving_pb2.QueryServingRequest, serving_pb2.QueryServingResponse),
    "/api/v1/serving/status/batchQuery": (
        serving_pb2.BatchQueryServingStatusRequest,
        serving_pb2.BatchQueryServingStatusResponse,
    ),
    "/api/v1/job/create": (job_pb2.CreateJobRequest, job_pb2.CreateJobResponse),
    "/api/v1/job/query": (job_pb2.QueryJobRequest, job_pb2.QueryJobResponse),
    "/api/v1/job/stop": (job_pb2.StopJobRequest, job_pb2.StopJobResponse),
    "/api/v1/job/delete": (job_pb2.DeleteJobRequest, job_pb2.DeleteJobResponse),
    "/api/v1/job/status/batchQuery": (
        job_pb2.BatchQueryJobStatusRequest,
        job_pb2.BatchQueryJobStatusResponse,
    ),
    "/api/v1/appimage/create": (appimage_pb2.CreateAppImageRequest, appimage_pb2.CreateAppImageResponse),
    "/api/v1/appimage/query": (appimage_pb2.QueryAppImageRequest, appimage_pb2.QueryAppImageResponse),
    "/api/v1/appimage/delete": (appimage_pb2.DeleteAppImageRequest, appimage_pb2.DeleteAppImageResponse),
}
