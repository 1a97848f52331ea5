//! Encryption at rest through HTTP (issue 12): a child's words are found by
//! search and read back in the clear, yet appear nowhere in the stored bytes;
//! after the child is erased, a copy of the database taken before the erasure
//! cannot be opened for that child (its data key is gone) while it still opens
//! for another child; rotating the KEK re-wraps data keys so the old KEK can
//! go. Run on the embedded store and on PostgreSQL.

use crate::harness::{TestServer, have_model, test_config};
use pika_dataplane::config::{Config, Secret};
use pika_dataplane::ports::MetaStore;
use pika_dataplane::resolve;
use pika_dataplane::vault::kek;
use reqwest::StatusCode;

/// A word no model or test elsewhere uses, so a byte scan for it means something.
fn marker(tag: &str) -> String {
    let n = uuid::Uuid::new_v4().simple().to_string();
    format!("Zyq{tag}{}", &n[..6])
}

async fn say(s: &TestServer, user: &str, words: &str) {
    let job = s
        .extract_and_wait(
            user,
            &format!("c-{user}"),
            &[
                ("assistant", "Do you have a pet?"),
                ("user", &format!("I have a pet dragon named {words}.")),
            ],
        )
        .await;
    assert_eq!(job["state"], "completed", "{job}");
}

/// Sealed contents of `user`'s facts as the store holds them, read without a key.
async fn stored_contents(plain: &dyn MetaStore, user: &str) -> Vec<String> {
    let page = plain.list_facts(user, None, 100, None).await.expect("list facts");
    page.facts.into_iter().map(|f| f.content).collect()
}

/// Whether `needle` occurs in `haystack` as written or folded to lower case
/// (as index terms are), by its first 9 characters (a stemmer may cut the end).
fn holds(haystack: &[u8], needle: &str) -> bool {
    let head: String = needle.chars().take(9).collect();
    [head.clone(), head.to_lowercase()]
        .iter()
        .any(|n| haystack.windows(n.len()).any(|w| w == n.as_bytes()))
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_file() {
            out.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    out
}

/// Every row of every table in a PostgreSQL schema, as text.
async fn all_rows(pool: &sqlx::PgPool, schema: &str) -> Vec<u8> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1")
            .bind(schema)
            .fetch_all(pool)
            .await
            .expect("tables");
    let mut out = Vec::new();
    for t in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM \"{schema}\".\"{t}\" t"))
            .fetch_all(pool)
            .await
            .expect("rows");
        for r in rows {
            out.extend(r.into_bytes());
            out.push(b'\n');
        }
    }
    out
}

/// Where the scenario's stored bytes live.
enum Backend<'a> {
    Embedded,
    Postgres { schema: &'a crate::split::PrivateSchema },
}

