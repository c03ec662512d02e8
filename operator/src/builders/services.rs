use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::BuildContext;
use crate::names::{BOLT_PORT, Instance, REPLICATION_PORT, ROLE_MAIN, ROLE_REPLICA};

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }
}

fn client_service(ctx: &BuildContext<'_>, name: String, component: &str, role: &str) -> Service {
    let mut labels = ctx.names.common_labels();
    labels.insert(crate::names::LABEL_COMPONENT.to_owned(), component.to_owned());
    Service {
        metadata: ctx.metadata(name, labels),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            ports: Some(vec![port("bolt", BOLT_PORT)]),
            selector: Some(ctx.names.role_selector(role)),
            ..Default::default()
        }),
        status: None,
    }
}

/// `NAME-write`: Bolt to the pod verified as MAIN (label `memgraph.io/role=main`).
pub fn write_service(ctx: &BuildContext<'_>) -> Service {
    client_service(ctx, ctx.names.write_service(), "write", ROLE_MAIN)
}

/// `NAME-read`: Bolt load-balanced over pods verified as healthy replicas (`memgraph.io/role=replica`).
pub fn read_service(ctx: &BuildContext<'_>) -> Service {
    client_service(ctx, ctx.names.read_service(), "read", ROLE_REPLICA)
}

/// Headless Service giving an instance's pod a stable DNS name, also while not ready (a replica
/// must be reachable for registration before it passes readiness checks).
pub fn headless_service(ctx: &BuildContext<'_>, instance: Instance) -> Service {
    let mut labels = ctx.names.common_labels();
    labels.insert(crate::names::LABEL_COMPONENT.to_owned(), instance.component().to_owned());
    Service {
        metadata: ctx.metadata(ctx.names.headless_service(instance), labels),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![port("bolt", BOLT_PORT), port("replication", REPLICATION_PORT)]),
            selector: Some(ctx.names.instance_selector(instance)),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::cluster_with;

    fn ports(service: &Service) -> Vec<(String, i32)> {
        let spec = service.spec.as_ref().expect("spec");
        spec.ports.iter().flatten().map(|p| (p.name.clone().unwrap_or_default(), p.port)).collect()
    }

    fn selector(service: &Service) -> Vec<(String, String)> {
        service.spec.as_ref().and_then(|s| s.selector.clone()).expect("selector").into_iter().collect()
    }

    #[test]
    fn client_services_select_by_verified_role() {
        let cluster = cluster_with(|_| {});
        let ctx = BuildContext::new(&cluster).expect("context");
        for (service, name, role) in
            [(write_service(&ctx), "c-write", "main"), (read_service(&ctx), "c-read", "replica")]
        {
            assert_eq!(service.metadata.name.as_deref(), Some(name));
            let spec = service.spec.as_ref().expect("spec");
            assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
            assert_eq!(spec.cluster_ip, None);
            assert_eq!(ports(&service), [("bolt".to_owned(), 7687)]);
            let want: Vec<(String, String)> = [
                ("app.kubernetes.io/instance", "c"),
                ("app.kubernetes.io/name", "memgraph"),
                ("memgraph.io/role", role),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
            assert_eq!(selector(&service), want);
        }
    }

    #[test]
    fn headless_services_publish_not_ready_pods_on_both_ports() {
        let cluster = cluster_with(|_| {});
        let ctx = BuildContext::new(&cluster).expect("context");
        for (instance, name, extra) in
            [(Instance::Write, "c-write-hl", None), (Instance::Read(2), "c-read-2", Some("2"))]
        {
            let service = headless_service(&ctx, instance);
            assert_eq!(service.metadata.name.as_deref(), Some(name));
            let spec = service.spec.as_ref().expect("spec");
            assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
            assert_eq!(spec.publish_not_ready_addresses, Some(true));
            assert_eq!(ports(&service), [("bolt".to_owned(), 7687), ("replication".to_owned(), 10000)]);
            let selector: std::collections::BTreeMap<_, _> = selector(&service).into_iter().collect();
            assert_eq!(selector.get("app.kubernetes.io/component").map(String::as_str), Some(instance.component()));
            assert_eq!(selector.get("memgraph.io/read-index").map(String::as_str), extra);
            assert!(!selector.contains_key("memgraph.io/role"), "DNS must not depend on verification");
        }
    }
}
