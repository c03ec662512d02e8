use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, Lifecycle, LifecycleHandler,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretKeySelector, SecurityContext,
    TCPSocketAction, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::BuildContext;
use crate::api::MemgraphClusterSpec;
use crate::names::{BOLT_PORT, DATA_DIR, DATA_VOLUME, Instance, REPLICATION_PORT};

/// Image of the optional init container that raises `vm.max_map_count`.
pub const SYSCTL_IMAGE: &str = "busybox:1.36";
/// Grace period of the write pod: room for the preStop snapshot and the snapshot on exit.
pub const WRITE_GRACE_SECONDS: i64 = 300;
/// Grace period of read pods (Memgraph 3.8+ replicas also snapshot on exit).
pub const READ_GRACE_SECONDS: i64 = 120;
/// uid of the `memgraph` user in the official image.
const MEMGRAPH_UID: i64 = 101;
/// gid of the `memgraph` group in the official image.
const MEMGRAPH_GID: i64 = 103;
/// Memgraph's periodic snapshot interval. Memgraph refuses to start with WAL on and periodic
/// snapshots off, and replicas catch up from these files, so it is always on; the spec's
/// schedule adds operator-driven snapshots on top.
const SNAPSHOT_INTERVAL_SEC: u32 = 300;

/// Memgraph's command-line flags for an instance: the spec's settings, the fixed flags of
/// DESIGN §2, then `extraArgs`. Never `--management-port`.
pub fn memgraph_args(spec: &MemgraphClusterSpec, instance: Instance) -> Vec<String> {
    let (log_level, memory_limit, extra) = match instance {
        Instance::Write => (spec.write.config.log_level, spec.write.config.memory_limit, &spec.write.extra_args),
        Instance::Read(_) => (spec.read.config.log_level, spec.read.config.memory_limit, &spec.read.extra_args),
    };
    let mut args = vec![
        format!("--data-directory={DATA_DIR}"),
        format!("--bolt-port={BOLT_PORT}"),
        format!("--log-level={}", log_level.as_flag()),
        "--also-log-to-stderr=true".to_owned(),
        "--storage-wal-enabled=true".to_owned(),
        format!("--storage-snapshot-interval-sec={SNAPSHOT_INTERVAL_SEC}"),
        format!("--storage-snapshot-retention-count={}", spec.snapshot.retention_count),
        "--storage-snapshot-on-exit=true".to_owned(),
        "--replication-restore-state-on-startup=true".to_owned(),
        "--data-recovery-on-startup=true".to_owned(),
    ];
    // Same flush cadence on replicas as on the MAIN, as Memgraph advises for SYNC replicas.
    if let Some(n) = spec.write.config.wal_flush_every_n_tx {
        args.push(format!("--storage-wal-file-flush-every-n-tx={n}"));
    }
    if let Some(mib) = memory_limit.filter(|m| *m > 0) {
        args.push(format!("--memory-limit={mib}"));
    }
    args.extend(extra.iter().cloned());
    args
}

/// Shell command of the write pod's preStop hook: snapshot before Memgraph is stopped.
fn pre_stop_snapshot() -> Vec<String> {
    let script = concat!(
        "echo 'CREATE SNAPSHOT;' | mgconsole --host 127.0.0.1 --port 7687 --use-ssl=false",
        " ${MEMGRAPH_USER:+--username \"$MEMGRAPH_USER\" --password \"$MEMGRAPH_PASSWORD\"}",
        " || echo 'preStop snapshot failed; Memgraph still snapshots on exit' >&2"
    );
    vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()]
}

fn tcp_probe(period: i32, timeout: i32, failures: i32, initial_delay: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction { port: IntOrString::String("bolt".into()), host: None }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        success_threshold: Some(1),
        initial_delay_seconds: Some(initial_delay),
        ..Default::default()
    }
}

fn auth_env(spec: &MemgraphClusterSpec) -> Option<Vec<EnvVar>> {
    let auth = spec.auth.as_ref()?;
    let from_secret = |name: &str, key: &str| EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: auth.secret_ref.name.clone(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
    };
    Some(vec![from_secret("MEMGRAPH_USER", &auth.username_key), from_secret("MEMGRAPH_PASSWORD", &auth.password_key)])
}

