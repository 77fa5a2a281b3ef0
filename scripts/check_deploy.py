#!/usr/bin/env python3
"""Static checks of deploy/ that need a YAML parser (called by scripts/check_deploy.sh).

  check_deploy.py ROOT OUTDIR            run the checks; writes OUTDIR/dashboard-rules.yml
                                         (every dashboard query as a recording rule, for
                                         `promtool check rules`)
  check_deploy.py ROOT --write-prometheusrule
                                         regenerate deploy/k8s/prometheusrule.yaml from
                                         deploy/prometheus/tierkv-alerts.yml

Checks: every YAML and JSON file parses; the Kubernetes objects reference each
other consistently (labels, port names, ConfigMap, kustomization); the ConfigMap
carries deploy/container/tierkvd.toml; the PrometheusRule equals the alert rules;
every tierkv_ metric named by the alerts and the dashboard is exported by the
daemon (daemon/*.cc); the dashboard's variables are defined; the README's engine
examples are the code tests/integration/ops_readme_example_test.cc runs. Prints one line per
problem and exits 1 if there is any.
"""
import glob
import json
import os
import re
import sys

try:
    import yaml
except ImportError:
    sys.exit("check_deploy: python3-yaml is missing (deploy/install-deps.sh installs it)")

PROBLEMS = []


def problem(msg):
    PROBLEMS.append(msg)
    print("  FAIL " + msg)


def ok(msg):
    print("  ok   " + msg)


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def exported_metrics(root):
    """Metric names the daemon exports, read from its sources."""
    names = set()
    for path in glob.glob(os.path.join(root, "daemon", "*.cc")):
        with open(path) as f:
            names.update(re.findall(r'"(tierkv_[a-z0-9_]+)"', f.read()))
    # Histograms expose _bucket, _sum and _count series.
    for n in list(names):
        if n.endswith("_seconds"):
            names.update({n + "_bucket", n + "_sum", n + "_count"})
    return names


def metric_refs(expr):
    return set(re.findall(r"\b(tierkv_[a-z0-9_]+)", expr))


def check_metric_names(where, expr, exported):
    missing = sorted(m for m in metric_refs(expr) if m not in exported)
    if missing:
        problem(f"{where}: unknown metric(s) {', '.join(missing)} (not exported by daemon/*.cc)")
    return not missing


def check_yaml_files(root):
    docs = {}
    for path in sorted(glob.glob(os.path.join(root, "deploy", "**", "*.y*ml"), recursive=True)):
        rel = os.path.relpath(path, root)
        try:
            docs[rel] = load_yaml_docs(path)
        except yaml.YAMLError as e:
            problem(f"{rel}: YAML does not parse: {e}")
    ok(f"{len(docs)} YAML files parse")
    return docs


def check_alerts(root, exported):
    rules = yaml.safe_load(open(os.path.join(root, "deploy/prometheus/tierkv-alerts.yml")))
    n = 0
    for g in rules["groups"]:
        for r in g["rules"]:
            n += 1
            name = r.get("alert") or r.get("record")
            check_metric_names(f"tierkv-alerts.yml {name}", r["expr"], exported)
            if "alert" in r:
                if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                    problem(f"tierkv-alerts.yml {name}: severity label must be critical, warning or info")
                for key in ("summary", "description"):
                    if not r.get("annotations", {}).get(key):
                        problem(f"tierkv-alerts.yml {name}: annotation {key} missing")
    ok(f"{n} alert rules name exported metrics and carry severity, summary, description")
    return rules


def prometheusrule_doc(rules):
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "tierkv-alerts",
                     "labels": {"app.kubernetes.io/name": "tierkvd", "app.kubernetes.io/part-of": "tierkv"}},
        "spec": rules,
    }


