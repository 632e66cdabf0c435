"""The kubetrade operator: LiveTradingSession resources become runner pods.

- crd.py       the CustomResourceDefinition, generated from the runner's spec
- children.py  pure builders of the objects a session owns (runner ConfigMap, Pod, claim)
- status.py    the session's status: phase, conditions, the runner's figures, the rollout
- rollout.py   which spec runs: tags taken up once, upgrades, stability, rollback (pure)
- claim.py     the session's volume claim: made, adopted or released (pure)
- plan.py      the next step for one session, decided from what the API server said (pure)
- resolve.py   a session's OCI strategy tag resolved to a digest, with its pull Secret
- reconcile.py one level-based reconciliation: observe (cache first), plan, act, record
- cache.py     what the label-selected watches said last, by session
- workqueue.py which session is reconciled when: coalesced, bounded, due times
- login.py     who the operator is to the API server (kubeconfig or ServiceAccount)
- kube.py      the few Kubernetes API calls the reconciler makes, each write fenced
- events.py    Kubernetes Events queued by a pass and posted beside it, bounded
- fence.py     whether this process may write now (always, or while it holds the Lease)
- leader.py    leader election on a coordination.k8s.io Lease, for several replicas
- handlers.py  kopf wiring: which events feed the cache and ask for a pass
- memory.py    freed memory handed back to the system (glibc's malloc_trim)
- main.py      `kubetrade operator`
"""
