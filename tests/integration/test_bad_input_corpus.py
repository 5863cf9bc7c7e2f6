"""The bad-input corpus (tests/fixtures/bad-input): every manifest is refused at apply time naming the field,
or accepted and answered with Ready=False and the expected reason, while the operator neither crashes nor
retries faster than its backoff.

Each file's first line says what must happen:
  # expect: refused <text the API server's error must contain, e.g. the field path>
  # expect: not-ready <Ready reason> <text the Ready message must contain>
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from chaos_support import announce, backoff_allowance
from kuscia_fixtures import kuscia, operator_args

from support.control_plane import ROOT, ControlPlane, wait_for
from support.fleet import condition, reconciles, wait_no_problems
from support.knative import Knative
from support.kuscia_double import KusciaDoubleThread
from support.operator import OperatorProcess

__all__ = ["kuscia"]

CORPUS = ROOT / "tests" / "fixtures" / "bad-input"
KINDS = {"PaddleService", "KusciaJob", "KusciaDeployment"}
# Reasons given an allowance in the backoff check. Kuscia's refusals are no longer re-sent until the object
# changes, so this is an upper bound; all other reasons are final.
RETRIED_REASONS = {"KusciaRequestRejected"}
WINDOW = 8.0  # seconds of observation for the backoff check


@dataclass(frozen=True)
class Case:
    path: Path
    outcome: str  # "refused" or "not-ready"
    reason: str | None
    needle: str

    @property
    def obj(self) -> dict:
        return yaml.safe_load(self.path.read_text())

    @property
    def kind(self) -> str:
        return self.obj["kind"]

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]


_EXPECT = re.compile(r"# expect: (?:(?P<refused>refused)|not-ready (?P<reason>[A-Za-z]+)) (?P<needle>\S.*)")


def load_corpus() -> list[Case]:
    cases = []
    for path in sorted(CORPUS.glob("*.yaml")):
        match = _EXPECT.fullmatch(path.read_text().splitlines()[0].strip())
        assert match, (
            f"{path.name}: the first line must be '# expect: refused <text>' or '# expect: not-ready <Reason> <text>'"
        )
        outcome = "refused" if match["refused"] else "not-ready"
        cases.append(Case(path, outcome, match["reason"], match["needle"]))
    return cases


def test_corpus_is_well_formed() -> None:
    cases = load_corpus()
    assert len(cases) >= 30
    for case in cases:
        docs = [d for d in yaml.safe_load_all(case.path.read_text()) if d]
        assert len(docs) == 1 and docs[0]["kind"] in KINDS, case.path.name
    kinds = {c.kind for c in cases}
    assert kinds == KINDS, f"every kind is covered: {kinds}"
    assert {c.outcome for c in cases} == {"refused", "not-ready"}


def _apply(cp: ControlPlane, namespace: str, case: Case) -> tuple[int, str]:
    proc = cp.kubectl("apply", "-n", namespace, "-f", str(case.path), check=False)
    return proc.returncode, proc.stderr


@dataclass
class CorpusRun:
    cases: list[Case]
    namespaces: dict[str, str]  # file name -> namespace
    applied: dict[str, tuple[int, str]]  # file name -> (kubectl exit code, stderr)
    operator: OperatorProcess
    window: tuple[int, int] | None = None  # (reconciles counted, reconciles the backoff allows)


CASES = load_corpus()


@pytest.fixture(scope="module")
def corpus_run(
    control_plane: ControlPlane,
    operator_rbac: None,
    knative: Knative,
    kuscia: KusciaDoubleThread,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CorpusRun]:
    """Every manifest applied in a namespace of its own, with the operator running, and every accepted one
    answered (Ready for its generation; a wrong answer is left for the per-manifest test to report)."""
    log = tmp_path_factory.mktemp("bad-input") / "operator.log"
    prefix = f"bad-{uuid.uuid4().hex[:6]}"  # this run's namespaces only, never another run's leftovers
    operator = OperatorProcess(control_plane, log, args=operator_args(f"{prefix}-*", kuscia)).start()
    try:
        namespaces = {c.path.name: control_plane.create_namespace(prefix) for c in CASES}
        with ThreadPoolExecutor(4) as pool:
            outcomes = pool.map(lambda c: _apply(control_plane, namespaces[c.path.name], c), CASES)
            applied = dict(zip([c.path.name for c in CASES], outcomes, strict=True))
        run = CorpusRun(CASES, namespaces, applied, operator)

        def unsettled() -> list[str]:
            waiting = []
            for case in CASES:
                if case.outcome != "not-ready" or applied[case.path.name][0] != 0:
                    continue
                obj = control_plane.get(case.kind, case.name, namespaces[case.path.name])
                ready = condition(obj, "Ready")
                settled = ready.get("status") == "True" or ready.get("reason") == case.reason
                if not settled or ready.get("observedGeneration") != obj["metadata"]["generation"]:
                    waiting.append(f"{case.path.name}: Ready={ready.get('status')} {ready.get('reason')}")
            return waiting

        wait_no_problems(unsettled, timeout=60, what="an answer to every accepted manifest")
        yield run
    finally:
        operator.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.path.stem for c in CASES])
def test_manifest_is_refused_naming_the_field_or_answered_not_ready(
    control_plane: ControlPlane, corpus_run: CorpusRun, case: Case
) -> None:
    code, stderr = corpus_run.applied[case.path.name]
    namespace = corpus_run.namespaces[case.path.name]
    if case.outcome == "refused":
        assert code != 0, f"accepted; expected a refusal naming {case.needle}"
        assert case.needle in stderr, f"the refusal does not name {case.needle}: {stderr}"
        assert control_plane.get(case.kind, case.name, namespace) is None
        return
    assert code == 0, f"refused at apply time; expected Ready=False {case.reason}: {stderr}"
    obj = control_plane.get(case.kind, case.name, namespace)
    ready = condition(obj, "Ready")
    assert (ready.get("status"), ready.get("reason")) == ("False", case.reason), ready
    assert case.needle in ready["message"], ready["message"]
    assert ready["observedGeneration"] == obj["metadata"]["generation"]


def test_operator_neither_crashes_nor_retries_faster_than_its_backoff(
    control_plane: ControlPlane, corpus_run: CorpusRun
) -> None:
    """While nothing changes, final refusals are never retried and Kuscia's refusals are retried at most as
    often as the backoff schedule allows; answers that did not change are not written again."""
    retried = [
        c for c in corpus_run.cases if c.reason in RETRIED_REASONS and corpus_run.applied[c.path.name][0] == 0
    ]
    allowed = len(retried) * (backoff_allowance(WINDOW) + 2)  # +2: a poll result and a finalizer event
    operator = corpus_run.operator
    first, mark = operator.metrics(), control_plane.audit_line_count()
    time.sleep(WINDOW)  # an observation window: we count what happens inside it
    last = operator.metrics()
    counted = {
        f"{kind}/{outcome}": reconciles(last, kind=kind, outcome=outcome)
        - reconciles(first, kind=kind, outcome=outcome)
        for kind in sorted(KINDS)
        for outcome in ("ok", "retry", "error")
    }
    # Retries are failed reconciles; the backoff governs those (a successful reconcile is not a retry).
    attempts = sum(n for key, n in counted.items() if not key.endswith("/ok"))
    corpus_namespaces = set(corpus_run.namespaces.values())
    writes = [
        f"{e['verb']} {e['requestURI']}"
        for e in control_plane.operator_writes(mark)
        if (e.get("objectRef") or {}).get("namespace") in corpus_namespaces
    ]
    corpus_run.window = (attempts, allowed)
    assert attempts <= allowed, (
        f"{attempts} retries in {WINDOW:.0f}s ({counted}); the backoff allows {allowed}"
    )
    assert writes == [], f"the operator kept writing unchanged answers: {writes}"
    assert operator.proc is not None and operator.proc.poll() is None, "the operator exited"
    assert "Traceback" not in operator.log(), operator.log()[-4000:]


def test_deleting_the_corpus_leaves_no_finalizer_behind(
    request: pytest.FixtureRequest, control_plane: ControlPlane, corpus_run: CorpusRun
) -> None:
    """Runs last: deleting every namespace completes only if the operator lets go of every object."""
    corpus_namespaces = set(corpus_run.namespaces.values())
    for namespace in sorted(corpus_namespaces):
        control_plane.kubectl("delete", "namespace", namespace, "--wait=false")
    wait_for(
        lambda: not corpus_namespaces & {n["metadata"]["name"] for n in control_plane.list("namespaces")},
        timeout=90,
        interval=1.0,
        what="every corpus namespace deleted",
    )
    assert "Traceback" not in corpus_run.operator.log()
    cases = corpus_run.cases
    refused = sum(1 for c in cases if corpus_run.applied[c.path.name][0] != 0)
    by_kind = {k: sum(1 for c in cases if c.kind == k) for k in sorted(KINDS)}
    attempts, allowed = corpus_run.window or ("?", "?")
    announce(
        request,
        f"bad-input corpus: manifests={len(cases)} refused={refused} accepted-and-answered={len(cases) - refused} "
        f"by-kind={by_kind} retries-in-{WINDOW:.0f}s-window={attempts} (backoff allows {allowed})",
    )
