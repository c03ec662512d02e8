//! The Pod Security Standards' "restricted" profile, for the operator's own pod (from the Helm
//! chart: deploy/install.yaml, and every value set with helm) and for every pod the operator
//! creates (the pod templates in `memgraph-operator render` of every sample in deploy/samples).
//!
//! The rules are those of https://kubernetes.io/docs/concepts/security/pod-security-standards/
//! for policy version v1.25 and later (the "baseline" controls and the "restricted" ones on top),
//! written here from that page: the API server's Pod Security admission is not available
//! offline. Every container, init container and ephemeral container is checked. Windows-only
//! controls (hostProcess) are checked too; the Linux-only exemptions for `spec.os.name: windows`
//! are not applied (no pod here is a Windows pod).
//!
//! One exception is expected: `spec.vmMaxMapCount` adds a privileged root init container that
//! raises a node sysctl. With it (deploy/samples/vm-max-map-count.yaml) the test asserts that
//! every violation is that init container's and prints them; without it, there are none.

use std::process::ExitCode;

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{Value, json};

mod deploy_support;

use deploy_support::{HELM, VALUE_SETS, check, install_manifest, needs, render_sample, render_value_set, samples};

/// The init container `spec.vmMaxMapCount` adds (operator/src/builders/pod.rs).
const SYSCTL_INIT_CONTAINER: &str = "sysctl-max-map-count";

/// Capabilities baseline allows to be added.
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls baseline allows in every policy version from v1.25 (later versions allow more).
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
];

/// SELinux types baseline allows (besides none).
const SELINUX_TYPES: &[&str] = &["container_t", "container_init_t", "container_kvm_t"];

/// Volume types restricted allows.
const RESTRICTED_VOLUMES: &[&str] =
    &["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

/// One failed control: where (a field path in the pod), which control and the value found.
#[derive(Debug, Clone, PartialEq)]
struct Violation {
    /// The container it is about (`initContainers[name]`), or none for a pod-level field.
    container: Option<String>,
    /// The field, relative to the pod spec (or metadata).
    field: String,
    /// The profile and control.
    control: &'static str,
    /// What was found.
    found: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} = {}", self.control, self.field, self.found)
    }
}

struct Checker<'a> {
    out: &'a mut Vec<Violation>,
    container: Option<String>,
}

impl Checker<'_> {
    fn fail(&mut self, control: &'static str, field: String, found: &Value) {
        self.out.push(Violation { container: self.container.clone(), field, control, found: found.to_string() });
    }
}

fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true)
}

fn absent(v: &Value) -> bool {
    v.is_null()
}

