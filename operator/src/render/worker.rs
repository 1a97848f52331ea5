//! The extraction workers: `pika-dataplane worker` consuming the RabbitMQ
//! queue, scaled on CPU and, when configured, on ready messages per pod.

use super::api::resource_metric;
use super::config::{QUEUE_NAME, WORKER_PORT};
use super::meta::{Component, Owner};
use super::pod::{self};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    ExternalMetricSource, HorizontalPodAutoscaler, MetricIdentifier, MetricSpec, MetricTarget,
};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

pub fn deployment(owner: &Owner, config_map: &str, config_hash: &str) -> Deployment {
    let spec = &owner.ms.spec;
    let mut worker = pod::container("worker", &spec.images.dataplane, &spec.images.pull_policy);
    worker.args = Some(vec!["worker".into()]);
    worker.env = Some(pod::pika_env(owner));
    worker.ports = Some(vec![pod::port("metrics", WORKER_PORT)]);
    worker.liveness_probe = Some(pod::http_probe("/health/live", WORKER_PORT, 10, 3));
    worker.readiness_probe = Some(pod::http_probe("/health/ready", WORKER_PORT, 10, 3));
    worker.resources = Some(pod::resources(
        spec.worker.resources.as_ref(),
        "500m",
        "768Mi",
        "1536Mi",
    ));
    worker.volume_mounts = Some(pod::mounts(true, true));
    Deployment {
        metadata: owner.metadata(owner.child_name("worker"), Some(Component::Worker)),
        spec: Some(DeploymentSpec {
            replicas: spec.worker.autoscaling.is_none().then_some(spec.worker.replicas),
            selector: owner.selector(Component::Worker),
            template: PodTemplateSpec {
                metadata: Some(pod::template_metadata(
                    owner,
                    Component::Worker,
                    Some(config_hash),
                    WORKER_PORT,
                )),
                spec: Some(PodSpec {
                    containers: vec![worker],
                    volumes: Some(pod::volumes(owner, config_map)),
                    security_context: Some(pod::pod_security()),
                    // A job in flight finishes or goes back to the queue.
                    termination_grace_period_seconds: Some(60),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn hpa(owner: &Owner) -> Option<HorizontalPodAutoscaler> {
    let a = owner.ms.spec.worker.autoscaling.as_ref()?;
    let mut metrics = vec![resource_metric("cpu", a.target_cpu_utilization)];
    if let Some(depth) = a.queue_depth_per_pod {
        metrics.push(MetricSpec {
            type_: "External".into(),
            external: Some(ExternalMetricSource {
                metric: MetricIdentifier {
                    name: "rabbitmq_queue_messages_ready".into(),
                    selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([("queue".to_string(), QUEUE_NAME.to_string())])),
                        ..Default::default()
                    }),
                },
                target: MetricTarget {
                    type_: "AverageValue".into(),
                    average_value: Some(Quantity(depth.to_string())),
                    ..Default::default()
                },
            }),
            ..Default::default()
        });
    }
    Some(super::hpa(
        owner,
        Component::Worker,
        a.min_replicas,
        a.max_replicas,
        metrics,
    ))
}
