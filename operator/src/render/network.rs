//! NetworkPolicies: who may open a connection to which pod.
//!
//! - API pods: only the sidecar port, only from `network.apiFrom` (default:
//!   the ingress controller's namespace when an Ingress is rendered, else the
//!   MemoryService's own namespace) and `network.metricsFrom`. The
//!   dataplane's own port in the pod is not reachable from outside it: the
//!   sidecar is the only way in.
//! - Worker pods: no connections in, except metrics scrapers
//!   (`network.metricsFrom`) on the worker port.
//! - Managed Milvus: only from this installation's API and worker pods, on
//!   the gRPC port.
//!
//! Kubelet probes come from the node and are not subject to these policies
//! on the common network plugins.

use super::config::{MILVUS_PORT, SIDECAR_PORT, WORKER_PORT};
use super::meta::{COMPONENT_LABEL, Component, INSTANCE_LABEL, Owner};
use crate::crd::MilvusMode;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// The policies of one installation (none when `network.policies` is off).
pub fn policies(owner: &Owner) -> Vec<NetworkPolicy> {
    let spec = &owner.ms.spec;
    if !spec.network.policies {
        return Vec::new();
    }
    let mut api_peers = spec.network.api_from.clone().unwrap_or_else(|| {
        if spec.ingress.is_some() {
            vec![namespace(&spec.network.ingress_namespace)]
        } else {
            vec![namespace(&owner.namespace)]
        }
    });
    api_peers.extend(spec.network.metrics_from.iter().cloned());
    let mut out = vec![
        policy(owner, Component::Api, vec![rule(api_peers, SIDECAR_PORT)]),
        policy(
            owner,
            Component::Worker,
            if spec.network.metrics_from.is_empty() {
                Vec::new()
            } else {
                vec![rule(spec.network.metrics_from.clone(), WORKER_PORT)]
            },
        ),
    ];
    if spec.milvus.mode == MilvusMode::Managed {
        let clients = NetworkPolicyPeer {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(INSTANCE_LABEL.to_string(), owner.name.clone())])),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: COMPONENT_LABEL.to_string(),
                    operator: "In".into(),
                    values: Some(vec![
                        Component::Api.as_str().to_string(),
                        Component::Worker.as_str().to_string(),
                    ]),
                }]),
            }),
            ..Default::default()
        };
        out.push(policy(
            owner,
            Component::Milvus,
            vec![rule(vec![clients], MILVUS_PORT)],
        ));
    }
    out
}

/// Every pod of the namespace `name`.
fn namespace(name: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                name.to_string(),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn rule(from: Vec<NetworkPolicyPeer>, port: i32) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: Some(from),
        ports: Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(port)),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

/// An ingress-only policy for a component's pods: `rules` is all that may
/// connect (none: nothing may).
fn policy(owner: &Owner, component: Component, rules: Vec<NetworkPolicyIngressRule>) -> NetworkPolicy {
    NetworkPolicy {
        metadata: owner.metadata(owner.child_name(component.as_str()), Some(component)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(owner.selector(component)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(rules),
            ..Default::default()
        }),
    }
}
