"""hack/bench.py's modules, one room each.

    base         where the tree is, the log line, rounding of figures
    objects      the sample objects a run creates, and creating many at once
    provenance   which operator code and which versions ran
    processes    the operator, the Knative simulator, the watcher and py-spy, each stopped by PID
    harness      one run's state, set-up and teardown, and the marks and windows every phase measures
    floor        phase: the API work the operator cannot avoid, without the operator
    rollout      phase: the operator converges N new PaddleServices
    idle_restart phases: nothing changes, then the operator restarts
    kuscia       phase: mirrored Kuscia objects against the emulator, calls per poll interval
    report       pure: the result dict as the printed tables
    apiserver    what the API server saw: request counters and the audit log
    proc         CPU and memory of processes, from /proc
    watcher      a process of its own that stamps each object's milestones

They talk to the API server with the operator's own client (`paddle_kuscia.adapters.kube.KubeClient`), under
user agents that the audit log counts as the bench rather than the operator.
"""
