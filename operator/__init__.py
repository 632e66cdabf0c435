"""The kubetrade operator: LiveTradingSession resources become runner pods.

- crd.py       the CustomResourceDefinition, generated from the runner's spec
- children.py  pure builders of the objects a session owns (runner ConfigMap and Pod)
- status.py    the session's status: phase, conditions, the runner's figures
- plan.py      the next step for one session, decided from what the API server said (pure)
- reconcile.py one level-based reconciliation: observe, plan, act, record
- login.py     who the operator is to the API server (kubeconfig or ServiceAccount)
- kube.py      the few Kubernetes API calls the reconciler makes
- handlers.py  kopf wiring: which events trigger a reconciliation
- main.py      `kubetrade operator`
"""