/// The violations of a pod: its metadata (annotations) and spec.
fn violations(metadata: &Value, spec: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut pod = Checker { out: &mut out, container: None };
    let psc = &spec["securityContext"];

    // baseline: HostProcess.
    if is_true(&psc["windowsOptions"]["hostProcess"]) {
        pod.fail(
            "baseline: HostProcess",
            "securityContext.windowsOptions.hostProcess".into(),
            &psc["windowsOptions"]["hostProcess"],
        );
    }
    // baseline: Host Namespaces.
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if is_true(&spec[field]) {
            pod.fail("baseline: Host Namespaces", field.into(), &spec[field]);
        }
    }
    // baseline: HostPath Volumes; restricted: Volume Types.
    for (i, volume) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        let kinds: Vec<&String> =
            volume.as_object().into_iter().flatten().map(|(k, _)| k).filter(|k| *k != "name").collect();
        for kind in kinds {
            let field = format!("volumes[{i}].{kind}");
            if kind == "hostPath" {
                pod.fail("baseline: HostPath Volumes", field.clone(), &volume[kind]);
            }
            if !RESTRICTED_VOLUMES.contains(&kind.as_str()) {
                pod.fail("restricted: Volume Types", field, &json!(kind));
            }
        }
    }
    // baseline: AppArmor (the annotations of before v1.30, and the fields).
    for (key, value) in metadata["annotations"].as_object().into_iter().flatten() {
        if key.starts_with("container.apparmor.security.beta.kubernetes.io/") {
            let profile = value.as_str().unwrap_or("");
            if profile != "runtime/default" && !profile.starts_with("localhost/") {
                pod.fail("baseline: AppArmor", format!("metadata.annotations[{key}]"), value);
            }
        }
    }
    // baseline: Sysctls.
    for (i, sysctl) in psc["sysctls"].as_array().into_iter().flatten().enumerate() {
        if !SAFE_SYSCTLS.contains(&sysctl["name"].as_str().unwrap_or("")) {
            pod.fail("baseline: Sysctls", format!("securityContext.sysctls[{i}].name"), &sysctl["name"]);
        }
    }
    common_security_context(&mut pod, psc, "securityContext");
    // restricted: Running as Non-root user (pod level; containers below).
    if psc["runAsUser"].as_i64() == Some(0) {
        pod.fail("restricted: Running as Non-root user", "securityContext.runAsUser".into(), &psc["runAsUser"]);
    }
    let pod_non_root = is_true(&psc["runAsNonRoot"]);
    if psc["runAsNonRoot"].as_bool() == Some(false) {
        pod.fail("restricted: Running as Non-root", "securityContext.runAsNonRoot".into(), &psc["runAsNonRoot"]);
    }
    let pod_seccomp = seccomp_confined(&psc["seccompProfile"]);

    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for (i, container) in spec[list].as_array().into_iter().flatten().enumerate() {
            let name = container["name"].as_str().unwrap_or("?");
            let mut c = Checker { out: &mut out, container: Some(format!("{list}[{name}]")) };
            let at = |field: &str| format!("{list}[{i}].{field}");
            let sc = &container["securityContext"];
            // baseline: HostProcess, Privileged Containers.
            if is_true(&sc["windowsOptions"]["hostProcess"]) {
                c.fail(
                    "baseline: HostProcess",
                    at("securityContext.windowsOptions.hostProcess"),
                    &sc["windowsOptions"]["hostProcess"],
                );
            }
            if is_true(&sc["privileged"]) {
                c.fail("baseline: Privileged Containers", at("securityContext.privileged"), &sc["privileged"]);
            }
            // baseline: Capabilities; restricted: Capabilities (drop ALL, add at most
            // NET_BIND_SERVICE).
            for (j, cap) in sc["capabilities"]["add"].as_array().into_iter().flatten().enumerate() {
                let cap_name = cap.as_str().unwrap_or("");
                if !BASELINE_CAPABILITIES.contains(&cap_name) {
                    c.fail("baseline: Capabilities", at(&format!("securityContext.capabilities.add[{j}]")), cap);
                }
                if cap_name != "NET_BIND_SERVICE" {
                    c.fail("restricted: Capabilities", at(&format!("securityContext.capabilities.add[{j}]")), cap);
                }
            }
            let drops_all = sc["capabilities"]["drop"].as_array().into_iter().flatten().any(|d| d == "ALL");
            if !drops_all {
                c.fail(
                    "restricted: Capabilities",
                    at("securityContext.capabilities.drop"),
                    &sc["capabilities"]["drop"],
                );
            }
            // baseline: Host Ports.
            for (j, port) in container["ports"].as_array().into_iter().flatten().enumerate() {
                if port["hostPort"].as_i64().is_some_and(|p| p != 0) {
                    c.fail("baseline: Host Ports", at(&format!("ports[{j}].hostPort")), &port["hostPort"]);
                }
            }
            // baseline: /proc Mount Type.
            if !absent(&sc["procMount"]) && sc["procMount"] != "Default" {
                c.fail("baseline: /proc Mount Type", at("securityContext.procMount"), &sc["procMount"]);
            }
            common_security_context(&mut c, sc, &at("securityContext"));
            // restricted: Privilege Escalation.
            if sc["allowPrivilegeEscalation"].as_bool() != Some(false) {
                c.fail(
                    "restricted: Privilege Escalation",
                    at("securityContext.allowPrivilegeEscalation"),
                    &sc["allowPrivilegeEscalation"],
                );
            }
            // restricted: Running as Non-root: true on the container, or on the pod and not false
            // on the container.
            let non_root = match sc["runAsNonRoot"].as_bool() {
                Some(v) => v,
                None => pod_non_root,
            };
            if !non_root {
                c.fail("restricted: Running as Non-root", at("securityContext.runAsNonRoot"), &sc["runAsNonRoot"]);
            }
            // restricted: Running as Non-root user.
            if sc["runAsUser"].as_i64() == Some(0) {
                c.fail("restricted: Running as Non-root user", at("securityContext.runAsUser"), &sc["runAsUser"]);
            }
            // restricted: Seccomp: RuntimeDefault or Localhost on the container, or on the pod
            // and not Unconfined on the container (baseline refuses Unconfined anywhere, above).
            let confined =
                if absent(&sc["seccompProfile"]) { pod_seccomp } else { seccomp_confined(&sc["seccompProfile"]) };
            if !confined {
                c.fail("restricted: Seccomp", at("securityContext.seccompProfile.type"), &sc["seccompProfile"]["type"]);
            }
        }
    }
    out
}

