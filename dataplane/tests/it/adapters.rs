//! One adapter suite (same test bodies) run against every backend of a port:
//! the embedded default and the production server.
//!
//! Over 400 lines on purpose: the shared suite is the contract of every port,
//! one section per port, and each section is run against every backend.

use crate::backends::{server_url, unique};
use chrono::Utc;
use pika_common::signals::{INVALIDATE_CHANNEL, generation_key};
use pika_common::wire::{Category, ExtractRequest, ExtractResult, JobState, Message, Role};
use pika_dataplane::domain::{
    ApiKeyRecord, AuditEntry, Consent, ConsentState, ExtractionPlan, Fact, FactStatus, HistoryEntry,
    HistoryEvent, JobFilter, MemoryKind, Permission, Polarity, RepairOp, Tenant,
};
use std::time::Duration;

/// The lease every claim of the suite takes.
const LEASE: Duration = Duration::from_secs(30);
use pika_dataplane::ports::{
    CacheSignals, Delivery, FactGraph, JobQueue, MetaStore, NewJob, StoreError, VectorIndex,
};
use pika_dataplane::queue::{EmbeddedQueue, RabbitMqOptions, RabbitMqQueue};
use pika_dataplane::store::{
    FalkorGraph, IndexSpec, LocalSignals, MilvusIndex, MilvusOptions, Neo4jGraph, Neo4jOptions,
    PostgresMetaStore, RedisSignals, SqliteGraph, SqliteMetaStore, SqliteVectorIndex,
};

fn request(user: &str, conv: &str) -> ExtractRequest {
    ExtractRequest {
        user_id: user.into(),
        conversation_id: conv.into(),
        conversation: vec![
            Message {
                role: Role::Assistant,
                content: "Hi".into(),
            },
            Message {
                role: Role::User,
                content: "I have a cat; DROP TABLE facts; --".into(),
            },
        ],
        metadata: None,
        occurred_at: None,
        user_name: None,
        store_as_given: false,
        scope: None,
    }
}

fn fact(id: &str, user: &str, content: &str, tags: &[&str]) -> Fact {
    let now = Utc::now();
    Fact {
        fact_id: id.into(),
        user_id: user.into(),
        conversation_id: "c1".into(),
        kind: MemoryKind::Fact,
        content: content.into(),
        context: None,
        occurred_at: None,
        said_at: None,
        category: Category::Relationship,
        confidence: 0.8,
        entities: vec!["cat".into()],
        tags: tags.iter().map(|t| t.to_string()).collect(),
        source_turns: vec![1],
        language: "en".into(),
        status: FactStatus::Active,
        polarity: Polarity::Positive,
        predicate: Some("own".into()),
        supersedes: None,
        created_at: now,
        updated_at: now,
        accessed_count: 0,
        last_accessed_at: None,
        attrs: None,
    }
}

fn history(fact_id: &str, event: HistoryEvent, new: &str) -> HistoryEntry {
    HistoryEntry {
        fact_id: fact_id.into(),
        event,
        old_content: None,
        new_content: Some(new.into()),
        related_fact_id: None,
        job_id: Some("job".into()),
        created_at: Utc::now(),
    }
}

