//! The CRD as the API server sees it: the checked-in file is the generated one, and objects are
//! admitted or refused by its schema bounds and CEL rules, evaluated here with kube's CEL engine.

use std::path::PathBuf;

use kube::core::cel::{Validator, apply_defaults};
use memgraph_operator::crd::{crd, crd_yaml};
use serde_json::{Value, json};

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[test]
fn checked_in_crd_is_the_generated_one() {
    let path = repo_file("deploy/crds/memgraphcluster.yaml");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let generated = crd_yaml().expect("serialize CRD");
    assert!(
        checked_in == generated,
        "deploy/crds/memgraphcluster.yaml is stale: run `cargo run -p memgraph-operator -- crd > deploy/crds/memgraphcluster.yaml`"
    );
}

fn schema() -> Value {
    let crd = crd();
    serde_json::to_value(
        crd.spec.versions[0].schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).expect("schema"),
    )
    .expect("schema json")
}

/// The structural checks of an API server that CEL does not cover: types, enums, bounds,
/// required fields. Returns the paths that fail.
fn structural_errors(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            errors.push(format!("{path}: null"));
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let type_ok = match schema.get("type").and_then(Value::as_str) {
        _ if int_or_string => value.is_string() || value.is_i64() || value.is_u64(),
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        errors.push(format!("{path}: type"));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: enum"));
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64())
        && n < min
    {
        errors.push(format!("{path}: minimum"));
    }
    if let (Some(max), Some(n)) = (schema.get("maximum").and_then(Value::as_f64), value.as_f64())
        && n > max
    {
        errors.push(format!("{path}: maximum"));
    }
    if let (Some(min), Some(s)) = (schema.get("minLength").and_then(Value::as_u64), value.as_str())
        && (s.chars().count() as u64) < min
    {
        errors.push(format!("{path}: minLength"));
    }
    if let Some(object) = value.as_object() {
        for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            if let Some(name) = required.as_str()
                && !object.contains_key(name)
            {
                errors.push(format!("{path}.{name}: required"));
            }
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (key, child) in object {
                if let Some(child_schema) = properties.get(key) {
                    structural_errors(child_schema, child, &format!("{path}.{key}"), errors);
                }
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            structural_errors(items, item, &format!("{path}[{i}]"), errors);
        }
    }
}

/// Admit an object as the API server would: default it, check the schema, run the CEL rules.
/// Returns every error message.
fn admit(object: &Value) -> Vec<String> {
    let schema = schema();
    let defaulted = apply_defaults(&schema, object);
    let mut errors = Vec::new();
    structural_errors(&schema, &defaulted, "", &mut errors);
    if let Err(cel) = Validator::new().validate(&schema, &defaulted, None) {
        errors.extend(cel.iter().map(|e| e.to_string()));
    }
    errors
}

fn cluster(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "memgraph.io/v1alpha1",
        "kind": "MemgraphCluster",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    })
}

/// Each rule with an object it refuses (and text its message must contain) and one it admits.
#[test]
fn every_rule_refuses_and_admits() {
    let cases = [
        ("replicas below range", json!({"read": {"replicas": -1}}), Some(".spec.read.replicas: minimum")),
        ("replicas above range", json!({"read": {"replicas": 33}}), Some(".spec.read.replicas: maximum")),
        ("replicas zero", json!({"read": {"replicas": 0}}), None),
        ("replicas at max", json!({"read": {"replicas": 32}}), None),
        ("unknown mode", json!({"replication": {"mode": "QUORUM"}}), Some(".spec.replication.mode: enum")),
        ("lower-case mode", json!({"replication": {"mode": "sync"}}), Some(".spec.replication.mode: enum")),
        ("strict sync", json!({"replication": {"mode": "STRICT_SYNC"}}), None),
        (
            "s3 without bucket",
            json!({"snapshot": {"s3": {"enabled": true}}}),
            Some("spec.snapshot.s3.bucket: required when spec.snapshot.s3.enabled is true"),
        ),
        ("s3 with bucket", json!({"snapshot": {"s3": {"enabled": true, "bucket": "b"}}}), None),
        ("s3 disabled without bucket", json!({"snapshot": {"s3": {"enabled": false}}}), None),
        (
            "s3 without snapshots",
            json!({"snapshot": {"enabled": false, "s3": {"enabled": true, "bucket": "b"}}}),
            Some("spec.snapshot.s3.enabled needs spec.snapshot.enabled"),
        ),
        (
            "retention count zero",
            json!({"snapshot": {"retentionCount": 0}}),
            Some(".spec.snapshot.retentionCount: minimum"),
        ),
        ("retention count one", json!({"snapshot": {"retentionCount": 1}}), None),
        (
            "retention days zero",
            json!({"snapshot": {"s3": {"enabled": true, "bucket": "b", "retentionDays": 0}}}),
            Some(".spec.snapshot.s3.retentionDays: minimum"),
        ),
        ("empty write image", json!({"write": {"image": ""}}), Some("spec.write.image: must not be empty")),
        ("blank write image", json!({"write": {"image": "  "}}), Some("spec.write.image: must not be empty")),
        ("write image", json!({"write": {"image": "memgraph/memgraph:3.5.1"}}), None),
        ("empty read image", json!({"read": {"image": ""}}), Some("spec.read.image: must not be empty")),
        (
            "unknown log level",
            json!({"write": {"config": {"logLevel": "VERBOSE"}}}),
            Some(".spec.write.config.logLevel: enum"),
        ),
        ("log level", json!({"read": {"config": {"logLevel": "DEBUG"}}}), None),
        (
            "wal flush zero",
            json!({"write": {"config": {"walFlushEveryNTx": 0}}}),
            Some(".spec.write.config.walFlushEveryNTx: minimum"),
        ),
        (
            "negative memory limit",
            json!({"write": {"config": {"memoryLimit": -1}}}),
            Some(".spec.write.config.memoryLimit: minimum"),
        ),
        ("unknown pvc retention", json!({"read": {"pvcRetention": "Keep"}}), Some(".spec.read.pvcRetention: enum")),
        ("pvc retention delete", json!({"read": {"pvcRetention": "Delete"}}), None),
        ("replicas as string", json!({"read": {"replicas": "3"}}), Some(".spec.read.replicas: type")),
        ("storage size as number", json!({"write": {"storage": {"size": 10}}}), None),
        ("small max map count", json!({"vmMaxMapCount": 1000}), Some(".spec.vmMaxMapCount: minimum")),
        (
            "lag threshold zero",
            json!({"validation": {"lagThresholdMs": 0}}),
            Some(".spec.validation.lagThresholdMs: minimum"),
        ),
        ("auth without secret", json!({"auth": {}}), Some(".spec.auth.secretRef: required")),
    ];
    for (name, spec, refused) in cases {
        let errors = admit(&cluster("graph", spec));
        match refused {
            None => assert!(errors.is_empty(), "{name}: should be admitted, got {errors:?}"),
            Some(text) => assert!(
                errors.iter().any(|e| e.contains(text)),
                "{name}: want an error containing {text:?}, got {errors:?}"
            ),
        }
    }
}

