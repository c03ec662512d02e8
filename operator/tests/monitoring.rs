//! Checks of the monitoring assets shipped in `deploy/monitoring/`: the Prometheus alerting
//! rules, their promtool unit tests, the PrometheusRule generated from them, the
//! ServiceMonitor and the metrics Service of deploy/install.yaml (the Helm chart), and the
//! Grafana dashboard.
//!
//! The promtool checks run the real `promtool` found on PATH: `check rules` on the rule file,
//! `test rules` on the unit tests, and `check rules` on a rule file made of every dashboard
//! query, so that each query parses as PromQL. Without promtool they are reported as ignored
//! with the reason; with `MGO_REQUIRE_PROMTOOL=1` (CI) a missing promtool fails them instead.
//! The other checks need no tool: they parse the files and compare them with each other and
//! with the list of metrics the operator exports (below).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod common;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

const SKIP_REASON: &str = "skipped: promtool not found on PATH (it comes with Prometheus)";

/// Prometheus' own series, about the scrape of the operator.
const SCRAPE_SERIES: &[&str] = &["up"];

/// The alerts `alerts.yaml` defines.
const ALERTS: &[&str] = &[
    "MemgraphReplicationLagHigh",
    "MemgraphReplicaNotReady",
    "MemgraphValidationFailing",
    "MemgraphReconcileErrors",
    "MemgraphBackupsNotSucceeding",
    "MemgraphSnapshotsFailing",
    "MemgraphOperatorDown",
];

/// The one alert that is not about a cluster (so names none).
const OPERATOR_ALERT: &str = "MemgraphOperatorDown";

/// Grafana's built-in variables a query may use.
const GRAFANA_BUILTINS: &[&str] = &["__rate_interval", "__interval", "__range"];

type Test = fn() -> Result<(), Failed>;
type PromtoolTest = fn(&Path) -> Result<(), Failed>;

const TESTS: &[(&str, Test)] = &[
    ("promql_metric_names_are_found", promql_metric_names_are_found),
    ("alerts_are_the_documented_ones", alerts_are_the_documented_ones),
    ("alerts_use_only_exported_metrics", alerts_use_only_exported_metrics),
    ("alert_tests_fire_and_silence_every_alert", alert_tests_fire_and_silence_every_alert),
    ("prometheusrule_holds_the_same_groups", prometheusrule_holds_the_same_groups),
    ("servicemonitor_scrapes_the_metrics_service", servicemonitor_scrapes_the_metrics_service),
    ("dashboard_is_a_grafana_dashboard", dashboard_is_a_grafana_dashboard),
    ("dashboard_uses_only_exported_metrics", dashboard_uses_only_exported_metrics),
    ("dashboard_shows_every_exported_metric", dashboard_shows_every_exported_metric),
];

const PROMTOOL_TESTS: &[(&str, PromtoolTest)] = &[
    ("promtool_check_rules", promtool_check_rules),
    ("promtool_test_rules", promtool_test_rules),
    ("promtool_parses_dashboard_queries", promtool_parses_dashboard_queries),
];

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let required = std::env::var("MGO_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1");
    let promtool = find_on_path("promtool");

    let mut trials: Vec<Trial> = TESTS.iter().map(|(name, test)| Trial::test(*name, *test)).collect();
    for (name, test) in PROMTOOL_TESTS {
        let test = *test;
        trials.push(match &promtool {
            Some(promtool) => {
                let promtool = promtool.clone();
                Trial::test(*name, move || test(&promtool))
            }
            None if required => Trial::test(*name, || {
                Err("promtool not found on PATH, and MGO_REQUIRE_PROMTOOL=1 requires the promtool tests to run".into())
            }),
            None => Trial::ignorable_test(*name, || Ok(Completion::ignored_with(SKIP_REASON))),
        });
    }
    libtest_mimic::run(&args, trials).exit_code()
}

// ---------------------------------------------------------------------------------------------
// The tests that need no tool

