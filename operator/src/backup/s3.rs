//! The production [`ObjectStore`]: S3, or any S3-compatible store, through aws-sdk-s3.
//!
//! The SDK's default HTTPS client and TLS are turned off (they bring aws-lc, a second rustls
//! crypto provider next to the ring one kube and neo4rs use, and rustls then panics at first
//! use). The client is built here instead by aws-smithy-http-client with rustls on ring; it
//! trusts the platform's CA certificates and also speaks plain `http://` to an endpoint that
//! asks for it.
//!
//! Credentials: static ones from the cluster's Secret, or, when none are given, the SDK's
//! default chain: the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`), the shared config and credentials files, web identity (EKS IRSA:
//! `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, through STS), the ECS/EKS Pod Identity
//! container endpoint and EC2 instance metadata. SSO profiles and `credential_process` are
//! not built in (their aws-config features are off to keep the build small).
//!
//! Keys are used as given: the caller puts [`StoreLocation::prefix`] in front of them.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart as S3CompletedPart};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use bytes::Bytes;

use super::store::{CompletedPart, ObjectInfo, ObjectReader, ObjectStore, StoreError, StoreErrorKind, UploadInfo};
use super::{Credentials, StoreLocation};

/// How long to wait for a TCP (and TLS) connection: a store that does not answer in this time
/// is unreachable, and the standard retry tries again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one attempt of one request may take until its response starts. Long enough to send
/// a large snapshot part over a slow link; a stuck attempt is cut off and retried. Reading a
/// body after the response started is watched by the SDK's stalled-stream protection instead.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Error codes that mean the credentials or their permissions are wrong.
const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
    "AllAccessDisabled",
];

/// An [`ObjectStore`] on one S3 bucket.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    endpoint: Option<String>,
    /// The static secret, kept only to scrub it from any message a store might echo it in.
    secret: Option<String>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store").field("bucket", &self.bucket).field("endpoint", &self.endpoint).finish()
    }
}

impl S3Store {
    /// A store on `location.bucket`. With `credentials` `None`, the SDK's default credential
    /// chain is used (environment, web identity / IRSA, container and instance metadata; see
    /// the module's doc). Makes no request: a wrong bucket or credential shows at first use.
    pub async fn new(location: &StoreLocation, credentials: Option<Credentials>) -> Result<S3Store, StoreError> {
        if location.bucket.is_empty() {
            return Err(StoreError::new(StoreErrorKind::NoSuchBucket, "configure", "", "no bucket given"));
        }
        let http_client =
            aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::rustls(CryptoMode::Ring)).build_https();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            .region(Region::new(location.region.clone()))
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard());
        let secret = credentials.as_ref().map(|c| c.secret_access_key.clone());
        if let Some(credentials) = credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                credentials.access_key_id,
                credentials.secret_access_key,
                None,
                None,
                "memgraph-operator-secret",
            ));
        }
        if let Some(endpoint) = &location.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;

        let mut config = aws_sdk_s3::config::Builder::from(&shared);
        if location.endpoint.is_some() {
            // S3-compatible stores (MinIO, Ceph, moto, ...) rarely serve virtual-host names
            // and many reject the SDK's default CRC checksums and aws-chunked bodies: address
            // the bucket in the path and send or check checksums only where S3 demands them.
            config = config
                .force_path_style(true)
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        Ok(S3Store {
            client: Client::from_conf(config.build()),
            bucket: location.bucket.clone(),
            endpoint: location.endpoint.clone(),
            secret,
        })
    }

    /// The bucket this store works on.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn error<E>(&self, operation: &'static str, key: &str, err: &SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (kind, message) = classify(err);
        StoreError::new(kind, operation, key, self.scrub(message))
    }

    fn scrub(&self, message: String) -> String {
        match &self.secret {
            Some(secret) if !secret.is_empty() && message.contains(secret.as_str()) => {
                message.replace(secret.as_str(), "<redacted>")
            }
            _ => message,
        }
    }
}

/// The kind of a failed request and a short message: the store's error code and message, or
/// what the network said.
fn classify<E>(err: &SdkError<E, HttpResponse>) -> (StoreErrorKind, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::TimeoutError(_) => (StoreErrorKind::Unreachable, format!("timed out: {}", describe(err))),
        SdkError::DispatchFailure(failure) => {
            // A credential chain that finds nothing (or whose STS call is refused) fails before
            // any request is sent, and the SDK reports that as a dispatch failure too: it is a
            // credentials problem, not the network.
            if let Some(credentials) = find_source::<CredentialsError>(err) {
                (StoreErrorKind::Denied, format!("no usable credentials: {}", describe(credentials)))
            } else if failure.is_user() {
                (StoreErrorKind::Other, describe(err))
            } else {
                (StoreErrorKind::Unreachable, describe(err))
            }
        }
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            let code = err.code();
            let kind = match code {
                Some("NoSuchBucket") => StoreErrorKind::NoSuchBucket,
                Some("NoSuchUpload") => StoreErrorKind::NoSuchUpload,
                Some(code) if DENIED_CODES.contains(&code) => StoreErrorKind::Denied,
                _ if matches!(status, Some(401 | 403)) => StoreErrorKind::Denied,
                _ => StoreErrorKind::Other,
            };
            let message = match (code, err.message(), status) {
                (Some(code), Some(message), _) => format!("{code}: {message}"),
                (Some(code), None, _) => code.to_owned(),
                (None, Some(message), Some(status)) => format!("HTTP {status}: {message}"),
                // No code: the answer could not be read as an S3 error; say why.
                (None, _, Some(status)) => format!("HTTP {status}: {}", describe(err)),
                (None, _, None) => describe(err),
            };
            (kind, message)
        }
        _ => (StoreErrorKind::Other, describe(err)),
    }
}