fn memgraph_container(ctx: &BuildContext<'_>, instance: Instance) -> Container {
    let spec = ctx.spec;
    let (image, resources) = match instance {
        Instance::Write => (spec.write.image.clone(), spec.write.resources.clone()),
        Instance::Read(_) => (spec.read_image().to_owned(), spec.read.resources.clone()),
    };
    let port = |name: &str, port: i32| ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    Container {
        name: "memgraph".to_owned(),
        image: Some(image),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(memgraph_args(spec, instance)),
        ports: Some(vec![port("bolt", BOLT_PORT), port("replication", REPLICATION_PORT)]),
        env: auth_env(spec),
        resources,
        volume_mounts: Some(vec![VolumeMount {
            name: DATA_VOLUME.to_owned(),
            mount_path: DATA_DIR.to_owned(),
            ..Default::default()
        }]),
        // Memgraph opens Bolt only after recovering snapshots and WAL, which can take an hour on
        // large graphs: the startup probe allows two hours before liveness takes over.
        startup_probe: Some(tcp_probe(10, 5, 720, 5)),
        readiness_probe: Some(tcp_probe(5, 3, 3, 0)),
        liveness_probe: Some(tcp_probe(10, 5, 6, 0)),
        lifecycle: matches!(instance, Instance::Write).then(|| Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction { command: Some(pre_stop_snapshot()) }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), add: None }),
            ..Default::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Default::default()
    }
}