/// The metadata-store contract.
async fn meta_suite(meta: &dyn MetaStore) {
    meta.ping().await.expect("ping");

    // Jobs: idempotent create, one claim, retry and final failure.
    let new = |id: &str, key: &str| NewJob {
        job_id: id.into(),
        idempotency_key: key.into(),
        request: request("u1", "c1"),
    };
    let (job, created) = meta.create_job(new("j1", "k1")).await.expect("create");
    assert!(created);
    assert_eq!((job.state, job.attempts), (JobState::Queued, 0));
    assert_eq!(job.request, request("u1", "c1"), "stored exactly as given");
    let (again, created) = meta.create_job(new("j1-dup", "k1")).await.expect("create again");
    assert!(!created);
    assert_eq!(again.job_id, "j1");
    assert_eq!(
        meta.queued_job_ids(10).await.expect("queued"),
        vec!["j1".to_string()]
    );
    let (claim, claimed) = meta
        .claim_job("j1", false, LEASE)
        .await
        .expect("claim")
        .expect("claimable");
    assert_eq!((claimed.state, claimed.attempts), (JobState::Processing, 1));
    assert!(
        meta.claim_job("j1", false, LEASE).await.expect("claim").is_none(),
        "claimed once"
    );
    assert!(
        meta.claim_job("missing", false, LEASE)
            .await
            .expect("claim")
            .is_none()
    );
    // A redelivery (the holder died) may take a processing job over; the old claim is then void.
    let (taken, _) = meta
        .claim_job("j1", true, LEASE)
        .await
        .expect("claim")
        .expect("take over");
    assert!(matches!(
        meta.fail_job(&claim, "old holder", true).await,
        Err(StoreError::ClaimLost)
    ));
    let claim = taken;
    meta.fail_job(&claim, "transient", true).await.expect("retry");
    assert_eq!(
        meta.get_job("j1").await.expect("get").expect("job").state,
        JobState::Queued
    );
    assert!(matches!(
        meta.fail_job(&claim, "stale", false).await,
        Err(StoreError::ClaimLost)
    ));
    let (claim, _) = meta
        .claim_job("j1", false, LEASE)
        .await
        .expect("claim")
        .expect("claimable");
    assert_eq!(meta.requeue_processing().await.expect("requeue"), 1);
    assert!(matches!(
        meta.complete_job(&claim, &ExtractionPlan::default()).await,
        Err(StoreError::ClaimLost)
    ));

    // Completion writes facts, history and result in one go.
    let (claim, _) = meta
        .claim_job("j1", false, LEASE)
        .await
        .expect("claim")
        .expect("claimable");
    let cat = fact(
        "0190a000-0000-7000-8000-000000000001",
        "u1",
        "The child has a cat named Miu.",
        &["cat", "pet", "thú cưng"],
    );
    let plan = ExtractionPlan {
        new_facts: vec![cat.clone()],
        history: vec![history(&cat.fact_id, HistoryEvent::Add, &cat.content)],
        result: ExtractResult {
            facts_count: 1,
            fact_ids: vec![cat.fact_id.clone()],
            processing_time_ms: 3,
            added: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    meta.complete_job(&claim, &plan).await.expect("complete");
    let done = meta.get_job("j1").await.expect("get").expect("job");
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.result.as_ref().map(|r| r.added), Some(1));
    let stored = meta.get_fact(&cat.fact_id).await.expect("get").expect("fact");
    assert_eq!(stored.content, cat.content);
    assert_eq!(stored.tags, cat.tags);
    assert_eq!(stored.source_turns, vec![1]);
    assert_eq!(
        stored.created_at.timestamp_millis(),
        cat.created_at.timestamp_millis()
    );

    // Keyword candidates: folded terms, one user only.
    let (j2, _) = meta
        .create_job(NewJob {
            job_id: "j2".into(),
            idempotency_key: "k2".into(),
            request: request("u2", "c2"),
        })
        .await
        .expect("create");
    let (claim2, _) = meta
        .claim_job(&j2.job_id, false, LEASE)
        .await
        .expect("claim")
        .expect("claimable");
    let other = fact(
        "0190a000-0000-7000-8000-000000000002",
        "u2",
        "The child has a cat too.",
        &["cat", "thú cưng"],
    );
    meta.complete_job(
        &claim2,
        &ExtractionPlan {
            new_facts: vec![other.clone()],
            ..Default::default()
        },
    )
    .await
    .expect("complete");
    let hits = meta
        .keyword_candidates("u1", &["thu".into(), "cung".into()], 10)
        .await
        .expect("keyword");
    assert_eq!(
        hits.items.iter().map(|i| i.fact_id.as_str()).collect::<Vec<_>>(),
        vec![cat.fact_id.as_str()]
    );
    // What BM25 needs: each match's index terms (with repeats) and the user's statistics.
    assert_eq!(hits.items[0].terms, cat.index_terms());
    assert_eq!(hits.total_items, 1, "u1's active items");
    assert!(hits.mean_terms > 0.0);
    assert!(
        meta.keyword_candidates("u1", &["dog".into()], 10)
            .await
            .expect("keyword")
            .items
            .is_empty()
    );
    assert_eq!(
        meta.active_facts(&[cat.fact_id.clone(), other.fact_id.clone(), "nope".into()])
            .await
            .expect("batch")
            .len(),
        2
    );

    // Supersede, refresh, access counters, history.
    let (j3, _) = meta
        .create_job(NewJob {
            job_id: "j3".into(),
            idempotency_key: "k3".into(),
            request: request("u1", "c3"),
        })
        .await
        .expect("create");
    let (claim3, _) = meta
        .claim_job(&j3.job_id, false, LEASE)
        .await
        .expect("claim")
        .expect("claimable");
    let mut no_cat = fact(
        "0190a000-0000-7000-8000-000000000003",
        "u1",
        "The child no longer has a cat.",
        &["cat"],
    );
    no_cat.polarity = Polarity::Negative;
    no_cat.supersedes = Some(cat.fact_id.clone());
    let plan = ExtractionPlan {
        new_facts: vec![no_cat.clone()],
        superseded: vec![(cat.fact_id.clone(), no_cat.fact_id.clone())],
        history: vec![
            history(&cat.fact_id, HistoryEvent::Update, &no_cat.content),
            history(&no_cat.fact_id, HistoryEvent::Update, &no_cat.content),
        ],
        ..Default::default()
    };
    meta.complete_job(&claim3, &plan).await.expect("complete");
    assert_eq!(
        meta.get_fact(&cat.fact_id)
            .await
            .expect("get")
            .expect("fact")
            .status,
        FactStatus::Superseded
    );
    let events: Vec<HistoryEvent> = meta
        .fact_history(&cat.fact_id)
        .await
        .expect("history")
        .iter()
        .map(|h| h.event)
        .collect();
    assert_eq!(events, vec![HistoryEvent::Add, HistoryEvent::Update]);
    assert_eq!(meta.user_history("u1").await.expect("history").len(), 3);
    let page = meta.list_facts("u1", None, 10, None).await.expect("list");
    assert_eq!(
        page.facts.iter().map(|f| f.fact_id.as_str()).collect::<Vec<_>>(),
        vec![no_cat.fact_id.as_str()]
    );
    assert!(page.next_cursor.is_none());
    meta.record_access(&[no_cat.fact_id.clone()])
        .await
        .expect("access");
    let accessed = meta.get_fact(&no_cat.fact_id).await.expect("get").expect("fact");
    assert_eq!(accessed.accessed_count, 1);
    assert!(accessed.last_accessed_at.is_some());
    let scanned = meta.scan_active_facts(None, 10).await.expect("scan");
    assert_eq!(scanned.len(), 2);
    assert_eq!(
        meta.scan_active_facts(Some(&scanned[0].fact_id), 10)
            .await
            .expect("scan")
            .len(),
        1
    );

    // Delete one fact, then the whole user.
    assert!(meta.delete_fact(&no_cat.fact_id).await.expect("delete"));
    assert!(!meta.delete_fact(&no_cat.fact_id).await.expect("delete twice"));
    // Its text is gone everywhere; its history says it existed, not what it said.
    let gone = meta
        .get_fact(&no_cat.fact_id)
        .await
        .expect("get")
        .expect("row kept");
    assert_eq!((gone.status, gone.content.as_str()), (FactStatus::Deleted, ""));
    let history = meta.fact_history(&no_cat.fact_id).await.expect("history");
    assert!(
        history.iter().any(|h| h.event == HistoryEvent::Delete),
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .all(|h| h.old_content.is_none() && h.new_content.is_none()),
        "{history:?}"
    );
    assert!(
        meta.keyword_candidates("u1", &["cat".into()], 10)
            .await
            .expect("keyword")
            .items
            .is_empty()
    );
    let facts = meta.export_items("u1", None, 100).await.expect("export");
    let jobs = meta.export_jobs("u1", None, 100).await.expect("export");
    assert_eq!((facts.len(), jobs.len()), (2, 2));
    // Paged: one at a time, in id order, nothing twice.
    let first = meta.export_items("u1", None, 1).await.expect("page");
    let second = meta
        .export_items("u1", Some(&first[0].fact_id), 1)
        .await
        .expect("page");
    assert_eq!(second.len(), 1);
    assert!(second[0].fact_id > first[0].fact_id);
    let ids: Vec<String> = facts.iter().map(|f| f.fact_id.clone()).collect();
    let hist = meta.history_of(&ids).await.expect("history");
    assert_eq!(hist.len(), meta.user_history("u1").await.expect("history").len());
    let before = Utc::now();
    assert!(!meta.erased_since("erased:u1", before).await.expect("tombstone"));
    meta.record_erasure("erased:u1", before).await.expect("tombstone");
    assert!(meta.erased_since("erased:u1", before).await.expect("tombstone"));
    assert!(
        !meta
            .erased_since("erased:u1", before + chrono::Duration::seconds(1))
            .await
            .expect("tombstone"),
        "a job accepted after the erasure is not affected"
    );
    meta.append_audit(&[AuditEntry {
        key_id: None,
        action: "search".into(),
        user_id: Some("u1".into()),
        target: None,
        request_id: "r0".into(),
    }])
    .await
    .expect("audit");
    let audit = meta.audit_of("u1", 0, 10).await.expect("audit of");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].entry.action, "search");
    assert!(
        meta.audit_of("u1", audit[0].id, 10)
            .await
            .expect("audit of")
            .is_empty()
    );
    let erased = meta.delete_user("u1", "erased:u1").await.expect("forget");
    assert_eq!(
        (erased.facts + erased.episodes, erased.jobs),
        (2, 2),
        "{erased:?}"
    );
    assert_eq!(erased.audit_pseudonymised, 1, "{erased:?}");
    assert!(
        meta.export_items("u1", None, 100)
            .await
            .expect("export")
            .is_empty()
    );
    assert!(
        meta.export_jobs("u1", None, 100)
            .await
            .expect("export")
            .is_empty()
    );
    assert!(meta.user_history("u1").await.expect("history").is_empty());
    assert!(
        meta.audit_of("u1", 0, 10).await.expect("audit of").is_empty(),
        "pseudonymised"
    );
    assert_eq!(
        meta.active_facts(std::slice::from_ref(&other.fact_id))
            .await
            .expect("batch")
            .len(),
        1,
        "other users untouched"
    );

    // Tenants, keys and audit.
    let tenants = meta.list_tenants().await.expect("tenants");
    assert_eq!(tenants.len(), 1, "the migration creates the default tenant");
    assert_eq!(tenants[0].tenant_id, "default");
    let fleet = Tenant {
        tenant_id: "fleet-a".into(),
        name: "Fleet A".into(),
        created_at: Utc::now(),
        require_consent: true,
        retention_days: 30,
    };
    assert!(meta.insert_tenant(&fleet).await.expect("tenant"));
    assert!(!meta.insert_tenant(&fleet).await.expect("tenant again"), "exists");
    assert_eq!(
        meta.tenant("fleet-a").await.expect("get").expect("tenant").name,
        "Fleet A"
    );
    assert!(meta.tenant("nope").await.expect("get").is_none());
    assert!(
        meta.tenant("fleet-a")
            .await
            .expect("get")
            .expect("tenant")
            .require_consent
    );
    assert!(meta.set_require_consent("fleet-a", false).await.expect("set"));
    assert_eq!(
        meta.tenant("fleet-a")
            .await
            .expect("get")
            .expect("tenant")
            .retention_days,
        30
    );
    assert!(meta.set_retention_days("fleet-a", 7).await.expect("set"));
    assert_eq!(
        meta.tenant("fleet-a")
            .await
            .expect("get")
            .expect("tenant")
            .retention_days,
        7
    );
    assert!(!meta.set_require_consent("nope", true).await.expect("set"));
    assert!(meta.consent("erased:x").await.expect("consent").is_none());
    let c = Consent {
        state: ConsentState::Withdrawn,
        set_by: Some("key_1".into()),
        set_at: Utc::now(),
    };
    meta.set_consent("erased:x", &c).await.expect("set consent");
    let got = meta
        .consent("erased:x")
        .await
        .expect("consent")
        .expect("recorded");
    assert_eq!((got.state, got.set_by), (ConsentState::Withdrawn, c.set_by));
    let device = ApiKeyRecord {
        key_id: "key_dev".into(),
        tenant_id: "fleet-a".into(),
        users: Some(vec!["kid1".into(), "kid2".into()]),
        name: "robot 7".into(),
        prefix: "pika_test_sk_cd…".into(),
        permissions: vec![Permission::Search],
        created_at: Utc::now(),
        expires_at: None,
        revoked_at: None,
    };
    meta.insert_key(&device, "hash-dev")
        .await
        .expect("insert device key");
    let found = meta.key_by_hash("hash-dev").await.expect("lookup").expect("key");
    assert_eq!(
        (found.tenant_id.as_str(), found.users.clone()),
        ("fleet-a", device.users.clone())
    );
    let key = ApiKeyRecord {
        key_id: "key_1".into(),
        tenant_id: "default".into(),
        users: None,
        name: "robot".into(),
        prefix: "pika_test_sk_ab…".into(),
        permissions: vec![Permission::Extract, Permission::Search],
        created_at: Utc::now(),
        expires_at: None,
        revoked_at: None,
    };
    meta.insert_key(&key, "hash-1").await.expect("insert key");
    assert!(matches!(
        meta.insert_key(&key, "hash-1").await,
        Err(StoreError::Conflict(_))
    ));
    let found = meta.key_by_hash("hash-1").await.expect("lookup").expect("key");
    assert_eq!(found.permissions, key.permissions);
    assert_eq!((found.tenant_id.as_str(), found.users), ("default", None));
    assert!(meta.key_by_hash("hash-2").await.expect("lookup").is_none());
    assert!(meta.revoke_key("key_1").await.expect("revoke"));
    assert!(!meta.revoke_key("key_404").await.expect("revoke"));
    let listed = meta.list_keys().await.expect("list");
    assert!(
        listed
            .iter()
            .find(|k| k.key_id == "key_1")
            .expect("key_1")
            .revoked_at
            .is_some()
    );
    let entry = AuditEntry {
        key_id: Some("key_1".into()),
        action: "search".into(),
        user_id: Some("u2".into()),
        target: None,
        request_id: "r1".into(),
    };
    meta.append_audit(&[entry.clone(), entry]).await.expect("audit");
    meta.append_audit(&[]).await.expect("empty audit");

    episodes_names_and_retired_facts(meta).await;
    imports_and_rewrites(meta).await;
}