/// An error and its sources on one line, `Display` only: the SDK's own `DisplayErrorContext`
/// appends the whole `Debug` form, raw response body included, which is no message for people.
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(source) = next {
        let part = source.to_string();
        // Some errors already print their source; do not say it twice.
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = source.source();
    }
    text
}

/// The first error of type `T` in `err`'s chain of sources.
fn find_source<'a, T: std::error::Error + 'static>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut next = Some(err);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<T>() {
            return Some(found);
        }
        next = current.source();
    }
    None
}

/// Whether a failed request says the object is not there (as opposed to the bucket).
fn is_missing_key<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    if !matches!(err, SdkError::ServiceError(_)) {
        return false;
    }
    match err.code() {
        Some("NoSuchKey") => true,
        Some("NoSuchBucket" | "NoSuchUpload") => false,
        // A HEAD-like 404 carries no code; some stores answer so for GETs too.
        _ => err.raw_response().is_some_and(|r| r.status().as_u16() == 404),
    }
}

/// Streams an object's body as the SDK receives it.
struct S3Reader {
    body: ByteStream,
    key: String,
}

#[async_trait]
impl ObjectReader for S3Reader {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, StoreError> {
        loop {
            match self.body.next().await {
                None => return Ok(None),
                // An empty frame is not the end; callers take `Some` to mean data.
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => return Ok(Some(chunk)),
                // The response had started, so this is the connection (reset, stalled).
                Some(Err(err)) => {
                    return Err(StoreError::new(StoreErrorKind::Unreachable, "get", &self.key, describe(&err)));
                }
            }
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error("put", key, &e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let output = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(output) => output,
            Err(err) if is_missing_key(&err) => return Ok(None),
            Err(err) => return Err(self.error("get", key, &err)),
        };
        let body = output
            .body
            .collect()
            .await
            .map_err(|err| StoreError::new(StoreErrorKind::Unreachable, "get", key, describe(&err)))?;
        Ok(Some(body.into_bytes()))
    }

    async fn open(&self, key: &str) -> Result<Option<Box<dyn ObjectReader>>, StoreError> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(output) => Ok(Some(Box::new(S3Reader { body: output.body, key: key.to_owned() }))),
            Err(err) if is_missing_key(&err) => Ok(None),
            Err(err) => Err(self.error("get", key, &err)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| self.error("list", prefix, &e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    let size = object.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
                    objects.push(ObjectInfo { key: key.to_owned(), size });
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            // A store that says "more" but gives no new token would loop forever.
            match page.next_continuation_token() {
                Some(next) if !next.is_empty() && token.as_deref() != Some(next) => token = Some(next.to_owned()),
                _ => {
                    return Err(StoreError::new(
                        StoreErrorKind::Other,
                        "list",
                        prefix,
                        "truncated listing without a new continuation token",
                    ));
                }
            }
        }
        // S3 lists in UTF-8 byte order already; some compatible stores do not promise it.
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.client.delete_object().bucket(&self.bucket).key(key).send().await {
            // S3 answers 204 for a missing key; some compatible stores answer NoSuchKey.
            Ok(_) => Ok(()),
            Err(err) if is_missing_key(&err) => Ok(()),
            Err(err) => Err(self.error("delete", key, &err)),
        }
    }

    async fn create_upload(&self, key: &str) -> Result<String, StoreError> {
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("create upload", key, &e))?;
        match output.upload_id() {
            Some(id) if !id.is_empty() => Ok(id.to_owned()),
            _ => Err(StoreError::new(StoreErrorKind::Other, "create upload", key, "the store returned no upload id")),
        }
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError> {
        // A body made from `Bytes` can be replayed, so the SDK's retry can resend the part.
        let output = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error("upload part", key, &e))?;
        match output.e_tag() {
            Some(etag) => Ok(CompletedPart { number, etag: etag.to_owned() }),
            None => Err(StoreError::new(StoreErrorKind::Other, "upload part", key, "the store returned no ETag")),
        }
    }

