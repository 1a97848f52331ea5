//! Names, labels and metadata shared by every rendered object.
//!
//! Every child carries the same four labels, so the operator can list what it
//! made for one MemoryService (and delete what is no longer wanted) with one
//! selector, and an owner reference, so Kubernetes deletes it with its parent.

use super::RenderError;
use crate::crd::MemoryService;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const APP_NAME: &str = "pika-memory";
pub const MANAGER: &str = "pika-operator";

/// The parts of a MemoryService that run as their own pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Api,
    Worker,
    Milvus,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Api => "api",
            Component::Worker => "worker",
            Component::Milvus => "milvus",
        }
    }
}

/// Label selector of everything the operator made for one MemoryService.
pub fn children_selector(instance: &str) -> String {
    format!("{NAME_LABEL}={APP_NAME},{INSTANCE_LABEL}={instance},{MANAGED_BY_LABEL}={MANAGER}")
}

/// Who the objects belong to: name, namespace, owner reference.
pub struct Owner<'a> {
    pub ms: &'a MemoryService,
    pub name: String,
    pub namespace: String,
    owner_ref: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
}

impl<'a> Owner<'a> {
    pub fn of(ms: &'a MemoryService) -> Result<Self, RenderError> {
        let namespace = ms.namespace().ok_or(RenderError::NotNamespaced)?;
        let owner_ref = ms.controller_owner_ref(&()).ok_or(RenderError::NoUid)?;
        Ok(Owner {
            ms,
            name: ms.name_any(),
            namespace,
            owner_ref,
        })
    }

    /// `<instance>-<suffix>`.
    pub fn child_name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    /// Labels of a component's objects (and its pods).
    pub fn labels(&self, component: Option<Component>) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([
            (NAME_LABEL.to_string(), APP_NAME.to_string()),
            (INSTANCE_LABEL.to_string(), self.name.clone()),
            (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
        ]);
        if let Some(c) = component {
            l.insert(COMPONENT_LABEL.to_string(), c.as_str().to_string());
        }
        l
    }

    /// Selects a component's pods (a subset of its labels, never changed).
    pub fn selector(&self, component: Component) -> LabelSelector {
        LabelSelector {
            match_labels: Some(BTreeMap::from([
                (NAME_LABEL.to_string(), APP_NAME.to_string()),
                (INSTANCE_LABEL.to_string(), self.name.clone()),
                (COMPONENT_LABEL.to_string(), component.as_str().to_string()),
            ])),
            ..Default::default()
        }
    }

    pub fn metadata(&self, name: String, component: Option<Component>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(component)),
            owner_references: Some(vec![self.owner_ref.clone()]),
            ..Default::default()
        }
    }
}
