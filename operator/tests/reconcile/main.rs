//! Reconcile tests against an in-memory API server (`fake_api`): the first
//! reconcile adds the finalizer, then children and status are applied; an
//! idle reconcile writes nothing; a CachePolicy change rolls the API pods
//! only; children no longer wanted are deleted; deletion cleans up; API
//! errors are retried with backoff and counted.

mod fake_api;

use fake_api::{Call, FakeApi};
use http::Method;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use pika_operator::controller::{self, Context};
use pika_operator::crd::MemoryService;
use pika_operator::metrics::Metrics;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const MS_PATH: &str = "/apis/pika.stepup.edu.vn/v1alpha1/namespaces/pika/memoryservices/pika";
const POLICY_PATH: &str = "/apis/pika.stepup.edu.vn/v1alpha1/namespaces/pika/cachepolicies/default";

fn example(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    let text = std::fs::read_to_string(path).expect("example");
    serde_yaml::from_str(&text).expect("yaml")
}

struct Setup {
    fake: Arc<FakeApi>,
    ctx: Arc<Context>,
}

fn setup() -> Setup {
    let fake = FakeApi::new();
    fake.insert(MS_PATH, example("memoryservice-gpu.yaml"));
    fake.insert(POLICY_PATH, example("cachepolicy.yaml"));
    let client = fake.client();
    let reporter = Reporter {
        controller: "pika-operator".into(),
        instance: Some("test".into()),
    };
    let ctx = Arc::new(Context::new(
        client,
        Metrics::new().expect("metrics"),
        reporter,
        Duration::from_secs(3600),
    ));
    Setup { fake, ctx }
}

impl Setup {
    fn ms(&self) -> Arc<MemoryService> {
        Arc::new(serde_json::from_value(self.fake.get(MS_PATH).expect("stored")).expect("MemoryService"))
    }

    async fn reconcile(&self) -> Result<Action, pika_operator::Error> {
        tokio::time::timeout(
            Duration::from_secs(10),
            controller::reconcile(self.ms(), self.ctx.clone()),
        )
        .await
        .expect("reconcile finished")
    }

    /// Runs until the finalizer is in place and children are applied.
    async fn converge(&self) {
        self.reconcile().await.expect("finalizer");
        self.reconcile().await.expect("apply");
        self.fake.clear_calls();
    }

    fn writes(&self) -> Vec<Call> {
        self.fake.calls().into_iter().filter(Call::is_write).collect()
    }
}

fn applied(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.method == Method::PATCH && c.content_type.starts_with("application/apply-patch"))
        .map(|c| {
            let segs: Vec<&str> = c.path.split('/').collect();
            let keep = if c.path.ends_with("/status") { 3 } else { 2 };
            segs[segs.len().saturating_sub(keep)..].join("/")
        })
        .collect()
}

fn children_paths(fake: &FakeApi) -> Vec<String> {
    [
        "/api/v1/namespaces/pika/configmaps/",
        "/api/v1/namespaces/pika/services/",
        "/api/v1/namespaces/pika/persistentvolumeclaims/",
        "/apis/apps/v1/namespaces/pika/deployments/",
        "/apis/autoscaling/v2/namespaces/pika/horizontalpodautoscalers/",
        "/apis/policy/v1/namespaces/pika/poddisruptionbudgets/",
        "/apis/networking.k8s.io/v1/namespaces/pika/ingresses/",
        "/apis/networking.k8s.io/v1/namespaces/pika/networkpolicies/",
    ]
    .iter()
    .flat_map(|p| fake.paths_under(p))
    .collect()
}

