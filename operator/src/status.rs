//! Status as a pure function of what was rendered and what the cluster shows.
//!
//! Phases: `Pending` (nothing observed yet), `Progressing` (pods starting or
//! a rollout under way), `Ready` (every component at its desired count on the
//! current template), `Degraded` (a settled component below its desired
//! count), `Failed` (the spec cannot be rendered; see the Ready condition).
//! A condition keeps its `lastTransitionTime` while its status is unchanged,
//! so an idle MemoryService computes the same status every time and the
//! controller writes nothing.

use crate::crd::{IndexStatus, MemoryService, MemoryServiceStatus, ReplicaCounts};
use crate::render::Desired;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// One Deployment's rollout as the cluster reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rollout {
    pub desired: i32,
    pub ready: i32,
    /// The controller has seen the current template and every pod runs it.
    pub settled: bool,
    pub exists: bool,
}

impl Rollout {
    pub fn of(d: Option<&Deployment>) -> Rollout {
        let Some(d) = d else { return Rollout::default() };
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let st = d.status.clone().unwrap_or_default();
        let seen = st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
        let updated = st.updated_replicas.unwrap_or(0);
        let total = st.replicas.unwrap_or(0);
        Rollout {
            desired,
            ready: st.ready_replicas.unwrap_or(0),
            settled: seen && updated >= desired && total == updated,
            exists: true,
        }
    }

    fn complete(&self) -> bool {
        self.exists && self.settled && self.ready >= self.desired
    }
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let status = if ok { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// Which of the three standard conditions hold.
struct Flags {
    ready: bool,
    progressing: bool,
    degraded: bool,
}

/// Ready, Progressing and Degraded, in that order, sharing reason and message.
fn conditions(
    f: Flags,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    [
        (READY, f.ready),
        (PROGRESSING, f.progressing),
        (DEGRADED, f.degraded),
    ]
    .into_iter()
    .map(|(type_, ok)| condition(type_, ok, reason, message.to_string(), generation, previous, now))
    .collect()
}

/// The status after a successful render and apply.
pub fn compute(
    ms: &MemoryService,
    desired: &Desired,
    observed: &[Deployment],
    now: Time,
) -> MemoryServiceStatus {
    let name = ms.name_any();
    let find = |suffix: &str| {
        let n = format!("{name}-{suffix}");
        observed
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(n.as_str()))
    };
    let api = Rollout::of(find("api"));
    let worker = Rollout::of(find("worker"));
    let managed_milvus = desired
        .deployments
        .iter()
        .any(|d| d.metadata.name.as_deref() == Some(format!("{name}-milvus").as_str()));
    let milvus = managed_milvus.then(|| Rollout::of(find("milvus")));
    let parts = [("api", api), ("worker", worker)]
        .into_iter()
        .chain(milvus.map(|m| ("milvus", m)))
        .collect::<Vec<_>>();

    let lagging: Vec<String> = parts
        .iter()
        .filter(|(_, r)| !r.complete())
        .map(|(n, r)| format!("{n} {}/{}", r.ready, r.desired))
        .collect();
    let rolling = parts.iter().any(|(_, r)| !r.exists || !r.settled);
    let (phase, reason, message) = if !parts.iter().any(|(_, r)| r.exists) {
        ("Pending", "Creating", "children are being created".to_string())
    } else if lagging.is_empty() {
        ("Ready", "AllReady", "all components ready".to_string())
    } else if rolling {
        (
            "Progressing",
            "RollingOut",
            format!("waiting for {}", lagging.join(", ")),
        )
    } else {
        (
            "Degraded",
            "PodsUnavailable",
            format!("below desired: {}", lagging.join(", ")),
        )
    };
    let generation = ms.metadata.generation;
    let previous = ms.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let flags = Flags {
        ready: phase == "Ready",
        progressing: phase == "Progressing" || phase == "Pending",
        degraded: phase == "Degraded",
    };
    let conditions = conditions(flags, reason, &message, generation, previous, &now);
    MemoryServiceStatus {
        observed_generation: generation,
        phase: phase.to_string(),
        conditions,
        api: ReplicaCounts::new(api.ready, api.desired),
        workers: ReplicaCounts::new(worker.ready, worker.desired),
        index: desired.index.as_ref().map(|p| IndexStatus {
            type_: p.kind.milvus_name().to_string(),
            params: p.params.clone(),
        }),
        endpoint: Some(desired.endpoint.clone()),
        config_hash: Some(desired.config_hash.clone()),
    }
}

/// The status when the spec cannot be turned into objects (or a referenced
/// CachePolicy is missing): the last good counts stay, the phase says why.
pub fn failed(ms: &MemoryService, reason: &str, message: String, now: Time) -> MemoryServiceStatus {
    let mut status = ms.status.clone().unwrap_or_default();
    let generation = ms.metadata.generation;
    let previous = status.conditions.clone();
    status.observed_generation = generation;
    status.phase = "Failed".into();
    let flags = Flags {
        ready: false,
        progressing: false,
        degraded: true,
    };
    status.conditions = conditions(flags, reason, &message, generation, &previous, &now);
    status
}