fn seccomp_confined(profile: &Value) -> bool {
    matches!(profile["type"].as_str(), Some("RuntimeDefault" | "Localhost"))
}

/// The controls a pod's and a container's security context share: baseline SELinux, AppArmor
/// (the field) and Seccomp (no Unconfined).
fn common_security_context(c: &mut Checker<'_>, sc: &Value, at: &str) {
    let selinux = &sc["seLinuxOptions"];
    if let Some(kind) = selinux["type"].as_str()
        && !kind.is_empty()
        && !SELINUX_TYPES.contains(&kind)
    {
        c.fail("baseline: SELinux", format!("{at}.seLinuxOptions.type"), &selinux["type"]);
    }
    for field in ["user", "role"] {
        if selinux[field].as_str().is_some_and(|v| !v.is_empty()) {
            c.fail("baseline: SELinux", format!("{at}.seLinuxOptions.{field}"), &selinux[field]);
        }
    }
    let apparmor = &sc["appArmorProfile"]["type"];
    if !absent(apparmor) && !matches!(apparmor.as_str(), Some("RuntimeDefault" | "Localhost")) {
        c.fail("baseline: AppArmor", format!("{at}.appArmorProfile.type"), apparmor);
    }
    let seccomp = &sc["seccompProfile"]["type"];
    if !absent(seccomp) && !matches!(seccomp.as_str(), Some("RuntimeDefault" | "Localhost")) {
        c.fail("baseline: Seccomp", format!("{at}.seccompProfile.type"), seccomp);
    }
}

/// Every pod of a list of objects: (what, metadata, spec) of each Pod and each pod template.
fn pods(objects: &[Value]) -> Result<Vec<(String, &Value, &Value)>, Failed> {
    let mut out = Vec::new();
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or("");
        let what = format!("{kind} {}", object["metadata"]["name"].as_str().unwrap_or("?"));
        let template = match kind {
            "Pod" => Some(object),
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "ReplicationController" => {
                Some(&object["spec"]["template"])
            }
            "CronJob" => Some(&object["spec"]["jobTemplate"]["spec"]["template"]),
            _ => {
                check(
                    object["spec"].get("template").is_none() && object["spec"].get("jobTemplate").is_none(),
                    format!("{what}: a pod template in a kind this test does not know"),
                )?;
                None
            }
        };
        if let Some(template) = template {
            check(template["spec"]["containers"].is_array(), format!("{what}: no containers"))?;
            out.push((what, &template["metadata"], &template["spec"]));
        }
    }
    Ok(out)
}

/// Every violation of every pod of `objects`, with the pod it is in.
fn all_violations(objects: &[Value]) -> Result<(usize, Vec<(String, Violation)>), Failed> {
    let pods = pods(objects)?;
    let mut out = Vec::new();
    for (what, metadata, spec) in &pods {
        out.extend(violations(metadata, spec).into_iter().map(|v| (what.clone(), v)));
    }
    Ok((pods.len(), out))
}

fn report(violations: &[(String, Violation)]) -> String {
    violations.iter().map(|(pod, v)| format!("  {pod}: {v}")).collect::<Vec<_>>().join("\n")
}

fn restricted(objects: &[Value], source: &str) -> Result<(), Failed> {
    let (pods, violations) = all_violations(objects)?;
    check(pods > 0, format!("{source}: no pod"))?;
    check(violations.is_empty(), format!("{source} violates \"restricted\":\n{}", report(&violations)))
}

