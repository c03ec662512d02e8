//! The RBAC the Helm chart creates grants exactly what the operator uses: every API call of
//! `KubeClient`, the controller's watches and the leader election on its Lease, and nothing
//! more, cluster-wide (ClusterRole) or in each watched namespace (Role).
//!
//! deploy/install.yaml (the chart rendered with its defaults; `chart.rs` fails when it is stale)
//! is checked without any tool. The chart's other value sets are rendered with helm; without
//! helm on PATH those tests are reported as ignored, and with `MGO_REQUIRE_HELM=1` they fail.

use std::collections::BTreeSet;
use std::process::ExitCode;

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

mod deploy_support;

use deploy_support::{
    HELM, NAMESPACE, check, check_eq, helm_template, install_manifest, needs, render_value_set, text,
};

/// (API group, resource, verb) of every request the operator makes on the clusters and the
/// objects it manages:
/// - the controller watches clusters, StatefulSets, Services, PDBs and pods (list + watch);
/// - reconcile reads a cluster (get), sets finalizers (patch), applies status (patch on status);
/// - server-side apply of owned objects (create when missing, patch); StatefulSets and Services
///   of removed replicas are deleted (the PodDisruptionBudget never is);
/// - pod role labels (patch); a failover's stop of an old MAIN that does not answer (delete on
///   pods); Secrets named in the spec (get); events (create, patch for series).
const USED: &[(&str, &str, &str)] = &[
    ("memgraph.io", "memgraphclusters", "get"),
    ("memgraph.io", "memgraphclusters", "list"),
    ("memgraph.io", "memgraphclusters", "watch"),
    ("memgraph.io", "memgraphclusters", "patch"),
    ("memgraph.io", "memgraphclusters/status", "patch"),
    ("apps", "statefulsets", "list"),
    ("apps", "statefulsets", "watch"),
    ("apps", "statefulsets", "create"),
    ("apps", "statefulsets", "patch"),
    ("apps", "statefulsets", "delete"),
    ("", "services", "list"),
    ("", "services", "watch"),
    ("", "services", "create"),
    ("", "services", "patch"),
    ("", "services", "delete"),
    ("policy", "poddisruptionbudgets", "list"),
    ("policy", "poddisruptionbudgets", "watch"),
    ("policy", "poddisruptionbudgets", "create"),
    ("policy", "poddisruptionbudgets", "patch"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "pods", "patch"),
    ("", "pods", "delete"),
    ("", "secrets", "get"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
];

/// (API group, resource, verb, restricted to the Lease's name) of leader election, in the
/// operator's own namespace (operator/src/leader/kube.rs): read the Lease (get), take or renew
/// it with the resourceVersion read (update, a PUT), and create it when missing. `create`
/// cannot be restricted by name: the API server authorizes it before the object has one.
const LEASE_USED: &[(&str, &str, &str, bool)] = &[
    ("coordination.k8s.io", "leases", "create", false),
    ("coordination.k8s.io", "leases", "get", true),
    ("coordination.k8s.io", "leases", "update", true),
];

/// One permission: group, resource, verb and the names it is restricted to (empty: any).
type Grant = (String, String, String, Vec<String>);

fn used() -> BTreeSet<Grant> {
    USED.iter().map(|(g, r, v)| ((*g).to_owned(), (*r).to_owned(), (*v).to_owned(), Vec::new())).collect()
}

fn lease_used(lease: &str) -> BTreeSet<Grant> {
    LEASE_USED
        .iter()
        .map(|(g, r, v, named)| {
            (
                (*g).to_owned(),
                (*r).to_owned(),
                (*v).to_owned(),
                if *named { vec![lease.to_owned()] } else { Vec::new() },
            )
        })
        .collect()
}

/// What a Role or ClusterRole grants, one tuple per group, resource and verb.
fn granted(role: &Value) -> Result<BTreeSet<Grant>, Failed> {
    let strings = |rule: &Value, key: &str| -> Result<Vec<String>, Failed> {
        match &rule[key] {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| Failed::from(format!("{key}: not a string"))))
                .collect(),
            other => Err(format!("{key}: not a list: {other}").into()),
        }
    };
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().ok_or("a role without rules")? {
        check(rule.get("nonResourceURLs").is_none(), "no nonResourceURLs")?;
        let mut names = strings(rule, "resourceNames")?;
        names.sort();
        for group in strings(rule, "apiGroups")? {
            for resource in strings(rule, "resources")? {
                for verb in strings(rule, "verbs")? {
                    check(verb != "*" && resource != "*" && group != "*", "no wildcards")?;
                    check(
                        out.insert((group.clone(), resource.clone(), verb.clone(), names.clone())),
                        format!("{group}/{resource} {verb} is granted twice"),
                    )?;
                }
            }
        }
    }
    Ok(out)
}

