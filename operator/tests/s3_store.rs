//! `S3Store` against a real S3-compatible server: moto (PyPI `moto[server]`), started here as
//! a child process on a free loopback port and killed when the tests end.
//!
//! Credentials are really checked: moto starts with authentication off, the harness creates
//! two IAM users over moto's IAM API (one allowed `s3:*`, one with no policy) and their access
//! keys, then switches authentication on for every later request (`POST /moto-api/reset-auth`
//! with `0`, the run-time form of moto's `INITIAL_NO_AUTH_ACTION_COUNT`). From then on moto
//! verifies each request's SigV4 signature against the stored secret and the user's policies.
//!
//! That checking moto is used only for the credential tests: moto 5 recomputes the signature
//! of a request with a query string (ListObjectsV2, ListMultipartUploads, ...) differently from
//! the SDK and answers SignatureDoesNotMatch even to the right key, while requests without a
//! query (put, get) verify. The operations themselves are tested against a second moto with
//! authentication off.
//!
//! Needs moto 5.2.5 or newer (`.ci/run` pins it): 5.2.1 answers CompleteMultipartUpload with
//! the wrong XML root element, which the SDK rightly refuses.
//!
//! Without `moto_server` on PATH every test is reported as ignored with the reason; with
//! `MGO_REQUIRE_S3=1` (CI) a missing moto fails every test instead.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use memgraph_operator::backup::s3::S3Store;
use memgraph_operator::backup::store::{ObjectStore, StoreError, StoreErrorKind};
use memgraph_operator::backup::{Credentials, StoreLocation};

const SKIP_REASON: &str = "skipped: moto_server not found (pip install 'moto[server]')";
const BUCKET: &str = "backups";
const REGION: &str = "us-east-1";
const MIB: usize = 1024 * 1024;

/// What every test gets: where the two moto servers are and the credentials they know.
struct Env {
    /// A moto with authentication off, for the operations themselves.
    endpoint: String,
    /// A moto that checks signatures and policies, for the credential tests.
    auth_endpoint: String,
    /// A user allowed `s3:*`.
    writer: Credentials,
    /// A user with no policy at all.
    powerless: Credentials,
}

type TestFn = fn(&Env) -> Result<(), Failed>;

