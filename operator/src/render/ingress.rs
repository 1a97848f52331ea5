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
    if !spec.annotations.is_empty() {
        metadata.annotations = Some(spec.annotations.clone());
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
            "http://{}.{}.svc:{SIDECAR_PORT}",
            owner.child_name("api"),
            owner.namespace
        ),
    }
}
