//! Applying the rendered children: server-side apply with one field manager,
//! skipping objects that have not changed, and deleting the ones no longer
//! rendered.
//!
//! Each applied object carries a hash of what was applied. An object whose
//! hash matches is left alone, so a reconcile with nothing to do writes
//! nothing (the API server sees only list calls). Drift made by hand is put
//! right by a full apply: on the first reconcile after the operator starts
//! and then every `full_apply_every`.

use crate::render::meta::MANAGER;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::fmt::Debug;

/// A namespaced object kind the operator creates.
pub trait Child:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug
{
}

impl<K> Child for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
{
}

/// Annotation holding the hash of the applied object.
pub const APPLIED_HASH: &str = "pika.stepup.edu.vn/applied-hash";

/// What one sync changed, as `Kind/name` strings.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub applied: Vec<String>,
    pub deleted: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.deleted.is_empty()
    }
}

/// The hash of an object as rendered (before the annotation is added).
fn applied_hash<K: Serialize>(obj: &K) -> Result<String, serde_json::Error> {
    let bytes = serde_json::to_vec(obj)?;
    Ok(hex::encode(&Sha256::digest(&bytes)[..12]))
}

/// Syncs the children of one MemoryService, kind by kind, collecting what
/// changed.
pub struct Children<'a> {
    pub client: &'a Client,
    pub namespace: &'a str,
    /// Selects everything made for this MemoryService.
    pub selector: &'a str,
    /// Apply every object even when its hash matches.
    pub full_apply: bool,
    pub changes: Changes,
}

impl Children<'_> {
    fn api<K: Child>(&self) -> Api<K> {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    /// What the operator made of this kind for this MemoryService.
    async fn existing<K: Child>(&self, api: &Api<K>) -> Result<Vec<K>, crate::Error> {
        Ok(api
            .list(&ListParams::default().labels(self.selector))
            .await?
            .items)
    }

    /// Brings one kind in line with `desired`; returns the objects as they
    /// are now. With `keep_unrendered`, objects no longer rendered are left
    /// in place (a retained Milvus volume).
    pub async fn sync<K: Child>(
        &mut self,
        desired: Vec<K>,
        keep_unrendered: bool,
    ) -> Result<Vec<K>, crate::Error> {
        let api: Api<K> = self.api();
        let kind = K::kind(&());
        let existing = self.existing(&api).await?;
        let params = PatchParams::apply(MANAGER).force();
        let mut now = Vec::with_capacity(desired.len());
        for mut obj in desired {
            let name = obj.name_any();
            let hash = applied_hash(&obj)?;
            let current = existing.iter().find(|e| e.name_any() == name);
            let same = current.is_some_and(|c| c.annotations().get(APPLIED_HASH) == Some(&hash));
            if same && !self.full_apply {
                now.extend(current.cloned());
                continue;
            }
            obj.annotations_mut().insert(APPLIED_HASH.to_string(), hash);
            let applied = api.patch(&name, &params, &Patch::Apply(&obj)).await?;
            if !same {
                self.changes.applied.push(format!("{kind}/{name}"));
            }
            now.push(applied);
        }
        for old in existing {
            let name = old.name_any();
            if keep_unrendered || now.iter().any(|o| o.name_any() == name) {
                continue;
            }
            api.delete(&name, &DeleteParams::background()).await?;
            self.changes.deleted.push(format!("{kind}/{name}"));
        }
        Ok(now)
    }

    /// Creates `obj` unless an object of its name exists; never updates it
    /// (generated credentials must stay what the server was started with).
    pub async fn create_once<K: Child>(&mut self, obj: K) -> Result<(), crate::Error> {
        let api: Api<K> = self.api();
        let name = obj.name_any();
        if api.get_opt(&name).await?.is_some() {
            return Ok(());
        }
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {
                self.changes
                    .applied
                    .push(format!("{}/{name} (generated)", K::kind(&())));
                Ok(())
            }
            // Another reconcile made it meanwhile: that one stands.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every child of this kind (on MemoryService deletion). With
    /// `retain`, the objects are kept and released instead: their owner
    /// reference is removed so garbage collection leaves them alone.
    pub async fn remove_all<K: Child>(&mut self, retain: bool) -> Result<(), crate::Error> {
        let api: Api<K> = self.api();
        let kind = K::kind(&());
        for obj in self.existing(&api).await? {
            let name = obj.name_any();
            if retain {
                let release = serde_json::json!({"metadata": {"ownerReferences": []}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&release))
                    .await?;
                self.changes.applied.push(format!("{kind}/{name} (released)"));
            } else {
                api.delete(&name, &DeleteParams::background()).await?;
                self.changes.deleted.push(format!("{kind}/{name}"));
            }
        }
        Ok(())
    }
}