#[tokio::test]
async fn first_reconcile_adds_the_finalizer_then_applies_children_and_status() {
    let s = setup();
    let action = s.reconcile().await.expect("reconcile");
    assert_eq!(action, Action::await_change());
    let writes = s.writes();
    assert_eq!(writes.len(), 1, "only the finalizer: {writes:?}");
    assert!(writes[0].content_type.starts_with("application/json-patch"));
    assert_eq!(
        s.fake.get(MS_PATH).expect("ms")["metadata"]["finalizers"],
        json!(["pika.stepup.edu.vn/cleanup"])
    );
    assert!(children_paths(&s.fake).is_empty());

    s.fake.clear_calls();
    let action = s.reconcile().await.expect("reconcile");
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(15)),
        "not ready yet: check again soon"
    );
    let applied = applied(&s.writes());
    for want in [
        "configmaps/pika-config",
        "configmaps/pika-milvus",
        "persistentvolumeclaims/pika-milvus",
        "services/pika-api",
        "services/pika-milvus",
        "deployments/pika-api",
        "deployments/pika-worker",
        "deployments/pika-milvus",
        "horizontalpodautoscalers/pika-api",
        "horizontalpodautoscalers/pika-worker",
        "poddisruptionbudgets/pika-api",
        "poddisruptionbudgets/pika-worker",
        "ingresses/pika-api",
        "networkpolicies/pika-api",
        "networkpolicies/pika-worker",
        "networkpolicies/pika-milvus",
    ] {
        assert!(
            applied.iter().any(|a| a == want),
            "{want} not applied; applied: {applied:?}"
        );
    }
    // Every apply uses the one field manager and forces ownership.
    for c in s
        .fake
        .calls()
        .iter()
        .filter(|c| c.content_type.starts_with("application/apply-patch"))
    {
        assert!(c.path.contains("/namespaces/pika/"), "{c:?}");
    }
    assert!(
        applied.iter().any(|a| a.ends_with("memoryservices/pika/status")),
        "{applied:?}"
    );
    let events = s.writes().iter().filter(|c| c.path.contains("/events")).count();
    assert!(events >= 13, "an Event per applied child: {events}");

    let ms = s.fake.get(MS_PATH).expect("ms");
    let st = &ms["status"];
    assert_eq!(st["phase"], "Progressing");
    assert_eq!(st["observedGeneration"], ms["metadata"]["generation"]);
    assert_eq!(st["index"]["type"], "GPU_CAGRA");
    assert_eq!(st["endpoint"], "https://memory.pika.example.com");
    let types: Vec<&str> = st["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| c["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(types, ["Ready", "Progressing", "Degraded"]);
    // Owner references point at the MemoryService.
    let dep = s
        .fake
        .get("/apis/apps/v1/namespaces/pika/deployments/pika-api")
        .expect("deployment");
    assert_eq!(dep["metadata"]["ownerReferences"][0]["kind"], "MemoryService");
    assert_eq!(
        dep["metadata"]["ownerReferences"][0]["uid"],
        ms["metadata"]["uid"]
    );
}

#[tokio::test]
async fn a_second_reconcile_with_nothing_changed_makes_no_writes() {
    let s = setup();
    s.converge().await;
    s.reconcile().await.expect("reconcile");
    assert_eq!(s.writes(), Vec::<Call>::new(), "idle reconcile wrote");
    // It did look: the CachePolicy, the Milvus credentials Secret (by
    // name) and one list per child kind.
    assert_eq!(s.fake.calls().len(), 10, "{:?}", s.fake.calls());
}

