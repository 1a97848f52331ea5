//! The API pods: `pika-dataplane serve` with the caching sidecar in front,
//! their Service, autoscaler and disruption budget.
//!
//! Traffic enters the sidecar on port 8080 (`http`); the sidecar forwards
//! misses to the dataplane on 127.0.0.1:8081 in the same pod, where the
//! dataplane listens on loopback only. Probes go to each container's own
//! health endpoints (the dataplane's through `pika-dataplane probe`, an exec
//! probe, since an HTTP probe cannot reach loopback) so a dead dataplane is
//! restarted even while the sidecar still answers from cache. With
//! `spec.tls` the sidecar serves HTTPS from the mounted Secret.

use super::config::{self, CONFIG_DIR, DATAPLANE_PORT, SIDECAR_FILE, SIDECAR_PORT};
use super::meta::{Component, Owner};
use super::pod::{self};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior,
    MetricIdentifier, MetricSpec, MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec, Service};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub fn deployment(owner: &Owner, config_map: &str, config_hash: &str) -> Deployment {
    let spec = &owner.ms.spec;
    let images = &spec.images;
    let env = pod::pika_env(owner);

    let mut dataplane = pod::container("dataplane", &images.dataplane, &images.pull_policy);
    dataplane.args = Some(vec!["serve".into()]);
    dataplane.env = Some(env.clone());
    dataplane.ports = Some(vec![pod::port("dataplane", DATAPLANE_PORT)]);
    dataplane.liveness_probe = Some(pod::dataplane_probe("live", 10, 3));
    dataplane.readiness_probe = Some(pod::dataplane_probe("ready", 5, 2));
    dataplane.resources = Some(pod::resources(
        spec.api.resources.as_ref(),
        "500m",
        "768Mi",
        "1536Mi",
    ));
    dataplane.volume_mounts = Some(pod::mounts(true, true));

    let mut sidecar = pod::container("sidecar", &images.sidecar, &images.pull_policy);
    // Its own file (listen, upstream, policy, embedder); only its own secrets.
    sidecar.args = Some(vec!["--config".into(), format!("{CONFIG_DIR}/{SIDECAR_FILE}")]);
    let mut sidecar_env: Vec<_> = env
        .into_iter()
        .filter(|e| e.name == "RAYON_NUM_THREADS")
        .collect();
    sidecar_env.extend(config::sidecar_secret_env(owner));
    sidecar.env = Some(sidecar_env);
    sidecar.ports = Some(vec![pod::port("http", SIDECAR_PORT)]);
    let probe = if spec.tls.is_some() {
        pod::https_probe
    } else {
        pod::http_probe
    };
    sidecar.liveness_probe = Some(probe("/health/live", SIDECAR_PORT, 10, 3));
    sidecar.readiness_probe = Some(probe("/health/ready", SIDECAR_PORT, 5, 2));
    sidecar.resources = Some(pod::resources(
        spec.sidecar.resources.as_ref(),
        "250m",
        "384Mi",
        "768Mi",
    ));
    let mut sidecar_mounts = pod::mounts(true, false);
    if spec.tls.is_some() {
        sidecar_mounts.push(pod::tls_mount());
    }
    sidecar.volume_mounts = Some(sidecar_mounts);

    Deployment {
        metadata: owner.metadata(owner.child_name("api"), Some(Component::Api)),
        spec: Some(DeploymentSpec {
            // With autoscaling the HPA owns the count: leaving the field out of
            // the applied object hands it over instead of fighting over it.
            replicas: spec.api.autoscaling.is_none().then_some(spec.api.replicas),
            selector: owner.selector(Component::Api),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(pod::template_metadata(
                    owner,
                    Component::Api,
                    Some(config_hash),
                    SIDECAR_PORT,
                )),
                spec: Some(PodSpec {
                    containers: vec![dataplane, sidecar],
                    volumes: Some(
                        pod::volumes(owner, config_map)
                            .into_iter()
                            .chain(pod::tls_volume(owner))
                            .collect(),
                    ),
                    security_context: Some(pod::pod_security()),
                    termination_grace_period_seconds: Some(30),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// ClusterIP Service on the sidecar port.
pub fn service(owner: &Owner) -> Service {
    super::service(owner, Component::Api, "http", SIDECAR_PORT)
}

pub fn resource_metric(name: &str, utilization: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: name.into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(utilization),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

/// SDD 14.2.1 behaviour: scale up fast (double per minute after 60 s), down
/// slowly (10 % per minute after 5 minutes).
pub fn behavior() -> HorizontalPodAutoscalerBehavior {
    let rules = |window, percent| HPAScalingRules {
        stabilization_window_seconds: Some(window),
        policies: Some(vec![HPAScalingPolicy {
            type_: "Percent".into(),
            value: percent,
            period_seconds: 60,
        }]),
        ..Default::default()
    };
    HorizontalPodAutoscalerBehavior {
        scale_up: Some(rules(60, 100)),
        scale_down: Some(rules(300, 10)),
    }
}

pub fn hpa(owner: &Owner) -> Option<HorizontalPodAutoscaler> {
    let a = owner.ms.spec.api.autoscaling.as_ref()?;
    let mut metrics = vec![
        resource_metric("cpu", a.target_cpu_utilization),
        resource_metric("memory", a.target_memory_utilization),
    ];
    if let Some(rps) = a.requests_per_pod {
        metrics.push(MetricSpec {
            type_: "Pods".into(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier {
                    name: "http_requests_per_second".into(),
                    selector: None,
                },
                target: MetricTarget {
                    type_: "AverageValue".into(),
                    average_value: Some(Quantity(rps.to_string())),
                    ..Default::default()
                },
            }),
            ..Default::default()
        });
    }
    Some(super::hpa(
        owner,
        Component::Api,
        a.min_replicas,
        a.max_replicas,
        metrics,
    ))
}

/// At most one API pod down for voluntary disruptions.
pub fn pdb(owner: &Owner, component: Component) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owner.metadata(owner.child_name(component.as_str()), Some(component)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(owner.selector(component)),
            ..Default::default()
        }),
        ..Default::default()
    }
}