    async fn complete_upload(&self, key: &str, upload_id: &str, parts: &[CompletedPart]) -> Result<(), StoreError> {
        let parts = parts
            .iter()
            .map(|part| S3CompletedPart::builder().part_number(part.number).e_tag(&part.etag).build())
            .collect();
        // The SDK also turns S3's "200 OK with an error in the body" answer into an error.
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| self.error("complete upload", key, &e))?;
        Ok(())
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        match self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(upload_id).send().await {
            Ok(_) => Ok(()),
            Err(err) => {
                let err = self.error("abort upload", key, &err);
                // Aborting is cleanup: an upload already gone (aborted before, expired by a
                // lifecycle rule) is the wanted outcome, as in the in-memory store.
                if err.kind == StoreErrorKind::NoSuchUpload { Ok(()) } else { Err(err) }
            }
        }
    }

    async fn list_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>, StoreError> {
        let mut uploads = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .map_err(|e| self.error("list uploads", prefix, &e))?;
            for upload in page.uploads() {
                if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                    uploads.push(UploadInfo { key: key.to_owned(), upload_id: id.to_owned() });
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            let next_key = page.next_key_marker().filter(|k| !k.is_empty()).map(str::to_owned);
            let next_id = page.next_upload_id_marker().filter(|id| !id.is_empty()).map(str::to_owned);
            // Same guard as in `list`: "more" must come with markers that move on.
            if next_key.is_none() || (next_key == key_marker && next_id == id_marker) {
                return Err(StoreError::new(
                    StoreErrorKind::Other,
                    "list uploads",
                    prefix,
                    "truncated upload listing without new markers",
                ));
            }
            key_marker = next_key;
            id_marker = next_id;
        }
        Ok(uploads)
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    use super::*;

    fn location(endpoint: Option<&str>) -> StoreLocation {
        StoreLocation {
            bucket: "backups".into(),
            region: "us-east-1".into(),
            endpoint: endpoint.map(str::to_owned),
            prefix: "cluster".into(),
        }
    }

    #[tokio::test]
    async fn debug_never_shows_the_secret() {
        let credentials = Credentials { access_key_id: "AKIDEXAMPLE".into(), secret_access_key: "s3cr3t-value".into() };
        let store = S3Store::new(&location(Some("http://127.0.0.1:9")), Some(credentials)).await.unwrap();
        let shown = format!("{store:?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("backups"), "{shown}");
        assert_eq!(store.scrub("echo s3cr3t-value back".into()), "echo <redacted> back");
    }

    type GetError = SdkError<GetObjectError, HttpResponse>;

    fn answered(code: Option<&str>, status: u16) -> GetError {
        let mut meta = ErrorMetadata::builder().message("the store says so");
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        SdkError::service_error(GetObjectError::generic(meta.build()), raw)
    }

    #[test]
    fn store_answers_are_classified_by_code_then_status() {
        let cases = [
            (Some("NoSuchBucket"), 404, StoreErrorKind::NoSuchBucket),
            (Some("NoSuchUpload"), 404, StoreErrorKind::NoSuchUpload),
            (Some("AccessDenied"), 403, StoreErrorKind::Denied),
            (Some("InvalidAccessKeyId"), 403, StoreErrorKind::Denied),
            (Some("SignatureDoesNotMatch"), 403, StoreErrorKind::Denied),
            (None, 403, StoreErrorKind::Denied),
            (Some("SlowDown"), 503, StoreErrorKind::Other),
            (Some("InternalError"), 500, StoreErrorKind::Other),
        ];
        for (code, status, kind) in cases {
            let (got, message) = classify(&answered(code, status));
            assert_eq!(got, kind, "{code:?} {status}");
            match code {
                Some(code) => assert_eq!(message, format!("{code}: the store says so")),
                None => assert_eq!(message, format!("HTTP {status}: the store says so")),
            }
        }
    }

    #[test]
    fn missing_keys_are_told_from_missing_buckets() {
        assert!(is_missing_key(&answered(Some("NoSuchKey"), 404)));
        assert!(is_missing_key(&answered(None, 404)));
        assert!(!is_missing_key(&answered(Some("NoSuchBucket"), 404)));
        assert!(!is_missing_key(&answered(Some("AccessDenied"), 403)));
    }

    #[test]
    fn network_failures_are_unreachable_and_a_missing_credential_is_denied() {
        let refused = || Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let io: GetError = SdkError::dispatch_failure(ConnectorError::io(refused()));
        assert_eq!(classify(&io).0, StoreErrorKind::Unreachable);
        let timeout: GetError = SdkError::timeout_error(refused());
        assert_eq!(classify(&timeout).0, StoreErrorKind::Unreachable);

        let no_credentials = CredentialsError::not_loaded("no providers in chain provided credentials");
        let err: GetError = SdkError::dispatch_failure(ConnectorError::other(Box::new(no_credentials), None));
        let (kind, message) = classify(&err);
        assert_eq!(kind, StoreErrorKind::Denied);
        assert!(message.starts_with("no usable credentials"), "{message}");
    }

    #[test]
    fn describe_joins_sources_once() {
        let inner = std::io::Error::other("connection refused");
        let err: GetError = SdkError::dispatch_failure(ConnectorError::io(Box::new(inner)));
        let text = describe(&err);
        assert!(text.contains("connection refused"), "{text}");
        assert_eq!(text.matches("connection refused").count(), 1, "{text}");
    }

    #[tokio::test]
    async fn an_empty_bucket_is_refused() {
        let mut location = location(None);
        location.bucket.clear();
        let err = S3Store::new(&location, None).await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::NoSuchBucket);
    }
}