async fn scenario(config: Config, plain: &dyn MetaStore, backend: Backend<'_>) {
    let s = TestServer::start_with(config.clone()).await;
    let (kid, other) = ("enc-kid", "enc-other");
    let (secret, kept) = (marker("a"), marker("b"));
    say(&s, kid, &secret).await;
    say(&s, other, &kept).await;

    // Found by keyword and meaning, read back in the clear.
    let found = s.search(kid, &secret).await;
    assert!(found.iter().any(|t| t.contains(&secret)), "{found:?}");
    let (status, body) = s.get(&format!("/v1/users/{kid}/facts?kind=all")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.to_string().contains(&secret), "{body}");

    // Nowhere in the stored bytes: conversation, facts, episodes, keyword
    // terms (folded to lower case), history, graph.
    let stored = match &backend {
        Backend::Embedded => all_bytes(&config.storage.data_dir),
        Backend::Postgres { schema } => all_rows(&schema.store.pool(), &schema.name).await,
    };
    // The scan reads the rows: ids are stored in the clear, so it finds them.
    assert!(holds(&stored, kid), "the scan does not see the stored rows");
    assert!(!holds(&stored, &secret), "the marker is stored in the clear");
    println!(
        "sealed at rest: {} stored bytes scanned, marker found 0 times",
        stored.len()
    );

    // "Backup": the stored rows before the erasure.
    let before_kid = stored_contents(plain, kid).await;
    let before_other = stored_contents(plain, other).await;
    assert!(!before_kid.is_empty() && !before_other.is_empty());
    assert!(
        before_kid.iter().all(|c| pika_common::seal::is_sealed(c)),
        "{before_kid:?}"
    );

    let (status, receipt) = s.delete(&format!("/v1/users/{kid}")).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(
        receipt["data"]["receipt"]["metadata"]["data_keys"], 1,
        "{receipt}"
    );
    let key = s.key.clone();
    s.stop().await;

    // The erased child's rows in the copy do not open; the other's do.
    let vault = resolve::open_vault(&config).await.expect("vault").expect("on");
    for sealed in &before_kid {
        let err = vault
            .open(sealed)
            .await
            .expect_err("an erased child's copy must not open");
        assert!(err.to_string().contains("no longer exists"), "{err}");
    }
    for sealed in &before_other {
        let text = vault.open(sealed).await.expect("another child's copy opens");
        assert!(text.contains(&kept) || !text.is_empty());
    }
    println!(
        "crypto-shredding: {} sealed rows of the erased child in the pre-erasure copy, 0 open; {} of another child, all open",
        before_kid.len(),
        before_other.len()
    );

    // KEK rotation: a new KEK in the file, every data key re-wrapped, the old
    // KEK removed; the service still reads everything.
    let path = kek::kek_path(&config.encryption, &config.storage.data_dir);
    let old_text = std::fs::read_to_string(&path).expect("kek file");
    let new_id = kek::append_kek(&path).expect("append kek");
    let mut rotating = config.clone();
    rotating.encryption.active_kek = new_id.clone();
    let done = resolve::open_vault(&rotating)
        .await
        .expect("vault")
        .expect("on")
        .rotate()
        .await
        .expect("rotate");
    assert_eq!(
        (done.kek_id.as_str(), done.rewrapped),
        (new_id.as_str(), 1),
        "{done:?}"
    );
    let only_new: String = std::fs::read_to_string(&path)
        .expect("kek file")
        .lines()
        .filter(|l| l.starts_with(&new_id))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, &only_new).expect("drop the old kek");
    let mut again = TestServer::start_with(config.clone()).await;
    again.key = key;
    let found = again.search(other, &kept).await;
    assert!(
        found.iter().any(|t| t.contains(&kept)),
        "after rotation: {found:?}"
    );
    again.stop().await;
    // And the old KEK alone no longer opens anything.
    std::fs::write(&path, old_text).expect("old kek back");
    let stale = resolve::open_vault(&config).await.expect("vault").expect("on");
    assert!(stale.open(&before_other[0]).await.is_err());
    println!(
        "KEK rotation: {} data key re-wrapped under {new_id}; old KEK removed, data still read",
        done.rewrapped
    );
}

#[tokio::test]
async fn memories_are_sealed_shredded_on_erasure_and_survive_kek_rotation() {
    if !have_model() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(dir.path());
    let plain = pika_dataplane::store::SqliteMetaStore::connect(&format!(
        "sqlite://{}",
        dir.path().join("pika.db").display()
    ))
    .await
    .expect("sqlite");
    scenario(config, &plain, Backend::Embedded).await;
}

#[tokio::test]
async fn memories_are_sealed_shredded_on_erasure_and_survive_kek_rotation_on_postgres() {
    let Some(pg) = crate::backends::server_url("PIKA_TEST_POSTGRES_URL") else {
        return;
    };
    if !have_model() {
        return;
    }
    let schema = crate::split::PrivateSchema::new(&pg, "pika_sealed").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.storage.meta_url = Secret::new(schema.url.clone());
    // The keyring in a database (here: schema) of its own, as docs/SECURITY.md advises.
    let keyring = crate::split::PrivateSchema::new(&pg, "pika_keyring").await;
    config.encryption.keyring_url = Secret::new(keyring.url.clone());
    scenario(config, &schema.store, Backend::Postgres { schema: &schema }).await;
    schema.drop_schema().await;
    keyring.drop_schema().await;
}

/// The byte scan above is able to fail: with sealing off, it finds the words.
#[tokio::test]
async fn with_sealing_off_the_scan_finds_the_words() {
    if !have_model() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.encryption.enabled = false;
    let s = TestServer::start_with(config.clone()).await;
    let words = marker("c");
    say(&s, "plain-kid", &words).await;
    s.stop().await;
    assert!(holds(&all_bytes(dir.path()), &words));
}
