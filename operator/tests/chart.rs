//! The Helm chart (deploy/helm/memgraph-operator) and the single manifest generated from it
//! (deploy/install.yaml):
//! - without tools: Chart.yaml agrees with the crate, the values schema is strict, the install
//!   manifest has the Namespace and the CRD first, its CRD is the generated one and fits a
//!   client-side `kubectl apply`, and the operator's CLI accepts the Deployment's arguments;
//! - with helm: `helm lint --strict` and `helm template` of the default values and of the
//!   value sets in the chart's ci/ directory, each checked for what it must produce; bad values
//!   are refused with the field's name; deploy/install.yaml is what deploy/gen-install.sh prints;
//! - with kubernetes-validate: every manifest (the install manifest, the CRD, every value set,
//!   and `render` of every sample) against the schemas of the oldest and the newest supported
//!   Kubernetes, strictly (unknown fields fail).
//!
//! Without helm or kubernetes-validate on PATH the tests that need them are reported as ignored
//! with the reason; with MGO_REQUIRE_HELM=1 / MGO_REQUIRE_KUBERNETES_VALIDATE=1 (CI) they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{Value, json};

mod deploy_support;

use deploy_support::{
    HELM, KUBERNETES_VALIDATE, NAMESPACE, RELEASE, VALUE_SETS, chart_dir, check, check_eq, documents, helm_template,
    install_manifest, needs, of_kind, one_of_kind, render_sample_text, render_value_set, repo_root, run, samples, text,
};

/// The oldest Kubernetes the chart and the operator's objects support (Chart.yaml kubeVersion):
/// StatefulSet persistentVolumeClaimRetentionPolicy, which `spec.read.pvcRetention` sets, is on
/// by default from 1.27 (beta; GA in 1.32). Earlier API servers accept the field but ignore it.
const OLDEST: &str = "1.27";
/// The newest Kubernetes whose schemas kubernetes-validate ships.
const NEWEST: &str = "1.37";

/// The limit of the `kubectl.kubernetes.io/last-applied-configuration` annotation (all
/// annotations of an object together) that a client-side `kubectl apply` writes.
const ANNOTATION_LIMIT: usize = 262_144;

/// The labels every object of the chart carries.
const STANDARD_LABELS: &[&str] = &[
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
];

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

// ---------------------------------------------------------------------------------------------
// Without tools

fn chart_metadata_matches_the_crate() -> Result<(), Failed> {
    let chart: Value = serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml"))?)?;
    check_eq(text(&chart, "/apiVersion"), "v2", "apiVersion")?;
    check_eq(text(&chart, "/name"), "memgraph-operator", "name")?;
    check_eq(text(&chart, "/version"), version(), "version (the crate's)")?;
    check_eq(text(&chart, "/appVersion"), version(), "appVersion (the crate's)")?;
    check_eq(text(&chart, "/kubeVersion"), format!(">= {OLDEST}.0-0").as_str(), "kubeVersion")?;
    let readme = std::fs::read_to_string(repo_root().join("README.md"))?;
    check(
        readme.contains(&format!("Kubernetes {OLDEST} or later")),
        format!("README.md does not state the supported versions (\"Kubernetes {OLDEST} or later\")"),
    )
}

/// Every object the schema defines refuses unknown keys, and values.yaml sets only keys the
/// schema knows.
fn values_schema_is_strict() -> Result<(), Failed> {
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(chart_dir().join("values.schema.json"))?)?;
    check_eq(text(&schema, "/$schema"), "http://json-schema.org/draft-07/schema#", "$schema")?;
    fn walk(schema: &Value, path: &str, loose: &mut Vec<String>) {
        if schema.get("properties").is_some() && schema.get("additionalProperties") != Some(&Value::Bool(false)) {
            loose.push(path.to_owned());
        }
        for (key, child) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
            walk(child, &format!("{path}.{key}"), loose);
        }
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}[]"), loose);
        }
    }
    let mut loose = Vec::new();
    walk(&schema, "", &mut loose);
    for (name, definition) in schema["definitions"].as_object().into_iter().flatten() {
        walk(definition, &format!("#/definitions/{name}"), &mut loose);
    }
    check(loose.is_empty(), format!("objects of the schema without additionalProperties: false: {loose:?}"))?;

    let values: Value = serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml"))?)?;
    fn known(schema: &Value, root: &Value, values: &Value, path: &str, unknown: &mut Vec<String>) {
        let schema = match schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
            Some(pointer) => root.pointer(pointer).unwrap_or(&Value::Null),
            None => schema,
        };
        let (Some(object), Some(properties)) = (values.as_object(), schema.get("properties")) else { return };
        for (key, value) in object {
            match properties.get(key) {
                Some(child) => known(child, root, value, &format!("{path}.{key}"), unknown),
                None => unknown.push(format!("{path}.{key}")),
            }
        }
    }
    let mut unknown = Vec::new();
    known(&schema, &schema, &values, "", &mut unknown);
    check(unknown.is_empty(), format!("values.yaml keys the schema does not define: {unknown:?}"))
}