fn operator_pod_in_install_manifest() -> Result<(), Failed> {
    restricted(&install_manifest()?, "deploy/install.yaml")
}

fn operator_pod_of_value_set(values: Option<&'static str>) -> impl FnOnce() -> Result<(), Failed> {
    move || restricted(&render_value_set(values)?, &format!("the chart with {}", values.unwrap_or("default values")))
}

/// The pods of a sample: none violate "restricted", except, with `vmMaxMapCount`, the sysctl
/// init container, which is then the only one that does.
fn sample_pods(sample: std::path::PathBuf) -> impl FnOnce() -> Result<(), Failed> {
    move || {
        let text = std::fs::read_to_string(&sample)?;
        let spec: Value = serde_yaml::from_str(&text)?;
        let objects = render_sample(&sample)?;
        let (pods, violations) = all_violations(&objects)?;
        let name = sample.display();
        check(pods > 0, format!("{name}: renders no pod"))?;
        if spec["spec"].get("vmMaxMapCount").is_none() {
            return check(
                violations.is_empty(),
                format!("{name}: pods violate \"restricted\":\n{}", report(&violations)),
            );
        }
        let wanted = format!("initContainers[{SYSCTL_INIT_CONTAINER}]");
        let (expected, other): (Vec<_>, Vec<_>) =
            violations.into_iter().partition(|(_, v)| v.container.as_deref() == Some(wanted.as_str()));
        check(
            other.is_empty(),
            format!("{name}: violations besides the sysctl init container's:\n{}", report(&other)),
        )?;
        // Every pod carries the init container, and each copy violates the profile.
        let violating_pods: std::collections::BTreeSet<&String> = expected.iter().map(|(pod, _)| pod).collect();
        check(
            violating_pods.len() == pods,
            format!("{name}: {} of {pods} pods have the sysctl init container's violations", violating_pods.len()),
        )?;
        let mut controls: Vec<String> = expected.iter().map(|(_, v)| v.to_string()).collect();
        controls.sort();
        controls.dedup();
        println!("{name}: the expected exception, {wanted} in each of {pods} pods:\n  {}", controls.join("\n  "));
        Ok(())
    }
}

