"""Knative's autoscaling limits, written once and enforced twice: by the pydantic models and, as CEL, by the CRD.

Knative refuses out-of-range autoscaling annotations only when the Knative Service is applied, which leaves a
PaddleService at Ready=False; checking the same ranges in the PaddleService schema refuses them at
`kubectl apply`, naming the field. Source: knative.dev/serving v0.42.2, pkg/apis/autoscaling/
annotation_validation.go (the checks) and register.go (WindowMin/Max, PanicWindowPercentageMin/Max,
PanicThresholdPercentageMin/Max, TargetMin). pkg/apis/autoscaling/v1alpha1/pa_validation.go adds no bounds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# time.ParseDuration's syntax without a sign (a negative duration is out of every range below).
DURATION = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
NUMBER = r"^[0-9]+(\.[0-9]+)?$"
INT32_MAX = 2**31 - 1  # min-scale and max-scale are parsed as int32 (getIntGE0)
HPA_CLASSES = ("hpa", "hpa.autoscaling.knative.dev")
KPA_METRICS = ("concurrency", "rps")  # validateMetric: the KPA scales on these only; the HPA on any metric

_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_COMPONENT = re.compile(r"([0-9]+)(?:\.([0-9]+))?(ns|us|µs|ms|s|m|h)")


def go_duration_ns(text: str) -> int:
    """Nanoseconds in a duration matching DURATION, computed as Go's time.ParseDuration does (fractions included)."""
    if not re.fullmatch(DURATION, text):
        raise ValueError(f"{text!r} is not a duration such as 60s, 1m30s or 1h")
    total = 0
    for whole, fraction, unit in _COMPONENT.findall(text):
        scale = _NS[unit]
        total += int(whole) * scale
        if fraction:
            digits = fraction[:18]  # leadingFraction stops taking digits before uint64 overflows
            total += int(float(int(digits)) * (float(scale) / float(10 ** len(digits))))
    if total > 2**63 - 1:
        raise ValueError(f"{text!r} is too long a duration")
    return total


@dataclass(frozen=True)
class DurationRange:
    """An autoscaling duration that Knative bounds (and may require in whole seconds)."""

    field: str  # the PaddleService field, camelCase
    low: str
    high: str
    whole_seconds: bool
    annotation: str

    @property
    def message(self) -> str:
        precision = " in whole seconds" if self.whole_seconds else ""
        return (
            f"{self.field} must be a duration from {self.low} to {self.high}{precision} "
            f"(Knative's autoscaling.knative.dev/{self.annotation})"
        )

    def check(self, value: str | None) -> str | None:
        if value is None:
            return value
        ns = go_duration_ns(value)
        if not go_duration_ns(self.low) <= ns <= go_duration_ns(self.high) or (
            self.whole_seconds and ns % 10**9
        ):
            raise ValueError(self.message)
        return value

    def rule(self) -> dict[str, str]:
        d = f"duration(self.{self.field})"
        checks = [f"{d} >= duration('{self.low}')", f"{d} <= duration('{self.high}')"]
        if self.whole_seconds:
            checks.append(f"int({d}) % 1000000000 == 0")  # int() of a duration: nanoseconds
        # A value that is not a duration at all is refused by the field's pattern, with its own message.
        return {
            "rule": f"!has(self.{self.field}) || !self.{self.field}.matches(r'{DURATION}') || "
            f"({' && '.join(checks)})",
            "message": self.message,
            "fieldPath": f".{self.field}",
        }


@dataclass(frozen=True)
class NumberRange:
    """An autoscaling number that Knative parses with strconv.ParseFloat and bounds (inclusive)."""

    field: str
    low: float
    high: float
    annotation: str

    @property
    def message(self) -> str:
        return (
            f"{self.field} must be a number from {self.low:g} to {self.high:g} "
            f"(Knative's autoscaling.knative.dev/{self.annotation})"
        )

    def check(self, value: int | str | None) -> int | str | None:
        if value is None:
            return value
        if isinstance(value, str) and not re.fullmatch(NUMBER, value):
            raise ValueError(f"{self.field} must be a number such as 10 or 12.5")
        if not self.low <= float(value) <= self.high:
            raise ValueError(self.message)
        return value

    def rule(self) -> dict[str, str]:
        # int-or-string: CEL's double() takes either, and parses a string with strconv.ParseFloat, as Knative.
        x = f"double(self.{self.field})"
        return {
            "rule": f"!has(self.{self.field}) || ({x} >= {self.low:.1f} && {x} <= {self.high:.1f})",
            "message": self.message,
            "fieldPath": f".{self.field}",
        }


WINDOW = DurationRange("window", "6s", "1h", True, "window")  # validateWindow
SCALE_DOWN_DELAY = DurationRange("scaleDownDelay", "0s", "1h", True, "scale-down-delay")
SCALE_TO_ZERO_POD_RETENTION = DurationRange(
    "scaleToZeroPodRetentionPeriod", "0s", "1h", False, "scale-to-zero-pod-retention-period"
)  # validateLastPodRetention: no precision rule
PANIC_WINDOW = NumberRange("panicWindow", 1.0, 100.0, "panic-window-percentage")
PANIC_THRESHOLD = NumberRange("panicThreshold", 110.0, 1000.0, "panic-threshold-percentage")
TARGET_UTILIZATION = NumberRange("targetUtilization", 1.0, 100.0, "target-utilization-percentage")
TARGET_MIN = 1  # TargetMin is 0.01; `target` is an integer, as in ElasticServing

METRIC_MESSAGE = "metric must be concurrency or rps with the kpa autoscaler (cpu and memory need hpa)"
METRIC_RULE = {
    "rule": f"!has(self.metric) || (has(self.autoscaler) && self.autoscaler in {list(HPA_CLASSES)}) "
    f"|| self.metric in {list(KPA_METRICS)}",
    "message": METRIC_MESSAGE,
    "fieldPath": ".metric",
}


def cel_rules() -> list[dict[str, Any]]:
    """The CRD's x-kubernetes-validations for the ranges above (objects on the ServiceSpec)."""
    ranges: list[DurationRange | NumberRange] = [
        WINDOW,
        PANIC_WINDOW,
        PANIC_THRESHOLD,
        TARGET_UTILIZATION,
        SCALE_DOWN_DELAY,
        SCALE_TO_ZERO_POD_RETENTION,
    ]
    return [r.rule() for r in ranges] + [METRIC_RULE]