/// Namespace first (restricted Pod Security), the CRD second (it must exist before any
/// MemgraphCluster), every namespaced object in the operator's namespace.
fn install_manifest_layout() -> Result<(), Failed> {
    let objects = install_manifest()?;
    let kinds: Vec<&str> = objects.iter().map(|o| text(o, "/kind")).collect();
    check_eq(
        kinds,
        vec![
            "Namespace",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment",
        ],
        "kinds of deploy/install.yaml, in order",
    )?;
    let namespace = &objects[0];
    check_eq(text(namespace, "/metadata/name"), NAMESPACE, "the Namespace")?;
    check_eq(
        text(namespace, "/metadata/labels/pod-security.kubernetes.io~1enforce"),
        "restricted",
        "the Namespace's Pod Security enforcement",
    )?;
    for object in &objects[1..] {
        let scoped =
            !matches!(text(object, "/kind"), "CustomResourceDefinition" | "ClusterRole" | "ClusterRoleBinding");
        let what = format!("{} {}", text(object, "/kind"), text(object, "/metadata/name"));
        check_eq(
            text(object, "/metadata/namespace"),
            if scoped { NAMESPACE } else { "" },
            &format!("{what}: namespace"),
        )?;
        for label in STANDARD_LABELS {
            check(object["metadata"]["labels"].get(*label).is_some(), format!("{what}: no label {label}"))?;
        }
    }
    check_crd(&objects[1])
}

/// The chart's CRD is the one the operator generates, with the chart's labels and the keep
/// policy.
fn check_crd(rendered: &Value) -> Result<(), Failed> {
    let generated = serde_json::to_value(memgraph_operator::crd::crd())?;
    check_eq(&rendered["metadata"]["name"], &generated["metadata"]["name"], "CRD name")?;
    check(
        rendered["spec"] == generated["spec"],
        "the chart's CRD spec differs from `memgraph-operator crd`: run `just crd`",
    )?;
    check_eq(
        text(rendered, "/metadata/annotations/helm.sh~1resource-policy"),
        "keep",
        "the CRD's helm.sh/resource-policy (uninstall keeps the clusters)",
    )
}

/// README.md's install commands rely on the CRD fitting the annotation a client-side apply
/// writes; server-side apply (recommended) writes none.
fn crd_fits_a_client_side_apply() -> Result<(), Failed> {
    let objects = install_manifest()?;
    let crd = one_of_kind(&objects, "CustomResourceDefinition")?;
    let size = serde_json::to_string(crd)?.len();
    println!("the CRD is {size} bytes as compact JSON; the annotation limit is {ANNOTATION_LIMIT}");
    check(
        size < ANNOTATION_LIMIT,
        format!(
            "the CRD ({size} bytes as JSON) no longer fits last-applied-configuration: README.md must require --server-side"
        ),
    )
}

/// The arguments and literal environment of the operator container, as the operator's CLI
/// parses them (`--help` last: clap parses everything before it, then prints help).
fn check_cli_accepts(deployment: &Value) -> Result<(), Failed> {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"].as_array().ok_or("no args")?.iter().filter_map(Value::as_str).collect();
    check_eq(args.first().copied(), Some("run"), "the subcommand")?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_memgraph-operator"));
    command.args(&args).arg("--help").env_clear();
    for env in container["env"].as_array().into_iter().flatten() {
        if let Some(value) = env["value"].as_str() {
            command.env(text(env, "/name"), value);
        }
    }
    run(&mut command).map(drop).map_err(|e| format!("the operator refuses the chart's arguments {args:?}: {e}").into())
}