fn promql_metric_names_are_found() -> Result<(), Failed> {
    let expr = r#"histogram_quantile(0.95, sum by (namespace, le) (rate(a_bucket{x=~"$ns", y="}"}[$__rate_interval])))
        / on (namespace) group_left (cluster) b offset 1h > 26 * 3600 unless absent(up{job=~".*"} == 1)
        or max without (replica) (c:recorded) and bool 1e3 or sum(rate(d[5m]))"#;
    let found = metric_names(expr)?;
    let wanted: BTreeSet<String> = ["a_bucket", "b", "up", "c:recorded", "d"].map(String::from).into();
    check(found == wanted, format!("found {found:?}, wanted {wanted:?}"))?;
    check(metric_names(r#"sum(x{a="unterminated)"#).is_err(), "an unterminated string is an error")?;
    Ok(())
}

fn alerts_are_the_documented_ones() -> Result<(), Failed> {
    let alerts = yaml_file("alerts.yaml")?;
    let mut names = BTreeSet::new();
    for rule in rules(&alerts)? {
        let name = str_at(rule, &["alert"]).ok_or("a rule without `alert` (recording rules do not belong here)")?;
        names.insert(name.to_owned());
        check(str_at(rule, &["expr"]).is_some_and(|e| !e.trim().is_empty()), format!("{name}: no expr"))?;
        check(str_at(rule, &["for"]).is_some(), format!("{name}: no `for`"))?;
        let severity = str_at(rule, &["labels", "severity"]);
        check(
            matches!(severity, Some("warning" | "critical")),
            format!("{name}: severity {severity:?}, wanted warning or critical"),
        )?;
        let summary = str_at(rule, &["annotations", "summary"]).ok_or(format!("{name}: no summary"))?;
        let description = str_at(rule, &["annotations", "description"]).ok_or(format!("{name}: no description"))?;
        if name != OPERATOR_ALERT {
            for (field, text) in [("summary", summary), ("description", description)] {
                check(
                    text.contains("{{ $labels.namespace }}/{{ $labels.cluster }}"),
                    format!("{name}: the {field} does not name the cluster"),
                )?;
            }
            check(
                description.contains("`kubectl describe mgc {{ $labels.cluster }} -n {{ $labels.namespace }}`"),
                format!("{name}: the description does not point at `kubectl describe mgc`"),
            )?;
            check(description.contains("condition"), format!("{name}: the description names no condition"))?;
        }
    }
    let wanted: BTreeSet<String> = ALERTS.iter().map(|a| (*a).to_owned()).collect();
    check_eq(names, wanted, "alert names")
}

fn alerts_use_only_exported_metrics() -> Result<(), Failed> {
    let alerts = yaml_file("alerts.yaml")?;
    let known = known_series();
    for rule in rules(&alerts)? {
        let name = str_at(rule, &["alert"]).unwrap_or("?");
        let expr = str_at(rule, &["expr"]).ok_or(format!("{name}: no expr"))?;
        let used = metric_names(expr).map_err(|e| format!("{name}: {e}"))?;
        check(!used.is_empty(), format!("{name}: selects no metric"))?;
        let unknown: Vec<&String> = used.iter().filter(|m| !known.contains(m.as_str())).collect();
        check(unknown.is_empty(), format!("{name}: not exported by the operator: {unknown:?}"))?;
    }
    Ok(())
}

/// Every rule of `alerts.yaml` (an alert name with its labels) is expected to fire in some
/// promtool test, and every alert name is expected to stay silent in some test.
fn alert_tests_fire_and_silence_every_alert() -> Result<(), Failed> {
    let alerts = yaml_file("alerts.yaml")?;
    let tests = yaml_file("alerts_test.yaml")?;
    check(
        seq_at(&tests, &["rule_files"]).is_some_and(|f| f.iter().any(|f| f.as_str() == Some("alerts.yaml"))),
        "alerts_test.yaml does not load alerts.yaml",
    )?;
    let mut fired: BTreeMap<String, Vec<&Yaml>> = BTreeMap::new();
    let mut silent: BTreeSet<String> = BTreeSet::new();
    for test in seq_at(&tests, &["tests"]).ok_or("alerts_test.yaml has no tests")? {
        for case in seq_at(test, &["alert_rule_test"]).into_iter().flatten() {
            let name = str_at(case, &["alertname"]).ok_or("an alert_rule_test without alertname")?;
            match seq_at(case, &["exp_alerts"]) {
                Some(expected) if !expected.is_empty() => {
                    fired.entry(name.to_owned()).or_default().extend(expected.iter().map(|e| &e["exp_labels"]));
                }
                _ => {
                    silent.insert(name.to_owned());
                }
            }
        }
    }
    for rule in rules(&alerts)? {
        let name = str_at(rule, &["alert"]).ok_or("a rule without `alert`")?;
        let labels = map_at(rule, &["labels"]).ok_or(format!("{name}: no labels"))?;
        let fires = fired.get(name).is_some_and(|expected| {
            expected.iter().any(|exp| labels.iter().all(|(k, v)| exp.get(k).is_some_and(|e| e == v)))
        });
        check(fires, format!("no promtool test expects {name} with labels {labels:?} to fire"))?;
        check(silent.contains(name), format!("no promtool test expects {name} to stay silent"))?;
    }
    Ok(())
}

fn prometheusrule_holds_the_same_groups() -> Result<(), Failed> {
    let alerts = yaml_file("alerts.yaml")?;
    let rule = yaml_file("prometheusrule.yaml")?;
    check_eq(str_at(&rule, &["apiVersion"]), Some("monitoring.coreos.com/v1"), "PrometheusRule apiVersion")?;
    check_eq(str_at(&rule, &["kind"]), Some("PrometheusRule"), "kind")?;
    check(str_at(&rule, &["metadata", "name"]).is_some_and(|n| !n.is_empty()), "the PrometheusRule has no name")?;
    let keys = |v: &Yaml| -> Vec<String> {
        v.as_mapping().map(|m| m.keys().filter_map(|k| k.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    check_eq(keys(&alerts), vec!["groups".to_owned()], "top-level keys of alerts.yaml")?;
    check_eq(keys(&rule["spec"]), vec!["groups".to_owned()], "keys of the PrometheusRule's spec")?;
    check(
        rule["spec"]["groups"] == alerts["groups"],
        "prometheusrule.yaml's spec.groups differ from alerts.yaml's groups: run \
         python3 deploy/monitoring/gen-prometheusrule.py",
    )
}

/// The ServiceMonitor selects the metrics Service of deploy/install.yaml (the Helm chart with its
/// defaults), and that Service selects the operator's pods.
fn servicemonitor_scrapes_the_metrics_service() -> Result<(), Failed> {
    let monitor = yaml_file("servicemonitor.yaml")?;
    check_eq(str_at(&monitor, &["apiVersion"]), Some("monitoring.coreos.com/v1"), "ServiceMonitor apiVersion")?;
    check_eq(str_at(&monitor, &["kind"]), Some("ServiceMonitor"), "kind")?;
    let install = std::fs::read_to_string(repo_root().join("deploy/install.yaml"))?;
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&install) {
        objects.push(Yaml::deserialize(document)?);
    }
    let service = objects
        .iter()
        .find(|o| {
            str_at(o, &["kind"]) == Some("Service")
                && str_at(o, &["metadata", "name"]) == Some("memgraph-operator-metrics")
        })
        .ok_or("deploy/install.yaml has no Service memgraph-operator-metrics")?;

    let service_ns = str_at(service, &["metadata", "namespace"]).ok_or("the Service has no namespace")?;
    let service_labels = map_at(service, &["metadata", "labels"]).ok_or("the Service has no labels")?;
    let selector = map_at(&monitor, &["spec", "selector", "matchLabels"]).ok_or("no spec.selector.matchLabels")?;
    check(
        selector.iter().all(|(k, v)| service_labels.get(k) == Some(v)),
        format!("the ServiceMonitor's selector {selector:?} does not match the Service's labels {service_labels:?}"),
    )?;
    let namespaces = seq_at(&monitor, &["spec", "namespaceSelector", "matchNames"]).unwrap_or_default();
    let watched = namespaces.iter().any(|n| n.as_str() == Some(service_ns))
        || (namespaces.is_empty() && str_at(&monitor, &["metadata", "namespace"]) == Some(service_ns));
    check(watched, "the ServiceMonitor does not look in the Service's namespace")?;

    // The job name Prometheus gives the scrapes (the Service's name, as spec.jobLabel is unset)
    // must be one that MemgraphOperatorDown watches.
    check(map_at(&monitor, &["spec"]).is_some_and(|s| !s.contains_key("jobLabel")), "jobLabel changes the job name")?;
    let job = str_at(service, &["metadata", "name"]).ok_or("the Service has no name")?;
    check(job.contains("memgraph-operator"), format!("job {job:?} does not match the MemgraphOperatorDown alert"))?;

    let endpoints = seq_at(&monitor, &["spec", "endpoints"]).ok_or("no spec.endpoints")?;
    check_eq(endpoints.len(), 1, "endpoints")?;
    let endpoint = &endpoints[0];
    check_eq(str_at(endpoint, &["path"]), Some("/metrics"), "endpoint path")?;
    check_eq(endpoint["honorLabels"].as_bool(), Some(true), "honorLabels (keeps the series' own namespace label)")?;
    let port_name = str_at(endpoint, &["port"]).ok_or("the endpoint names no port")?;
    let ports = seq_at(service, &["spec", "ports"]).ok_or("the Service has no ports")?;
    let port = ports.iter().find(|p| str_at(p, &["name"]) == Some(port_name));
    let port = port.ok_or(format!("the Service has no port named {port_name:?}"))?;
    check_eq(port["targetPort"].as_u64(), Some(9464), "the Service's targetPort (the operator's metrics port)")?;

    // The Service selects the operator's pods.
    let service_selector = map_at(service, &["spec", "selector"]).ok_or("the Service has no selector")?;
    let mut selects = false;
    for object in &objects {
        if str_at(object, &["kind"]) == Some("Deployment")
            && str_at(object, &["metadata", "namespace"]) == Some(service_ns)
            && let Some(pod_labels) = map_at(object, &["spec", "template", "metadata", "labels"])
        {
            selects |= service_selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v));
        }
    }
    check(selects, "the Service selects no Deployment's pods in deploy/install.yaml")
}

fn dashboard_is_a_grafana_dashboard() -> Result<(), Failed> {
    let dashboard = dashboard()?;
    let schema = dashboard["schemaVersion"].as_u64().ok_or("no schemaVersion")?;
    check((36..=41).contains(&schema), format!("schemaVersion {schema}, wanted about 39"))?;
    check(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()), "no uid")?;
    check(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()), "no title")?;

    let variables = variables(&dashboard)?;
    let datasource = variables.get("datasource").ok_or("no `datasource` variable")?;
    check_eq(datasource["type"].as_str(), Some("datasource"), "type of the datasource variable")?;
    check_eq(datasource["query"].as_str(), Some("prometheus"), "plugin of the datasource variable")?;
    for name in ["namespace", "cluster"] {
        let variable = variables.get(name).ok_or(format!("no `{name}` variable"))?;
        check_eq(variable["type"].as_str(), Some("query"), "type of a label variable")?;
        check(is_templated_prometheus(&variable["datasource"]), format!("`{name}` does not use ${{datasource}}"))?;
    }

    let mut ids = BTreeSet::new();
    let panels = panels(&dashboard)?;
    check(!panels.is_empty(), "no panels")?;
    for panel in panels {
        let title = panel["title"].as_str().ok_or("a panel without a title")?;
        let id = panel["id"].as_u64().ok_or(format!("{title}: no id"))?;
        check(ids.insert(id), format!("{title}: id {id} is used twice"))?;
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap_or(99), grid["w"].as_u64().unwrap_or(99));
        check(x + w <= 24 && grid["h"].as_u64().is_some(), format!("{title}: bad gridPos {grid}"))?;
        if panel["type"] == "row" {
            continue;
        }
        check(
            is_templated_prometheus(&panel["datasource"]),
            format!("{title}: the panel does not use ${{datasource}}"),
        )?;
        let targets = panel["targets"].as_array().ok_or(format!("{title}: no targets"))?;
        check(!targets.is_empty(), format!("{title}: no targets"))?;
        let mut refs = BTreeSet::new();
        for target in targets {
            check(is_templated_prometheus(&target["datasource"]), format!("{title}: a query without ${{datasource}}"))?;
            check(refs.insert(target["refId"].as_str().unwrap_or("")), format!("{title}: refIds repeat"))?;
            let expr = target["expr"].as_str().ok_or(format!("{title}: a query without expr"))?;
            substitute_variables(expr, &variables).map_err(|e| format!("{title}: {e}"))?;
            if expr.contains("_bucket") {
                check(expr.contains("histogram_quantile("), format!("{title}: buckets outside histogram_quantile"))?;
            }
        }
        // The lag panel shows the 1 s threshold of MemgraphReplicationLagHigh.
        if targets.iter().any(|t| t["expr"].as_str().is_some_and(|e| e.contains("memgraph_replication_lag_seconds"))) {
            let steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"].as_array();
            check(
                steps.is_some_and(|s| s.iter().any(|step| step["value"].as_f64() == Some(1.0))),
                format!("{title}: no threshold at 1 s"),
            )?;
            let style = &panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"];
            check(style.as_str().is_some_and(|m| m != "off"), format!("{title}: the threshold is not drawn"))?;
        }
    }
    Ok(())
}

