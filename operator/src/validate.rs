//! Checks of a `MemgraphCluster` spec that the API server cannot make (the CRD schema and its CEL
//! rules catch the rest earlier). A spec with any error is reported as an `InvalidSpec` condition
//! and event, and the operator changes nothing in the cluster until it is fixed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::ResourceRequirements;

use crate::api::{MemgraphClusterSpec, ReplicationMode, StorageSpec};
use crate::quantity::parse_quantity;
use crate::schedule::Schedule;
use crate::version::MemgraphVersion;

/// One problem in a spec: the field and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// Path of the offending field, such as `spec.snapshot.schedule`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl SpecError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Flags the operator sets itself; `extraArgs` may not override them.
const MANAGED_FLAGS: &[&str] = &[
    "data-directory",
    "bolt-port",
    "log-level",
    "memory-limit",
    "also-log-to-stderr",
    "storage-wal-enabled",
    "storage-wal-file-flush-every-n-tx",
    "storage-snapshot-interval-sec",
    "storage-snapshot-interval",
    "storage-snapshot-retention-count",
    "storage-snapshot-on-exit",
    "replication-restore-state-on-startup",
    "data-recovery-on-startup",
    "storage-recover-on-startup",
];

/// Every offline check of a spec (no cluster access needed). An empty result means valid.
pub fn validate_spec(spec: &MemgraphClusterSpec) -> Vec<SpecError> {
    let mut errors = Vec::new();
    check_storage(&mut errors, "spec.write.storage", &spec.write.storage);
    check_storage(&mut errors, "spec.read.storage", &spec.read.storage);
    check_resources(&mut errors, "spec.write.resources", spec.write.resources.as_ref(), spec.write.config.memory_limit);
    check_resources(&mut errors, "spec.read.resources", spec.read.resources.as_ref(), spec.read.config.memory_limit);
    check_extra_args(&mut errors, "spec.write.extraArgs", &spec.write.extra_args);
    check_extra_args(&mut errors, "spec.read.extraArgs", &spec.read.extra_args);
    if spec.snapshot.enabled
        && let Err(e) = Schedule::parse(&spec.snapshot.schedule)
    {
        errors.push(SpecError::new("spec.snapshot.schedule", e.to_string()));
    }
    check_bootstrap(&mut errors, spec);
    if spec.replication.mode == ReplicationMode::StrictSync {
        for (field, image) in [("spec.write.image", spec.write.image.as_str()), ("spec.read.image", spec.read_image())]
        {
            if let Some(version) = MemgraphVersion::from_image(image)
                && !version.supports_strict_sync()
            {
                errors.push(SpecError::new(
                    "spec.replication.mode",
                    format!(
                        "STRICT_SYNC needs Memgraph {} or later but {field} is {image} ({version}); use SYNC or a newer image",
                        MemgraphVersion::STRICT_SYNC
                    ),
                ));
                break;
            }
        }
    }
    if let Some(s3) = spec.snapshot.s3.as_ref().filter(|s3| s3.enabled)
        && let Some(endpoint) = &s3.endpoint
        && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
    {
        errors.push(SpecError::new(
            "spec.snapshot.s3.endpoint",
            format!("'{endpoint}' is not a URL; write it with its scheme, for example https://minio.example:9000"),
        ));
    }
    errors
}

fn check_storage(errors: &mut Vec<SpecError>, field: &str, storage: &StorageSpec) {
    match parse_quantity(&storage.size.0) {
        Err(e) => errors.push(SpecError::new(format!("{field}.size"), e.to_string())),
        Ok(bytes) if bytes < 1024.0 * 1024.0 => errors.push(SpecError::new(
            format!("{field}.size"),
            format!("'{}' is too small for a Memgraph data directory; use at least 1Gi", storage.size.0),
        )),
        Ok(_) => {}
    }
}

