//! The `Kube` trait: the operator's only way to the Kubernetes API.