#[tokio::test]
async fn pods_becoming_ready_turn_the_phase_ready_with_one_status_write() {
    let s = setup();
    s.converge().await;
    for (name, replicas) in [("pika-api", 3), ("pika-worker", 2), ("pika-milvus", 1)] {
        s.fake.edit(&format!("/apis/apps/v1/namespaces/pika/deployments/{name}"), |d| {
            let generation = d["metadata"]["generation"].clone();
            d["spec"]["replicas"] = json!(replicas);
            d["status"] = json!({"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas});
        });
    }
    let action = s.reconcile().await.expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let ms = s.fake.get(MS_PATH).expect("ms");
    assert_eq!(ms["status"]["phase"], "Ready");
    assert_eq!(ms["status"]["api"]["summary"], "3/3");
    assert_eq!(ms["status"]["workers"]["summary"], "2/2");
    let writes = s.writes();
    let status_writes = writes.iter().filter(|c| c.path.ends_with("/status")).count();
    assert_eq!(status_writes, 1, "{writes:?}");
    assert!(
        writes
            .iter()
            .all(|c| c.path.ends_with("/status") || c.path.contains("/events")),
        "only status and an event: {writes:?}"
    );
}

#[tokio::test]
async fn a_cache_policy_change_rolls_the_api_pods_only() {
    let s = setup();
    s.converge().await;
    let before = s
        .fake
        .get("/apis/apps/v1/namespaces/pika/deployments/pika-api")
        .expect("api");
    let worker_before = s
        .fake
        .get("/apis/apps/v1/namespaces/pika/deployments/pika-worker")
        .expect("worker");
    s.fake
        .edit(POLICY_PATH, |p| p["spec"]["semantic"]["threshold"] = json!(0.97));
    s.reconcile().await.expect("reconcile");
    let applied = applied(&s.writes());
    assert!(
        applied.contains(&"configmaps/pika-config".to_string()),
        "{applied:?}"
    );
    assert!(
        applied.contains(&"deployments/pika-api".to_string()),
        "{applied:?}"
    );
    assert!(
        !applied.contains(&"deployments/pika-worker".to_string()),
        "{applied:?}"
    );
    let after = s
        .fake
        .get("/apis/apps/v1/namespaces/pika/deployments/pika-api")
        .expect("api");
    let hash = |d: &Value| {
        d["spec"]["template"]["metadata"]["annotations"]["pika.stepup.edu.vn/config-hash"].clone()
    };
    assert_ne!(hash(&before), hash(&after), "new pod template: pods roll");
    assert_eq!(
        worker_before,
        s.fake
            .get("/apis/apps/v1/namespaces/pika/deployments/pika-worker")
            .expect("worker")
    );
    let cm = s
        .fake
        .get("/api/v1/namespaces/pika/configmaps/pika-config")
        .expect("cm");
    assert!(
        cm["data"]["cache-policy.json"]
            .as_str()
            .unwrap_or("")
            .contains("0.97")
    );
}

#[tokio::test]
async fn children_no_longer_wanted_are_deleted() {
    let s = setup();
    s.converge().await;
    s.fake.edit(MS_PATH, |m| {
        m["spec"].as_object_mut().expect("spec").remove("ingress");
        m["spec"]["api"]
            .as_object_mut()
            .expect("api")
            .remove("autoscaling");
    });
    s.reconcile().await.expect("reconcile");
    let deletes: Vec<String> = s
        .writes()
        .iter()
        .filter(|c| c.method == Method::DELETE)
        .map(|c| c.path.clone())
        .collect();
    assert_eq!(
        deletes,
        [
            "/apis/autoscaling/v2/namespaces/pika/horizontalpodautoscalers/pika-api",
            "/apis/networking.k8s.io/v1/namespaces/pika/ingresses/pika-api",
        ]
    );
    assert!(
        s.fake
            .get("/apis/autoscaling/v2/namespaces/pika/horizontalpodautoscalers/pika-worker")
            .is_some()
    );
    // Without an HPA the Deployment's replica count is set again.
    let api = s
        .fake
        .get("/apis/apps/v1/namespaces/pika/deployments/pika-api")
        .expect("api");
    assert_eq!(api["spec"]["replicas"], 3);
}

#[tokio::test]
async fn deletion_runs_cleanup_keeps_a_retained_volume_and_removes_the_finalizer() {
    let s = setup();
    s.converge().await;
    s.fake.edit(MS_PATH, |m| {
        m["metadata"]["deletionTimestamp"] = json!("2026-11-21T01:00:00Z")
    });
    let action = s.reconcile().await.expect("cleanup");
    assert_eq!(action, Action::await_change());
    let left = children_paths(&s.fake);
    assert_eq!(
        left,
        ["/api/v1/namespaces/pika/persistentvolumeclaims/pika-milvus"],
        "only the retained volume"
    );
    let pvc = s.fake.get(&left[0]).expect("pvc");
    assert_eq!(
        pvc["metadata"]["ownerReferences"],
        json!([]),
        "released from the MemoryService"
    );
    assert!(s.fake.get(MS_PATH).is_none(), "finalizer removed, object gone");
    let deletes = s.writes().iter().filter(|c| c.method == Method::DELETE).count();
    assert_eq!(deletes, 15, "12 objects and 3 network policies");
    // The retained volume keeps the root password it was initialised with.
    let secret = s
        .fake
        .get(MILVUS_AUTH_PATH)
        .expect("credentials kept with the volume");
    assert_eq!(secret["metadata"]["ownerReferences"], json!([]), "released");
}

const MILVUS_AUTH_PATH: &str = "/api/v1/namespaces/pika/secrets/pika-milvus-auth";

#[tokio::test]
async fn the_milvus_credentials_are_generated_once_and_never_rewritten() {
    let s = setup();
    s.converge().await;
    let secret = s.fake.get(MILVUS_AUTH_PATH).expect("generated Secret");
    let data = &secret["stringData"];
    let password = data["password"].as_str().expect("password").to_string();
    assert_eq!(password.len(), 32);
    assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(data["token"], format!("root:{password}"));
    assert!(
        secret["metadata"]["ownerReferences"][0]["uid"].is_string(),
        "owned: {secret}"
    );

    // Later reconciles (even full applies) leave it alone.
    s.reconcile().await.expect("again");
    assert!(
        !s.writes().iter().any(|c| c.path.contains("/secrets")),
        "the Secret was written again: {:?}",
        s.writes()
    );
    assert_eq!(
        s.fake.get(MILVUS_AUTH_PATH).expect("kept")["stringData"]["password"],
        password
    );
}

#[tokio::test]
async fn api_errors_are_requeued_with_backoff_and_counted() {
    let s = setup();
    s.converge().await;
    s.fake
        .edit(POLICY_PATH, |p| p["spec"]["l0"]["maxEntries"] = json!(30000));
    s.fake.fail(Method::PATCH, "/deployments/pika-api", 500, 2);
    let mut delays = Vec::new();
    for _ in 0..2 {
        let err = s.reconcile().await.expect_err("API error surfaces");
        assert_eq!(err.metric_label(), "api_error", "{err}");
        delays.push(controller::error_policy(s.ms(), &err, s.ctx.clone()));
    }
    assert_eq!(
        delays,
        [
            Action::requeue(Duration::from_secs(5)),
            Action::requeue(Duration::from_secs(10))
        ]
    );
    let failures = s.ctx.metrics.failures.with_label_values(&["api_error"]).get();
    assert_eq!(failures, 2);
    // The retry succeeds and resets the backoff.
    s.reconcile().await.expect("recovered");
    let err = pika_operator::Error::NotNamespaced;
    assert_eq!(
        controller::error_policy(s.ms(), &err, s.ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert!(
        s.ctx
            .metrics
            .render()
            .contains("pika_operator_reconcile_failures_total{reason=\"api_error\"} 2")
    );
}

#[tokio::test]
async fn a_missing_cache_policy_is_reported_not_retried_in_a_loop() {
    let s = setup();
    s.converge().await;
    s.fake.edit(MS_PATH, |m| {
        m["spec"]["sidecar"]["cachePolicyRef"] = json!("nope")
    });
    let action = s.reconcile().await.expect("reported, not an error");
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    let ms = s.fake.get(MS_PATH).expect("ms");
    assert_eq!(ms["status"]["phase"], "Failed");
    assert!(
        ms["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("CachePolicy nope not found")
    );
}