/// Episodes keep their kind, context and dates; names are kept per user;
/// a retired fact (`Decision::Delete`) leaves keyword search, its history stays.
/// Memories written without a job (Mem0 imports and updates): ids kept,
/// attributes stored, a second import inserts nothing, a rewrite keeps the
/// id and changes what search and keyword lookups see; users per tenant.
async fn imports_and_rewrites(meta: &dyn MetaStore) {
    let attrs = pika_common::wire::MemoryAttrs {
        metadata: Some(serde_json::json!({"source": "mem0", "n": 1})),
        scope: pika_common::wire::MemoryScope {
            agent_id: Some("pika".into()),
            ..Default::default()
        },
    };
    let mut a = fact("imp-a", "acme/imp-kid", "Likes dinosaurs a lot", &[]);
    a.attrs = Some(attrs.clone());
    let b = fact("imp-b", "acme/imp-kid", "Has a red kite", &[]);
    let plan = ExtractionPlan {
        user_id: "acme/imp-kid".into(),
        new_facts: vec![a.clone(), b.clone()],
        history: vec![history("imp-a", HistoryEvent::Add, "Likes dinosaurs a lot")],
        ..ExtractionPlan::default()
    };
    assert_eq!(meta.import_facts(&plan).await.expect("import"), 2);
    assert_eq!(
        meta.import_facts(&plan).await.expect("again"),
        0,
        "a second import adds nothing"
    );
    assert_eq!(
        meta.fact_history("imp-a").await.expect("history").len(),
        1,
        "nor any history"
    );
    let mut known = meta
        .known_fact_ids(&["imp-a".into(), "imp-b".into(), "imp-zzz".into()])
        .await
        .expect("known");
    known.sort();
    assert_eq!(known, ["imp-a", "imp-b"]);
    let got = meta.get_fact("imp-a").await.expect("get").expect("stored");
    assert_eq!(got.attrs, Some(attrs.clone()), "attributes round-trip");
    assert_eq!(got.created_at.timestamp_millis(), a.created_at.timestamp_millis());

    let mut new = got.clone();
    new.content = "Likes trains now".into();
    new.predicate = None;
    let rewrite = ExtractionPlan {
        user_id: "acme/imp-kid".into(),
        new_facts: vec![new.clone()],
        history: vec![history("imp-a", HistoryEvent::Update, "Likes trains now")],
        ..ExtractionPlan::default()
    };
    assert_eq!(meta.rewrite_facts(&rewrite).await.expect("rewrite"), 1);
    let after = meta.get_fact("imp-a").await.expect("get").expect("kept");
    assert_eq!(
        (after.content.as_str(), after.predicate.as_deref()),
        ("Likes trains now", None)
    );
    let events: Vec<HistoryEvent> = meta
        .fact_history("imp-a")
        .await
        .expect("history")
        .into_iter()
        .map(|h| h.event)
        .collect();
    assert_eq!(events, [HistoryEvent::Add, HistoryEvent::Update]);
    let terms = |q: &str| pika_common::text::index_terms(q);
    let trains = meta
        .keyword_candidates("acme/imp-kid", &terms("trains"), 10)
        .await
        .expect("keyword");
    assert!(
        trains.items.iter().any(|i| i.fact_id == "imp-a"),
        "the new text is indexed"
    );
    let dinos = meta
        .keyword_candidates("acme/imp-kid", &terms("dinosaurs"), 10)
        .await
        .expect("keyword");
    assert!(
        dinos.items.iter().all(|i| i.fact_id != "imp-a"),
        "the old text is not"
    );
    // A rewrite of another user's id, or of a deleted memory, changes nothing.
    let mut stranger = new.clone();
    stranger.user_id = "acme/someone-else".into();
    let wrong = ExtractionPlan {
        user_id: "acme/someone-else".into(),
        new_facts: vec![stranger],
        ..ExtractionPlan::default()
    };
    assert_eq!(meta.rewrite_facts(&wrong).await.expect("rewrite"), 0);
    assert!(meta.delete_fact("imp-b").await.expect("delete"));
    let gone = ExtractionPlan {
        user_id: "acme/imp-kid".into(),
        new_facts: vec![b.clone()],
        ..ExtractionPlan::default()
    };
    assert_eq!(meta.rewrite_facts(&gone).await.expect("rewrite"), 0);

    let users = meta.tenant_users("acme", 100).await.expect("tenant users");
    let mine: Vec<_> = users.iter().filter(|u| u.user_id == "acme/imp-kid").collect();
    assert_eq!(mine.len(), 1, "{users:?}");
    assert_eq!(mine[0].memories, 1, "only active memories count");
    assert!(
        meta.tenant_users("acm", 100)
            .await
            .expect("prefix")
            .iter()
            .all(|u| !u.user_id.starts_with("acme/")),
        "a tenant id is not a prefix match"
    );
    assert!(
        meta.tenant_users("default", 1000)
            .await
            .expect("default tenant")
            .iter()
            .all(|u| !u.user_id.contains('/')),
        "the default tenant's users are the unprefixed ones"
    );
}