fn check_resources(
    errors: &mut Vec<SpecError>,
    field: &str,
    resources: Option<&ResourceRequirements>,
    memory_limit_mib: Option<i64>,
) {
    let Some(resources) = resources else { return };
    let mut parsed = BTreeMap::new();
    for (kind, list) in [("requests", &resources.requests), ("limits", &resources.limits)] {
        for (name, quantity) in list.iter().flatten() {
            match parse_quantity(&quantity.0) {
                Ok(value) => {
                    parsed.insert((kind, name.as_str()), value);
                }
                Err(e) => errors.push(SpecError::new(format!("{field}.{kind}.{name}"), e.to_string())),
            }
        }
    }
    for ((kind, name), request) in &parsed {
        if *kind == "requests"
            && let Some(limit) = parsed.get(&("limits", name))
            && request > limit
        {
            errors.push(SpecError::new(
                format!("{field}.requests.{name}"),
                format!(
                    "the request is larger than the limit {field}.limits.{name}; raise the limit or lower the request"
                ),
            ));
        }
    }
    if let (Some(mib), Some(limit)) = (memory_limit_mib.filter(|m| *m > 0), parsed.get(&("limits", "memory"))) {
        let config_field = field.replace(".resources", ".config.memoryLimit");
        if (mib as f64) * 1024.0 * 1024.0 > *limit {
            errors.push(SpecError::new(
                config_field,
                format!("{mib} MiB is above the container's memory limit {field}.limits.memory, so the pod would be OOM-killed before Memgraph's own limit applies; set it about 10% below the container limit"),
            ));
        }
    }
}

fn check_extra_args(errors: &mut Vec<SpecError>, field: &str, args: &[String]) {
    let mut seen = BTreeSet::new();
    for (i, arg) in args.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Some(flag) = arg.strip_prefix("--") else {
            errors.push(SpecError::new(at, format!("'{arg}' is not a flag; write it as --name=value")));
            continue;
        };
        let name = flag.split('=').next().unwrap_or_default();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            errors.push(SpecError::new(at, format!("'{arg}' is not a flag; write it as --name=value")));
        } else if name == "management-port" || name.starts_with("coordinator") {
            errors.push(SpecError::new(
                at,
                format!("--{name} makes Memgraph a coordinator-managed HA instance, which turns off the manual replication this operator uses; remove it"),
            ));
        } else if MANAGED_FLAGS.contains(&name) {
            errors.push(SpecError::new(
                at,
                format!("--{name} is set by the operator from the spec; remove it (see the spec fields for log level, memory limit, snapshots and WAL)"),
            ));
        } else if !seen.insert(name.to_owned()) {
            errors.push(SpecError::new(at, format!("--{name} is given twice; keep one")));
        }
    }
}

/// A cluster restored from a backup must not write its own backups over the source's.
fn check_bootstrap(errors: &mut Vec<SpecError>, spec: &MemgraphClusterSpec) {
    let (Some(source), Some(s3)) = (
        spec.bootstrap.as_ref().and_then(|b| b.from_backup.as_ref()),
        spec.snapshot.s3.as_ref().filter(|s3| s3.enabled),
    ) else {
        return;
    };
    let same_prefix = source.prefix.trim_end_matches('/') == s3.prefix.trim_end_matches('/');
    if source.bucket == s3.bucket && source.endpoint == s3.endpoint && same_prefix {
        errors.push(SpecError::new(
            "spec.snapshot.s3.prefix",
            "is the prefix this cluster is restored from (spec.bootstrap.fromBackup.prefix); give this cluster's backups a prefix of their own so they never mix with the source's",
        ));
    }
}

/// A Secret the spec refers to and the keys it must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretReference {
    /// Field that names the Secret.
    pub field: &'static str,
    /// Name of the Secret (in the cluster's namespace).
    pub name: String,
    /// Keys the Secret must contain.
    pub keys: Vec<String>,
}

/// The Secrets the spec refers to.
pub fn secret_references(spec: &MemgraphClusterSpec) -> Vec<SecretReference> {
    let mut refs = Vec::new();
    if let Some(auth) = &spec.auth {
        refs.push(SecretReference {
            field: "spec.auth.secretRef.name",
            name: auth.secret_ref.name.clone(),
            keys: vec![auth.username_key.clone(), auth.password_key.clone()],
        });
    }
    if let Some(s3) = spec.snapshot.s3.as_ref().filter(|s3| s3.enabled)
        && let Some(secret) = &s3.secret_ref
    {
        refs.push(SecretReference {
            field: "spec.snapshot.s3.secretRef.name",
            name: secret.name.clone(),
            keys: vec!["access-key-id".to_owned(), "secret-access-key".to_owned()],
        });
    }
    if let Some(secret) =
        spec.bootstrap.as_ref().and_then(|b| b.from_backup.as_ref()).and_then(|f| f.secret_ref.as_ref())
    {
        refs.push(SecretReference {
            field: "spec.bootstrap.fromBackup.secretRef.name",
            name: secret.name.clone(),
            keys: vec!["access-key-id".to_owned(), "secret-access-key".to_owned()],
        });
    }
    refs
}