/// `got` is exactly `wanted`; otherwise the error names the extra and the missing permissions.
fn check_grants(got: BTreeSet<Grant>, wanted: BTreeSet<Grant>, what: &str) -> Result<(), Failed> {
    let extra: Vec<&Grant> = got.difference(&wanted).collect();
    let missing: Vec<&Grant> = wanted.difference(&got).collect();
    check(
        extra.is_empty() && missing.is_empty(),
        format!("{what}: grants what the operator does not use: {extra:?}; lacks what it uses: {missing:?}"),
    )
}

/// The rendered RBAC of one value set.
struct Rbac<'a> {
    objects: &'a [Value],
}

impl<'a> Rbac<'a> {
    fn find(&self, kind: &str, namespace: Option<&str>, name: &str) -> Result<&'a Value, Failed> {
        self.objects
            .iter()
            .find(|o| {
                o["kind"] == kind && o["metadata"]["name"] == name && o["metadata"]["namespace"].as_str() == namespace
            })
            .ok_or_else(|| format!("no {kind} {name} in namespace {namespace:?}").into())
    }

    fn kinds(&self, kind: &str) -> usize {
        self.objects.iter().filter(|o| o["kind"] == kind).count()
    }

    /// The binding names `role` and its only subject is the operator's ServiceAccount.
    fn check_binding(&self, binding: &Value, role_kind: &str, role: &str, account: &str) -> Result<(), Failed> {
        let what = format!("{} {}", text(binding, "/kind"), text(binding, "/metadata/name"));
        check_eq(text(binding, "/roleRef/kind"), role_kind, &format!("{what}: roleRef.kind"))?;
        check_eq(text(binding, "/roleRef/name"), role, &format!("{what}: roleRef.name"))?;
        let subjects = binding["subjects"].as_array().ok_or(format!("{what}: no subjects"))?;
        let wanted = serde_json::json!([{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]);
        check_eq(&Value::Array(subjects.clone()), &wanted, &format!("{what}: subjects"))
    }

    /// The operator's Deployment's ServiceAccount and lease name (`--lease-name=`).
    fn operator(&self) -> Result<(String, Option<String>), Failed> {
        let deployment = self.objects.iter().find(|o| o["kind"] == "Deployment").ok_or("no Deployment")?;
        let pod = &deployment["spec"]["template"]["spec"];
        let account = text(pod, "/serviceAccountName").to_owned();
        let args = pod["containers"][0]["args"].as_array().ok_or("no args")?;
        let lease =
            args.iter().filter_map(Value::as_str).find_map(|a| a.strip_prefix("--lease-name=")).map(str::to_owned);
        Ok((account, lease))
    }

    /// The Role on the Lease, bound to the operator, in the operator's namespace.
    fn check_lease_role(&self, fullname: &str) -> Result<(), Failed> {
        let (account, lease) = self.operator()?;
        let lease = lease.ok_or("leader election is on but the operator gets no --lease-name")?;
        let name = format!("{fullname}-leader-election");
        let role = self.find("Role", Some(NAMESPACE), &name)?;
        check_grants(granted(role)?, lease_used(&lease), "leader-election Role")?;
        self.check_binding(self.find("RoleBinding", Some(NAMESPACE), &name)?, "Role", &name, &account)
    }
}

