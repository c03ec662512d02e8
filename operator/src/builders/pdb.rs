use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::BuildContext;

/// `NAME-read`: at most one read pod voluntarily disrupted (drained, evicted) at a time.
pub fn read_pdb(ctx: &BuildContext<'_>) -> PodDisruptionBudget {
    let mut labels = ctx.names.common_labels();
    labels.insert(crate::names::LABEL_COMPONENT.to_owned(), "read".to_owned());
    PodDisruptionBudget {
        metadata: ctx.metadata(ctx.names.read_pdb(), labels),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(ctx.names.read_selector()), match_expressions: None }),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::cluster_with;

    #[test]
    fn covers_all_read_pods_one_at_a_time() {
        let cluster = cluster_with(|_| {});
        let ctx = BuildContext::new(&cluster).expect("context");
        let pdb = read_pdb(&ctx);
        assert_eq!(pdb.metadata.name.as_deref(), Some("c-read"));
        let spec = pdb.spec.expect("spec");
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        let selector = spec.selector.and_then(|s| s.match_labels).expect("selector");
        assert_eq!(selector.get("app.kubernetes.io/component").map(String::as_str), Some("read"));
        assert_eq!(selector.get("app.kubernetes.io/instance").map(String::as_str), Some("c"));
        assert!(!selector.contains_key("memgraph.io/read-index"));
    }
}
