//! The MemoryService controller: render, apply, report.
//!
//! One reconcile reads the referenced CachePolicy, renders the children
//! (`render`), brings each kind in line (`children::sync`), and writes the
//! status only when it changed. A finalizer runs `cleanup` before the
//! MemoryService goes away. Every change is an Event on the MemoryService.
//! Kubernetes API errors are retried with a per-object exponential backoff;
//! a spec that cannot be rendered is reported (status `Failed`, a Warning
//! Event) and waits for the next change.
//!
//! Over 400 lines on purpose: one reconcile loop (render, apply, status,
//! events, finalizer) read in the order it runs; rendering and index tuning are
//! apart.

use crate::children::{Changes, Children};
use crate::crd::{CachePolicy, MemoryService, MemoryServiceStatus, Policy};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::render::{self, meta};
use crate::status;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, instrument, warn};

/// Finalizer on every MemoryService the operator has touched.
pub const FINALIZER: &str = "pika.stepup.edu.vn/cleanup";
/// Re-check a Ready installation this often (status drift, HPA changes).
const RESYNC_READY: Duration = Duration::from_secs(300);
/// Re-check an installation still coming up this often.
const RESYNC_PROGRESSING: Duration = Duration::from_secs(15);
/// Waiting for a referenced CachePolicy that does not exist yet (its
/// creation also triggers a reconcile through the watch).
const RESYNC_MISSING_POLICY: Duration = Duration::from_secs(60);
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Shared state of all reconciles.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Consecutive failures per object, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// When each object last had every child applied regardless of hashes.
    full_applied: Mutex<HashMap<String, Instant>>,
    full_apply_every: Duration,
}

impl Context {
    pub fn new(client: Client, metrics: Metrics, reporter: Reporter, full_apply_every: Duration) -> Self {
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            failures: Mutex::new(HashMap::new()),
            full_applied: Mutex::new(HashMap::new()),
            full_apply_every,
        }
    }

    /// The delay before retrying `key` after one more failure.
    fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        let delay = BACKOFF_BASE.saturating_mul(1 << (*n).min(10)).min(BACKOFF_MAX);
        *n = n.saturating_add(1);
        delay
    }

    fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Whether this reconcile should apply every child (and, if so, records it).
    fn take_full_apply(&self, key: &str) -> bool {
        let mut map = self.full_applied.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some(t) if t.elapsed() < self.full_apply_every => false,
            _ => {
                map.insert(key.to_string(), Instant::now());
                true
            }
        }
    }

    fn forget(&self, key: &str) {
        self.full_applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        self.succeeded(key);
    }

    async fn publish(&self, ms: &MemoryService, type_: EventType, reason: &str, action: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &ms.object_ref(&())).await {
            warn!(error = %e, "cannot publish event");
        }
    }
}

fn key(ms: &MemoryService) -> String {
    format!("{}/{}", ms.namespace().unwrap_or_default(), ms.name_any())
}