async fn episodes_names_and_retired_facts(meta: &dyn MetaStore) {
    let (job, _) = meta
        .create_job(NewJob {
            job_id: "j-ep".into(),
            idempotency_key: "k-ep".into(),
            request: request("u-ep", "c-ep"),
        })
        .await
        .expect("create");
    let (claim, _) = meta
        .claim_job(&job.job_id, false, LEASE)
        .await
        .expect("claim")
        .expect("claimable");
    let said = Utc::now() - chrono::Duration::days(3);
    let mut episode = fact(
        "0190a000-0000-7000-8000-0000000000e1",
        "u-ep",
        "Có, tên nó là Mướp á",
        &[],
    );
    episode.kind = MemoryKind::Episode;
    episode.context = Some("Bin có nuôi con vật nào không?".into());
    episode.source_turns = vec![0, 1];
    episode.said_at = Some(said);
    episode.occurred_at = Some(said - chrono::Duration::days(1));
    let dog = fact(
        "0190a000-0000-7000-8000-0000000000e2",
        "u-ep",
        "The child has a dog.",
        &["dog"],
    );
    meta.complete_job(
        &claim,
        &ExtractionPlan {
            new_facts: vec![episode.clone(), dog.clone()],
            user_names: vec!["Bin".into(), "Bin".into()],
            ..Default::default()
        },
    )
    .await
    .expect("complete");
    let stored = meta
        .get_fact(&episode.fact_id)
        .await
        .expect("get")
        .expect("episode");
    assert_eq!(stored.kind, MemoryKind::Episode);
    assert_eq!(stored.context, episode.context);
    assert_eq!(stored.source_turns, vec![0, 1]);
    assert_eq!(
        stored.said_at.map(|t| t.timestamp_millis()),
        Some(said.timestamp_millis())
    );
    assert_eq!(
        stored.occurred_at.map(|t| t.timestamp_millis()),
        episode.occurred_at.map(|t| t.timestamp_millis())
    );
    assert_eq!(
        meta.user_names("u-ep").await.expect("names"),
        vec!["Bin".to_string()]
    );
    assert!(meta.user_names("u1").await.expect("names").is_empty());
    // The answered question's words find the episode (its context is indexed).
    let hits = meta
        .keyword_candidates("u-ep", &pika_common::text::index_terms("con vật"), 10)
        .await
        .expect("keyword");
    assert_eq!(hits.items.len(), 1);
    assert_eq!(hits.items[0].fact_id, episode.fact_id);
    assert_eq!(hits.total_items, 2);

    let (job2, _) = meta
        .create_job(NewJob {
            job_id: "j-ep2".into(),
            idempotency_key: "k-ep2".into(),
            request: request("u-ep", "c-ep2"),
        })
        .await
        .expect("create");
    let (claim2, _) = meta
        .claim_job(&job2.job_id, false, LEASE)
        .await
        .expect("claim")
        .expect("claimable");
    meta.complete_job(
        &claim2,
        &ExtractionPlan {
            retired: vec![dog.fact_id.clone()],
            history: vec![history(&dog.fact_id, HistoryEvent::Delete, &dog.content)],
            ..Default::default()
        },
    )
    .await
    .expect("complete");
    let gone = meta.get_fact(&dog.fact_id).await.expect("get").expect("kept");
    assert_eq!(gone.status, FactStatus::Superseded);
    assert!(
        meta.keyword_candidates("u-ep", &["dog".into()], 10)
            .await
            .expect("keyword")
            .items
            .is_empty()
    );
    let left = meta
        .keyword_candidates("u-ep", &pika_common::text::index_terms("con vật"), 10)
        .await
        .expect("keyword");
    assert_eq!(left.total_items, 1, "BM25's N counts only active items");
    assert_eq!(
        left.mean_terms,
        episode.index_terms().len() as f32,
        "and their mean length"
    );
    assert_eq!(
        meta.fact_history(&dog.fact_id).await.expect("history")[0].event,
        HistoryEvent::Delete
    );
    let only_facts = meta
        .list_facts("u-ep", None, 10, Some(MemoryKind::Fact))
        .await
        .expect("list");
    assert!(
        only_facts.facts.is_empty(),
        "the dog fact is retired; the episode is not a fact"
    );
    let episodes = meta
        .list_facts("u-ep", None, 10, Some(MemoryKind::Episode))
        .await
        .expect("list");
    assert_eq!(episodes.facts.len(), 1);
    let erased = meta.delete_user("u-ep", "erased:u-ep").await.expect("forget");
    assert_eq!(erased.facts + erased.episodes, 2, "{erased:?}");
    assert!(erased.names >= 1, "{erased:?}");
    assert!(meta.user_names("u-ep").await.expect("names").is_empty());
}

