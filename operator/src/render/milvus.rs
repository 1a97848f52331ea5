//! A managed Milvus: standalone mode with embedded etcd and local storage on
//! a PersistentVolumeClaim (one pod; the PVC is ReadWriteOnce, so updates
//! recreate rather than roll). With `gpu.enabled` it runs the GPU image,
//! asks for `nvidia.com/gpu` and lands on GPU nodes.
//!
//! For more than one Milvus node, run Milvus with its own operator or chart
//! and use `milvus.mode: external`.

use super::config::MILVUS_PORT;
use super::meta::{Component, Owner};
use super::pod;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, EnvVar, HTTPGetAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe,
    SecurityContext, Service, Toleration, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

pub const DEFAULT_IMAGE: &str = "milvusdb/milvus:v2.5.10";
pub const DEFAULT_GPU_IMAGE: &str = "milvusdb/milvus:v2.5.10-gpu";
const HEALTH_PORT: i32 = 9091;
const ETCD_FILE: &str = "embedEtcd.yaml";

/// Embedded etcd settings (the same Milvus's own standalone script uses).
const EMBED_ETCD: &str = "listen-client-urls: http://0.0.0.0:2379\n\
advertise-client-urls: http://0.0.0.0:2379\n\
quota-backend-bytes: 4294967296\n\
auto-compaction-mode: revision\n\
auto-compaction-retention: '1000'\n";

pub fn config_map(owner: &Owner) -> ConfigMap {
    ConfigMap {
        metadata: owner.metadata(owner.child_name("milvus"), Some(Component::Milvus)),
        data: Some(BTreeMap::from([(ETCD_FILE.to_string(), EMBED_ETCD.to_string())])),
        ..Default::default()
    }
}

pub fn pvc(owner: &Owner) -> PersistentVolumeClaim {
    let storage = &owner.ms.spec.milvus.storage;
    PersistentVolumeClaim {
        metadata: owner.metadata(owner.child_name("milvus"), Some(Component::Milvus)),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(storage.size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

pub fn deployment(owner: &Owner) -> Deployment {
    let m = &owner.ms.spec.milvus;
    let gpu = m.gpu.enabled;
    let image = owner
        .ms
        .spec
        .images
        .milvus
        .clone()
        .unwrap_or_else(|| if gpu { DEFAULT_GPU_IMAGE } else { DEFAULT_IMAGE }.to_string());
    let mut resources = pod::resources(m.resources.as_ref(), "1", "4Gi", "8Gi");
    if gpu {
        let count = Quantity(m.gpu.count.to_string());
        resources
            .limits
            .get_or_insert_with(BTreeMap::new)
            .insert("nvidia.com/gpu".into(), count.clone());
        resources
            .requests
            .get_or_insert_with(BTreeMap::new)
            .insert("nvidia.com/gpu".into(), count);
    }
    let health = Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(HEALTH_PORT),
            ..Default::default()
        }),
        period_seconds: Some(10),
        timeout_seconds: Some(3),
        failure_threshold: Some(3),
        ..Default::default()
    };
    let mut container = pod::container("milvus", &image, &owner.ms.spec.images.pull_policy);
    // Milvus writes under its install folder: no read-only root here.
    container.security_context = Some(SecurityContext {
        allow_privilege_escalation: Some(false),
        ..Default::default()
    });
    container.args = Some(vec!["milvus".into(), "run".into(), "standalone".into()]);
    container.env = Some(vec![
        env("ETCD_USE_EMBED", "true"),
        env("ETCD_DATA_DIR", "/var/lib/milvus/etcd"),
        env("ETCD_CONFIG_PATH", &format!("/milvus/configs/{ETCD_FILE}")),
        env("COMMON_STORAGETYPE", "local"),
    ]);
    container.ports = Some(vec![
        pod::port("grpc", MILVUS_PORT),
        pod::port("metrics", HEALTH_PORT),
    ]);
    container.resources = Some(resources);
    container.liveness_probe = Some(Probe {
        initial_delay_seconds: Some(90),
        ..health.clone()
    });
    container.readiness_probe = Some(Probe {
        initial_delay_seconds: Some(20),
        ..health
    });
    container.volume_mounts = Some(vec![
        VolumeMount {
            name: "data".into(),
            mount_path: "/var/lib/milvus".into(),
            ..Default::default()
        },
        VolumeMount {
            name: "etcd-config".into(),
            mount_path: format!("/milvus/configs/{ETCD_FILE}"),
            sub_path: Some(ETCD_FILE.into()),
            read_only: Some(true),
            ..Default::default()
        },
    ]);
    let tolerations = if !gpu {
        None
    } else if m.gpu.tolerations.is_empty() {
        Some(vec![Toleration {
            key: Some("nvidia.com/gpu".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }])
    } else {
        Some(m.gpu.tolerations.clone())
    };
    let node_selector = (gpu && !m.gpu.node_selector.is_empty()).then(|| m.gpu.node_selector.clone());
    Deployment {
        metadata: owner.metadata(owner.child_name("milvus"), Some(Component::Milvus)),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: owner.selector(Component::Milvus),
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(pod::template_metadata(
                    owner,
                    Component::Milvus,
                    None,
                    HEALTH_PORT,
                )),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![
                        Volume {
                            name: "data".into(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: owner.child_name("milvus"),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        Volume {
                            name: "etcd-config".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: owner.child_name("milvus"),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    ]),
                    node_selector,
                    tolerations,
                    termination_grace_period_seconds: Some(60),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn service(owner: &Owner) -> Service {
    super::service(owner, Component::Milvus, "grpc", MILVUS_PORT)
}