def write_prometheusrule(root):
    rules = yaml.safe_load(open(os.path.join(root, "deploy/prometheus/tierkv-alerts.yml")))

    class Dumper(yaml.SafeDumper):
        pass

    def str_rep(d, s):
        style = "|" if "\n" in s else None
        return d.represent_scalar("tag:yaml.org,2002:str", s, style=style)

    Dumper.add_representer(str, str_rep)
    header = ("# Prometheus Operator copy of deploy/prometheus/tierkv-alerts.yml (spec = that file).\n"
              "# scripts/check_deploy.sh fails when the two differ: edit both, or regenerate this one\n"
              "# with scripts/check_deploy.py . --write-prometheusrule.\n")
    path = os.path.join(root, "deploy/k8s/prometheusrule.yaml")
    with open(path, "w") as f:
        f.write(header + yaml.dump(prometheusrule_doc(rules), Dumper=Dumper, sort_keys=False, width=200))
    print("wrote " + path)


def objects_by_kind(docs):
    out = {}
    for rel, ds in docs.items():
        if not rel.startswith("deploy/k8s/"):
            continue
        for d in ds:
            if isinstance(d, dict) and "kind" in d:
                out.setdefault(d["kind"], []).append((rel, d))
    return out


def selector_matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def check_k8s(root, docs, rules):
    kinds = objects_by_kind(docs)
    for kind in ("Namespace", "ConfigMap", "DaemonSet", "Service", "ServiceMonitor", "PrometheusRule"):
        if len(kinds.get(kind, [])) != 1:
            problem(f"deploy/k8s: expected one {kind}, found {len(kinds.get(kind, []))}")
            return
    _, ds = kinds["DaemonSet"][0]
    _, svc = kinds["Service"][0]
    _, sm = kinds["ServiceMonitor"][0]
    _, cm = kinds["ConfigMap"][0]
    _, pr = kinds["PrometheusRule"][0]
    pod = ds["spec"]["template"]
    if not selector_matches(ds["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"]):
        problem("DaemonSet: selector does not match the pod template's labels")
    if not selector_matches(svc["spec"]["selector"], pod["metadata"]["labels"]):
        problem("Service: selector does not match the DaemonSet's pods")
    if not selector_matches(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]):
        problem("ServiceMonitor: selector does not match the Service's labels")
    svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        if ep["port"] not in svc_ports:
            problem(f"ServiceMonitor: endpoint port {ep['port']} is not a port name of the Service")
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "tierkvd")
    cports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    for name, p in svc_ports.items():
        target = p.get("targetPort", p["port"])
        if isinstance(target, str) and target not in cports:
            problem(f"Service port {name}: targetPort {target} is not a container port name")
    job = svc["metadata"]["labels"].get(sm["spec"].get("jobLabel", ""), "")
    if job != "tierkv":
        problem(f"ServiceMonitor: jobLabel gives job={job!r}; the alerts and dashboard expect job=\"tierkv\"")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    if volumes.get("config", {}).get("configMap", {}).get("name") != cm["metadata"]["name"]:
        problem("DaemonSet: volume config does not mount the ConfigMap")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for name in mounts:
        if name not in volumes:
            problem(f"DaemonSet: volumeMount {name} has no volume")
    with open(os.path.join(root, "deploy/container/tierkvd.toml")) as f:
        container_toml = f.read()
    if cm["data"].get("tierkvd.toml", "").strip() != container_toml.strip():
        problem("ConfigMap tierkvd.toml differs from deploy/container/tierkvd.toml")
    if mounts.get("config") != "/etc/tierkv" or "/etc/tierkv/tierkvd.toml" not in container.get("args", []):
        problem("DaemonSet: the config must be mounted at /etc/tierkv and passed with --config")
    if pr["spec"] != rules:
        problem("deploy/k8s/prometheusrule.yaml differs from deploy/prometheus/tierkv-alerts.yml "
                "(regenerate: scripts/check_deploy.py . --write-prometheusrule)")
    for _, np in kinds.get("NetworkPolicy", []):
        if not selector_matches(np["spec"]["podSelector"].get("matchLabels", {}), pod["metadata"]["labels"]):
            problem("NetworkPolicy: podSelector does not match the DaemonSet's pods")
        for rule in np["spec"].get("ingress", []):
            for p in rule.get("ports", []):
                if isinstance(p.get("port"), str) and p["port"] not in cports:
                    problem(f"NetworkPolicy: port {p['port']} is not a container port name")
    kust = yaml.safe_load(open(os.path.join(root, "deploy/k8s/kustomization.yaml")))
    for r in kust["resources"]:
        if not os.path.exists(os.path.join(root, "deploy/k8s", r)):
            problem(f"kustomization.yaml: resource {r} does not exist")
    ok("Kubernetes objects: labels, selectors, ports, volumes, ConfigMap, PrometheusRule, kustomization agree")