/// Leases (renewed, expired, released), listings and re-drives of failed
/// jobs, and the graph repair queue: what keeps an accepted job from
/// getting stuck or dying of a short outage.
async fn leases_redrives_and_repairs(meta: &dyn MetaStore) {
    let secs = |n: i64| Utc::now() + chrono::Duration::seconds(n);
    let new = |id: &str, user: &str| NewJob {
        job_id: id.into(),
        idempotency_key: format!("key-{id}"),
        request: request(user, "c-lease"),
    };
    let long = Duration::from_secs(60);
    let (job, _) = meta.create_job(new("lease-1", "u-lease")).await.expect("create");
    assert_eq!(
        job.retry_since, job.created_at,
        "the retry horizon starts at acceptance"
    );

    // A lease that is not renewed runs out; the job is queued again.
    let (claim, _) = meta
        .claim_job("lease-1", false, long)
        .await
        .expect("claim")
        .expect("claimable");
    assert!(
        meta.requeue_expired_leases(Utc::now(), 100)
            .await
            .expect("sweep")
            .is_empty()
    );
    assert_eq!(
        meta.requeue_expired_leases(secs(61), 100).await.expect("sweep"),
        vec!["lease-1".to_string()]
    );
    let job = meta.get_job("lease-1").await.expect("get").expect("job");
    assert_eq!(job.state, JobState::Queued);
    assert!(
        matches!(
            meta.complete_job(&claim, &ExtractionPlan::default()).await,
            Err(StoreError::ClaimLost)
        ),
        "the worker that lost its lease cannot commit"
    );
    assert_eq!(
        meta.renew_leases(&[claim], long).await.expect("renew"),
        0,
        "a lost claim is not renewed"
    );

    // A renewed lease holds past its first end.
    let (claim, held) = meta
        .claim_job("lease-1", false, long)
        .await
        .expect("claim")
        .expect("claimable");
    assert_eq!(held.attempts, 2);
    assert_eq!(
        meta.renew_leases(std::slice::from_ref(&claim), Duration::from_secs(120))
            .await
            .expect("renew"),
        1
    );
    assert!(
        meta.requeue_expired_leases(secs(90), 100)
            .await
            .expect("sweep")
            .is_empty()
    );

    // Handed back on shutdown: queued, the attempt not counted; only once.
    assert!(meta.release_job(&claim).await.expect("release"));
    assert!(!meta.release_job(&claim).await.expect("release again"));
    let job = meta.get_job("lease-1").await.expect("get").expect("job");
    assert_eq!((job.state, job.attempts), (JobState::Queued, 1));

    // Failed for good, listed, counted, re-driven with a new horizon.
    let (claim, _) = meta
        .claim_job("lease-1", false, long)
        .await
        .expect("claim")
        .expect("claimable");
    meta.fail_job(&claim, "attempt 2: model down", false)
        .await
        .expect("fail");
    meta.create_job(new("lease-2", "tlease/u-lease"))
        .await
        .expect("create");
    let (claim2, _) = meta
        .claim_job("lease-2", false, long)
        .await
        .expect("claim")
        .expect("claimable");
    meta.fail_job(&claim2, "attempt 1: graph down", false)
        .await
        .expect("fail");
    let mine = Some(vec!["lease-1".to_string(), "lease-2".to_string()]);
    let failed = meta
        .list_jobs(&JobFilter {
            state: Some(JobState::Failed),
            job_ids: mine.clone(),
            limit: 100,
            ..JobFilter::default()
        })
        .await
        .expect("list");
    let ids: Vec<&str> = failed.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(ids, ["lease-2", "lease-1"], "newest first");
    assert_eq!(failed[1].error.as_deref(), Some("attempt 2: model down"));
    let tenant_jobs = meta
        .list_jobs(&JobFilter {
            tenant_id: Some("tlease".into()),
            limit: 100,
            ..JobFilter::default()
        })
        .await
        .expect("list by tenant");
    assert_eq!(tenant_jobs.len(), 1, "one tenant's jobs only");
    assert_eq!(tenant_jobs[0].user_id, "tlease/u-lease");
    let paged = meta
        .list_jobs(&JobFilter {
            state: Some(JobState::Failed),
            job_ids: mine.clone(),
            before: Some("lease-2".into()),
            limit: 100,
            ..JobFilter::default()
        })
        .await
        .expect("page");
    assert_eq!(paged.len(), 1);
    let counts = meta.count_jobs_by_state().await.expect("counts");
    assert!(
        counts.iter().any(|(s, n)| *s == JobState::Failed && *n >= 2),
        "{counts:?}"
    );
    assert!(
        counts.iter().all(|(s, _)| *s != JobState::Completed),
        "{counts:?}"
    );
    let redriven = meta
        .redrive_jobs(&JobFilter {
            job_ids: Some(vec!["lease-1".into(), "j1".into()]),
            limit: 10,
            ..JobFilter::default()
        })
        .await
        .expect("redrive");
    assert_eq!(
        redriven,
        vec!["lease-1".to_string()],
        "only failed jobs are re-driven"
    );
    let job = meta.get_job("lease-1").await.expect("get").expect("job");
    assert_eq!((job.state, job.attempts), (JobState::Queued, 0));
    assert!(
        job.retry_since > job.created_at,
        "a re-drive restarts the retry horizon"
    );
    assert!(
        meta.redrive_jobs(&JobFilter {
            job_ids: Some(vec!["lease-1".into()]),
            limit: 10,
            ..JobFilter::default()
        })
        .await
        .expect("redrive again")
        .is_empty()
    );
    let by_tenant = meta
        .redrive_jobs(&JobFilter {
            tenant_id: Some("tlease".into()),
            limit: 10,
            ..JobFilter::default()
        })
        .await
        .expect("redrive by tenant");
    assert_eq!(by_tenant, vec!["lease-2".to_string()]);

    // Graph repairs: queued, taken (and hidden while held), postponed, finished.
    let ids = vec!["f-r1".to_string(), "f-r2".to_string()];
    meta.queue_graph_repair("u-lease", RepairOp::Upsert, &ids)
        .await
        .expect("queue");
    assert_eq!(meta.count_graph_repairs().await.expect("count"), 1);
    let taken = meta.take_graph_repairs(Utc::now(), long, 10).await.expect("take");
    assert_eq!(taken.len(), 1);
    assert_eq!(
        (taken[0].op, &taken[0].fact_ids, taken[0].attempts),
        (RepairOp::Upsert, &ids, 0)
    );
    assert!(
        meta.take_graph_repairs(Utc::now(), long, 10)
            .await
            .expect("take")
            .is_empty(),
        "held"
    );
    meta.postpone_graph_repair(taken[0].id, "graph down", secs(10))
        .await
        .expect("postpone");
    assert!(
        meta.take_graph_repairs(secs(5), long, 10)
            .await
            .expect("take")
            .is_empty()
    );
    let again = meta.take_graph_repairs(secs(11), long, 10).await.expect("take");
    assert_eq!(again[0].attempts, 1);
    meta.finish_graph_repair(again[0].id).await.expect("finish");
    assert_eq!(meta.count_graph_repairs().await.expect("count"), 0);

    // A commit whose graph write failed queues its repair in the same transaction.
    let (claim, _) = meta
        .claim_job("lease-1", false, long)
        .await
        .expect("claim")
        .expect("claimable");
    let plan = ExtractionPlan {
        user_id: "u-lease".into(),
        graph_pending: vec!["f-r3".into()],
        ..ExtractionPlan::default()
    };
    meta.complete_job(&claim, &plan).await.expect("complete");
    let pending = meta.take_graph_repairs(secs(1), long, 10).await.expect("take");
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].user_id.as_str(), &pending[0].fact_ids),
        ("u-lease", &vec!["f-r3".to_string()])
    );
    // Erasure leaves no pending write naming the user's facts.
    meta.queue_graph_repair("u-lease", RepairOp::Delete, &ids)
        .await
        .expect("queue");
    meta.delete_user("u-lease", "erased:u-lease")
        .await
        .expect("erase");
    assert_eq!(meta.count_graph_repairs().await.expect("count"), 0);
}