fn sysctl_init_container(max_map_count: i64) -> Container {
    Container {
        name: "sysctl-max-map-count".to_owned(),
        image: Some(SYSCTL_IMAGE.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(vec!["sysctl".to_owned(), "-w".to_owned(), format!("vm.max_map_count={max_map_count}")]),
        // Writing a node sysctl needs a privileged root container; only added on request.
        security_context: Some(SecurityContext {
            privileged: Some(true),
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Pod template of an instance's StatefulSet. It never carries a role label: a new pod is not
/// routable until the operator has verified its role.
pub fn pod_template(ctx: &BuildContext<'_>, instance: Instance) -> PodTemplateSpec {
    let spec = ctx.spec;
    let (node_selector, tolerations, affinity) = match instance {
        Instance::Write => (&spec.write.node_selector, &spec.write.tolerations, &spec.write.affinity),
        Instance::Read(_) => (&spec.read.node_selector, &spec.read.tolerations, &spec.read.affinity),
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(ctx.names.instance_labels(instance)), ..Default::default() }),
        spec: Some(PodSpec {
            containers: std::iter::once(memgraph_container(ctx, instance))
                .chain(matches!(instance, Instance::Write).then(|| super::agent::agent_container(ctx)).flatten())
                .collect(),
            volumes: matches!(instance, Instance::Write)
                .then(|| super::agent::agent_volume(ctx))
                .flatten()
                .map(|v| vec![v]),
            init_containers: {
                let restore =
                    matches!(instance, Instance::Write).then(|| super::agent::restore_container(ctx)).flatten();
                let inits: Vec<Container> =
                    spec.vm_max_map_count.map(sysctl_init_container).into_iter().chain(restore).collect();
                (!inits.is_empty()).then_some(inits)
            },
            termination_grace_period_seconds: Some(match instance {
                Instance::Write => WRITE_GRACE_SECONDS,
                Instance::Read(_) => READ_GRACE_SECONDS,
            }),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(MEMGRAPH_UID),
                run_as_group: Some(MEMGRAPH_GID),
                fs_group: Some(MEMGRAPH_GID),
                fs_group_change_policy: Some("OnRootMismatch".to_owned()),
                seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), localhost_profile: None }),
                ..Default::default()
            }),
            node_selector: (!node_selector.is_empty()).then(|| node_selector.clone()),
            tolerations: (!tolerations.is_empty()).then(|| tolerations.clone()),
            affinity: affinity.clone(),
            enable_service_links: Some(false),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AuthSpec, LogLevel, SecretRef};
    use crate::builders::test_support::cluster_with;
    use k8s_openapi::api::core::v1::{Affinity, NodeAffinity, ResourceRequirements, Toleration};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn template(change: impl FnOnce(&mut MemgraphClusterSpec), instance: Instance) -> PodSpec {
        let cluster = cluster_with(change);
        let ctx = BuildContext::new(&cluster).expect("context");
        pod_template(&ctx, instance).spec.expect("pod spec")
    }

    fn memgraph(pod: &PodSpec) -> &Container {
        &pod.containers[0]
    }

    #[test]
    fn default_flags_are_the_fixed_set() {
        let args = memgraph_args(&MemgraphClusterSpec::default(), Instance::Write);
        assert_eq!(
            args,
            [
                "--data-directory=/var/lib/memgraph",
                "--bolt-port=7687",
                "--log-level=WARNING",
                "--also-log-to-stderr=true",
                "--storage-wal-enabled=true",
                "--storage-snapshot-interval-sec=300",
                "--storage-snapshot-retention-count=5",
                "--storage-snapshot-on-exit=true",
                "--replication-restore-state-on-startup=true",
                "--data-recovery-on-startup=true",
            ]
        );
    }

    /// Each spec field that changes the flags, and the flags it adds on the write and read pods
    /// compared with the defaults (a changed value shows as the new flag).
    #[test]
    fn spec_fields_become_flags() {
        type Case = (fn(&mut MemgraphClusterSpec), &'static [&'static str], &'static [&'static str]);
        let cases: Vec<Case> = vec![
            (|s| s.write.config.log_level = LogLevel::Debug, &["--log-level=DEBUG"], &[]),
            (|s| s.read.config.log_level = LogLevel::Error, &[], &["--log-level=ERROR"]),
            (|s| s.write.config.memory_limit = Some(3000), &["--memory-limit=3000"], &[]),
            (|s| s.read.config.memory_limit = Some(2000), &[], &["--memory-limit=2000"]),
            (|s| s.write.config.memory_limit = Some(0), &[], &[]),
            (
                |s| s.write.config.wal_flush_every_n_tx = Some(100),
                &["--storage-wal-file-flush-every-n-tx=100"],
                &["--storage-wal-file-flush-every-n-tx=100"],
            ),
            (
                |s| s.snapshot.retention_count = 9,
                &["--storage-snapshot-retention-count=9"],
                &["--storage-snapshot-retention-count=9"],
            ),
            (
                |s| s.write.extra_args = vec!["--query-execution-timeout-sec=60".into()],
                &["--query-execution-timeout-sec=60"],
                &[],
            ),
            (|s| s.read.extra_args = vec!["--bolt-num-workers=4".into()], &[], &["--bolt-num-workers=4"]),
        ];
        let defaults = MemgraphClusterSpec::default();
        for (i, (change, write_added, read_added)) in cases.into_iter().enumerate() {
            let mut spec = MemgraphClusterSpec::default();
            change(&mut spec);
            for (instance, want) in [(Instance::Write, write_added), (Instance::Read(0), read_added)] {
                let before = memgraph_args(&defaults, instance);
                let after = memgraph_args(&spec, instance);
                let added: Vec<&str> = after.iter().filter(|a| !before.contains(a)).map(String::as_str).collect();
                assert_eq!(added, *want, "case {i}, {instance:?}");
                assert!(!after.iter().any(|a| a.contains("management-port")));
            }
        }
    }

    #[test]
    fn images_resources_and_scheduling_pass_through() {
        let resources = ResourceRequirements {
            limits: Some([("memory".to_owned(), Quantity("4Gi".into()))].into()),
            ..Default::default()
        };
        let toleration =
            Toleration { key: Some("dedicated".into()), operator: Some("Exists".into()), ..Default::default() };
        let affinity = Affinity { node_affinity: Some(NodeAffinity::default()), ..Default::default() };
        let (r, t, a) = (resources.clone(), toleration.clone(), affinity.clone());
        let change = move |s: &mut MemgraphClusterSpec| {
            s.write.image = "memgraph/memgraph:3.5.0".into();
            s.read.resources = Some(r);
            s.read.tolerations = vec![t];
            s.read.affinity = Some(a);
            s.read.node_selector = [("disk".to_owned(), "ssd".to_owned())].into();
        };
        let write = template(change.clone(), Instance::Write);
        let read = template(change, Instance::Read(1));
        assert_eq!(memgraph(&write).image.as_deref(), Some("memgraph/memgraph:3.5.0"));
        assert_eq!(
            memgraph(&read).image.as_deref(),
            Some("memgraph/memgraph:3.5.0"),
            "read image defaults to write image"
        );
        assert_eq!(memgraph(&write).resources, None);
        assert_eq!(memgraph(&read).resources.as_ref(), Some(&resources));
        assert_eq!(read.tolerations, Some(vec![toleration]));
        assert_eq!(read.affinity, Some(affinity));
        assert_eq!(read.node_selector.as_ref().and_then(|m| m.get("disk")).map(String::as_str), Some("ssd"));
        assert_eq!((write.tolerations, write.affinity, write.node_selector), (None, None, None));

        let own_image = template(|s| s.read.image = Some("memgraph/memgraph:3.12.1".into()), Instance::Read(0));
        assert_eq!(memgraph(&own_image).image.as_deref(), Some("memgraph/memgraph:3.12.1"));
    }

    #[test]
    fn write_pod_snapshots_before_stopping() {
        let write = template(|_| {}, Instance::Write);
        assert_eq!(write.termination_grace_period_seconds, Some(300));
        let command = memgraph(&write)
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.exec.as_ref())
            .and_then(|e| e.command.clone())
            .expect("preStop exec");
        assert!(command[2].contains("CREATE SNAPSHOT;"), "{command:?}");
        let read = template(|_| {}, Instance::Read(0));
        assert!(memgraph(&read).lifecycle.is_none());
        assert_eq!(read.termination_grace_period_seconds, Some(READ_GRACE_SECONDS));
    }

    #[test]
    fn pods_are_locked_down_and_have_no_role_label() {
        for instance in [Instance::Write, Instance::Read(0)] {
            let cluster = cluster_with(|_| {});
            let ctx = BuildContext::new(&cluster).expect("context");
            let template = pod_template(&ctx, instance);
            let labels = template.metadata.and_then(|m| m.labels).expect("labels");
            assert!(!labels.contains_key(crate::names::LABEL_ROLE));
            let pod = template.spec.expect("spec");
            let psc = pod.security_context.as_ref().expect("pod security context");
            assert_eq!(psc.run_as_non_root, Some(true));
            assert_eq!(psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()), Some("RuntimeDefault"));
            let sc = memgraph(&pod).security_context.as_ref().expect("container security context");
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(sc.capabilities.as_ref().and_then(|c| c.drop.clone()), Some(vec!["ALL".to_owned()]));
            assert!(pod.init_containers.is_none(), "no privileged init container unless asked");
            let probes =
                [&memgraph(&pod).startup_probe, &memgraph(&pod).readiness_probe, &memgraph(&pod).liveness_probe];
            assert!(probes.iter().all(|p| p.is_some()));
            let startup = memgraph(&pod).startup_probe.as_ref().expect("startup probe");
            let budget = startup.period_seconds.unwrap_or(0) * startup.failure_threshold.unwrap_or(0);
            assert!(budget >= 3600, "startup probe must allow an hour of recovery, allows {budget}s");
        }
    }

    #[test]
    fn sysctl_init_container_only_on_request() {
        let pod = template(|s| s.vm_max_map_count = Some(262144), Instance::Read(2));
        let init = pod.init_containers.expect("init container");
        assert_eq!(init.len(), 1);
        assert_eq!(init[0].command.as_ref().map(|c| c.join(" ")), Some("sysctl -w vm.max_map_count=262144".into()));
        assert_eq!(init[0].security_context.as_ref().and_then(|s| s.privileged), Some(true));
    }

    #[test]
    fn auth_secret_becomes_env() {
        let pod = template(
            |s| {
                s.auth = Some(AuthSpec {
                    secret_ref: SecretRef { name: "creds".into() },
                    username_key: "u".into(),
                    password_key: "p".into(),
                })
            },
            Instance::Write,
        );
        let env = memgraph(&pod).env.clone().expect("env");
        let refs: Vec<_> = env
            .iter()
            .map(|e| {
                let r = e.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).expect("secret ref");
                (e.name.as_str(), r.name.as_str(), r.key.as_str())
            })
            .collect();
        assert_eq!(refs, [("MEMGRAPH_USER", "creds", "u"), ("MEMGRAPH_PASSWORD", "creds", "p")]);
        assert!(template(|_| {}, Instance::Write).containers[0].env.is_none());
    }
}