fn install_manifest_args_are_accepted_by_the_operator() -> Result<(), Failed> {
    check_cli_accepts(one_of_kind(&install_manifest()?, "Deployment")?)
}

// ---------------------------------------------------------------------------------------------
// With helm

fn helm_lint(values_file: Option<&'static str>) -> impl FnOnce() -> Result<(), Failed> {
    move || {
        let mut command = Command::new(HELM.path());
        command.args(["lint", "--strict"]).arg(chart_dir());
        if let Some(file) = values_file {
            command.arg("--values").arg(chart_dir().join(file));
        }
        run(&mut command)?;
        // lint does not fail on a template's `fail`: template as well.
        helm_template(values_file, &[])?;
        Ok(())
    }
}

fn deployment(objects: &[Value]) -> Result<&Value, Failed> {
    one_of_kind(objects, "Deployment")
}

fn container(objects: &[Value]) -> Result<&Value, Failed> {
    let containers =
        deployment(objects)?["spec"]["template"]["spec"]["containers"].as_array().ok_or("no containers")?;
    check_eq(containers.len(), 1, "containers of the operator pod")?;
    Ok(&containers[0])
}

fn args(objects: &[Value]) -> Result<Vec<String>, Failed> {
    Ok(container(objects)?["args"]
        .as_array()
        .ok_or("no args")?
        .iter()
        .filter_map(|a| a.as_str().map(String::from))
        .collect())
}

fn env(objects: &[Value]) -> Result<BTreeMap<String, Value>, Failed> {
    let list = container(objects)?["env"].as_array().ok_or("no env")?;
    Ok(list.iter().map(|e| (text(e, "/name").to_owned(), e.clone())).collect())
}

fn kinds(objects: &[Value]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for object in objects {
        *out.entry(text(object, "/kind").to_owned()).or_default() += 1;
    }
    out
}

fn kind_counts(list: &[(&str, usize)]) -> BTreeMap<String, usize> {
    list.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

fn selector_labels() -> Value {
    json!({"app.kubernetes.io/name": "memgraph-operator", "app.kubernetes.io/instance": RELEASE})
}

fn template_default() -> Result<(), Failed> {
    let objects = render_value_set(None)?;
    check_eq(
        kinds(&objects),
        kind_counts(&[
            ("ServiceAccount", 1),
            ("CustomResourceDefinition", 1),
            ("ClusterRole", 1),
            ("ClusterRoleBinding", 1),
            ("Role", 1),
            ("RoleBinding", 1),
            ("Service", 1),
            ("Deployment", 1),
        ]),
        "objects of the default values",
    )?;
    for object in &objects {
        for label in STANDARD_LABELS {
            let what = format!("{} {}", text(object, "/kind"), text(object, "/metadata/name"));
            check(object["metadata"]["labels"].get(*label).is_some(), format!("{what}: no label {label}"))?;
        }
    }
    check_crd(one_of_kind(&objects, "CustomResourceDefinition")?)?;

    let deployment = deployment(&objects)?;
    let spec = &deployment["spec"];
    check_eq(&spec["replicas"], &json!(1), "replicas")?;
    check_eq(
        &spec["strategy"],
        &json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
        "strategy",
    )?;
    check_eq(&spec["selector"]["matchLabels"], &selector_labels(), "selector")?;
    let pod = &spec["template"]["spec"];
    check_eq(text(pod, "/serviceAccountName"), "memgraph-operator", "serviceAccountName")?;
    check_eq(&pod["automountServiceAccountToken"], &json!(true), "automountServiceAccountToken")?;
    check_eq(&pod["terminationGracePeriodSeconds"], &json!(30), "terminationGracePeriodSeconds")?;
    check(pod.get("topologySpreadConstraints").is_none(), "no spread constraints for one replica")?;
    check_eq(
        &pod["securityContext"],
        &json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}}),
        "pod securityContext",
    )?;

    let container = container(&objects)?;
    // The chart's image is the one the operator puts into pods for the backup agent and restore.
    check_eq(text(container, "/image"), memgraph_operator::builders::agent::DEFAULT_AGENT_IMAGE, "image")?;
    check_eq(
        text(container, "/image"),
        format!("ghcr.io/memgraph-operator/memgraph-operator:{}", version()).as_str(),
        "image",
    )?;
    check_eq(text(container, "/imagePullPolicy"), "IfNotPresent", "imagePullPolicy")?;
    check_eq(
        args(&objects)?,
        [
            "run",
            "--health-addr=0.0.0.0:8080",
            "--metrics-addr=0.0.0.0:9464",
            "--leader-election=true",
            "--lease-name=memgraph-operator",
            "--lease-duration-seconds=15",
            "--lease-renew-deadline-seconds=10",
            "--lease-retry-period-seconds=2",
        ]
        .map(String::from)
        .to_vec(),
        "args",
    )?;
    let env = env(&objects)?;
    check_eq(
        env.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["LOG_FORMAT", "POD_NAME", "POD_NAMESPACE", "RUST_LOG"],
        "env",
    )?;
    check_eq(text(&env["POD_NAME"], "/valueFrom/fieldRef/fieldPath"), "metadata.name", "POD_NAME")?;
    check_eq(text(&env["POD_NAMESPACE"], "/valueFrom/fieldRef/fieldPath"), "metadata.namespace", "POD_NAMESPACE")?;
    check_eq(text(&env["LOG_FORMAT"], "/value"), "json", "LOG_FORMAT")?;
    check_eq(text(&env["RUST_LOG"], "/value"), "info", "RUST_LOG")?;
    check_eq(
        &container["ports"],
        &json!([
            {"name": "health", "containerPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9464, "protocol": "TCP"},
        ]),
        "ports",
    )?;
    for (probe, path) in [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        check_eq(&container[probe]["httpGet"], &json!({"path": path, "port": "health"}), probe)?;
    }
    check_eq(
        &container["securityContext"],
        &json!({
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]},
        }),
        "container securityContext",
    )?;
    check_cli_accepts(deployment)?;

    let service = one_of_kind(&objects, "Service")?;
    check_eq(text(service, "/metadata/name"), "memgraph-operator-metrics", "metrics Service name")?;
    check_eq(text(service, "/metadata/labels/app.kubernetes.io~1component"), "metrics", "metrics Service component")?;
    check_eq(&service["spec"]["selector"], &selector_labels(), "metrics Service selector")?;
    check_eq(
        &service["spec"]["ports"],
        &json!([{"name": "metrics", "port": 9464, "targetPort": 9464, "protocol": "TCP"}]),
        "metrics Service ports",
    )
}

