//! The chart's alerting rules and dashboard (charts/pika-operator/files):
//! promtool parses the rules and runs their unit tests, and every metric the
//! rules and the dashboard name is one a running dataplane or sidecar
//! exports (a renamed metric would otherwise silence an alert for good).

use pika_dataplane::config::Config;
use pika_sidecar::config::SidecarConfig;
use pika_tests::support::{have_model, model_dir};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn files() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/pika-operator/files")
}

/// `PIKA_PROMTOOL`, or `promtool` on the PATH (scripts/promtool.sh installs it).
fn promtool() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PIKA_PROMTOOL") {
        return Some(PathBuf::from(p));
    }
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    found.then(|| PathBuf::from("promtool"))
}

/// Metric names in a PromQL expression: identifiers followed by a selector
/// (`name{`); the rules and dashboard write every metric that way.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_alphabetic() || chars[i] == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            // Inside a quoted label value nothing counts; those never precede `{`.
            if chars.get(i) == Some(&'{') {
                names.push(chars[start..i].iter().collect());
            }
        } else if chars[i] == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    names
}

/// The family a sample name belongs to (histograms export `_bucket` etc.).
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

fn rule_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(files().join("alerts.yaml")).expect("alerts.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            out.push(rule["expr"].as_str().expect("expr").to_string());
            let url = rule["annotations"]["runbook_url"].as_str().expect("runbook_url");
            let anchor = url
                .split_once("docs/OPERATIONS.md#")
                .expect("runbook in OPERATIONS.md")
                .1;
            let alert = rule["alert"].as_str().expect("alert name");
            assert_eq!(
                anchor,
                alert.to_lowercase(),
                "{alert}: its runbook anchor is its name"
            );
        }
    }
    out
}

fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(files().join("dashboard.json")).expect("dashboard.json");
    let doc: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    doc["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("expr").to_string())
        .collect()
}

#[test]
fn every_alert_has_a_runbook_section() {
    let ops = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/OPERATIONS.md"))
        .expect("OPERATIONS.md");
    let text = std::fs::read_to_string(files().join("alerts.yaml")).expect("alerts.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let alert = rule["alert"].as_str().expect("alert");
            // A heading `### PikaSomething` renders the anchor `#pikasomething`.
            assert!(
                ops.lines().any(|l| l.trim() == format!("### {alert}")),
                "docs/OPERATIONS.md has no `### {alert}` runbook"
            );
        }
    }
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    let Some(promtool) = promtool() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing (scripts/promtool.sh installs it)"
        );
        println!("skipped: promtool not installed (scripts/promtool.sh)");
        return;
    };
    for args in [
        ["check", "rules", "alerts.yaml"],
        ["test", "rules", "alerts_test.yaml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(files())
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

async fn exported(base: &str, into: &mut BTreeSet<String>) {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            into.insert(rest.split_whitespace().next().unwrap_or_default().to_string());
        }
    }
}

#[tokio::test]
async fn every_metric_the_alerts_and_dashboard_name_is_exported() {
    if !have_model() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.storage.data_dir = dir.path().to_path_buf();
    config.embedding.model_dir = model_dir();
    // A remote dependency, so dependency latencies are recorded.
    let Some(redis) = pika_tests::support::server_url("PIKA_TEST_REDIS_URL") else {
        return;
    };
    config.cache.redis_url = pika_dataplane::config::Secret::new(redis);
    let running = pika_dataplane::app::start(config).await.expect("dataplane");
    let key = running.bootstrap_admin_key.clone().expect("admin key");
    let dataplane = format!("http://{}", running.addr);
    let mut sidecar_config = SidecarConfig {
        listen: "127.0.0.1:0".into(),
        upstream: dataplane.clone(),
        ..Default::default()
    };
    sidecar_config.embedding.model_dir = model_dir();
    let sidecar = pika_sidecar::start(sidecar_config, Default::default())
        .await
        .expect("sidecar");
    let sidecar_base = format!("http://{}", sidecar.addr);
    // One of each kind of traffic, so labelled series exist.
    let http = reqwest::Client::new();
    let extract = json!({"user_id": "kid", "conversation_id": "c1", "conversation": [
        {"role": "assistant", "content": "Pets?"}, {"role": "user", "content": "I have a cat named Miu."}]});
    let r = http
        .post(format!("{sidecar_base}/v1/extract_facts?wait=true"))
        .bearer_auth(&key)
        .json(&extract)
        .send()
        .await
        .expect("extract");
    assert!(r.status().is_success(), "{}", r.status());
    for _ in 0..2 {
        let r = http
            .post(format!("{sidecar_base}/v1/search_facts"))
            .bearer_auth(&key)
            .json(&json!({"user_id": "kid", "query": "cat"}))
            .send()
            .await
            .expect("search");
        assert!(r.status().is_success());
    }
    for base in [&dataplane, &sidecar_base] {
        let _ = http.get(format!("{base}/health")).send().await;
    }
    let mut names = BTreeSet::new();
    exported(&dataplane, &mut names).await;
    exported(&sidecar_base, &mut names).await;
    let named: BTreeSet<String> = rule_exprs()
        .iter()
        .chain(dashboard_exprs().iter())
        .flat_map(|e| metric_names(e))
        .collect();
    assert!(named.len() >= 12, "found only {named:?}");
    let missing: Vec<&String> = named.iter().filter(|n| !names.contains(family(n))).collect();
    assert!(
        missing.is_empty(),
        "named but not exported: {missing:?}\nexported: {names:?}"
    );
    sidecar.stop().await;
    running.shutdown().await;
}

#[test]
fn metric_names_are_found_and_label_values_are_not() {
    let names =
        metric_names(r#"sum(rate(http_requests_total{status=~"5..", x="a{b"}[5m])) / max(queue_depth{})"#);
    assert_eq!(names, ["http_requests_total", "queue_depth"]);
}
