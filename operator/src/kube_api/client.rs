//! [`Kube`] on a real API server through `kube::Client`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use tracing::Instrument;

use super::{
    ClusterEvent, EventType, Kube, KubeError, KubeErrorKind, KubeObject, LabelPatch, finalizer_patch_body,
    pod_label_patch_body,
};
use crate::api::{MemgraphCluster, MemgraphClusterStatus};
use crate::names::{FIELD_MANAGER, selector_string};

/// Production [`Kube`]: a `kube::Client` and an event recorder.
#[derive(Clone)]
pub struct KubeClient {
    client: Client,
    recorder: Recorder,
}

impl KubeClient {
    /// Wrap a client; events are reported as `memgraph-operator` from `instance` (the pod name).
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter { controller: FIELD_MANAGER.to_owned(), instance };
        Self { recorder: Recorder::new(client.clone(), reporter), client }
    }

    fn api<T: KubeObject>(&self, namespace: &str) -> Api<T> {
        Api::namespaced(self.client.clone(), namespace)
    }
}

pub(crate) fn classify(error: kube::Error) -> (KubeErrorKind, String) {
    match error {
        kube::Error::Api(status) => {
            let kind = match status.code {
                404 => KubeErrorKind::NotFound,
                409 => KubeErrorKind::Conflict,
                code => KubeErrorKind::Api(code),
            };
            (kind, status.message)
        }
        kube::Error::SerdeError(e) => (KubeErrorKind::Invalid, e.to_string()),
        other => (KubeErrorKind::Transport, other.to_string()),
    }
}

fn fail<T: Resource<DynamicType = ()>>(
    operation: &'static str,
    namespace: &str,
    name: &str,
    error: kube::Error,
) -> KubeError {
    let (error, message) = classify(error);
    KubeError {
        operation,
        kind: T::kind(&()).into_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        error,
        message,
    }
}

/// The span of one API call. Fields named as OpenTelemetry's conventions name them, so the
/// exported span carries them as its attributes.
fn api_span(verb: &'static str, method: &'static str, kind: &str, namespace: &str, name: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "kube.api",
        otel.kind = "client",
        http.method = method,
        k8s.verb = verb,
        k8s.resource.kind = %kind,
        k8s.namespace = %namespace,
        k8s.object.name = tracing::field::Empty,
        error = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    // A list names no object.
    if !name.is_empty() {
        span.record("k8s.object.name", name);
    }
    span
}