fn template_namespaced() -> Result<(), Failed> {
    let objects = render_value_set(Some("ci/namespaced-values.yaml"))?;
    check_eq(
        kinds(&objects),
        kind_counts(&[
            ("ServiceAccount", 1),
            ("CustomResourceDefinition", 1),
            ("Role", 3),
            ("RoleBinding", 3),
            ("Service", 1),
            ("Deployment", 1),
        ]),
        "objects of the namespaced values",
    )?;
    let env = env(&objects)?;
    check_eq(text(&env["WATCH_NAMESPACE"], "/value"), "team-a,team-b", "WATCH_NAMESPACE")?;
    let namespaces: BTreeSet<&str> = of_kind(&objects, "Role").iter().map(|r| text(r, "/metadata/namespace")).collect();
    check_eq(namespaces, BTreeSet::from(["memgraph-operator", "team-a", "team-b"]), "namespaces of the Roles")
}

fn template_full() -> Result<(), Failed> {
    let objects = render_value_set(Some("ci/full-values.yaml"))?;
    check_eq(
        kinds(&objects),
        kind_counts(&[
            ("PodDisruptionBudget", 1),
            ("ServiceAccount", 1),
            ("ClusterRole", 1),
            ("ClusterRoleBinding", 1),
            ("Role", 1),
            ("RoleBinding", 1),
            ("Service", 1),
            ("Deployment", 1),
            ("ServiceMonitor", 1),
        ]),
        "objects of the full values (no CRD)",
    )?;
    let deployment = deployment(&objects)?;
    let pod = &deployment["spec"]["template"]["spec"];
    check_eq(&deployment["spec"]["replicas"], &json!(3), "replicas")?;
    let container = container(&objects)?;
    check_eq(
        text(container, "/image"),
        "registry.example.com/platform/memgraph-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "image by digest (the tag is ignored)",
    )?;
    check_eq(text(container, "/imagePullPolicy"), "Always", "imagePullPolicy")?;
    check_eq(&pod["imagePullSecrets"], &json!([{"name": "registry-credentials"}]), "imagePullSecrets")?;
    check_eq(text(pod, "/priorityClassName"), "system-cluster-critical", "priorityClassName")?;
    check_eq(&pod["terminationGracePeriodSeconds"], &json!(60), "terminationGracePeriodSeconds")?;
    check_eq(text(pod, "/nodeSelector/kubernetes.io~1os"), "linux", "nodeSelector")?;
    check_eq(text(pod, "/tolerations/0/key"), "dedicated", "tolerations")?;
    let template_meta = &deployment["spec"]["template"]["metadata"];
    check_eq(text(template_meta, "/annotations/example.com~1team"), "data", "podAnnotations")?;
    check_eq(text(template_meta, "/labels/example.com~1tier"), "control-plane", "podLabels")?;
    check_eq(
        &pod["topologySpreadConstraints"],
        &json!([{
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector_labels()},
        }]),
        "topologySpreadConstraints",
    )?;
    let args = args(&objects)?;
    for wanted in [
        "--otlp-endpoint=http://otel-collector.observability:4317",
        "--lease-duration-seconds=30",
        "--lease-renew-deadline-seconds=20",
        "--lease-retry-period-seconds=4",
    ] {
        check(args.iter().any(|a| a == wanted), format!("no {wanted} in {args:?}"))?;
    }
    let env = env(&objects)?;
    check_eq(text(&env["OTEL_SERVICE_NAME"], "/value"), "memgraph-operator-prod", "extraEnv OTEL_SERVICE_NAME")?;
    check_eq(text(&env["NODE_NAME"], "/valueFrom/fieldRef/fieldPath"), "spec.nodeName", "extraEnv NODE_NAME")?;
    check_eq(text(&env["LOG_FORMAT"], "/value"), "text", "LOG_FORMAT")?;
    check_eq(text(&env["RUST_LOG"], "/value"), "info,memgraph_operator=debug", "RUST_LOG")?;
    check_cli_accepts(deployment)?;

    let pdb = one_of_kind(&objects, "PodDisruptionBudget")?;
    check_eq(&pdb["spec"], &json!({"minAvailable": 1, "selector": {"matchLabels": selector_labels()}}), "PDB")?;
    let account = one_of_kind(&objects, "ServiceAccount")?;
    check_eq(
        text(account, "/metadata/annotations/eks.amazonaws.com~1role-arn"),
        "arn:aws:iam::123456789012:role/memgraph-operator",
        "ServiceAccount annotations",
    )?;
    check_servicemonitor(&objects)
}