fn dashboard_uses_only_exported_metrics() -> Result<(), Failed> {
    let dashboard = dashboard()?;
    let known = known_series();
    for (place, expr) in dashboard_queries(&dashboard)? {
        let used = metric_names(&expr).map_err(|e| format!("{place}: {e}"))?;
        check(!used.is_empty(), format!("{place}: selects no metric: {expr}"))?;
        let unknown: Vec<&String> = used.iter().filter(|m| !known.contains(m.as_str())).collect();
        check(unknown.is_empty(), format!("{place}: not exported by the operator: {unknown:?}"))?;
    }
    Ok(())
}

fn dashboard_shows_every_exported_metric() -> Result<(), Failed> {
    let dashboard = dashboard()?;
    let mut used = BTreeSet::new();
    for (_, expr) in dashboard_queries(&dashboard)? {
        used.extend(metric_names(&expr)?);
    }
    let documented = common::documented_metrics();
    let missing: Vec<&String> = documented
        .gauges
        .iter()
        .chain(&documented.counters)
        .filter(|m| !used.contains(*m))
        .chain(documented.histograms.iter().filter(|h| !used.contains(&format!("{h}_bucket"))))
        .collect();
    check(missing.is_empty(), format!("metrics the dashboard does not show: {missing:?}"))
}

