//! The operator on a real cluster: apply the examples, wait for Ready, read
//! `kubectl get memoryservices`, change the CachePolicy and watch the API
//! pods roll, delete and watch the children go. Ignored by default; run by
//! `e2e/run.sh` against the kind cluster it creates.

use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, ListParams};
use pika_operator::crd::MemoryService;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const NS: &str = "pika";
const NAME: &str = "pika-e2e";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kubectl(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("kubectl").args(args).current_dir(root()).output()?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(true) => {
                println!("{what}: after {:.0?}", started.elapsed());
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => println!("{what}: {e}"),
        }
        anyhow::ensure!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

fn template_hash(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("pika.stepup.edu.vn/config-hash")
        .cloned()
}

fn rolled_out(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && st.updated_replicas.unwrap_or(0) == want
        && st.ready_replicas.unwrap_or(0) == want
        && st.replicas.unwrap_or(0) == want
}

#[tokio::test]
#[ignore = "needs a kind cluster with the chart installed: bash e2e/run.sh"]
async fn memory_service_lifecycle_on_kind() -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let services: Api<MemoryService> = Api::namespaced(client.clone(), NS);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);

    kubectl(&["apply", "-f", "examples/cachepolicy.yaml"])?;
    kubectl(&["apply", "-f", "e2e/manifests/memoryservice.yaml"])?;
    wait_until("MemoryService Ready", Duration::from_secs(900), || async {
        let ms = services.get(NAME).await?;
        let phase = ms.status.as_ref().map(|s| s.phase.clone()).unwrap_or_default();
        Ok(phase == "Ready")
    })
    .await?;

    let table = kubectl(&["get", "memoryservices", "-n", NS])?;
    println!("{table}");
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "API", "WORKERS", "INDEX", "ENDPOINT", "AGE"]
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert_eq!(&row[..5], [NAME, "Ready", "1/1", "1/1", "HNSW"]);
    assert_eq!(row[5], "http://pika-e2e-api.pika.svc:8080");
    let short = kubectl(&["get", "msvc", "-n", NS, "-o", "name"])?;
    assert_eq!(short.trim(), "memoryservice.pika.stepup.edu.vn/pika-e2e");

    // A policy change rolls the API pods (new template hash, new pods ready).
    let before = template_hash(&deployments.get("pika-e2e-api").await?);
    kubectl(&[
        "patch",
        "cachepolicy",
        "default",
        "-n",
        NS,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"semantic":{"threshold":0.97}}}"#,
    ])?;
    wait_until(
        "API pods rolled to the new policy",
        Duration::from_secs(300),
        || async {
            let d = deployments.get("pika-e2e-api").await?;
            Ok(template_hash(&d) != before && rolled_out(&d))
        },
    )
    .await?;
    let worker = deployments.get("pika-e2e-worker").await?;
    assert!(rolled_out(&worker), "workers untouched and ready");
    let cm = kubectl(&[
        "get",
        "configmap",
        "pika-e2e-config",
        "-n",
        NS,
        "-o",
        "jsonpath={.data.cache-policy\\.json}",
    ])?;
    assert!(cm.contains("0.97"), "{cm}");
    let events = kubectl(&[
        "get",
        "events",
        "-n",
        NS,
        "--field-selector",
        "regarding.name=pika-e2e",
        "-o",
        "name",
    ]);
    println!("events: {events:?}");

    // Deleting the MemoryService removes everything it made.
    kubectl(&[
        "delete",
        "memoryservice",
        NAME,
        "-n",
        NS,
        "--wait=true",
        "--timeout=180s",
    ])?;
    let selector = format!("app.kubernetes.io/instance={NAME},app.kubernetes.io/managed-by=pika-operator");
    wait_until("children deleted", Duration::from_secs(180), || async {
        let left = deployments.list(&ListParams::default().labels(&selector)).await?;
        let cms = kubectl(&[
            "get",
            "configmaps,services,pvc,pdb",
            "-n",
            NS,
            "-l",
            &selector,
            "-o",
            "name",
        ])?;
        Ok(left.items.is_empty() && cms.trim().is_empty())
    })
    .await?;
    Ok(())
}
