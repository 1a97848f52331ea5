//! Pieces every PIKA pod shares: security context, config volume, probes,
//! default resources.

use super::config::{self, CONFIG_DIR, DATAPLANE_FILE};
use super::meta::{Component, Owner};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, ExecAction,
    HTTPGetAction, KeyToPath, PodSecurityContext, Probe, ResourceRequirements, SeccompProfile,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// Annotation on pod templates: changes whenever the rendered config does,
/// which makes the Deployment roll its pods.
pub const CONFIG_HASH_ANNOTATION: &str = "pika.stepup.edu.vn/config-hash";

pub fn http_probe(path: &str, port: i32, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// An HTTPS probe (the sidecar with in-pod TLS; the kubelet does not
/// verify the certificate).
pub fn https_probe(path: &str, port: i32, period: i32, failures: i32) -> Probe {
    let mut probe = http_probe(path, port, period, failures);
    if let Some(get) = probe.http_get.as_mut() {
        get.scheme = Some("HTTPS".into());
    }
    probe
}

/// `pika-dataplane probe live|ready`: the dataplane listens on loopback in
/// the API pod, out of reach of HTTP probes.
pub fn dataplane_probe(what: &str, period: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "/usr/local/bin/pika-dataplane".into(),
                "probe".into(),
                what.into(),
            ]),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

pub fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: number,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// Non-root, read-only root filesystem, no capabilities.
pub fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        fs_group: Some(65532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The config ConfigMap at `/etc/pika`, the KEK file from its Secret, plus
/// writable scratch space.
pub fn volumes(owner: &Owner, config_map: &str) -> Vec<Volume> {
    let keks = &owner.ms.spec.encryption.keks;
    vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "kek".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(keks.secret_name.clone()),
                items: Some(vec![KeyToPath {
                    key: keks.key.clone(),
                    path: config::KEK_FILE.into(),
                    mode: None,
                }]),
                // Owner read-only (the pods run as one non-root user).
                default_mode: Some(0o400),
                optional: Some(false),
            }),
            ..Default::default()
        },
        Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    ]
}

/// The sidecar's certificate Secret (`spec.tls`), owner read-only.
pub fn tls_volume(owner: &Owner) -> Option<Volume> {
    let tls = owner.ms.spec.tls.as_ref()?;
    Some(Volume {
        name: "tls".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(tls.secret_name.clone()),
            items: Some(
                ["tls.crt", "tls.key"]
                    .into_iter()
                    .map(|k| KeyToPath {
                        key: k.into(),
                        path: k.into(),
                        mode: None,
                    })
                    .collect(),
            ),
            default_mode: Some(0o400),
            optional: Some(false),
        }),
        ..Default::default()
    })
}

/// The sidecar's certificate, with in-pod TLS.
pub fn tls_mount() -> VolumeMount {
    VolumeMount {
        name: "tls".into(),
        mount_path: config::TLS_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

/// Mounts of a container; `with_keys` for the dataplane (KEK file).
pub fn mounts(with_data: bool, with_keys: bool) -> Vec<VolumeMount> {
    let mut m = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        },
    ];
    if with_keys {
        m.push(VolumeMount {
            name: "kek".into(),
            mount_path: config::KEK_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if with_data {
        m.push(VolumeMount {
            name: "data".into(),
            mount_path: "/var/lib/pika".into(),
            ..Default::default()
        });
    }
    m
}

/// `requests` and a memory `limit` (no CPU limit: throttling hurts latency
/// more than sharing does).
pub fn resources(
    given: Option<&ResourceRequirements>,
    cpu: &str,
    memory: &str,
    memory_limit: &str,
) -> ResourceRequirements {
    if let Some(r) = given {
        return r.clone();
    }
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity(memory_limit.into()),
        )])),
        ..Default::default()
    }
}

/// A container with the shared hardening.
pub fn container(name: &str, image: &str, pull_policy: &str) -> Container {
    Container {
        name: name.to_string(),
        image: Some(image.to_string()),
        image_pull_policy: Some(pull_policy.to_string()),
        security_context: Some(container_security()),
        ..Default::default()
    }
}

/// Environment of every PIKA container: the config file, one inference
/// thread, and the secrets.
pub fn pika_env(owner: &Owner) -> Vec<EnvVar> {
    let mut env = vec![
        EnvVar {
            name: "PIKA_CONFIG".into(),
            value: Some(format!("{CONFIG_DIR}/{DATAPLANE_FILE}")),
            ..Default::default()
        },
        // Candle would split every matmul over all cores and fight the
        // request handlers for them (docs/OPERATIONS.md).
        EnvVar {
            name: "RAYON_NUM_THREADS".into(),
            value: Some("1".into()),
            ..Default::default()
        },
    ];
    env.extend(config::secret_env(owner));
    env
}

/// Pod template metadata: component labels, the config hash that rolls the
/// pods, and Prometheus scrape hints.
pub fn template_metadata(
    owner: &Owner,
    component: Component,
    config_hash: Option<&str>,
    metrics_port: i32,
) -> ObjectMeta {
    let mut annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), metrics_port.to_string()),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
    ]);
    if let Some(hash) = config_hash {
        annotations.insert(CONFIG_HASH_ANNOTATION.to_string(), hash.to_string());
    }
    ObjectMeta {
        labels: Some(owner.labels(Some(component))),
        annotations: Some(annotations),
        ..Default::default()
    }
}
