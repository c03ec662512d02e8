#!/usr/bin/env python3
"""Generate prometheusrule.yaml (a prometheus-operator PrometheusRule) from alerts.yaml.

A Prometheus rule file and a PrometheusRule's `spec` have the same structure (`groups:`), so
the rule file's `groups:` section is copied verbatim, indented under `spec:`. Block scalars
(`|`, `>-`) keep their content because their indentation is relative. Python standard library
only.

    python3 deploy/monitoring/gen-prometheusrule.py          # rewrite prometheusrule.yaml
    python3 deploy/monitoring/gen-prometheusrule.py --check  # exit 1 if it is out of date

operator/tests/monitoring.rs checks that the two files hold the same groups.
"""

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
SOURCE = HERE / "alerts.yaml"
TARGET = HERE / "prometheusrule.yaml"

HEADER = """\
# GENERATED from alerts.yaml by gen-prometheusrule.py: do not edit. Edit alerts.yaml, then run
#   python3 deploy/monitoring/gen-prometheusrule.py
#
# The alerting rules of alerts.yaml as a prometheus-operator PrometheusRule. A Prometheus run by
# prometheus-operator loads it only if the labels below match its spec.ruleSelector and this
# namespace matches its spec.ruleNamespaceSelector: kube-prometheus-stack, for one, selects
# `release: <helm release name>` by default, so add that label (or set
# prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false). See README.md.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: memgraph-operator
  namespace: memgraph-operator
  labels:
    app.kubernetes.io/name: memgraph-operator
    app.kubernetes.io/component: alerts
spec:
"""


def render(source: str) -> str:
    lines = source.splitlines()
    try:
        start = lines.index("groups:")
    except ValueError:
        sys.exit(f"{SOURCE}: no top-level `groups:` line")
    body = []
    for line in lines[start:]:
        if line.strip() and not line.startswith((" ", "#")) and line != "groups:":
            sys.exit(f"{SOURCE}: unexpected top-level key after groups: {line!r}")
        body.append("  " + line if line.strip() else "")
    return HEADER + "\n".join(body) + "\n"


def main() -> int:
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] and not check:
        sys.exit(f"usage: {sys.argv[0]} [--check]")
    wanted = render(SOURCE.read_text(encoding="utf-8"))
    if check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != wanted:
            print(f"{TARGET} is out of date: run {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