/// Entry point for the controller runtime.
#[instrument(skip(ms, ctx), fields(name = %ms.name_any(), namespace = ms.namespace().unwrap_or_default()))]
pub async fn reconcile(ms: Arc<MemoryService>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.duration.start_timer();
    ctx.metrics.reconciles.inc();
    let namespace = ms.namespace().ok_or(Error::NotNamespaced)?;
    let api: Api<MemoryService> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, ms, |event| async {
        match event {
            Finalizer::Apply(ms) => apply(&ms, &ctx).await,
            Finalizer::Cleanup(ms) => cleanup(&ms, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Retries with exponential backoff per object, and counts the failure.
pub fn error_policy(ms: Arc<MemoryService>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .failures
        .with_label_values(&[error.metric_label()])
        .inc();
    let delay = ctx.backoff(&key(&ms));
    warn!(name = %ms.name_any(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn referenced_policy(
    ms: &MemoryService,
    ctx: &Context,
    namespace: &str,
) -> Result<Option<Policy>, Error> {
    let Some(name) = &ms.spec.sidecar.cache_policy_ref else {
        return Ok(Some(Policy::default()));
    };
    let api: Api<CachePolicy> = Api::namespaced(ctx.client.clone(), namespace);
    Ok(api.get_opt(name).await?.map(|p| p.spec.0))
}

async fn apply(ms: &MemoryService, ctx: &Context) -> Result<Action, Error> {
    let namespace = ms.namespace().ok_or(Error::NotNamespaced)?;
    let k = key(ms);
    let Some(policy) = referenced_policy(ms, ctx, &namespace).await? else {
        let name = ms.spec.sidecar.cache_policy_ref.clone().unwrap_or_default();
        report_failure(
            ms,
            ctx,
            "CachePolicyMissing",
            format!("CachePolicy {name} not found"),
        )
        .await?;
        ctx.succeeded(&k);
        return Ok(Action::requeue(RESYNC_MISSING_POLICY));
    };
    let desired = match render::render(ms, &policy) {
        Ok(d) => d,
        Err(e) => {
            report_failure(ms, ctx, "InvalidSpec", e.to_string()).await?;
            ctx.succeeded(&k);
            return Ok(Action::await_change());
        }
    };

    let selector = meta::children_selector(&ms.name_any());
    let mut children = Children {
        client: &ctx.client,
        namespace: &namespace,
        selector: &selector,
        full_apply: ctx.take_full_apply(&k),
        changes: Changes::default(),
    };
    let retain_pvc = ms.spec.milvus.storage.retain_on_delete;
    // Credentials and config first, so new pods find them; volumes before
    // the pods that mount them.
    if let Some(metadata) = desired.milvus_auth.clone() {
        let password = generated_password();
        children
            .create_once(render::milvus::auth_secret_with(metadata, &password))
            .await?;
    }
    children.sync(desired.config_maps.clone(), false).await?;
    children.sync(desired.pvcs.clone(), retain_pvc).await?;
    children.sync(desired.services.clone(), false).await?;
    let deployments = children.sync(desired.deployments.clone(), false).await?;
    children.sync(desired.hpas.clone(), false).await?;
    children.sync(desired.pdbs.clone(), false).await?;
    children.sync(desired.ingresses.clone(), false).await?;
    children.sync(desired.network_policies.clone(), false).await?;
    let changes = children.changes;
    count_writes(ctx, &changes);

    let status = status::compute(
        ms,
        &desired,
        &deployments,
        Time(k8s_openapi::jiff::Timestamp::now()),
    );
    let previous_phase = ms.status.as_ref().map(|s| s.phase.clone()).unwrap_or_default();
    let phase = status.phase.clone();
    write_status(ms, ctx, &namespace, status).await?;

    for what in &changes.applied {
        ctx.publish(
            ms,
            EventType::Normal,
            "Applied",
            "Apply",
            format!("applied {what}"),
        )
        .await;
    }
    for what in &changes.deleted {
        ctx.publish(
            ms,
            EventType::Normal,
            "Deleted",
            "Delete",
            format!("deleted {what}, no longer wanted"),
        )
        .await;
    }
    if previous_phase != phase {
        let type_ = if phase == "Degraded" {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.publish(
            ms,
            type_,
            &phase,
            "Reconcile",
            format!("phase {previous_phase:?} -> {phase:?}"),
        )
        .await;
        info!(from = %previous_phase, to = %phase, "phase changed");
    }
    ctx.succeeded(&k);
    Ok(Action::requeue(if phase == "Ready" {
        RESYNC_READY
    } else {
        RESYNC_PROGRESSING
    }))
}

/// Writes the status when it differs from the one on the object.
async fn write_status(
    ms: &MemoryService,
    ctx: &Context,
    namespace: &str,
    status: MemoryServiceStatus,
) -> Result<(), Error> {
    if ms.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<MemoryService> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": MemoryService::api_version(&()),
        "kind": MemoryService::kind(&()),
        "status": status,
    });
    api.patch_status(
        &ms.name_any(),
        &PatchParams::apply(meta::MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    ctx.metrics
        .writes
        .with_label_values(&["MemoryService", "status"])
        .inc();
    Ok(())
}

/// Status `Failed` and one Warning event per distinct problem.
async fn report_failure(
    ms: &MemoryService,
    ctx: &Context,
    reason: &str,
    message: String,
) -> Result<(), Error> {
    let namespace = ms.namespace().ok_or(Error::NotNamespaced)?;
    let status = status::failed(
        ms,
        reason,
        message.clone(),
        Time(k8s_openapi::jiff::Timestamp::now()),
    );
    let repeated = ms.status.as_ref() == Some(&status);
    write_status(ms, ctx, &namespace, status).await?;
    if !repeated {
        warn!(reason, %message, "cannot reconcile the spec");
        ctx.publish(ms, EventType::Warning, reason, "Render", message)
            .await;
    }
    Ok(())
}

fn count_writes(ctx: &Context, changes: &Changes) {
    for (list, action) in [(&changes.applied, "apply"), (&changes.deleted, "delete")] {
        for what in list {
            let kind = what.split('/').next().unwrap_or("");
            ctx.metrics.writes.with_label_values(&[kind, action]).inc();
        }
    }
}

/// 32 random alphanumeric characters (about 190 bits) from the OS's
/// generator, for the managed Milvus's root password.
fn generated_password() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// Deletes the children (owner references would too, but only once the
/// MemoryService itself is gone; doing it here makes deletion observable
/// and lets a retained Milvus volume be released first).
async fn cleanup(ms: &MemoryService, ctx: &Context) -> Result<Action, Error> {
    let namespace = ms.namespace().ok_or(Error::NotNamespaced)?;
    let selector = meta::children_selector(&ms.name_any());
    let retain = ms.spec.milvus.storage.retain_on_delete;
    let mut children = Children {
        client: &ctx.client,
        namespace: &namespace,
        selector: &selector,
        full_apply: false,
        changes: Changes::default(),
    };
    children.remove_all::<Ingress>(false).await?;
    children.remove_all::<NetworkPolicy>(false).await?;
    children.remove_all::<HorizontalPodAutoscaler>(false).await?;
    children.remove_all::<PodDisruptionBudget>(false).await?;
    children.remove_all::<Deployment>(false).await?;
    children.remove_all::<Service>(false).await?;
    children.remove_all::<ConfigMap>(false).await?;
    children.remove_all::<PersistentVolumeClaim>(retain).await?;
    // The Milvus credentials go with its volume: a retained volume is
    // unreadable without the root password it was initialised with.
    children.remove_all::<Secret>(retain).await?;
    let changes = children.changes;
    count_writes(ctx, &changes);
    let note = if changes.is_empty() {
        "nothing left to delete".to_string()
    } else {
        let mut all = changes.deleted.clone();
        all.extend(changes.applied.iter().cloned());
        format!("removed {}", all.join(", "))
    };
    ctx.publish(ms, EventType::Normal, "Deleted", "Cleanup", note)
        .await;
    ctx.forget(&key(ms));
    Ok(Action::await_change())
}

/// The MemoryServices (among `services`) whose sidecars use `policy`.
pub fn referencing<'a>(
    policy: &CachePolicy,
    services: impl IntoIterator<Item = &'a MemoryService>,
) -> Vec<ObjectRef<MemoryService>> {
    let namespace = policy.namespace();
    let name = policy.name_any();
    services
        .into_iter()
        .filter(|ms| {
            ms.namespace() == namespace && ms.spec.sidecar.cache_policy_ref.as_deref() == Some(name.as_str())
        })
        .map(ObjectRef::from_obj)
        .collect()
}

/// Runs the controller until `shutdown` resolves. Watches MemoryServices,
/// the objects they own, and CachePolicies (a policy change re-renders every
/// MemoryService that references it).
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
    where
        K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let owned = watcher::Config::default().labels(&format!("{}={}", meta::MANAGED_BY_LABEL, meta::MANAGER));
    let controller = Controller::new(
        api::<MemoryService>(&client, &namespace),
        watcher::Config::default(),
    );
    let store = controller.store();
    controller
        .owns(api::<Deployment>(&client, &namespace), owned.clone())
        .owns(api::<ConfigMap>(&client, &namespace), owned.clone())
        .owns(api::<Service>(&client, &namespace), owned.clone())
        .owns(api::<HorizontalPodAutoscaler>(&client, &namespace), owned.clone())
        .owns(api::<Ingress>(&client, &namespace), owned.clone())
        .owns(api::<NetworkPolicy>(&client, &namespace), owned)
        .watches(
            api::<CachePolicy>(&client, &namespace),
            watcher::Config::default(),
            move |policy| referencing(&policy, store.state().iter().map(|ms| ms.as_ref())),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CachePolicyResourceSpec, MemoryServiceSpec};

    fn ms(namespace: &str, name: &str, policy: Option<&str>) -> MemoryService {
        let spec: MemoryServiceSpec = serde_json::from_value(serde_json::json!({
            "images": {"dataplane": "d", "sidecar": "s"},
            "postgres": {"secretName": "b"}, "redis": {"secretName": "b"},
            "rabbitmq": {"secretName": "b"}, "neo4j": {"secretName": "b"},
            "encryption": {"keks": {"secretName": "k"}, "cacheSealKey": {"secretName": "k"}},
            "sidecar": {"cachePolicyRef": policy},
        }))
        .expect("spec");
        let mut m = MemoryService::new(name, spec);
        m.metadata.namespace = Some(namespace.into());
        m
    }

    #[test]
    fn a_policy_change_reaches_exactly_the_services_that_use_it() {
        let mut policy = CachePolicy::new("fast", CachePolicyResourceSpec::default());
        policy.metadata.namespace = Some("a".into());
        let all = [
            ms("a", "uses-it", Some("fast")),
            ms("a", "other-policy", Some("slow")),
            ms("a", "defaults", None),
            ms("b", "same-name-elsewhere", Some("fast")),
            ms("a", "also-uses-it", Some("fast")),
        ];
        let names: Vec<String> = referencing(&policy, all.iter())
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["uses-it", "also-uses-it"]);
    }
}