/// The chart's ServiceMonitor selects the chart's metrics Service and scrapes it the way
/// deploy/monitoring/servicemonitor.yaml does (same path, scheme, honorLabels, port).
fn check_servicemonitor(objects: &[Value]) -> Result<(), Failed> {
    let monitor = one_of_kind(objects, "ServiceMonitor")?;
    let service = one_of_kind(objects, "Service")?;
    check_eq(text(monitor, "/metadata/labels/release"), "kube-prometheus-stack", "ServiceMonitor extra labels")?;
    let selector = monitor["spec"]["selector"]["matchLabels"].as_object().ok_or("no selector")?;
    check(
        selector.iter().all(|(k, v)| service["metadata"]["labels"].get(k) == Some(v)),
        format!("the ServiceMonitor's selector {selector:?} does not select the metrics Service"),
    )?;
    check_eq(&monitor["spec"]["namespaceSelector"], &json!({"matchNames": [NAMESPACE]}), "namespaceSelector")?;
    check(monitor["spec"].get("jobLabel").is_none(), "jobLabel would change the job the alerts match")?;
    let shipped: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_root().join("deploy/monitoring/servicemonitor.yaml"))?)?;
    let endpoint = &monitor["spec"]["endpoints"][0];
    check_eq(endpoint["interval"].as_str(), Some("15s"), "interval")?;
    for key in ["port", "path", "scheme", "honorLabels"] {
        check_eq(&endpoint[key], &shipped["spec"]["endpoints"][0][key], &format!("endpoint {key}"))?;
    }
    check_eq(monitor["spec"]["endpoints"].as_array().map(Vec::len), Some(1), "endpoints")
}

