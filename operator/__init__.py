"""The kubetrade operator: LiveTradingSession resources become runner pods.

- crd.py       the CustomResourceDefinition, generated from the runner's spec
- children.py  pure builders of the objects a session owns (runner ConfigMap, Pod, claim)
- status.py    the session's status: phase, conditions, the runner's figures, the rollout
- rollout.py   which spec runs: tags taken up once, upgrades, stability, rollback (pure)
- claim.py     the session's volume claim: made, adopted or released (pure)
- plan.py      the next step for one session, decided from what the API server said (pure)
- resolve.py   a session's OCI strategy tag resolved to a digest, with its pull Secret
- reconcile.py one level-based reconciliation: observe, plan, act, record
- login.py     who the operator is to the API server (kubeconfig or ServiceAccount)
- kube.py      the few Kubernetes API calls the reconciler makes
- handlers.py  kopf wiring: which events trigger a reconciliation
- main.py      `kubetrade operator`
"""