#[test]
fn cluster_names_must_fit_derived_names() {
    for (name, ok) in [
        ("graph", true),
        ("a", true),
        ("graph-prod-2", true),
        (&"g".repeat(40), true),
        (&"g".repeat(41), false),
        ("Graph", false),
        ("2graph", false),
        ("graph-", false),
        ("graph.prod", false),
    ] {
        let errors = admit(&cluster(name, json!({})));
        assert_eq!(errors.is_empty(), ok, "{name}: {errors:?}");
        if !ok {
            assert!(errors.iter().all(|e| e.contains("metadata.name")), "{errors:?}");
        }
    }
}

#[test]
fn a_cluster_without_spec_gets_every_default() {
    let object = json!({"apiVersion": "memgraph.io/v1alpha1", "kind": "MemgraphCluster", "metadata": {"name": "g"}});
    assert!(admit(&object).is_empty());
    let defaulted = apply_defaults(&schema(), &object);
    let spec = &defaulted["spec"];
    assert_eq!(spec["write"]["image"], "memgraph/memgraph:3.12.0");
    assert_eq!(spec["write"]["storage"]["size"], "10Gi");
    assert_eq!(spec["read"]["replicas"], 3);
    assert_eq!(spec["replication"]["mode"], "ASYNC");
    assert_eq!(spec["snapshot"]["schedule"], "*/15 * * * *");
    assert_eq!(spec["snapshot"]["retentionCount"], 5);
    assert_eq!(spec["write"]["config"]["logLevel"], "WARNING");
    // What the API server stores is what the operator reads: the Rust defaults agree.
    let typed: memgraph_operator::api::MemgraphCluster = serde_json::from_value(defaulted.clone()).expect("typed");
    assert_eq!(typed.spec, memgraph_operator::api::MemgraphClusterSpec::default());
}

#[test]
fn crd_has_subresources_columns_and_names() {
    let crd = crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("memgraphclusters.memgraph.io"));
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["mgc".to_owned()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    let sub = version.subresources.as_ref().expect("subresources");
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.read.replicas");
    assert_eq!(scale.label_selector_path.as_deref(), Some(".status.readSelector"));
    let columns: Vec<_> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    for wanted in ["Phase", "Main", "Ready", "Lag(ms)", "Age"] {
        assert!(columns.contains(&wanted), "missing printer column {wanted}: {columns:?}");
    }
}

/// Every property of the spec and status has a description (they become `kubectl explain`).
#[test]
fn every_field_is_documented() {
    fn walk(schema: &Value, path: &str, missing: &mut Vec<String>) {
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (key, child) in properties {
                let child_path = format!("{path}.{key}");
                // Embedded Kubernetes types (resources, affinity, tolerations) are documented upstream.
                if child.get("description").is_none() && !path.contains("affinity") {
                    missing.push(child_path.clone());
                }
                walk(child, &child_path, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}[]"), missing);
        }
    }
    let schema = schema();
    let mut missing = Vec::new();
    walk(&schema["properties"]["spec"], "spec", &mut missing);
    walk(&schema["properties"]["status"], "status", &mut missing);
    assert!(missing.is_empty(), "fields without a description: {missing:?}");
}

#[test]
fn samples_are_admitted_and_render() {
    let dir = repo_file("deploy/samples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("samples dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).expect("read sample");
        let object: Value = serde_yaml::from_str(&text).expect("sample yaml");
        assert!(admit(&object).is_empty(), "{}: {:?}", path.display(), admit(&object));
        let rendered =
            memgraph_operator::render::render(&text, "default").unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(rendered.matches("kind: StatefulSet").count() >= 1);
    }
    assert!(seen >= 3, "expected the minimal, full and production samples");
}