#[tokio::test]
async fn meta_store_contract_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = SqliteMetaStore::connect(&format!("sqlite://{}", dir.path().join("m.db").display()))
        .await
        .expect("sqlite");
    meta_suite(&meta).await;
    leases_redrives_and_repairs(&meta).await;
}

#[tokio::test]
async fn meta_store_contract_on_postgres() {
    let Some(url) = server_url("PIKA_TEST_POSTGRES_URL") else {
        return;
    };
    let schema = unique("pika_test");
    let meta = PostgresMetaStore::connect(&url, Some(&schema), 4)
        .await
        .expect("postgres");
    meta_suite(&meta).await;
    leases_redrives_and_repairs(&meta).await;
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&meta.pool())
        .await
        .expect("drop schema");
}

/// The job-queue contract: delivery, ack, delayed retry, dead letter, bad bodies.
async fn queue_suite(queue: &dyn JobQueue) {
    let id = uuid::Uuid::now_v7().to_string();
    queue.publish(&id).await.expect("publish");
    let d = next_within(queue, 5).await.expect("delivered");
    assert_eq!(d.job_id.as_deref(), Some(id.as_str()));
    queue.ack(&d).await.expect("ack");
    assert!(next_within(queue, 1).await.is_none(), "acked messages are gone");

    let started = std::time::Instant::now();
    queue
        .retry_later(&d, std::time::Duration::from_millis(300))
        .await
        .expect("retry");
    let again = next_within(queue, 5).await.expect("redelivered after the delay");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(again.job_id.as_deref(), Some(id.as_str()));
    queue.dead_letter(&again, "test").await.expect("dead letter");
    assert!(
        next_within(queue, 1).await.is_none(),
        "dead letters are never redelivered"
    );

    queue.publish("not-a-job-id").await.expect("publish garbage");
    let bad = next_within(queue, 5).await.expect("delivered");
    assert_eq!(bad.job_id, None, "invalid bodies are flagged");
    queue.dead_letter(&bad, "bad body").await.expect("dead letter");
}