// ---------------------------------------------------------------------------------------------
// The promtool tests

fn promtool_check_rules(promtool: &Path) -> Result<(), Failed> {
    run_promtool(promtool, &["check", "rules", "alerts.yaml"])
}

fn promtool_test_rules(promtool: &Path) -> Result<(), Failed> {
    run_promtool(promtool, &["test", "rules", "alerts_test.yaml"])
}

/// Every dashboard query, with its Grafana variables filled in, as a recording rule: `promtool
/// check rules` parses each with Prometheus' own parser.
fn promtool_parses_dashboard_queries(promtool: &Path) -> Result<(), Failed> {
    let dashboard = dashboard()?;
    let variables = variables(&dashboard)?;
    let mut file = String::from("groups:\n  - name: grafana-dashboard-queries\n    rules:\n");
    for (i, (place, expr)) in dashboard_queries(&dashboard)?.into_iter().enumerate() {
        let expr = substitute_variables(&expr, &variables).map_err(|e| format!("{place}: {e}"))?;
        file.push_str(&format!("      # {place}\n      - record: dashboard:query_{i}\n"));
        file.push_str(&format!("        expr: {}\n", serde_json::to_string(&expr)?));
    }
    let path = std::env::temp_dir().join(format!("memgraph-dashboard-queries-{}.yaml", std::process::id()));
    std::fs::write(&path, file)?;
    let result = run_promtool(promtool, &["check", "rules", path.to_str().ok_or("temporary path is not UTF-8")?]);
    let _ = std::fs::remove_file(&path);
    result
}

