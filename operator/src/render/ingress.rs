//! The public entry point: an Ingress to the API Service, with TLS when a
//! certificate Secret is named.

use super::config::SIDECAR_PORT;
use super::meta::{Component, Owner};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend,
    IngressSpec, IngressTLS, ServiceBackendPort,
};

pub fn ingress(owner: &Owner) -> Option<Ingress> {
    let spec = owner.ms.spec.ingress.as_ref()?;
    let mut metadata = owner.metadata(owner.child_name("api"), Some(Component::Api));
    let mut annotations = spec.annotations.clone();
    if owner.ms.spec.tls.is_some() {
        // The sidecar speaks HTTPS in the pod: the controller must too
        // (ingress-nginx's annotation; others have their own).
        annotations
            .entry("nginx.ingress.kubernetes.io/backend-protocol".into())
            .or_insert_with(|| "HTTPS".into());
    }
    if !annotations.is_empty() {
        metadata.annotations = Some(annotations);
    }
    Some(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: spec.class_name.clone(),
            tls: spec.tls_secret.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: Some(vec![spec.host.clone()]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(spec.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: owner.child_name("api"),
                                port: Some(ServiceBackendPort {
                                    number: Some(SIDECAR_PORT),
                                    ..Default::default()
                                }),
                            }),
                            ..Default::default()
                        },
                    }],
                }),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Where clients reach the API.
pub fn endpoint(owner: &Owner) -> String {
    match &owner.ms.spec.ingress {
        Some(i) if i.tls_secret.is_some() => format!("https://{}", i.host),
        Some(i) => format!("http://{}", i.host),
        None => format!(
            "{}://{}.{}.svc:{SIDECAR_PORT}",
            if owner.ms.spec.tls.is_some() {
                "https"
            } else {
                "http"
            },
            owner.child_name("api"),
            owner.namespace
        ),
    }
}
