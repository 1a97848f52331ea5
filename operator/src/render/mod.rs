//! Desired state as pure functions of a MemoryService and its cache policy.
//!
//! Nothing here talks to the API server: `render` returns every child object
//! the installation needs, fully formed (labels, owner reference, config
//! hash), and the controller applies them. Each object kind has one module.

pub mod api;
pub mod config;
pub mod ingress;
pub mod meta;
pub mod milvus;
pub mod network;
pub mod pod;
pub mod worker;

use crate::crd::{MemoryService, MilvusMode, Policy};
use crate::index::{self, IndexError, IndexPlan};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use meta::{Component, Owner};
use std::collections::BTreeMap;

/// Why a MemoryService cannot be rendered (reported in its status; the
/// spec has to change before a retry can succeed).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the MemoryService has no namespace")]
    NotNamespaced,
    #[error("the MemoryService has no uid yet")]
    NoUid,
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("cache policy: {0}")]
    Policy(String),
    #[error("cannot encode the cache policy: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Every child object of one MemoryService, by kind.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub config_maps: Vec<ConfigMap>,
    pub deployments: Vec<Deployment>,
    pub services: Vec<Service>,
    pub hpas: Vec<HorizontalPodAutoscaler>,
    pub pdbs: Vec<PodDisruptionBudget>,
    pub ingresses: Vec<Ingress>,
    pub pvcs: Vec<PersistentVolumeClaim>,
    pub network_policies: Vec<NetworkPolicy>,
    /// The managed Milvus's credentials Secret (name, labels, owner): the
    /// controller creates it once with a random password and never
    /// rewrites it, so it is not rendered with the other objects.
    pub milvus_auth: Option<ObjectMeta>,
    /// Hash of the configuration on the API pods' template.
    pub config_hash: String,
    pub index: Option<IndexPlan>,
    pub endpoint: String,
}

/// A ClusterIP Service named after the component, on one named port.
fn service(owner: &Owner, component: Component, port_name: &str, port: i32) -> Service {
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    Service {
        metadata: owner.metadata(owner.child_name(component.as_str()), Some(component)),
        spec: Some(ServiceSpec {
            selector: owner.selector(component).match_labels,
            ports: Some(vec![ServicePort {
                name: Some(port_name.into()),
                port,
                target_port: Some(IntOrString::String(port_name.into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An autoscaler for the component's Deployment (same name), with the
/// SDD 14.2 scaling behaviour.
fn hpa(
    owner: &Owner,
    component: Component,
    min: i32,
    max: i32,
    metrics: Vec<MetricSpec>,
) -> HorizontalPodAutoscaler {
    let name = owner.child_name(component.as_str());
    HorizontalPodAutoscaler {
        metadata: owner.metadata(name.clone(), Some(component)),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name,
            },
            min_replicas: Some(min),
            max_replicas: max,
            metrics: Some(metrics),
            behavior: Some(api::behavior()),
        },
        ..Default::default()
    }
}

/// Renders the installation. `policy` is the referenced CachePolicy's spec
/// (the defaults when none is referenced).
pub fn render(ms: &MemoryService, policy: &Policy) -> Result<Desired, RenderError> {
    let owner = Owner::of(ms)?;
    let problems = policy.problems();
    if !problems.is_empty() {
        return Err(RenderError::Policy(problems.join("; ")));
    }
    let spec = &ms.spec;
    let plan = index::tune(&spec.milvus.index, spec.milvus.gpu.enabled)?;
    let toml = config::dataplane_toml(&owner, &plan);
    let sidecar_toml = config::sidecar_toml(&owner);
    let policy_json = config::policy_json(policy)?;
    let env = serde_json::to_vec(&config::secret_env(&owner))?;
    let worker_hash = config::hash(&[toml.as_bytes(), &env]);
    let api_hash = config::hash(&[
        toml.as_bytes(),
        sidecar_toml.as_bytes(),
        policy_json.as_bytes(),
        &env,
    ]);

    let config_name = owner.child_name("config");
    let mut out = Desired {
        config_maps: vec![ConfigMap {
            metadata: owner.metadata(config_name.clone(), None),
            data: Some(BTreeMap::from([
                (config::DATAPLANE_FILE.to_string(), toml),
                (config::POLICY_FILE.to_string(), policy_json),
                (config::SIDECAR_FILE.to_string(), sidecar_toml),
            ])),
            ..Default::default()
        }],
        deployments: vec![
            api::deployment(&owner, &config_name, &api_hash),
            worker::deployment(&owner, &config_name, &worker_hash),
        ],
        services: vec![api::service(&owner)],
        hpas: api::hpa(&owner).into_iter().chain(worker::hpa(&owner)).collect(),
        pdbs: vec![
            api::pdb(&owner, Component::Api),
            api::pdb(&owner, Component::Worker),
        ],
        ingresses: ingress::ingress(&owner).into_iter().collect(),
        pvcs: Vec::new(),
        network_policies: network::policies(&owner),
        milvus_auth: None,
        config_hash: api_hash,
        index: Some(plan),
        endpoint: ingress::endpoint(&owner),
    };
    if spec.milvus.mode == MilvusMode::Managed {
        out.config_maps.push(milvus::config_map(&owner));
        out.deployments.push(milvus::deployment(&owner));
        out.services.push(milvus::service(&owner));
        out.pvcs.push(milvus::pvc(&owner));
        if spec.milvus.authentication {
            out.milvus_auth = Some(milvus::auth_secret_metadata(&owner));
        }
    }
    Ok(out)
}