fn run_promtool(promtool: &Path, args: &[&str]) -> Result<(), Failed> {
    let output = Command::new(promtool)
        .args(args)
        .current_dir(monitoring_dir())
        .output()
        .map_err(|e| format!("running {}: {e}", promtool.display()))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "promtool {} failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .into())
}

// ---------------------------------------------------------------------------------------------
// PromQL

/// The metric names an expression selects. A light scan, not a parser: it skips strings, label
/// matchers (`{...}`), ranges (`[...]`), Grafana variables (`$x`, `${x}`), numbers and durations,
/// keywords, the label lists of `by`, `without`, `on`, `ignoring`, `group_left` and
/// `group_right`, and function names (a word followed by `(`); every other word is a metric.
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    const KEYWORDS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "atan2",
        "inf",
        "nan",
    ];
    const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    let chars: Vec<char> = expr.chars().collect();
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i)?;
        } else if c == '{' {
            i = skip_group(&chars, i, '}')?;
        } else if c == '[' {
            i = skip_group(&chars, i, ']')?;
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_group(&chars, i, '}')?;
            } else {
                while i < chars.len() && is_word(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            while i < chars.len() && (is_word(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if is_word(c) {
            let start = i;
            while i < chars.len() && is_word(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let before_paren = chars.get(next) == Some(&'(');
            if LABEL_LISTS.contains(&lower.as_str()) {
                if before_paren {
                    i = skip_group(&chars, next, ')')?;
                }
            } else if !KEYWORDS.contains(&lower.as_str()) && !before_paren {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    Ok(names)
}

/// From the quote at `start`, the index after the closing quote.
fn skip_string(chars: &[char], start: usize) -> Result<usize, String> {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(format!("unterminated string at {start}"))
}

/// From the opening bracket at `start`, the index after `close`, skipping strings inside.
fn skip_group(chars: &[char], start: usize, close: char) -> Result<usize, String> {
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i)?,
            c if c == close => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(format!("no {close:?} closes the {:?} at {start}", chars[start]))
}

/// Every series name the operator's endpoint serves, and `up`.
fn known_series() -> BTreeSet<String> {
    let documented = common::documented_metrics();
    let mut known: BTreeSet<String> = documented
        .gauges
        .iter()
        .chain(&documented.counters)
        .cloned()
        .chain(SCRAPE_SERIES.iter().map(|m| (*m).to_owned()))
        .collect();
    for histogram in &documented.histograms {
        for suffix in ["_bucket", "_sum", "_count"] {
            known.insert(format!("{histogram}{suffix}"));
        }
    }
    known
}

// ---------------------------------------------------------------------------------------------
// The dashboard

fn dashboard() -> Result<Json, Failed> {
    let text = std::fs::read_to_string(monitoring_dir().join("grafana-dashboard.json"))?;
    serde_json::from_str(&text).map_err(|e| format!("grafana-dashboard.json is not JSON: {e}").into())
}

/// Every panel, including those inside rows, and the rows themselves.
fn panels(dashboard: &Json) -> Result<Vec<&Json>, Failed> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().ok_or("no panels")? {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    Ok(all)
}

fn variables(dashboard: &Json) -> Result<BTreeMap<String, &Json>, Failed> {
    let list = dashboard["templating"]["list"].as_array().ok_or("no templating.list")?;
    list.iter()
        .map(|v| Ok((v["name"].as_str().ok_or("a variable without a name")?.to_owned(), v)))
        .collect::<Result<_, Failed>>()
}

/// (where, PromQL) for every panel query and every query variable (the series selector of its
/// `label_values(selector, label)`).
fn dashboard_queries(dashboard: &Json) -> Result<Vec<(String, String)>, Failed> {
    let mut queries = Vec::new();
    for panel in panels(dashboard)? {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let (title, ref_id) = (panel["title"].as_str().unwrap_or("?"), target["refId"].as_str().unwrap_or("?"));
            let place = format!("panel {title:?} query {ref_id}");
            queries.push((place, target["expr"].as_str().ok_or("a query without expr")?.to_owned()));
        }
    }
    for (name, variable) in variables(dashboard)? {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"].as_str().or(variable["query"].as_str()).ok_or("no query")?;
        let selector = query
            .trim()
            .strip_prefix("label_values(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|args| args.rsplit_once(','))
            .map(|(selector, _label)| selector.trim())
            .ok_or(format!("variable {name}: not label_values(selector, label): {query}"))?;
        queries.push((format!("variable {name}"), selector.to_owned()));
    }
    Ok(queries)
}

/// `expr` with Grafana's interval variables as `5m` and the dashboard's own variables as `.*`
/// (they are only used in regex matchers); an undefined variable is an error.
fn substitute_variables(expr: &str, variables: &BTreeMap<String, &Json>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').ok_or("an unclosed ${")?;
                (&braced[..end], end + 2)
            }
            None => {
                let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        if GRAFANA_BUILTINS.contains(&name) {
            out.push_str("5m");
        } else if variables.contains_key(name) {
            out.push_str(".*");
        } else {
            return Err(format!("undefined variable ${name}"));
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_templated_prometheus(datasource: &Json) -> bool {
    datasource["type"] == "prometheus" && datasource["uid"] == "${datasource}"
}

// ---------------------------------------------------------------------------------------------
// YAML and helpers

fn yaml_file(name: &str) -> Result<Yaml, Failed> {
    let text = std::fs::read_to_string(monitoring_dir().join(name))?;
    serde_yaml::from_str(&text).map_err(|e| format!("{name}: {e}").into())
}

/// Every rule of every group of a rule file.
fn rules(file: &Yaml) -> Result<Vec<&Yaml>, Failed> {
    let groups = seq_at(file, &["groups"]).ok_or("no groups")?;
    check(!groups.is_empty(), "no groups")?;
    let mut all = Vec::new();
    for group in groups {
        all.extend(seq_at(group, &["rules"]).ok_or("a group without rules")?);
    }
    Ok(all)
}

fn at<'a>(value: &'a Yaml, path: &[&str]) -> Option<&'a Yaml> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

fn str_at<'a>(value: &'a Yaml, path: &[&str]) -> Option<&'a str> {
    at(value, path)?.as_str()
}

fn seq_at<'a>(value: &'a Yaml, path: &[&str]) -> Option<&'a [Yaml]> {
    at(value, path)?.as_sequence().map(Vec::as_slice)
}

/// A mapping of strings to strings (labels, selectors).
fn map_at(value: &Yaml, path: &[&str]) -> Option<BTreeMap<String, Yaml>> {
    let mapping = at(value, path)?.as_mapping()?;
    mapping.iter().map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone()))).collect()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate is in the workspace").to_path_buf()
}

fn monitoring_dir() -> PathBuf {
    repo_root().join("deploy/monitoring")
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn check(ok: bool, what: impl Into<String>) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what.into().into()) }
}

fn check_eq<T: PartialEq + std::fmt::Debug>(got: T, wanted: T, what: &str) -> Result<(), Failed> {
    check(got == wanted, format!("{what}: got {got:?}, wanted {wanted:?}"))
}