const TESTS: &[(&str, TestFn)] = &[
    ("put_get_and_missing_get", put_get_and_missing_get),
    ("list_follows_all_pages", list_follows_all_pages),
    ("multipart_upload_then_open_streams_it_back", multipart_upload_then_open_streams_it_back),
    ("abort_upload_leaves_nothing", abort_upload_leaves_nothing),
    ("delete_then_list", delete_then_list),
    ("missing_bucket_is_no_such_bucket", missing_bucket_is_no_such_bucket),
    ("wrong_secret_is_denied_without_leaking_it", wrong_secret_is_denied_without_leaking_it),
    ("unknown_access_key_is_denied", unknown_access_key_is_denied),
    ("user_without_permission_is_denied", user_without_permission_is_denied),
    ("closed_port_is_unreachable", closed_port_is_unreachable),
    ("default_chain_reads_the_environment", default_chain_reads_the_environment),
];

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let required = std::env::var("MGO_REQUIRE_S3").is_ok_and(|v| v == "1");

    if args.list {
        let trials = TESTS.iter().map(|(name, _)| Trial::test(*name, || Ok(()))).collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }

    let Some(moto_bin) = find_on_path("moto_server") else {
        let trials = TESTS
            .iter()
            .map(|(name, _)| {
                if required {
                    Trial::test(*name, || {
                        Err("moto_server not found on PATH, and MGO_REQUIRE_S3=1 requires the S3 tests to run".into())
                    })
                } else {
                    Trial::ignorable_test(*name, || Ok(Completion::ignored_with(SKIP_REASON)))
                }
            })
            .collect();
        return libtest_mimic::run(&args, trials).exit_code();
    };

    match start_moto(&moto_bin) {
        Err(message) => {
            // A moto that is installed but does not work is a failure, never a skip.
            let message = Arc::new(message);
            let trials = TESTS
                .iter()
                .map(|(name, _)| {
                    let message = Arc::clone(&message);
                    Trial::test(*name, move || Err(format!("moto_server did not start: {message}").into()))
                })
                .collect();
            libtest_mimic::run(&args, trials).exit_code()
        }
        Ok((servers, env)) => {
            let env = Arc::new(env);
            let trials = TESTS
                .iter()
                .map(|(name, test)| {
                    let env = Arc::clone(&env);
                    let test = *test;
                    Trial::test(*name, move || test(&env))
                })
                .collect();
            let conclusion = libtest_mimic::run(&args, trials);
            // Explicitly, before the process ends: `exit` would skip the destructor.
            drop(servers);
            conclusion.exit_code()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests

fn put_get_and_missing_get(env: &Env) -> Result<(), Failed> {
    block_on(async {
        let store = env.store(Some(env.writer.clone())).await?;
        let key = "put-get/manifest.json";
        store.put(key, Bytes::from_static(b"{\"version\":1}")).await?;
        check(store.get(key).await?.as_deref() == Some(&b"{\"version\":1}"[..]), "get returns what was put")?;
        store.put(key, Bytes::from_static(b"replaced")).await?;
        check(store.get(key).await?.as_deref() == Some(&b"replaced"[..]), "put replaces the object")?;
        check(store.get("put-get/missing").await?.is_none(), "a missing key gets None")?;
        check(store.open("put-get/missing").await?.is_none(), "opening a missing key gets None")?;
        Ok(())
    })
}

fn list_follows_all_pages(env: &Env) -> Result<(), Failed> {
    block_on(async {
        let store = env.store(Some(env.writer.clone())).await?;
        // moto, like S3, answers at most 1000 keys a page.
        let keys: Vec<String> = (0..1105).map(|i| format!("list/key-{i:05}")).collect();
        stream::iter(keys.iter().cloned())
            .map(|key| {
                let store = &store;
                async move {
                    let body = Bytes::from(key.clone().into_bytes());
                    store.put(&key, body).await
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await?;
        // Beside the prefix, to see that it is not listed.
        store.put("list-other/key", Bytes::from_static(b"x")).await?;

        let listed = store.list("list/").await?;
        check_eq(listed.len(), keys.len(), "objects listed")?;
        let listed_keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
        let wanted: Vec<&str> = keys.iter().map(String::as_str).collect();
        check(listed_keys == wanted, "every key, once, in key order")?;
        check(listed.iter().all(|o| o.size == o.key.len() as u64), "sizes are the objects' sizes")?;
        Ok(())
    })
}

fn multipart_upload_then_open_streams_it_back(env: &Env) -> Result<(), Failed> {
    block_on(async {
        let store = env.store(Some(env.writer.clone())).await?;
        let key = "multipart/snapshot-1";
        let sizes = [5 * MIB, 5 * MIB, 300 * 1024 + 7];
        let whole = pattern(sizes.iter().sum(), 7);

        let upload_id = store.create_upload(key).await?;
        let uploads = store.list_uploads("multipart/").await?;
        check(uploads.iter().any(|u| u.upload_id == upload_id && u.key == key), "the upload is listed while open")?;

        let mut parts = Vec::new();
        let mut offset = 0;
        for (i, size) in sizes.iter().enumerate() {
            let number = i32::try_from(i + 1)?;
            let body = Bytes::copy_from_slice(&whole[offset..offset + size]);
            parts.push(store.upload_part(key, &upload_id, number, body).await?);
            offset += size;
        }
        store.complete_upload(key, &upload_id, &parts).await?;
        let uploads = store.list_uploads("multipart/").await?;
        check(uploads.iter().all(|u| u.upload_id != upload_id), "a completed upload is no longer listed")?;

        let listed = store.list("multipart/").await?;
        check(listed.len() == 1 && listed[0].size == whole.len() as u64, "the object is listed whole")?;

        let Some(mut reader) = store.open(key).await? else {
            return Err("the completed object is not found".into());
        };
        let mut read = Vec::with_capacity(whole.len());
        let mut chunks = 0;
        let mut largest = 0;
        while let Some(chunk) = reader.next_chunk().await? {
            chunks += 1;
            largest = largest.max(chunk.len());
            read.extend_from_slice(&chunk);
        }
        check_eq(read.len(), whole.len(), "bytes read back")?;
        check(read == whole, "the bytes read back equal the bytes uploaded")?;
        // Streamed, not buffered whole: many chunks, each far smaller than the object.
        check(chunks > 1 && largest < whole.len() / 2, &format!("streamed in {chunks} chunks, largest {largest}"))?;
        Ok(())
    })
}

fn abort_upload_leaves_nothing(env: &Env) -> Result<(), Failed> {
    block_on(async {
        let store = env.store(Some(env.writer.clone())).await?;
        let key = "abort/snapshot-2";
        let upload_id = store.create_upload(key).await?;
        store.upload_part(key, &upload_id, 1, Bytes::from(pattern(64 * 1024, 3))).await?;
        let uploads = store.list_uploads("abort/").await?;
        check(uploads.iter().any(|u| u.upload_id == upload_id), "the upload is listed before the abort")?;

        store.abort_upload(key, &upload_id).await?;
        let uploads = store.list_uploads("abort/").await?;
        check(uploads.is_empty(), &format!("no upload after the abort, found {uploads:?}"))?;
        check(store.get(key).await?.is_none(), "no object after the abort")?;
        check(store.list("abort/").await?.is_empty(), "nothing listed after the abort")?;

        // Aborting again is cleanup that already happened: the store answers NoSuchUpload,
        // which must be classified as such to be taken as done. (moto answers a part or a
        // completion for an unknown upload with a 500, not NoSuchUpload, so those cannot be
        // checked here; the unit tests check the classification.)
        store.abort_upload(key, &upload_id).await?;
        Ok(())
    })
}

fn delete_then_list(env: &Env) -> Result<(), Failed> {
    block_on(async {
        let store = env.store(Some(env.writer.clone())).await?;
        for name in ["a", "b", "c"] {
            store.put(&format!("delete/{name}"), Bytes::from_static(b"data")).await?;
        }
        store.delete("delete/b").await?;
        store.delete("delete/never-existed").await?;
        let keys: Vec<String> = store.list("delete/").await?.into_iter().map(|o| o.key).collect();
        check(keys == ["delete/a", "delete/c"], &format!("listed after the delete: {keys:?}"))?;
        check(store.get("delete/b").await?.is_none(), "a deleted object is gone")?;
        Ok(())
    })
}

fn missing_bucket_is_no_such_bucket(env: &Env) -> Result<(), Failed> {
    block_on(async {
        let location = StoreLocation { bucket: "no-such-bucket-here".into(), ..env.location() };
        let store = S3Store::new(&location, Some(env.writer.clone())).await?;
        let err = store.list("any/").await.err().ok_or("listing a missing bucket succeeded")?;
        check_eq(err.kind, StoreErrorKind::NoSuchBucket, "kind for a missing bucket")?;
        Ok(())
    })
}

fn wrong_secret_is_denied_without_leaking_it(env: &Env) -> Result<(), Failed> {
    block_on(async {
        let secret = "wrong-secret-9f3b1c7e-never-print-me";
        let credentials =
            Credentials { access_key_id: env.writer.access_key_id.clone(), secret_access_key: secret.into() };
        // The control: this server takes the right secret for the same key id.
        let right = env.checked_store(Some(env.writer.clone())).await?;
        right.put("denied/x", Bytes::from_static(b"x")).await?;
        check(right.get("denied/x").await?.is_some(), "the right secret reads back")?;

        let store = env.checked_store(Some(credentials)).await?;
        let err = store.put("denied/x", Bytes::from_static(b"x")).await.err().ok_or("a wrong secret was accepted")?;
        expect_denied(&err, secret)?;
        let err = store.get("denied/x").await.err().ok_or("a wrong secret was accepted for get")?;
        expect_denied(&err, secret)?;
        // The real secret must not show either.
        check(!format!("{err:?}").contains(&env.writer.secret_access_key), "the real secret is not shown")?;
        Ok(())
    })
}

fn unknown_access_key_is_denied(env: &Env) -> Result<(), Failed> {
    block_on(async {
        let secret = "unknown-user-secret-0d1e2f";
        let credentials =
            Credentials { access_key_id: "AKIAUNKNOWNKEY000000".into(), secret_access_key: secret.into() };
        let store = env.checked_store(Some(credentials)).await?;
        let err = store.get("denied/x").await.err().ok_or("an unknown access key was accepted")?;
        expect_denied(&err, secret)?;
        Ok(())
    })
}

fn user_without_permission_is_denied(env: &Env) -> Result<(), Failed> {
    block_on(async {
        let store = env.checked_store(Some(env.powerless.clone())).await?;
        let err = store.put("denied/y", Bytes::from_static(b"y")).await.err().ok_or("a user without policy may put")?;
        expect_denied(&err, &env.powerless.secret_access_key)?;
        Ok(())
    })
}

fn closed_port_is_unreachable(env: &Env) -> Result<(), Failed> {
    block_on(async {
        let port = free_port()?;
        let location = StoreLocation { endpoint: Some(format!("http://127.0.0.1:{port}")), ..env.location() };
        let store = S3Store::new(&location, Some(env.writer.clone())).await?;
        let started = Instant::now();
        let err = store.get("any").await.err().ok_or("a closed port answered")?;
        check_eq(err.kind, StoreErrorKind::Unreachable, &format!("kind for a closed port ({err})"))?;
        // The standard retry backs off between its attempts, but only for seconds.
        check(started.elapsed() < Duration::from_secs(60), "a refused connection fails within a minute")?;
        Ok(())
    })
}

fn default_chain_reads_the_environment(env: &Env) -> Result<(), Failed> {
    block_on(async {
        // `main` put the writer's key in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; the server
        // that checks signatures proves the chain found and used them.
        let store = env.checked_store(None).await?;
        store.put("default-chain/x", Bytes::from_static(b"from the environment")).await?;
        check(
            store.get("default-chain/x").await?.as_deref() == Some(&b"from the environment"[..]),
            "a store on the default chain reads back",
        )?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers

impl Env {
    fn location(&self) -> StoreLocation {
        StoreLocation {
            bucket: BUCKET.into(),
            region: REGION.into(),
            endpoint: Some(self.endpoint.clone()),
            prefix: String::new(),
        }
    }

    async fn store(&self, credentials: Option<Credentials>) -> Result<S3Store, StoreError> {
        S3Store::new(&self.location(), credentials).await
    }

    fn auth_location(&self) -> StoreLocation {
        StoreLocation { endpoint: Some(self.auth_endpoint.clone()), ..self.location() }
    }

    /// A store on the moto that checks credentials.
    async fn checked_store(&self, credentials: Option<Credentials>) -> Result<S3Store, StoreError> {
        S3Store::new(&self.auth_location(), credentials).await
    }
}

/// Each test runs on its own runtime: the SDK's connection pool belongs to the runtime that
/// made it, so stores are made inside the test too.
fn block_on(test: impl Future<Output = Result<(), Failed>>) -> Result<(), Failed> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(test)
}

fn check(condition: bool, what: &str) -> Result<(), Failed> {
    if condition { Ok(()) } else { Err(format!("check failed: {what}").into()) }
}

fn check_eq<T: PartialEq + std::fmt::Debug>(got: T, want: T, what: &str) -> Result<(), Failed> {
    if got == want { Ok(()) } else { Err(format!("{what}: got {got:?}, want {want:?}").into()) }
}

fn expect_denied(err: &StoreError, secret: &str) -> Result<(), Failed> {
    check_eq(err.kind, StoreErrorKind::Denied, &format!("kind of {err}"))?;
    check(!err.message.is_empty(), "the error has a message")?;
    for shown in [err.to_string(), format!("{err:?}"), err.message.clone()] {
        check(!shown.contains(secret), &format!("the secret is not in {shown:?}"))?;
    }
    Ok(())
}

/// Deterministic bytes that differ from part to part (a shifted part would not compare equal).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn free_port() -> std::io::Result<u16> {
    // Bound and released at once: a closed port for the unreachable test, a free one for moto.
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A moto child process; killed when dropped.
struct Moto {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Moto {
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("moto_server exited ({status}):\n{}", self.log_tail()));
            }
            if http(self.port, "GET", "/moto-api/", &[], "").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "moto_server did not answer on port {} within 60 s:\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Start the two moto servers, create the users and the buckets, and switch authentication on
/// in the second.
fn start_moto(bin: &Path) -> Result<(Vec<Moto>, Env), String> {
    // Both start at once: moto takes a few seconds to import.
    let mut open = spawn_moto(bin, "open")?;
    let mut checked = spawn_moto(bin, "auth")?;
    open.wait_ready()?;
    checked.wait_ready()?;

    let port = checked.port;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    iam(port, &[("Action", "CreateUser"), ("UserName", "backup-writer")])?;
    iam(
        port,
        &[("Action", "PutUserPolicy"), ("UserName", "backup-writer"), ("PolicyName", "s3"), ("PolicyDocument", policy)],
    )?;
    let writer = access_key(port, "backup-writer")?;
    iam(port, &[("Action", "CreateUser"), ("UserName", "powerless")])?;
    let powerless = access_key(port, "powerless")?;

    // From now on this moto checks every request's signature and the user's policies.
    let (status, body) = http(port, "POST", "/moto-api/reset-auth", &[], "0").map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("enabling moto's authentication: HTTP {status}: {body}"));
    }

    // The default-chain test reads these. SAFETY: still single-threaded here (no runtime, no
    // test thread yet), so nothing reads the environment concurrently.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", &writer.access_key_id);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", &writer.secret_access_key);
        std::env::remove_var("AWS_SESSION_TOKEN");
        // Never let a credential chain reach for instance metadata from a test.
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }

    let env = Env {
        endpoint: format!("http://127.0.0.1:{}", open.port),
        auth_endpoint: format!("http://127.0.0.1:{}", checked.port),
        writer,
        powerless,
    };
    create_bucket(&env.endpoint, &env.writer)?;
    create_bucket(&env.auth_endpoint, &env.writer)?;
    Ok((vec![open, checked], env))
}

fn spawn_moto(bin: &Path, name: &str) -> Result<Moto, String> {
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    let log = std::env::temp_dir().join(format!("mgo-s3-store-moto-{name}-{}.log", std::process::id()));
    let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let log_err = log_file.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        // Authentication starts off in both; it is switched on at run time where wanted.
        .env_remove("INITIAL_NO_AUTH_ACTION_COUNT")
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    Ok(Moto { child, log, port })
}

fn create_bucket(endpoint: &str, credentials: &Credentials) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let http_client =
            aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::rustls(CryptoMode::Ring)).build_https();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .http_client(http_client)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                &credentials.access_key_id,
                &credentials.secret_access_key,
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(config)
            .create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .map_err(|e| format!("creating the bucket: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))?;
        Ok(())
    })
}

/// One IAM query call, made while moto still takes requests unauthenticated. The
/// Authorization header is there only so moto routes the request to IAM.
fn iam(port: u16, params: &[(&str, &str)]) -> Result<String, String> {
    let mut body = String::from("Version=2010-05-08");
    for (name, value) in params {
        body.push('&');
        body.push_str(name);
        body.push('=');
        body.push_str(&form_encode(value));
    }
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
        ("X-Amz-Date", "20250101T000000Z"),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=setup/20250101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=unchecked",
        ),
    ];
    let (status, response) = http(port, "POST", "/", &headers, &body).map_err(|e| format!("IAM {params:?}: {e}"))?;
    if status != 200 {
        return Err(format!("IAM {params:?}: HTTP {status}: {response}"));
    }
    Ok(response)
}

fn access_key(port: u16, user: &str) -> Result<Credentials, String> {
    let response = iam(port, &[("Action", "CreateAccessKey"), ("UserName", user)])?;
    let field = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = response.find(&open).map(|i| i + open.len());
        let end = response.find(&close);
        match (start, end) {
            (Some(start), Some(end)) if start <= end => Ok(response[start..end].to_owned()),
            _ => Err(format!("no {name} in the CreateAccessKey answer for {user}")),
        }
    };
    Ok(Credentials { access_key_id: field("AccessKeyId")?, secret_access_key: field("SecretAccessKey")? })
}

fn form_encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A plain HTTP/1.1 request to moto on loopback; returns the status and the whole answer.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let response = String::from_utf8_lossy(&raw).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {response:.200}")))?;
    Ok((status, response))
}