/// Cluster-wide: one ClusterRole with exactly the used verbs, bound to the operator, and the
/// lease Role; nothing else.
fn check_cluster_wide(objects: &[Value], fullname: &str) -> Result<(), Failed> {
    let rbac = Rbac { objects };
    let (account, _) = rbac.operator()?;
    let role = rbac.find("ClusterRole", None, fullname)?;
    check_grants(granted(role)?, used(), "ClusterRole")?;
    rbac.check_binding(rbac.find("ClusterRoleBinding", None, fullname)?, "ClusterRole", fullname, &account)?;
    check_eq(rbac.kinds("ClusterRole"), 1, "ClusterRoles")?;
    check_eq(rbac.kinds("ClusterRoleBinding"), 1, "ClusterRoleBindings")?;
    check_eq(rbac.kinds("Role"), 1, "Roles (the lease Role only)")?;
    check_eq(rbac.kinds("RoleBinding"), 1, "RoleBindings")?;
    rbac.check_lease_role(fullname)
}

fn install_manifest_grants_exactly_what_is_used() -> Result<(), Failed> {
    check_cluster_wide(&install_manifest()?, "memgraph-operator")
}

fn chart_cluster_wide_grants_exactly_what_is_used() -> Result<(), Failed> {
    check_cluster_wide(&render_value_set(None)?, "memgraph-operator")?;
    // Another release name: the names follow it, and the Lease Role names the operator's Lease.
    let objects = deploy_support::documents(&helm_template(None, &["fullnameOverride=graphs-operator"])?)?;
    check_cluster_wide(&objects, "graphs-operator")
}

fn chart_namespaced_grants_exactly_what_is_used() -> Result<(), Failed> {
    let objects = render_value_set(Some("ci/namespaced-values.yaml"))?;
    let rbac = Rbac { objects: &objects };
    let (account, _) = rbac.operator()?;
    check_eq(rbac.kinds("ClusterRole") + rbac.kinds("ClusterRoleBinding"), 0, "cluster-wide RBAC objects")?;
    for namespace in ["team-a", "team-b"] {
        let role = rbac.find("Role", Some(namespace), "memgraph-operator")?;
        check_grants(granted(role)?, used(), &format!("Role in {namespace}"))?;
        let binding = rbac.find("RoleBinding", Some(namespace), "memgraph-operator")?;
        rbac.check_binding(binding, "Role", "memgraph-operator", &account)?;
    }
    check_eq(rbac.kinds("Role"), 3, "Roles (two watched namespaces and the Lease)")?;
    check_eq(rbac.kinds("RoleBinding"), 3, "RoleBindings")?;
    rbac.check_lease_role("memgraph-operator")?;
    // The operator watches exactly those namespaces.
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").ok_or("no Deployment")?;
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array().ok_or("no env")?;
    let watch = env.iter().find(|e| e["name"] == "WATCH_NAMESPACE").ok_or("no WATCH_NAMESPACE")?;
    check_eq(text(watch, "/value"), "team-a,team-b", "WATCH_NAMESPACE")
}

fn chart_without_rbac_or_leader_election() -> Result<(), Failed> {
    // rbac.create=false: no RBAC object at all.
    let objects = render_value_set(Some("ci/minimal-values.yaml"))?;
    for kind in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        check_eq(Rbac { objects: &objects }.kinds(kind), 0, &format!("{kind}s with rbac.create=false"))?;
    }
    // Leader election off: the cluster-wide RBAC without the lease Role.
    let objects = deploy_support::documents(&helm_template(None, &["leaderElection.enabled=false"])?)?;
    let rbac = Rbac { objects: &objects };
    check_grants(granted(rbac.find("ClusterRole", None, "memgraph-operator")?)?, used(), "ClusterRole")?;
    check_eq(rbac.kinds("Role") + rbac.kinds("RoleBinding"), 0, "lease RBAC without leader election")?;
    check_eq(rbac.operator()?.1, None, "--lease-name without leader election")
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test("install_manifest_grants_exactly_what_is_used", install_manifest_grants_exactly_what_is_used),
        needs(
            "chart_cluster_wide_grants_exactly_what_is_used",
            &[&HELM],
            chart_cluster_wide_grants_exactly_what_is_used,
        ),
        needs("chart_namespaced_grants_exactly_what_is_used", &[&HELM], chart_namespaced_grants_exactly_what_is_used),
        needs("chart_without_rbac_or_leader_election", &[&HELM], chart_without_rbac_or_leader_election),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}