async fn next_within(queue: &dyn JobQueue, secs: u64) -> Option<Delivery> {
    tokio::time::timeout(std::time::Duration::from_secs(secs), queue.next())
        .await
        .ok()
        .map(|r| r.expect("next"))
}

#[tokio::test]
async fn job_queue_contract_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = SqliteMetaStore::connect(&format!("sqlite://{}", dir.path().join("q.db").display()))
        .await
        .expect("sqlite");
    let (queue, _) = EmbeddedQueue::recover(&meta).await.expect("queue");
    queue_suite(&queue).await;
}

#[tokio::test]
async fn job_queue_contract_on_rabbitmq() {
    let Some(url) = server_url("PIKA_TEST_RABBITMQ_URL") else {
        return;
    };
    let name = unique("pika.test.jobs");
    let queue = RabbitMqQueue::connect(RabbitMqOptions {
        url,
        queue: name,
        prefetch: 4,
        publish_timeout: std::time::Duration::from_secs(5),
        ca_file: Default::default(),
    })
    .await
    .expect("rabbitmq");
    queue_suite(&queue).await;
    assert_eq!(queue.depth().await.expect("depth"), 0);
    assert_eq!(queue.dead_letter_depth().await.expect("depth"), 2);
    queue.delete_queues().await.expect("cleanup");
}

/// The cache-signal contract: per-user generations that only grow.
async fn signals_suite(signals: &dyn CacheSignals, user: &str, other: &str) {
    assert_eq!(signals.generation(user).await.expect("read"), 0);
    assert_eq!(signals.bump(user).await.expect("bump"), 1);
    assert_eq!(signals.bump(user).await.expect("bump"), 2);
    assert_eq!(signals.generation(user).await.expect("read"), 2);
    assert_eq!(signals.generation(other).await.expect("read"), 0, "per user");
}

#[tokio::test]
async fn cache_signals_contract_embedded() {
    signals_suite(&LocalSignals::default(), "kid-a", "kid-b").await;
}

#[tokio::test]
async fn cache_signals_contract_on_redis() {
    let Some(url) = server_url("PIKA_TEST_REDIS_URL") else {
        return;
    };
    let signals = RedisSignals::connect(&url, std::time::Duration::from_millis(500))
        .await
        .expect("redis");
    let (user, other) = (unique("kid"), unique("kid"));
    // Listen first, then check the announcement of each bump.
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub.subscribe(INVALIDATE_CHANNEL).await.expect("subscribe");
    signals_suite(&signals, &user, &other).await;
    let mut messages = pubsub.on_message();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let msg = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            futures::StreamExt::next(&mut messages),
        )
        .await
        .expect("message in time")
        .expect("stream open");
        let text: String = msg.get_payload().expect("text");
        if text.starts_with(&user) {
            seen.push(text);
        }
    }
    assert_eq!(seen, vec![format!("{user} 1"), format!("{user} 2")]);
    let mut conn = client.get_multiplexed_async_connection().await.expect("conn");
    let _: () = redis::cmd("DEL")
        .arg(generation_key(&user))
        .query_async(&mut conn)
        .await
        .expect("cleanup");
}

/// The graph contract: relations through shared entities, per user, batched.
async fn graph_suite(graph: &dyn FactGraph) {
    graph.ping().await.expect("ping");
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    graph
        .upsert_facts(
            "u1",
            &[
                ("f1".into(), s(&["cat", "Miu"])),
                ("f2".into(), s(&["cat"])),
                ("f3".into(), s(&["dog"])),
            ],
        )
        .await
        .expect("upsert");
    graph
        .upsert_facts("u1", &[("f1".into(), s(&["cat", "Miu"]))])
        .await
        .expect("idempotent upsert");
    graph
        .upsert_facts("u2", &[("f4".into(), s(&["cat"]))])
        .await
        .expect("upsert other user");
    graph
        .upsert_facts("u1", &[("f5".into(), s(&["it's \"quoted\" \\ DETACH"]))])
        .await
        .expect("odd text");
    let ids = s(&["f1", "f2", "f3"]);
    let rel = graph.related("u1", &ids, 5).await.expect("related");
    assert_eq!(rel.get("f1"), Some(&s(&["f2"])), "{rel:?}");
    assert_eq!(rel.get("f2"), Some(&s(&["f1"])), "{rel:?}");
    assert!(!rel.contains_key("f3"), "{rel:?}");
    assert!(
        graph
            .related("u2", &s(&["f4"]), 5)
            .await
            .expect("related")
            .is_empty(),
        "no cross-user relations"
    );
    graph.delete_facts("u1", &s(&["f2"])).await.expect("delete");
    assert!(graph.related("u1", &ids, 5).await.expect("related").is_empty());
    graph.delete_user("u1").await.expect("forget");
    graph
        .upsert_facts("u1", &[("f6".into(), s(&["cat"]))])
        .await
        .expect("upsert");
    assert!(
        graph
            .related("u1", &s(&["f6"]), 5)
            .await
            .expect("related")
            .is_empty(),
        "old facts gone"
    );
    graph
        .upsert_facts("u2", &[("f7".into(), s(&["cat"]))])
        .await
        .expect("upsert");
    assert_eq!(
        graph
            .related("u2", &s(&["f7"]), 5)
            .await
            .expect("related")
            .get("f7"),
        Some(&s(&["f4"]))
    );
}

#[tokio::test]
async fn fact_graph_contract_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = SqliteMetaStore::connect(&format!("sqlite://{}", dir.path().join("g.db").display()))
        .await
        .expect("sqlite");
    graph_suite(&SqliteGraph::new(meta.pool())).await;
}

#[tokio::test]
async fn fact_graph_contract_on_falkordb() {
    let Some(url) = server_url("PIKA_TEST_FALKORDB_URL") else {
        return;
    };
    let graph = FalkorGraph::connect(&url, &unique("pika_test"), std::time::Duration::from_secs(2))
        .await
        .expect("falkordb");
    graph_suite(&graph).await;
    graph.delete_graph().await.expect("cleanup");
}

/// A unit vector of `dim` dims pointing mostly along axis `axis`, a little along `near`.
fn direction(dim: usize, axis: usize, near: usize, lean: f32) -> Vec<f32> {
    let mut v = vec![0.0f32; dim];
    v[axis] = 1.0;
    v[near] += lean;
    pika_common::vector::normalize(&mut v);
    v
}