fn template_minimal() -> Result<(), Failed> {
    let objects = render_value_set(Some("ci/minimal-values.yaml"))?;
    check_eq(
        kinds(&objects),
        kind_counts(&[("CustomResourceDefinition", 1), ("Deployment", 1)]),
        "objects without RBAC, ServiceAccount and metrics Service",
    )?;
    let deployment = deployment(&objects)?;
    check_eq(&deployment["spec"]["strategy"], &json!({"type": "Recreate"}), "strategy without leader election")?;
    check_eq(
        text(deployment, "/spec/template/spec/serviceAccountName"),
        "memgraph-operator-managed",
        "serviceAccountName",
    )?;
    let args = args(&objects)?;
    check(args.iter().any(|a| a == "--leader-election=false"), format!("no --leader-election=false in {args:?}"))?;
    check(!args.iter().any(|a| a.starts_with("--lease-")), format!("lease flags without leader election: {args:?}"))?;
    check_cli_accepts(deployment)
}

/// The Deployment's selector (immutable) has only the name and the instance: a new chart or
/// image version changes no selector.
fn selector_labels_are_stable() -> Result<(), Failed> {
    let before = render_value_set(None)?;
    let after = documents(&helm_template(None, &["image.tag=9.9.9", "replicaCount=2"])?)?;
    for objects in [&before, &after] {
        check_eq(&deployment(objects)?["spec"]["selector"]["matchLabels"], &selector_labels(), "Deployment selector")?;
        check_eq(&one_of_kind(objects, "Service")?["spec"]["selector"], &selector_labels(), "Service selector")?;
    }
    check_eq(
        &one_of_kind(&after, "PodDisruptionBudget")?["spec"]["selector"]["matchLabels"],
        &selector_labels(),
        "PDB selector",
    )
}

/// Each bad value set is refused, and the message names the field.
fn bad_values_are_refused() -> Result<(), Failed> {
    let cases: &[(&[&str], &[&str])] = &[
        (&["replicaCount=two"], &["replicaCount"]),
        (&["replicaCount=-1"], &["replicaCount"]),
        (&["replicaCas=2"], &["replicaCas"]),
        (&["logFormat=xml"], &["logFormat"]),
        (&["image.pullPolicy=Sometimes"], &["pullPolicy"]),
        (&["image.digest=latest"], &["digest"]),
        (&["image.tga=1.0"], &["tga"]),
        (&["watchNamespaces={Team_A}"], &["watchNamespaces"]),
        (&["crds.install=yes"], &["crds", "install"]),
        (&["metrics.serviceMonitor.interval=soon"], &["interval"]),
        (&["extraEnv[0].nme=X"], &["extraEnv", "nme"]),
        (&["leaderElection.enabled=false", "replicaCount=2"], &["replicaCount", "leaderElection.enabled"]),
        (&["leaderElection.renewDeadlineSeconds=20"], &["leaderElection.leaseDurationSeconds", "renewDeadlineSeconds"]),
        (
            &["metrics.service.enabled=false", "metrics.serviceMonitor.enabled=true"],
            &["metrics.serviceMonitor.enabled"],
        ),
    ];
    let mut wrong = Vec::new();
    for (sets, names) in cases {
        match helm_template(None, sets) {
            Ok(_) => wrong.push(format!("{sets:?} was accepted")),
            Err(error) => {
                let message: String = error.lines().filter(|l| !l.starts_with("level=")).collect::<Vec<_>>().join("\n");
                if !names.iter().all(|name| message.contains(name)) {
                    wrong.push(format!("{sets:?}: the message does not name {names:?}:\n{message}"));
                }
            }
        }
    }
    check(wrong.is_empty(), wrong.join("\n"))
}

fn install_manifest_is_current() -> Result<(), Failed> {
    let root = repo_root();
    let generated =
        run(Command::new("bash").arg(root.join("deploy/gen-install.sh")).arg("--stdout").env("HELM", HELM.path()))?;
    let checked_in = std::fs::read_to_string(root.join("deploy/install.yaml"))?;
    if generated.trim_end() == checked_in.trim_end() {
        return Ok(());
    }
    let line = generated.lines().zip(checked_in.lines()).position(|(a, b)| a != b).map_or(0, |i| i + 1);
    Err(format!("deploy/install.yaml is stale (first difference at line {line}): run `just install-manifest` (deploy/gen-install.sh)").into())
}

// ---------------------------------------------------------------------------------------------
// With kubernetes-validate