def dashboard_exprs(dash):
    """(panel title, expr) of every query of every panel (rows included)."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((p.get("title", "?"), t.get("expr", "")))
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    return out


# Grafana variables replaced by PromQL that parses (as the test against a real
# Prometheus does: tests/integration/prometheus_test.cc).
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
                "$instance": ".*", "$namespace": ".*"}


def substitute(expr):
    for k, v in GRAFANA_VARS.items():
        expr = expr.replace(k, v)
    return expr


def check_dashboard(root, exported, outdir):
    path = os.path.join(root, "deploy/grafana/tierkv.json")
    try:
        dash = json.load(open(path))
    except (OSError, json.JSONDecodeError) as e:
        problem(f"deploy/grafana/tierkv.json: {e}")
        return
    ids = [p["id"] for p in dash["panels"]]
    if len(ids) != len(set(ids)):
        problem("dashboard: panel ids are not unique")
    defined = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    exprs = dashboard_exprs(dash)
    rules = []
    for i, (title, expr) in enumerate(exprs):
        if not expr.strip():
            problem(f"dashboard panel {title!r}: empty query")
            continue
        for var in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expr):
            if not var.startswith("__") and var not in defined:
                problem(f"dashboard panel {title!r}: variable ${var} is not defined")
        check_metric_names(f"dashboard panel {title!r}", expr, exported)
        rules.append({"record": f"dashboard:query_{i}", "expr": substitute(expr)})
    for p in dash["panels"]:
        if p.get("type") != "row" and not p.get("targets"):
            problem(f"dashboard panel {p.get('title')!r}: no query")
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            check_metric_names(f"dashboard annotation {a.get('name')!r}", a["expr"], exported)
            rules.append({"record": f"dashboard:annotation_{len(rules)}", "expr": substitute(a["expr"])})
    with open(os.path.join(outdir, "dashboard-rules.yml"), "w") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, sort_keys=False)
    ok(f"dashboard: {len(exprs)} queries name exported metrics and defined variables")


def check_readme_examples(root):
    """The README's engine examples are the code tests/integration/ops_readme_example_test.cc runs."""
    test_path = os.path.join(root, "tests/integration/ops_readme_example_test.cc")
    try:
        test = open(test_path).read()
        readme = open(os.path.join(root, "README.md")).read()
    except OSError as e:
        problem(f"README examples: {e}")
        return
    for tag, fence in (("cpp", "```cpp\n"), ("c", "```c\n")):
        m = re.search(rf"// README:{tag}:begin\n(.*?)// README:{tag}:end\n", test, re.S)
        if not m:
            problem(f"{os.path.relpath(test_path, root)}: no README:{tag} markers")
        elif fence + m.group(1) + "```" not in readme:
            problem(f"README.md: the {tag} example differs from {os.path.relpath(test_path, root)} (copy it over)")
    ok("README engine examples match the code the integration test runs")


def main():
    if len(sys.argv) == 3 and sys.argv[2] == "--write-prometheusrule":
        write_prometheusrule(sys.argv[1])
        return 0
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    root, outdir = sys.argv[1], sys.argv[2]
    exported = exported_metrics(root)
    if len(exported) < 20:
        problem(f"found only {len(exported)} metric names in daemon/*.cc")
    docs = check_yaml_files(root)
    rules = check_alerts(root, exported)
    check_k8s(root, docs, rules)
    check_dashboard(root, exported, outdir)
    check_readme_examples(root)
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())
