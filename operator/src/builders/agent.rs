//! The backup agent sidecar of the write pod (`spec.snapshot.s3`): the operator's image run as
//! `memgraph-operator agent`, sharing Memgraph's data volume. It is given the store location in
//! its arguments (nothing secret), the store credentials as environment variables from the
//! Secret of `secretRef` (never their values), and the request-signing key as a mounted file.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, Probe, ResourceRequirements,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::BuildContext;
use crate::backup::agent::AGENT_PORT;
use crate::names::{DATA_DIR, DATA_VOLUME};
use crate::reconcile::backup_job::AGENT_KEY;

/// Image of the agent when `spec.snapshot.s3.agentImage` is unset: this operator's release.
pub const DEFAULT_AGENT_IMAGE: &str =
    concat!("ghcr.io/memgraph-operator/memgraph-operator:", env!("CARGO_PKG_VERSION"));
/// Name of the sidecar.
pub const AGENT_CONTAINER: &str = "backup-agent";
/// Volume with the signing key.
const KEY_VOLUME: &str = "backup-agent-key";
/// Where the key is mounted.
pub const KEY_DIR: &str = "/etc/memgraph-operator/backup-agent";

fn enabled<'a>(ctx: &BuildContext<'a>) -> Option<&'a crate::api::S3Spec> {
    ctx.spec.snapshot.s3.as_ref().filter(|s3| s3.enabled && ctx.spec.snapshot.enabled)
}

/// The agent's arguments.
pub fn agent_args(s3: &crate::api::S3Spec) -> Vec<String> {
    let mut args = vec![
        "agent".to_owned(),
        format!("--data-dir={DATA_DIR}"),
        format!("--bucket={}", s3.bucket),
        format!("--region={}", s3.region),
        format!("--key-file={KEY_DIR}/{AGENT_KEY}"),
        format!("--part-size-mib={}", s3.part_size_mib),
        format!("--listen=0.0.0.0:{AGENT_PORT}"),
    ];
    if let Some(endpoint) = &s3.endpoint {
        args.push(format!("--endpoint={endpoint}"));
    }
    args
}

/// The store credentials as environment variables by reference to the Secret's keys: their
/// values never appear in the pod spec or in process arguments.
fn credentials_env(secret: &crate::api::SecretRef) -> Vec<EnvVar> {
    let from = |name: &str, key: &str| EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
    };
    vec![from("AWS_ACCESS_KEY_ID", "access-key-id"), from("AWS_SECRET_ACCESS_KEY", "secret-access-key")]
}

/// The sidecar, when backups are on.
pub fn agent_container(ctx: &BuildContext<'_>) -> Option<Container> {
    let s3 = enabled(ctx)?;
    let env = s3.secret_ref.as_ref().map(credentials_env);
    // One part in memory at a time, plus the process itself.
    let memory = i64::from(s3.part_size_mib) * 2 + 64;
    Some(Container {
        name: AGENT_CONTAINER.to_owned(),
        image: Some(s3.agent_image.clone().unwrap_or_else(|| DEFAULT_AGENT_IMAGE.to_owned())),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(agent_args(s3)),
        env,
        ports: Some(vec![ContainerPort {
            name: Some("backup-agent".to_owned()),
            container_port: i32::from(AGENT_PORT),
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".to_owned()),
                port: IntOrString::Int(i32::from(AGENT_PORT)),
                ..Default::default()
            }),
            period_seconds: Some(10),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(
                [("cpu".to_owned(), Quantity("10m".into())), ("memory".to_owned(), Quantity("32Mi".into()))].into(),
            ),
            limits: Some([("memory".to_owned(), Quantity(format!("{memory}Mi")))].into()),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount { name: DATA_VOLUME.to_owned(), mount_path: DATA_DIR.to_owned(), ..Default::default() },
            VolumeMount {
                name: KEY_VOLUME.to_owned(),
                mount_path: KEY_DIR.to_owned(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), add: None }),
            ..Default::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Default::default()
    })
}

/// The key volume, when backups are on.
pub fn agent_volume(ctx: &BuildContext<'_>) -> Option<Volume> {
    enabled(ctx)?;
    Some(Volume {
        name: KEY_VOLUME.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(ctx.names.backup_agent_secret()),
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Name of the restore init container.
pub const RESTORE_CONTAINER: &str = "restore";

/// The write pod's init container that restores `spec.bootstrap.fromBackup` onto an empty
/// volume, when the cluster is being bootstrapped.
pub fn restore_container(ctx: &BuildContext<'_>) -> Option<Container> {
    if !ctx.restore {
        return None;
    }
    let source = ctx.spec.bootstrap.as_ref()?.from_backup.as_ref()?;
    let mut args = vec![
        "restore".to_owned(),
        format!("--data-dir={DATA_DIR}"),
        format!("--bucket={}", source.bucket),
        format!("--region={}", source.region),
        format!("--prefix={}", source.prefix.trim_end_matches('/')),
        format!("--backup={}", source.backup_id),
    ];
    if let Some(endpoint) = &source.endpoint {
        args.push(format!("--endpoint={endpoint}"));
    }
    if let Some(version) = crate::version::MemgraphVersion::from_image(&ctx.spec.write.image) {
        args.push(format!("--memgraph-version={version}"));
    }
    let env = source.secret_ref.as_ref().map(credentials_env);
    let image = ctx.spec.snapshot.s3.as_ref().and_then(|s3| s3.agent_image.clone());
    Some(Container {
        name: RESTORE_CONTAINER.to_owned(),
        image: Some(image.unwrap_or_else(|| DEFAULT_AGENT_IMAGE.to_owned())),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(args),
        env,
        volume_mounts: Some(vec![VolumeMount {
            name: DATA_VOLUME.to_owned(),
            mount_path: DATA_DIR.to_owned(),
            ..Default::default()
        }]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), add: None }),
            ..Default::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Default::default()
    })
}