/// The vector contract: per-user nearest neighbours, best first, upserts keyed
/// by fact id, deletes, and every write visible to the very next search.
async fn vector_suite(index: &dyn VectorIndex, dim: usize) {
    index.ping().await.expect("ping");
    let a = unique("va");
    let b = unique("vb");
    let ids = |v: &[(String, f32)]| v.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
    index
        .upsert(
            &a,
            &[
                ("f-cat".into(), direction(dim, 0, 1, 0.1)),
                ("f-kitten".into(), direction(dim, 0, 1, 0.6)),
                ("f-ball".into(), direction(dim, 5, 6, 0.0)),
            ],
        )
        .await
        .expect("upsert a");
    index
        .upsert(&b, &[("f-b-cat".into(), direction(dim, 0, 1, 0.0))])
        .await
        .expect("upsert b");
    let query = direction(dim, 0, 1, 0.0);
    let hits = index.search(&a, &query, 10).await.expect("search");
    assert_eq!(ids(&hits), ["f-cat", "f-kitten", "f-ball"], "{hits:?}");
    assert!(
        (hits[0].1 - direction(dim, 0, 1, 0.1)[0]).abs() < 1e-3,
        "cosine: {hits:?}"
    );
    assert!(hits[2].1.abs() < 1e-3, "orthogonal: {hits:?}");
    assert_eq!(ids(&index.search(&a, &query, 1).await.expect("k=1")), ["f-cat"]);
    assert_eq!(
        ids(&index.search(&b, &query, 10).await.expect("b")),
        ["f-b-cat"],
        "per user"
    );
    assert!(
        index
            .search(&unique("nobody"), &query, 10)
            .await
            .expect("none")
            .is_empty()
    );

    // An upsert by fact id replaces the vector: no duplicate, new position.
    index
        .upsert(&a, &[("f-cat".into(), direction(dim, 5, 6, 0.0))])
        .await
        .expect("re-upsert");
    let hits = index.search(&a, &query, 10).await.expect("search");
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert_eq!(hits[0].0, "f-kitten", "{hits:?}");

    // Deletes reach searches eventually (the service filters results through
    // the metadata store, where a delete is immediate), so wait for them briefly.
    async fn settle(index: &dyn VectorIndex, user: &str, query: &[f32], gone: &str) -> Vec<(String, f32)> {
        let mut hits = index.search(user, query, 10).await.expect("search");
        for _ in 0..50 {
            if !hits.iter().any(|(id, _)| gone.is_empty() || id == gone) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            hits = index.search(user, query, 10).await.expect("search");
        }
        hits
    }
    index.delete(&a, &["f-kitten".into()]).await.expect("delete");
    let hits = settle(index, &a, &query, "f-kitten").await;
    assert_eq!(ids(&hits).len(), 2, "deleted: {hits:?}");
    assert!(!ids(&hits).contains(&"f-kitten".to_string()), "deleted: {hits:?}");

    index.delete_user(&a).await.expect("delete user");
    let left = settle(index, &a, &query, "").await;
    assert!(left.is_empty(), "user deleted: {left:?}");
    assert_eq!(
        ids(&index.search(&b, &query, 10).await.expect("b")),
        ["f-b-cat"],
        "other user kept"
    );
}

#[tokio::test]
async fn vector_index_contract_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = SqliteMetaStore::connect(&format!("sqlite://{}", dir.path().join("v.db").display()))
        .await
        .expect("sqlite");
    let index = SqliteVectorIndex::open(meta.pool(), "test-model", 384)
        .await
        .expect("open");
    vector_suite(&index, 384).await;
}

fn milvus_options(url: &str, prefix: &str) -> MilvusOptions {
    MilvusOptions {
        url: url.into(),
        token: String::new(),
        ca_file: Default::default(),
        collection_prefix: prefix.into(),
        num_partitions: 16,
        index: IndexSpec::Hnsw {
            m: 16,
            ef_construction: 100,
            ef: 32,
        },
        timeout: std::time::Duration::from_secs(5),
        visible_timeout: std::time::Duration::from_secs(5),
    }
}

#[tokio::test]
async fn vector_index_contract_on_milvus() {
    let Some(url) = server_url("PIKA_TEST_MILVUS_URL") else {
        return;
    };
    let prefix = unique("t");
    let index = MilvusIndex::new(milvus_options(&url, &prefix), "test-model", 384);
    vector_suite(&index, 384).await;

    // Another model finds this model's collection: a clear error naming reindex.
    let other = MilvusIndex::new(milvus_options(&url, &prefix), "other-model", 64);
    match other.ready().await {
        Err(e @ StoreError::ModelMismatch { .. }) => assert!(e.to_string().contains("reindex"), "{e}"),
        Err(e) => panic!("expected a model mismatch, got {e}"),
        Ok(_) => panic!("expected a model mismatch"),
    }
    // `reindex` creates the new model's collection, then drops the old one.
    other.recreate().await.expect("recreate");
    let dropped = other.drop_other_models().await.expect("drop old");
    assert_eq!(dropped, [index.collection().to_string()]);
    other.drop().await.expect("cleanup");
}

/// Neo4j cannot be installed on these machines (DESIGN.md §10), so unlike the
/// other servers its absence is never a CI failure: the same graph suite runs
/// over Bolt wherever `PIKA_TEST_NEO4J_URI` names one.
#[tokio::test]
async fn fact_graph_contract_on_neo4j() {
    let uri = match std::env::var("PIKA_TEST_NEO4J_URI") {
        Ok(uri) if !uri.is_empty() => uri,
        _ => {
            eprintln!(
                "SKIPPED: PIKA_TEST_NEO4J_URI not set (e.g. bolt://neo4j:password@127.0.0.1:7687); \
                 the shared Cypher runs on FalkorDB in fact_graph_contract_on_falkordb"
            );
            return;
        }
    };
    let graph = Neo4jGraph::connect(Neo4jOptions {
        uri,
        user: std::env::var("PIKA_TEST_NEO4J_USER").unwrap_or_else(|_| "neo4j".into()),
        password: std::env::var("PIKA_TEST_NEO4J_PASSWORD").unwrap_or_default(),
        database: String::new(),
        max_connections: 4,
        timeout: std::time::Duration::from_secs(5),
    })
    .await
    .expect("neo4j");
    // The suite's user ids are fixed; start from a clean slate for them.
    graph.delete_user("u1").await.expect("reset u1");
    graph.delete_user("u2").await.expect("reset u2");
    graph_suite(&graph).await;
    graph.delete_user("u1").await.expect("cleanup u1");
    graph.delete_user("u2").await.expect("cleanup u2");
}