/// The checker itself: a restricted pod passes, and each control catches its violation.
fn checker_catches_each_control() -> Result<(), Failed> {
    let good_container = json!({
        "name": "app",
        "image": "x",
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
    });
    let good = json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [good_container],
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}, {"name": "s", "secret": {"secretName": "s"}}],
    });
    let found = violations(&json!({}), &good);
    check(found.is_empty(), format!("a restricted pod fails: {found:?}"))?;

    let with_net_bind = {
        let mut pod = good.clone();
        pod["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["NET_BIND_SERVICE"]);
        pod
    };
    check(violations(&json!({}), &with_net_bind).is_empty(), "NET_BIND_SERVICE may be added")?;

    type Mutation = fn(&mut Value, &mut Value);
    let cases: &[(&str, Mutation)] = &[
        ("baseline: Host Namespaces", |_, p| p["hostNetwork"] = json!(true)),
        ("baseline: Host Namespaces", |_, p| p["hostPID"] = json!(true)),
        ("baseline: Host Namespaces", |_, p| p["hostIPC"] = json!(true)),
        ("baseline: HostProcess", |_, p| p["securityContext"]["windowsOptions"] = json!({"hostProcess": true})),
        ("baseline: Privileged Containers", |_, p| p["containers"][0]["securityContext"]["privileged"] = json!(true)),
        ("baseline: Capabilities", |_, p| {
            p["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"])
        }),
        ("restricted: Capabilities", |_, p| {
            p["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["CHOWN"])
        }),
        ("restricted: Capabilities", |_, p| {
            p["containers"][0]["securityContext"]["capabilities"] = json!({"drop": ["NET_RAW"]})
        }),
        ("baseline: HostPath Volumes", |_, p| p["volumes"] = json!([{"name": "h", "hostPath": {"path": "/"}}])),
        ("restricted: Volume Types", |_, p| p["volumes"] = json!([{"name": "n", "nfs": {"server": "s", "path": "/"}}])),
        ("baseline: Host Ports", |_, p| p["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 80}])),
        ("baseline: AppArmor", |m, _| {
            m["annotations"] = json!({"container.apparmor.security.beta.kubernetes.io/app": "unconfined"})
        }),
        ("baseline: AppArmor", |_, p| {
            p["containers"][0]["securityContext"]["appArmorProfile"] = json!({"type": "Unconfined"})
        }),
        ("baseline: SELinux", |_, p| p["securityContext"]["seLinuxOptions"] = json!({"type": "spc_t"})),
        ("baseline: SELinux", |_, p| p["containers"][0]["securityContext"]["seLinuxOptions"] = json!({"user": "root"})),
        ("baseline: /proc Mount Type", |_, p| p["containers"][0]["securityContext"]["procMount"] = json!("Unmasked")),
        ("baseline: Seccomp", |_, p| {
            p["containers"][0]["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"})
        }),
        ("restricted: Seccomp", |_, p| p["securityContext"] = json!({"runAsNonRoot": true})),
        ("baseline: Sysctls", |_, p| {
            p["securityContext"]["sysctls"] = json!([{"name": "vm.max_map_count", "value": "1"}])
        }),
        ("restricted: Privilege Escalation", |_, p| {
            p["containers"][0]["securityContext"].as_object_mut().map(|s| s.remove("allowPrivilegeEscalation"));
        }),
        ("restricted: Running as Non-root", |_, p| p["securityContext"]["runAsNonRoot"] = json!(false)),
        ("restricted: Running as Non-root", |_, p| {
            p["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false)
        }),
        ("restricted: Running as Non-root", |_, p| {
            p["securityContext"].as_object_mut().map(|s| s.remove("runAsNonRoot"));
        }),
        ("restricted: Running as Non-root user", |_, p| p["securityContext"]["runAsUser"] = json!(0)),
        ("restricted: Running as Non-root user", |_, p| p["containers"][0]["securityContext"]["runAsUser"] = json!(0)),
        // Init and ephemeral containers are checked like containers.
        ("baseline: Privileged Containers", |_, p| {
            p["initContainers"] = json!([{"name": "i", "securityContext": {"privileged": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]);
        }),
        ("restricted: Privilege Escalation", |_, p| {
            p["ephemeralContainers"] = json!([{"name": "e", "securityContext": {"capabilities": {"drop": ["ALL"]}}}]);
        }),
    ];
    let mut missed = Vec::new();
    for (i, (control, mutate)) in cases.iter().enumerate() {
        let (mut metadata, mut pod) = (json!({}), good.clone());
        mutate(&mut metadata, &mut pod);
        let found = violations(&metadata, &pod);
        if !found.iter().any(|v| v.control == *control) {
            missed.push(format!("case {i} ({control}) not caught; found {found:?}"));
        }
    }
    // Running as non-root set on every container instead of the pod passes.
    let mut per_container = good.clone();
    per_container["securityContext"] = json!({"seccompProfile": {"type": "RuntimeDefault"}});
    per_container["containers"][0]["securityContext"]["runAsNonRoot"] = json!(true);
    let found = violations(&json!({}), &per_container);
    check(found.is_empty(), format!("runAsNonRoot on every container should pass: {found:?}"))?;
    check(missed.is_empty(), missed.join("\n"))
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let mut trials = vec![
        Trial::test("checker_catches_each_control", checker_catches_each_control),
        Trial::test("operator_pod_in_install_manifest", operator_pod_in_install_manifest),
    ];
    for (name, values) in VALUE_SETS {
        trials.push(needs(format!("operator_pod_of_chart_{name}"), &[&HELM], operator_pod_of_value_set(*values)));
    }
    let samples = samples();
    assert!(
        samples.iter().any(|s| std::fs::read_to_string(s).is_ok_and(|t| t.contains("vmMaxMapCount:"))),
        "a sample must enable vmMaxMapCount, for the one expected exception to be tested"
    );
    for sample in samples {
        trials.push(Trial::test(
            format!("operator_created_pods_{}", deploy_support::sample_name(&sample)),
            sample_pods(sample),
        ));
    }
    libtest_mimic::run(&args, trials).exit_code()
}