/// Validate files strictly against one Kubernetes version: every object must pass; the only
/// kind without a schema may be prometheus-operator's ServiceMonitor.
fn kubernetes_validate(version: &str, files: &[PathBuf]) -> Result<(), Failed> {
    let output = Command::new(KUBERNETES_VALIDATE.path())
        .args(["--strict", "--kubernetes-version", &format!("{version}.0")])
        .args(files)
        .output()?;
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let mut problems = Vec::new();
    let mut passed = 0;
    for line in report.lines() {
        if line.starts_with("INFO") && line.contains(" passed ") {
            passed += 1;
        } else if line.starts_with("WARN")
            && line.contains("Couldn't find schema for kind ServiceMonitor with api version monitoring.coreos.com/v1")
        {
            continue;
        } else if !line.trim().is_empty() {
            problems.push(line.to_owned());
        }
    }
    check(
        output.status.success() && problems.is_empty(),
        format!("kubernetes-validate {version}:\n{}", problems.join("\n")),
    )?;
    let mut objects = 0;
    for file in files {
        objects += documents(&std::fs::read_to_string(file)?)?.iter().filter(|o| o["kind"] != "ServiceMonitor").count();
    }
    check_eq(passed, objects, &format!("objects that passed kubernetes-validate {version}"))?;
    println!("kubernetes-validate {version}: {passed} objects in {} files passed", files.len());
    Ok(())
}

fn scratch_dir(name: &str) -> Result<PathBuf, Failed> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chart-test").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// deploy/install.yaml, the CRD, and `render` of every sample.
fn validate_files(version: &'static str) -> impl FnOnce() -> Result<(), Failed> {
    move || {
        let dir = scratch_dir(&format!("files-{version}"))?;
        let root = repo_root();
        let mut files = vec![root.join("deploy/install.yaml"), root.join("deploy/crds/memgraphcluster.yaml")];
        for sample in samples() {
            let path = dir.join(format!("render-{}.yaml", deploy_support::sample_name(&sample)));
            std::fs::write(&path, render_sample_text(&sample)?)?;
            files.push(path);
        }
        kubernetes_validate(version, &files)
    }
}

/// Every value set of the chart, rendered.
fn validate_chart(version: &'static str) -> impl FnOnce() -> Result<(), Failed> {
    move || {
        let dir = scratch_dir(&format!("chart-{version}"))?;
        let mut files = Vec::new();
        for (name, values) in VALUE_SETS {
            let path = dir.join(format!("{name}.yaml"));
            std::fs::write(&path, helm_template(*values, &[])?)?;
            files.push(path);
        }
        kubernetes_validate(version, &files)
    }
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let mut trials = vec![
        Trial::test("chart_metadata_matches_the_crate", chart_metadata_matches_the_crate),
        Trial::test("values_schema_is_strict", values_schema_is_strict),
        Trial::test("install_manifest_layout", install_manifest_layout),
        Trial::test("crd_fits_a_client_side_apply", crd_fits_a_client_side_apply),
        Trial::test(
            "install_manifest_args_are_accepted_by_the_operator",
            install_manifest_args_are_accepted_by_the_operator,
        ),
    ];
    for (name, values) in VALUE_SETS {
        trials.push(needs(format!("helm_lint_{name}"), &[&HELM], helm_lint(*values)));
    }
    trials.extend([
        needs("helm_template_default", &[&HELM], template_default),
        needs("helm_template_namespaced", &[&HELM], template_namespaced),
        needs("helm_template_full", &[&HELM], template_full),
        needs("helm_template_minimal", &[&HELM], template_minimal),
        needs("selector_labels_are_stable", &[&HELM], selector_labels_are_stable),
        needs("bad_values_are_refused", &[&HELM], bad_values_are_refused),
        needs("install_manifest_is_current", &[&HELM], install_manifest_is_current),
    ]);
    for version in [OLDEST, NEWEST] {
        let tag = version.replace('.', "_");
        trials.push(needs(
            format!("kubernetes_validate_files_{tag}"),
            &[&KUBERNETES_VALIDATE],
            validate_files(version),
        ));
        trials.push(needs(
            format!("kubernetes_validate_chart_{tag}"),
            &[&HELM, &KUBERNETES_VALIDATE],
            validate_chart(version),
        ));
    }
    libtest_mimic::run(&args, trials).exit_code()
}
