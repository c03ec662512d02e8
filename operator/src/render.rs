//! `memgraph-operator render`: every object the operator would create for a `MemgraphCluster`,
//! as a YAML stream, without touching a cluster.

use serde::Serialize;
use thiserror::Error;

use crate::api::MemgraphCluster;
use crate::builders::{BuildError, desired_objects};
use crate::validate::{SpecError, validate_spec};

/// The uid put into owner references when the input has none (a file never has one).
pub const OFFLINE_UID: &str = "00000000-0000-0000-0000-000000000000";

/// Why a cluster could not be rendered.
#[derive(Debug, Error)]
pub enum RenderError {
    /// The input is not YAML.
    #[error("the input is not YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// A field has the wrong type or value.
    #[error("the input is not a valid MemgraphCluster: {path}: {message}")]
    Field {
        /// Path of the field, such as `spec.read.replicas`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The input is some other kind.
    #[error("the input is a {kind} of {api_version}, not a MemgraphCluster of memgraph.io/v1alpha1")]
    WrongKind {
        /// Its kind.
        kind: String,
        /// Its apiVersion.
        api_version: String,
    },
    /// The spec fails the operator's checks.
    #[error("the spec is invalid:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    InvalidSpec(Vec<SpecError>),
    /// Objects could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Parse one `MemgraphCluster` from YAML, filling in what a file lacks: the namespace (from
/// `default_namespace`) and a placeholder uid.
pub fn parse_cluster(yaml: &str, default_namespace: &str) -> Result<MemgraphCluster, RenderError> {
    let value: serde_yaml::Value = serde_yaml::from_str(yaml)?;
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    let (kind, api_version) = (field("kind"), field("apiVersion"));
    if kind != "MemgraphCluster" || api_version != "memgraph.io/v1alpha1" {
        return Err(RenderError::WrongKind { kind, api_version });
    }
    let mut value = value;
    // As the API server does with the CRD's default, a missing spec means all defaults.
    if let Some(map) = value.as_mapping_mut() {
        map.entry("spec".into()).or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    }
    let mut cluster: MemgraphCluster = serde_path_to_error::deserialize(value)
        .map_err(|e| RenderError::Field { path: e.path().to_string(), message: e.into_inner().to_string() })?;
    cluster.metadata.namespace.get_or_insert_with(|| default_namespace.to_owned());
    cluster.metadata.uid.get_or_insert_with(|| OFFLINE_UID.to_owned());
    Ok(cluster)
}

fn push_doc<T: Serialize>(out: &mut String, object: &T) -> Result<(), serde_yaml::Error> {
    out.push_str("---\n");
    out.push_str(&serde_yaml::to_string(object)?);
    Ok(())
}

/// Render every object for the cluster in `yaml` as a YAML stream, in creation order.
pub fn render(yaml: &str, default_namespace: &str) -> Result<String, RenderError> {
    let cluster = parse_cluster(yaml, default_namespace)?;
    let errors = validate_spec(&cluster.spec);
    if !errors.is_empty() {
        return Err(RenderError::InvalidSpec(errors));
    }
    let objects = desired_objects(&cluster)?;
    let mut out = String::new();
    for service in &objects.services {
        push_doc(&mut out, &typed(service, "v1", "Service"))?;
    }
    for sts in &objects.statefulsets {
        push_doc(&mut out, &typed(sts, "apps/v1", "StatefulSet"))?;
    }
    for pdb in &objects.pdbs {
        push_doc(&mut out, &typed(pdb, "policy/v1", "PodDisruptionBudget"))?;
    }
    Ok(out)
}

/// k8s-openapi types serialize `apiVersion`/`kind` themselves; this keeps the output explicit
/// and checked by the tests.
fn typed<T: Serialize>(object: &T, api_version: &str, kind: &str) -> serde_json::Value {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), api_version.into());
        map.insert("kind".into(), kind.into());
    }
    value
}
