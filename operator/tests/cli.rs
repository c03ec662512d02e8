//! The `memgraph-operator` binary from outside: `crd` and `render` as users run them.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde::Deserialize;
use serde_yaml::Value;

fn operator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memgraph-operator")).args(args).output().expect("run memgraph-operator")
}

fn sample(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/samples").join(name).display().to_string()
}

fn documents(stdout: &[u8]) -> Vec<Value> {
    let text = String::from_utf8(stdout.to_vec()).expect("utf-8");
    serde_yaml::Deserializer::from_str(&text).map(|doc| Value::deserialize(doc).expect("yaml document")).collect()
}

fn kind_and_name(doc: &Value) -> (String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (s(&doc["kind"]), s(&doc["metadata"]["name"]))
}

#[test]
fn crd_prints_the_custom_resource_definition() {
    let out = operator(&["crd"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = documents(&out.stdout);
    assert_eq!(docs.len(), 1);
    assert_eq!(kind_and_name(&docs[0]), ("CustomResourceDefinition".into(), "memgraphclusters.memgraph.io".into()));
}

#[test]
fn render_prints_every_object_of_the_production_example() {
    let out = operator(&["render", "-f", &sample("production.yaml")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let objects: Vec<_> = documents(&out.stdout).iter().map(kind_and_name).collect();
    let want: Vec<(String, String)> = [
        ("Service", "production-write"),
        ("Service", "production-write-hl"),
        ("Service", "production-read"),
        ("Service", "production-read-0"),
        ("Service", "production-read-1"),
        ("Service", "production-read-2"),
        ("StatefulSet", "production-write"),
        ("StatefulSet", "production-read-0"),
        ("StatefulSet", "production-read-1"),
        ("StatefulSet", "production-read-2"),
        ("PodDisruptionBudget", "production-read"),
    ]
    .iter()
    .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
    .collect();
    assert_eq!(objects, want);
    let docs = documents(&out.stdout);
    let write = &docs[6];
    assert_eq!(write["metadata"]["namespace"].as_str(), Some("memgraph"));
    let claim = &write["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["storageClassName"].as_str(), Some("fast-ssd"));
    assert_eq!(claim["resources"]["requests"]["storage"].as_str(), Some("50Gi"));
    let container = &write["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"].as_str(), Some("memgraph/memgraph:2.21.0"));
    assert_eq!(container["resources"]["limits"]["memory"].as_str(), Some("8Gi"));
}

#[test]
fn render_uses_the_namespace_flag_when_the_file_has_none() {
    let out = operator(&["render", "-f", &sample("minimal.yaml"), "-n", "graphs"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(documents(&out.stdout).iter().all(|d| d["metadata"]["namespace"].as_str() == Some("graphs")));
}

#[test]
fn render_refuses_bad_input_with_the_field_and_the_fix() {
    let dir = std::env::temp_dir().join(format!("mgop-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cases = [
        (
            "bad-schedule.yaml",
            "apiVersion: memgraph.io/v1alpha1\nkind: MemgraphCluster\nmetadata: {name: g}\nspec: {snapshot: {schedule: hourly}}\n",
            "spec.snapshot.schedule: 'hourly' is not a valid cron schedule",
        ),
        (
            "bad-size.yaml",
            "apiVersion: memgraph.io/v1alpha1\nkind: MemgraphCluster\nmetadata: {name: g}\nspec: {write: {storage: {size: 10GB}}}\n",
            "spec.write.storage.size: '10GB' is not a Kubernetes quantity",
        ),
        ("wrong-kind.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: g}\n", "not a MemgraphCluster"),
        (
            "bad-field-type.yaml",
            "apiVersion: memgraph.io/v1alpha1\nkind: MemgraphCluster\nmetadata: {name: g}\nspec: {read: {replicas: many}}\n",
            "read.replicas",
        ),
    ];
    for (file, content, message) in cases {
        let path = dir.join(file);
        std::fs::write(&path, content).expect("write case");
        let out = operator(&["render", "-f", &path.display().to_string()]);
        assert!(!out.status.success(), "{file} should fail");
        assert!(out.stdout.is_empty(), "{file}: nothing may be printed on failure");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{file}: stderr {stderr:?} lacks {message:?}");
    }
    let missing = operator(&["render", "-f", "/nonexistent/cluster.yaml"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/cluster.yaml"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_without_a_reachable_api_server_exits_with_one_line() {
    let dir = std::env::temp_dir().join(format!("mgop-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("config");
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster: {server: \"https://127.0.0.1:1\"}\n  name: nowhere\n\
         contexts:\n- context: {cluster: nowhere, user: u}\n  name: nowhere\ncurrent-context: nowhere\n\
         users:\n- name: u\n  user: {token: x}\n",
    )
    .expect("kubeconfig");
    let out = Command::new(env!("CARGO_BIN_EXE_memgraph-operator"))
        .args(["run", "--health-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("error: cannot reach the Kubernetes API server"), "{stderr:?}");
    assert!(!stderr.contains("panicked"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn write_pod_spec(sample_file: &str) -> Value {
    let out = operator(&["render", "-f", &sample(sample_file)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = documents(&out.stdout);
    let sts = docs
        .iter()
        .find(|d| {
            let (kind, name) = kind_and_name(d);
            kind == "StatefulSet" && name.ends_with("-write")
        })
        .expect("write StatefulSet");
    sts["spec"]["template"]["spec"].clone()
}

#[test]
fn render_shows_the_backup_agent_and_the_restore_init_container() {
    let pod = write_pod_spec("production.yaml");
    let agent = pod["containers"]
        .as_sequence()
        .and_then(|cs| cs.iter().find(|c| c["name"].as_str() == Some("backup-agent")))
        .expect("backup-agent sidecar");
    let args: Vec<&str> = agent["args"].as_sequence().into_iter().flatten().filter_map(Value::as_str).collect();
    assert_eq!(args.first(), Some(&"agent"));
    // Credentials come from the Secret by reference, never as values or arguments.
    let text = serde_yaml::to_string(agent).unwrap_or_default();
    assert!(text.contains("secretKeyRef") && !args.iter().any(|a| a.contains("secret")), "{text}");
    assert!(pod["initContainers"].as_sequence().is_none_or(|i| i.iter().all(|c| c["name"] != "restore")));

    let pod = write_pod_spec("restore.yaml");
    let restore = pod["initContainers"]
        .as_sequence()
        .and_then(|cs| cs.iter().find(|c| c["name"].as_str() == Some("restore")))
        .expect("restore init container");
    let args: Vec<&str> = restore["args"].as_sequence().into_iter().flatten().filter_map(Value::as_str).collect();
    assert!(args.contains(&"--prefix=clusters/production") && args.contains(&"--backup=latest"), "{args:?}");
}
