//! A managed Milvus: standalone mode with embedded etcd and local storage on
//! a PersistentVolumeClaim (one pod; the PVC is ReadWriteOnce, so updates
//! recreate rather than roll). With `gpu.enabled` it runs the GPU image,
//! asks for `nvidia.com/gpu` and lands on GPU nodes.
//!
//! With `authentication` (the default) Milvus refuses unauthenticated
//! clients, and its root password is the one the operator generated into
//! the Secret `{name}-milvus-auth` the first time it reconciled (the only
//! object here that is not a pure function of the spec: see
//! [`auth_secret`]). Milvus reads that password only when it first
//! initialises its metadata; the Secret is kept with a retained volume.
//! With `runAsNonRoot` (the default) it runs as uid 1000 with no
//! capabilities, its data volume group-writable through `fsGroup`.
//!
//! For more than one Milvus node, run Milvus with its own operator or chart
//! and use `milvus.mode: external`.

use super::config::MILVUS_PORT;
use super::meta::{Component, Owner};
use super::pod;
use crate::crd::SecretKeyRef;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, SeccompProfile, Secret, SecretKeySelector, SecurityContext, Service,
    Toleration, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
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

/// The uid and gid Milvus runs as with `runAsNonRoot`.
const MILVUS_UID: i64 = 1000;

pub fn auth_secret_name(owner: &Owner) -> String {
    owner.child_name("milvus-auth")
}

/// The dataplane's Milvus token (`root:PASSWORD`) in the generated Secret.
pub fn auth_token_ref(owner: &Owner) -> SecretKeyRef {
    SecretKeyRef {
        secret_name: auth_secret_name(owner),
        key: "token".into(),
    }
}

/// The generated credentials: `password` (Milvus's root password) and
/// `token` (`root:PASSWORD`, for the dataplane). The caller draws the
/// password once and creates this only when no such Secret exists.
pub fn auth_secret(owner: &Owner, password: &str) -> Secret {
    auth_secret_with(auth_secret_metadata(owner), password)
}

/// Name, labels and owner reference of the generated Secret.
pub fn auth_secret_metadata(owner: &Owner) -> ObjectMeta {
    owner.metadata(auth_secret_name(owner), Some(Component::Milvus))
}

/// The generated Secret with `metadata` (from [`auth_secret_metadata`]).
pub fn auth_secret_with(metadata: ObjectMeta, password: &str) -> Secret {
    Secret {
        metadata,
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([
            ("password".to_string(), password.to_string()),
            ("token".to_string(), format!("root:{password}")),
        ])),
        ..Default::default()
    }
}

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
        run_as_non_root: m.run_as_non_root.then_some(true),
        capabilities: m.run_as_non_root.then(|| Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    });
    container.args = Some(vec!["milvus".into(), "run".into(), "standalone".into()]);
    let mut milvus_env = vec![
        env("ETCD_USE_EMBED", "true"),
        env("ETCD_DATA_DIR", "/var/lib/milvus/etcd"),
        env("ETCD_CONFIG_PATH", &format!("/milvus/configs/{ETCD_FILE}")),
        env("COMMON_STORAGETYPE", "local"),
    ];
    if m.authentication {
        // Milvus maps COMMON_SECURITY_* onto common.security.* of milvus.yaml.
        milvus_env.push(env("COMMON_SECURITY_AUTHORIZATIONENABLED", "true"));
        milvus_env.push(EnvVar {
            name: "COMMON_SECURITY_DEFAULTROOTPASSWORD".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: auth_secret_name(owner),
                    key: "password".into(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    container.env = Some(milvus_env);
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
                    security_context: m.run_as_non_root.then(|| PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(MILVUS_UID),
                        run_as_group: Some(MILVUS_UID),
                        fs_group: Some(MILVUS_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
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