/// Check referenced Secrets against what exists: `existing` maps a Secret's name to its keys.
pub fn validate_secrets(
    spec: &MemgraphClusterSpec,
    namespace: &str,
    existing: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<SpecError> {
    let mut errors = Vec::new();
    for reference in secret_references(spec) {
        match existing.get(&reference.name) {
            None => errors.push(SpecError::new(
                reference.field,
                format!(
                    "Secret '{}' does not exist in namespace '{namespace}'; create it or fix the name",
                    reference.name
                ),
            )),
            Some(keys) => {
                let missing: Vec<_> = reference.keys.iter().filter(|k| !keys.contains(*k)).cloned().collect();
                if !missing.is_empty() {
                    errors.push(SpecError::new(
                        reference.field,
                        format!("Secret '{}' has no key {}; add it to the Secret", reference.name, missing.join(", ")),
                    ));
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AuthSpec, S3Spec, SecretRef};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn spec() -> MemgraphClusterSpec {
        MemgraphClusterSpec::default()
    }

    fn resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Option<ResourceRequirements> {
        let map = |pairs: &[(&str, &str)]| {
            Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned()))).collect())
        };
        Some(ResourceRequirements { requests: map(requests), limits: map(limits), ..Default::default() })
    }

    /// Each case: a change to the default spec and the field that must be reported (None = valid).
    #[test]
    fn table_of_offline_rules() {
        type Case = (&'static str, fn(&mut MemgraphClusterSpec), Option<&'static str>);
        let cases: Vec<Case> = vec![
            ("defaults", |_| {}, None),
            ("bad storage size", |s| s.write.storage.size = Quantity("10GB".into()), Some("spec.write.storage.size")),
            ("tiny storage", |s| s.read.storage.size = Quantity("10".into()), Some("spec.read.storage.size")),
            ("good storage", |s| s.read.storage.size = Quantity("50Gi".into()), None),
            ("bad cron", |s| s.snapshot.schedule = "every minute".into(), Some("spec.snapshot.schedule")),
            ("six-field cron", |s| s.snapshot.schedule = "0 */5 * * * *".into(), Some("spec.snapshot.schedule")),
            (
                "bad cron ignored when disabled",
                |s| {
                    s.snapshot.enabled = false;
                    s.snapshot.schedule = "nope".into();
                },
                None,
            ),
            ("good cron", |s| s.snapshot.schedule = "0 */2 * * *".into(), None),
            (
                "bad cpu",
                |s| s.write.resources = resources(&[("cpu", "one")], &[]),
                Some("spec.write.resources.requests.cpu"),
            ),
            (
                "request above limit",
                |s| s.read.resources = resources(&[("memory", "4Gi")], &[("memory", "2Gi")]),
                Some("spec.read.resources.requests.memory"),
            ),
            (
                "good resources",
                |s| s.write.resources = resources(&[("cpu", "500m"), ("memory", "2Gi")], &[("memory", "4Gi")]),
                None,
            ),
            (
                "memoryLimit above container limit",
                |s| {
                    s.write.resources = resources(&[], &[("memory", "2Gi")]);
                    s.write.config.memory_limit = Some(3000);
                },
                Some("spec.write.config.memoryLimit"),
            ),
            (
                "memoryLimit below container limit",
                |s| {
                    s.write.resources = resources(&[], &[("memory", "4Gi")]);
                    s.write.config.memory_limit = Some(3000);
                },
                None,
            ),
            (
                "management port",
                |s| s.write.extra_args = vec!["--management-port=10000".into()],
                Some("spec.write.extraArgs[0]"),
            ),
            (
                "managed flag",
                |s| s.read.extra_args = vec!["--query-execution-timeout-sec=5".into(), "--data-directory=/tmp".into()],
                Some("spec.read.extraArgs[1]"),
            ),
            ("not a flag", |s| s.write.extra_args = vec!["log-level=INFO".into()], Some("spec.write.extraArgs[0]")),
            (
                "duplicate flag",
                |s| s.write.extra_args = vec!["--a=1".into(), "--a=2".into()],
                Some("spec.write.extraArgs[1]"),
            ),
            ("fine extra flag", |s| s.write.extra_args = vec!["--query-execution-timeout-sec=600".into()], None),
            (
                "strict sync on old image",
                |s| {
                    s.replication.mode = ReplicationMode::StrictSync;
                    s.write.image = "memgraph/memgraph:3.4.0".into();
                },
                Some("spec.replication.mode"),
            ),
            (
                "strict sync on old read image",
                |s| {
                    s.replication.mode = ReplicationMode::StrictSync;
                    s.read.image = Some("memgraph/memgraph:2.21.0".into());
                },
                Some("spec.replication.mode"),
            ),
            ("strict sync on new image", |s| s.replication.mode = ReplicationMode::StrictSync, None),
            (
                "strict sync on unknown tag is left to the runtime check",
                |s| {
                    s.replication.mode = ReplicationMode::StrictSync;
                    s.write.image = "memgraph/memgraph:latest".into();
                },
                None,
            ),
            (
                "endpoint without scheme",
                |s| {
                    s.snapshot.s3 = Some(S3Spec {
                        enabled: true,
                        bucket: "b".into(),
                        endpoint: Some("minio:9000".into()),
                        ..Default::default()
                    });
                },
                Some("spec.snapshot.s3.endpoint"),
            ),
            (
                "endpoint with scheme",
                |s| {
                    s.snapshot.s3 = Some(S3Spec {
                        enabled: true,
                        bucket: "b".into(),
                        endpoint: Some("http://minio:9000".into()),
                        ..Default::default()
                    });
                },
                None,
            ),
        ];
        for (name, change, want) in cases {
            let mut s = spec();
            change(&mut s);
            let errors = validate_spec(&s);
            match want {
                None => assert!(errors.is_empty(), "{name}: unexpected {errors:?}"),
                Some(field) => {
                    assert_eq!(errors.len(), 1, "{name}: {errors:?}");
                    assert_eq!(errors[0].field, field, "{name}");
                    assert!(errors[0].to_string().starts_with(field), "{name}: message names the field");
                }
            }
        }
    }

    #[test]
    fn secrets_must_exist_with_their_keys() {
        let mut s = spec();
        s.auth = Some(AuthSpec {
            secret_ref: SecretRef { name: "creds".into() },
            username_key: "username".into(),
            password_key: "password".into(),
        });
        s.snapshot.s3 = Some(S3Spec {
            enabled: true,
            bucket: "b".into(),
            secret_ref: Some(SecretRef { name: "s3".into() }),
            ..Default::default()
        });
        let keys = |ks: &[&str]| ks.iter().map(|k| (*k).to_owned()).collect::<BTreeSet<_>>();

        let none = BTreeMap::new();
        let errors = validate_secrets(&s, "ns", &none);
        assert_eq!(
            errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
            ["spec.auth.secretRef.name", "spec.snapshot.s3.secretRef.name"]
        );
        assert!(errors[0].message.contains("'creds' does not exist in namespace 'ns'"));

        let partial = BTreeMap::from([
            ("creds".to_owned(), keys(&["username"])),
            ("s3".to_owned(), keys(&["access-key-id", "secret-access-key"])),
        ]);
        let errors = validate_secrets(&s, "ns", &partial);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("no key password"), "{}", errors[0]);

        let all = BTreeMap::from([
            ("creds".to_owned(), keys(&["username", "password"])),
            ("s3".to_owned(), keys(&["access-key-id", "secret-access-key"])),
        ]);
        assert!(validate_secrets(&s, "ns", &all).is_empty());

        // A disabled S3 section needs no Secret.
        if let Some(s3) = s.snapshot.s3.as_mut() {
            s3.enabled = false;
        }
        assert_eq!(secret_references(&s).len(), 1);
    }
}
