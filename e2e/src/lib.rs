//! What the two end-to-end suites share: the skip-or-fail rule, a runtime, bounded waits, and
//! the checks for docker and for programs on `PATH`.
//!
//! The suites (`tests/memgraph.rs`, `tests/kind.rs`) are libtest-mimic test targets: a test
//! that cannot run here (no docker daemon, no kind, no image) is reported as *ignored* with the
//! reason, never as passed. `MGO_E2E_REQUIRE=1` turns every such skip into a failure, for
//! machines that are meant to have them.

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `MGO_E2E_REQUIRE=1`: a missing docker, kind, kubectl, helm or image fails the tests.
pub const REQUIRE_VAR: &str = "MGO_E2E_REQUIRE";
/// `MGO_E2E_KEEP=1`: leave the kind cluster running after the suite.
pub const KEEP_VAR: &str = "MGO_E2E_KEEP";

/// Whether skips are failures.
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
}

/// Whether to keep what the suite created.
pub fn keep() -> bool {
    std::env::var(KEEP_VAR).is_ok_and(|v| v == "1")
}

/// The test arguments, one test at a time unless `--test-threads` says otherwise: the tests
/// share one docker daemon (and, for kind, one cluster, in order).
pub fn arguments() -> Arguments {
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    args
}

/// A test that cannot run: ignored with `reason` (which should say what is missing), or a
/// failure when [`required`].
pub fn unavailable(name: impl Into<String>, reason: &str) -> Trial {
    let reason = reason.to_owned();
    if required() {
        Trial::test(name, move || Err(format!("{reason}, and {REQUIRE_VAR}=1 requires this test to run").into()))
    } else {
        let reason = format!("skipped: {reason} (set {REQUIRE_VAR}=1 to fail instead)");
        Trial::ignorable_test(name, move || Ok(Completion::ignored_with(reason)))
    }
}

/// The runtime every test's async work runs on.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start a tokio runtime: {e}"))
    })
}

/// Runs `work` as a task on [`runtime`] (testcontainers drops containers with
/// `block_in_place`, which needs a worker thread) and turns an error or a panic into a failure.
pub fn block_on<F, T>(work: F) -> Result<T, Failed>
where
    F: Future<Output = Result<T, String>> + Send + 'static,
    T: Send + 'static,
{
    let rt = runtime();
    match rt.block_on(rt.spawn(work)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.into()),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let text = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic without a message".to_owned());
            Err(format!("panicked: {text}").into())
        }
        Err(e) => Err(format!("the test task ended: {e}").into()),
    }
}

/// Polls `probe` every `every` until it returns `Ok(Some(v))`, for at most `limit`. On timeout
/// the error names what was awaited and the last thing seen (`Ok(None)` carries no text, so
/// probes return `Err(seen)` to say what they saw).
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match probe().await {
            Ok(v) => return Ok(v),
            Err(seen) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("timed out after {} s waiting for {what}; last seen: {seen}", limit.as_secs()));
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// Where the docker daemon is expected: `DOCKER_HOST`, else the default socket.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

/// Asks the daemon at `host` for `/_ping` (plain HTTP over the unix socket or TCP). `Err` says
/// why there is no daemon, naming `host`.
pub async fn docker_ping(host: &str) -> Result<(), String> {
    const REQUEST: &[u8] = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n";
    let no_daemon = |why: String| format!("no docker daemon at {host}: {why}");
    let answer = async {
        let mut answer = Vec::new();
        if let Some(path) = host.strip_prefix("unix://") {
            let mut s = tokio::net::UnixStream::connect(path).await?;
            s.write_all(REQUEST).await?;
            s.read_to_end(&mut answer).await?;
        } else if let Some(addr) = host.strip_prefix("tcp://") {
            if std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty()) {
                return Err(std::io::Error::other("DOCKER_TLS_VERIFY is set; the preflight speaks plain HTTP only"));
            }
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(REQUEST).await?;
            s.read_to_end(&mut answer).await?;
        } else {
            return Err(std::io::Error::other("only unix:// and tcp:// docker hosts are supported"));
        }
        Ok(answer)
    };
    let answer = match tokio::time::timeout(Duration::from_secs(10), answer).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return Err(no_daemon(e.to_string())),
        Err(_) => return Err(no_daemon("no answer to /_ping within 10 s".into())),
    };
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().unwrap_or_default();
    if status.contains(" 200 ") { Ok(()) } else { Err(no_daemon(format!("/_ping answered {status:?}"))) }
}

/// The full path of `program` on `PATH`, if it is there.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_is_no_daemon_naming_the_socket() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let err = rt.block_on(docker_ping("unix:///nonexistent/docker.sock")).unwrap_err();
        assert!(err.starts_with("no docker daemon at unix:///nonexistent/docker.sock: "), "{err}");
    }

    #[test]
    fn waits_name_what_they_waited_for() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let err = rt
            .block_on(wait_for("the moon", Duration::ZERO, Duration::ZERO, || async { Err::<(), _>("clouds".into()) }))
            .unwrap_err();
        assert_eq!(err, "timed out after 0 s waiting for the moon; last seen: clouds");
    }
}