/// Run `call` in `span`, marking the span failed when the call fails.
async fn traced<R>(
    span: tracing::Span,
    call: impl std::future::Future<Output = Result<R, KubeError>>,
) -> Result<R, KubeError> {
    let result = call.instrument(span.clone()).await;
    if let Err(e) = &result {
        span.record("error", tracing::field::display(e));
        span.record("otel.status_code", "ERROR");
    }
    result
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

#[async_trait]
impl Kube for KubeClient {
    async fn get<T: KubeObject>(&self, namespace: &str, name: &str) -> Result<Option<T>, KubeError> {
        let span = api_span("get", "GET", &T::kind(&()), namespace, name);
        traced(span, async {
            self.api::<T>(namespace).get_opt(name).await.map_err(|e| fail::<T>("get", namespace, name, e))
        })
        .await
    }

    async fn list<T: KubeObject>(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<T>, KubeError> {
        let params = ListParams::default().labels(&selector_string(labels));
        let span = api_span("list", "GET", &T::kind(&()), namespace, "");
        traced(span, async {
            let list = self.api::<T>(namespace).list(&params).await.map_err(|e| fail::<T>("list", namespace, "", e))?;
            Ok(list.items)
        })
        .await
    }

    async fn apply<T: KubeObject>(&self, object: &T) -> Result<T, KubeError> {
        let namespace = object.namespace().unwrap_or_default();
        let name = object.name_any();
        // Server-side apply needs apiVersion and kind in the body.
        let mut body = serde_json::to_value(object).map_err(|e| KubeError {
            operation: "apply",
            kind: T::kind(&()).into_owned(),
            namespace: namespace.clone(),
            name: name.clone(),
            error: KubeErrorKind::Invalid,
            message: e.to_string(),
        })?;
        if let Some(map) = body.as_object_mut() {
            map.insert("apiVersion".into(), T::api_version(&()).into());
            map.insert("kind".into(), T::kind(&()).into());
            if let Some(meta) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                // Never send server-owned fields back.
                for field in ["resourceVersion", "managedFields", "uid", "creationTimestamp", "generation"] {
                    meta.remove(field);
                }
            }
            map.remove("status");
        }
        let span = api_span("apply", "PATCH", &T::kind(&()), &namespace, &name);
        traced(span, async {
            self.api::<T>(&namespace)
                .patch(&name, &apply_params(), &Patch::Apply(body))
                .await
                .map_err(|e| fail::<T>("apply", &namespace, &name, e))
        })
        .await
    }

    async fn delete<T: KubeObject>(&self, namespace: &str, name: &str) -> Result<(), KubeError> {
        let params = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
        let span = api_span("delete", "DELETE", &T::kind(&()), namespace, name);
        traced(span, async {
            match self.api::<T>(namespace).delete(name, &params).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                Err(e) => Err(fail::<T>("delete", namespace, name, e)),
            }
        })
        .await
    }

    async fn delete_pod(&self, namespace: &str, pod: &str, uid: &str) -> Result<(), KubeError> {
        type Pod = k8s_openapi::api::core::v1::Pod;
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: Some(uid.to_owned()), resource_version: None }),
            ..Default::default()
        };
        let span = api_span("delete", "DELETE", "Pod", namespace, pod);
        traced(span, async {
            match self.api::<Pod>(namespace).delete(pod, &params).await {
                Ok(_) => Ok(()),
                // Gone, or a new pod of that name (the uid precondition failed): not the one.
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
                Err(e) => Err(fail::<Pod>("delete", namespace, pod, e)),
            }
        })
        .await
    }

    async fn patch_status(
        &self,
        namespace: &str,
        name: &str,
        status: &MemgraphClusterStatus,
        resource_version: Option<&str>,
    ) -> Result<(), KubeError> {
        let mut body = serde_json::json!({
            "apiVersion": MemgraphCluster::api_version(&()),
            "kind": MemgraphCluster::kind(&()),
            "status": status,
        });
        // An apply carrying metadata.resourceVersion is refused with a conflict when the object
        // has changed since.
        if let Some(rv) = resource_version {
            body["metadata"] = serde_json::json!({"resourceVersion": rv});
        }
        let span = api_span("patch_status", "PATCH", &MemgraphCluster::kind(&()), namespace, name);
        traced(span, async {
            self.api::<MemgraphCluster>(namespace)
                .patch_status(name, &apply_params(), &Patch::Apply(body))
                .await
                .map(|_| ())
                .map_err(|e| fail::<MemgraphCluster>("patch status of", namespace, name, e))
        })
        .await
    }

    async fn patch_pod_labels(
        &self,
        namespace: &str,
        pod: &str,
        uid: &str,
        labels: &LabelPatch,
    ) -> Result<(), KubeError> {
        let body = pod_label_patch_body(uid, labels);
        let span = api_span("patch", "PATCH", "Pod", namespace, pod);
        traced(span, async {
            self.api::<k8s_openapi::api::core::v1::Pod>(namespace)
                .patch(pod, &PatchParams::default(), &Patch::Merge(body))
                .await
                .map(|_| ())
                .map_err(|e| fail::<k8s_openapi::api::core::v1::Pod>("label", namespace, pod, e))
        })
        .await
    }

    async fn set_finalizers(
        &self,
        namespace: &str,
        name: &str,
        finalizers: &[String],
        resource_version: &str,
    ) -> Result<(), KubeError> {
        let body = finalizer_patch_body(finalizers, resource_version);
        let span = api_span("patch", "PATCH", &MemgraphCluster::kind(&()), namespace, name);
        traced(span, async {
            self.api::<MemgraphCluster>(namespace)
                .patch(name, &PatchParams::default(), &Patch::Merge(body))
                .await
                .map(|_| ())
                .map_err(|e| fail::<MemgraphCluster>("set finalizers of", namespace, name, e))
        })
        .await
    }

    async fn publish_event(&self, event: &ClusterEvent) -> Result<(), KubeError> {
        let kube_event = Event {
            type_: match event.type_ {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: event.reason.clone(),
            note: Some(event.note.clone()),
            action: event.action.clone(),
            secondary: None,
        };
        let namespace = event.regarding.namespace.clone().unwrap_or_default();
        let name = event.regarding.name.clone().unwrap_or_default();
        // The Event's own name is generated by the recorder: the span names none.
        let span = api_span("create", "POST", "Event", &namespace, "");
        traced(span, async {
            self.recorder
                .publish(&kube_event, &event.regarding)
                .await
                .map_err(|e| fail::<k8s_openapi::api::events::v1::Event>("publish", &namespace, &name, e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    //! Request-level tests: a mock HTTP service stands in for the API server and checks the
    //! method, path, query, content type and body of every request the client makes.

    use super::*;
    use crate::builders::{BuildContext, statefulset};
    use crate::names::Instance;
    use http::{Method, Request, Response, StatusCode};
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{ObjectReference, Pod, Secret};
    use kube::client::Body;
    use serde_json::{Value, json};

    /// One expected request and the response to give.
    struct Expect {
        method: Method,
        path: &'static str,
        query: &'static [&'static str],
        content_type: Option<&'static str>,
        check_body: Box<dyn Fn(&Value) + Send>,
        status: StatusCode,
        response: Value,
    }

    fn expect(method: Method, path: &'static str) -> Expect {
        Expect {
            method,
            path,
            query: &[],
            content_type: None,
            check_body: Box::new(|_| {}),
            status: StatusCode::OK,
            response: json!({}),
        }
    }

    impl Expect {
        fn query(mut self, query: &'static [&'static str]) -> Self {
            self.query = query;
            self
        }
        fn content_type(mut self, content_type: &'static str) -> Self {
            self.content_type = Some(content_type);
            self
        }
        fn body(mut self, check: impl Fn(&Value) + Send + 'static) -> Self {
            self.check_body = Box::new(check);
            self
        }
        fn respond(mut self, status: StatusCode, response: Value) -> Self {
            self.status = status;
            self.response = response;
            self
        }
    }

    fn status_body(code: u16, reason: &str, message: &str) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message})
    }

    /// A client whose API server answers `script` in order and fails the test on any surprise.
    fn scripted(script: Vec<Expect>) -> (KubeClient, tokio::task::JoinHandle<()>) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            for (i, step) in script.into_iter().enumerate() {
                let (request, respond) =
                    handle.next_request().await.unwrap_or_else(|| panic!("request {i} never came"));
                assert_eq!(request.method(), step.method, "request {i} method");
                assert_eq!(request.uri().path(), step.path, "request {i} path");
                let query = request.uri().query().unwrap_or_default().to_owned();
                for wanted in step.query {
                    assert!(query.split('&').any(|q| q == *wanted), "request {i}: query {query:?} lacks {wanted}");
                }
                if let Some(content_type) = step.content_type {
                    let got = request.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    assert_eq!(got, content_type, "request {i} content type");
                }
                let bytes = request.into_body().collect_bytes().await.expect("request body");
                let body: Value =
                    if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("json body") };
                (step.check_body)(&body);
                let response = Response::builder()
                    .status(step.status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&step.response).expect("response json")))
                    .expect("response");
                respond.send_response(response);
            }
        });
        (KubeClient::new(Client::new(service, "default"), Some("operator-0".into())), server)
    }

    fn cluster() -> MemgraphCluster {
        crate::builders::test_support::cluster_with(|_| {})
    }

    #[tokio::test]
    async fn apply_is_a_forced_server_side_apply_by_the_operator() {
        let cluster = cluster();
        let ctx = BuildContext::new(&cluster).expect("context");
        let mut sts = statefulset(&ctx, Instance::Read(1));
        // Server-owned fields from an earlier read must not be sent back.
        sts.metadata.resource_version = Some("41".into());
        sts.metadata.uid = Some("sts-uid".into());
        let stored = serde_json::to_value(&sts).expect("json");
        let (kube, server) = scripted(vec![
            expect(Method::PATCH, "/apis/apps/v1/namespaces/ns/statefulsets/c-read-1")
                .query(&["fieldManager=memgraph-operator", "force=true"])
                .content_type("application/apply-patch+yaml")
                .body(|body| {
                    assert_eq!(body["apiVersion"], "apps/v1");
                    assert_eq!(body["kind"], "StatefulSet");
                    assert_eq!(body["metadata"]["name"], "c-read-1");
                    assert_eq!(body["metadata"]["ownerReferences"][0]["controller"], true);
                    assert!(body["metadata"].get("resourceVersion").is_none());
                    assert!(body["metadata"].get("uid").is_none());
                    assert_eq!(body["spec"]["serviceName"], "c-read-1");
                })
                .respond(StatusCode::OK, stored),
        ]);
        let applied = kube.apply(&sts).await.expect("apply");
        assert_eq!(applied.metadata.name.as_deref(), Some("c-read-1"));
        server.await.expect("server");
    }

    #[tokio::test]
    async fn get_maps_not_found_to_none_and_errors_to_kinds() {
        let (kube, server) = scripted(vec![
            expect(Method::GET, "/api/v1/namespaces/ns/secrets/creds")
                .respond(StatusCode::NOT_FOUND, status_body(404, "NotFound", "secrets \"creds\" not found")),
            expect(Method::GET, "/api/v1/namespaces/ns/pods/c-write-0")
                .respond(StatusCode::FORBIDDEN, status_body(403, "Forbidden", "pods is forbidden")),
        ]);
        assert_eq!(kube.get::<Secret>("ns", "creds").await, Ok(None));
        let err = kube.get::<Pod>("ns", "c-write-0").await.expect_err("forbidden");
        assert_eq!(err.error, KubeErrorKind::Api(403));
        assert_eq!((err.kind.as_str(), err.name.as_str()), ("Pod", "c-write-0"));
        assert!(err.to_string().contains("get Pod ns/c-write-0: pods is forbidden"), "{err}");
        server.await.expect("server");
    }

    #[tokio::test]
    async fn list_selects_by_labels() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c-read-0-0", "namespace": "ns"}});
        let (kube, server) = scripted(vec![
            expect(Method::GET, "/api/v1/namespaces/ns/pods")
                .query(&["labelSelector=app.kubernetes.io%2Finstance%3Dc%2Capp.kubernetes.io%2Fname%3Dmemgraph"])
                .respond(
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [pod]}),
                ),
        ]);
        let selector = crate::names::ClusterNames::new("c", "ns").cluster_selector();
        let pods: Vec<Pod> = kube.list("ns", &selector).await.expect("list");
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].metadata.name.as_deref(), Some("c-read-0-0"));
        server.await.expect("server");
    }

    #[tokio::test]
    async fn delete_propagates_in_background_and_tolerates_absence() {
        let (kube, server) = scripted(vec![
            expect(Method::DELETE, "/apis/apps/v1/namespaces/ns/statefulsets/c-read-4")
                .body(|body| assert_eq!(body["propagationPolicy"], "Background"))
                .respond(StatusCode::OK, status_body(200, "", "")),
            expect(Method::DELETE, "/api/v1/namespaces/ns/persistentvolumeclaims/data-c-read-4-0")
                .respond(StatusCode::NOT_FOUND, status_body(404, "NotFound", "not found")),
            expect(Method::DELETE, "/apis/apps/v1/namespaces/ns/statefulsets/c-read-5")
                .respond(StatusCode::INTERNAL_SERVER_ERROR, status_body(500, "InternalError", "etcd timeout")),
        ]);
        kube.delete::<StatefulSet>("ns", "c-read-4").await.expect("delete");
        kube.delete::<k8s_openapi::api::core::v1::PersistentVolumeClaim>("ns", "data-c-read-4-0")
            .await
            .expect("absent is fine");
        let err = kube.delete::<StatefulSet>("ns", "c-read-5").await.expect_err("server error");
        assert_eq!(err.error, KubeErrorKind::Api(500));
        server.await.expect("server");
    }

    #[tokio::test]
    async fn status_is_applied_on_the_status_subresource() {
        let status = MemgraphClusterStatus {
            phase: crate::api::Phase::Running,
            ready_replicas: 3,
            main_pod: Some("c-write-0".into()),
            ..Default::default()
        };
        let (kube, server) = scripted(vec![
            expect(Method::PATCH, "/apis/memgraph.io/v1alpha1/namespaces/ns/memgraphclusters/c/status")
                .query(&["fieldManager=memgraph-operator", "force=true"])
                .content_type("application/apply-patch+yaml")
                .body(|body| {
                    assert_eq!(body["apiVersion"], "memgraph.io/v1alpha1");
                    assert_eq!(body["kind"], "MemgraphCluster");
                    assert_eq!(body["status"]["phase"], "Running");
                    assert_eq!(body["status"]["readyReplicas"], 3);
                    assert_eq!(body["status"]["mainPod"], "c-write-0");
                    assert!(body.get("spec").is_none(), "status apply must not touch the spec");
                    assert!(body.get("metadata").is_none(), "no precondition unless asked");
                })
                .respond(StatusCode::OK, serde_json::to_value(cluster()).expect("json")),
            expect(Method::PATCH, "/apis/memgraph.io/v1alpha1/namespaces/ns/memgraphclusters/c/status")
                .body(|body| assert_eq!(body["metadata"]["resourceVersion"], "41"))
                .respond(StatusCode::CONFLICT, status_body(409, "Conflict", "the object has been modified")),
        ]);
        kube.patch_status("ns", "c", &status, None).await.expect("status");
        let err = kube.patch_status("ns", "c", &status, Some("41")).await.expect_err("stale view");
        assert!(err.is_conflict());
        server.await.expect("server");
    }

    #[tokio::test]
    async fn pod_labels_are_merge_patched_with_the_uid_precondition() {
        let (kube, server) = scripted(vec![
            expect(Method::PATCH, "/api/v1/namespaces/ns/pods/c-read-0-0")
                .content_type("application/merge-patch+json")
                .body(|body| {
                    assert_eq!(
                        *body,
                        json!({"metadata": {"uid": "pod-uid-7", "labels": {"memgraph.io/role": "replica", "stale": null}}})
                    );
                })
                .respond(StatusCode::OK, json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c-read-0-0"}})),
            expect(Method::PATCH, "/api/v1/namespaces/ns/pods/c-read-1-0")
                .respond(StatusCode::CONFLICT, status_body(409, "Conflict", "Precondition failed: UID in precondition")),
        ]);
        let labels: LabelPatch =
            [("memgraph.io/role".to_owned(), Some("replica".to_owned())), ("stale".to_owned(), None)].into();
        kube.patch_pod_labels("ns", "c-read-0-0", "pod-uid-7", &labels).await.expect("label");
        let err = kube.patch_pod_labels("ns", "c-read-1-0", "old-uid", &labels).await.expect_err("recreated pod");
        assert!(err.is_conflict(), "{err:?}");
        server.await.expect("server");
    }

    #[tokio::test]
    async fn finalizers_are_set_with_the_resource_version_precondition() {
        let (kube, server) = scripted(vec![
            expect(Method::PATCH, "/apis/memgraph.io/v1alpha1/namespaces/ns/memgraphclusters/c")
                .content_type("application/merge-patch+json")
                .body(|body| {
                    assert_eq!(
                        *body,
                        json!({"metadata": {"finalizers": ["memgraph.io/finalizer"], "resourceVersion": "17"}})
                    );
                })
                .respond(StatusCode::OK, serde_json::to_value(cluster()).expect("json")),
        ]);
        kube.set_finalizers("ns", "c", &["memgraph.io/finalizer".to_owned()], "17").await.expect("finalizers");
        server.await.expect("server");
    }

    #[tokio::test]
    async fn events_are_published_to_events_k8s_io() {
        let regarding = ObjectReference {
            api_version: Some("memgraph.io/v1alpha1".into()),
            kind: Some("MemgraphCluster".into()),
            name: Some("c".into()),
            namespace: Some("ns".into()),
            uid: Some("uid-1".into()),
            ..Default::default()
        };
        let (kube, server) = scripted(vec![
            expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events")
                .body(|body| {
                    assert_eq!(body["type"], "Warning");
                    assert_eq!(body["reason"], "DataDivergence");
                    assert_eq!(body["action"], "Verify");
                    assert_eq!(body["note"], "replica read_1 diverged");
                    assert_eq!(body["regarding"]["name"], "c");
                    assert_eq!(body["reportingController"], "memgraph-operator");
                    assert_eq!(body["reportingInstance"], "operator-0");
                })
                .respond(StatusCode::CREATED, json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "eventTime": "2026-01-01T00:00:00.000000Z"})),
        ]);
        let event = ClusterEvent {
            regarding,
            type_: EventType::Warning,
            reason: "DataDivergence".into(),
            action: "Verify".into(),
            note: "replica read_1 diverged".into(),
        };
        kube.publish_event(&event).await.expect("event");
        server.await.expect("server");
    }
}
