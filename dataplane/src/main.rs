//! `pika-dataplane`: serve the API (with in-process workers), run migrations,
//! manage tenants and API keys, import and export memories (Mem0's format).

mod cli_jobs;
mod cli_transfer;

use anyhow::{Context, Result, bail};
use chrono::{Duration, Utc};
use clap::{Parser, Subcommand};
use pika_dataplane::config::Config;
use pika_dataplane::ports::MetaStore;
use pika_dataplane::service::{keys, reindex};
use pika_dataplane::store::{MilvusIndex, SqliteVectorIndex};
use pika_dataplane::vault::kek;
use pika_dataplane::{app, resolve};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "pika-dataplane", version, about = "PIKA long-term memory service")]
struct Cli {
    /// TOML configuration file (overridden by PIKA__SECTION__KEY variables).
    #[arg(long, global = true, env = "PIKA_CONFIG")]
    config: Option<PathBuf>,
    /// Folder for embedded data (SQLite).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and the extraction workers (the default).
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8081.
        #[arg(long)]
        listen: Option<String>,
        /// Turn off API-key authentication (local experiments only).
        #[arg(long)]
        insecure_dev: bool,
    },
    /// Run extraction workers only (needs `queue.url`): scale them apart from the API.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Re-embed every active fact with the configured embedding model.
    Reindex,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// List jobs, retry failed ones, re-drive failed and dead-lettered jobs.
    Jobs {
        #[command(subcommand)]
        action: cli_jobs::JobsAction,
    },
    /// Manage tenants (organisations or robot fleets that own users).
    Tenants {
        #[command(subcommand)]
        action: TenantsAction,
    },
    /// Import a Mem0 export: JSON or JSON Lines of the memory objects
    /// `get_all` returns (pages or lists), and/or Mem0's `history.db`.
    /// Idempotent: memories whose id is stored already are skipped.
    Import {
        /// Export files; `.db` files are read as Mem0's history database.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The tenant the memories go to.
        #[arg(long, default_value = pika_common::tenancy::DEFAULT_TENANT)]
        tenant: String,
        /// The user of memories that name none (history.db names no users).
        #[arg(long)]
        user: Option<String>,
        /// Give every memory to `--user`, whatever the export says.
        #[arg(long, requires = "user")]
        force_user: bool,
        /// Report what would be imported; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Memories embedded and stored together.
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// Export memories as JSON Lines in Mem0's `get_all` shape (what
    /// `import` reads).
    Export {
        #[arg(long, default_value = pika_common::tenancy::DEFAULT_TENANT)]
        tenant: String,
        /// Only these users (repeatable); all of the tenant's by default.
        #[arg(long)]
        user: Vec<String>,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the OpenAPI 3.1 document of the HTTP API (`docs/openapi.json`).
    Openapi,
    /// Ask this process's own health endpoint and exit 0 when it answers
    /// 2xx: the kubelet's exec probe, since in a pod the API listens on
    /// loopback only (the sidecar is the way in) and HTTP probes cannot
    /// reach it.
    Probe {
        /// `live` or `ready`.
        #[arg(default_value = "live")]
        what: String,
        /// Base URL (default: `server.listen` of the configuration).
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum TenantsAction {
    /// Create a tenant.
    Create {
        /// `[a-z0-9_-]`, at most 40 characters.
        tenant_id: String,
        /// A label (defaults to the id).
        #[arg(long, default_value = "")]
        name: String,
        /// Refuse extraction for users without granted consent.
        #[arg(long)]
        require_consent: bool,
        /// Days after which the tenant's data expires (default 730).
        #[arg(long)]
        retention_days: Option<u32>,
    },
    /// List tenants.
    List,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key and print it once.
    Create {
        /// A label for the key (who uses it).
        #[arg(long)]
        name: String,
        /// The tenant whose data the key reaches.
        #[arg(long, default_value = pika_common::tenancy::DEFAULT_TENANT)]
        tenant: String,
        /// Comma-separated user ids: a device key reaching only these users.
        #[arg(long)]
        users: Option<String>,
        /// Comma-separated: extract, search, admin (erase, export), operator
        /// (manage tenants and keys).
        #[arg(long, default_value = "extract,search")]
        permissions: String,
        /// Days until the key expires (never by default).
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke { key_id: String },
    /// Re-wrap every child's data key under another key-encryption key
    /// (data is not re-encrypted). Without --to, a new KEK is added to the
    /// KEK file first and becomes the active one.
    RotateKek {
        /// An existing KEK id (from the file or `encryption.keks`).
        #[arg(long)]
        to: Option<String>,
    },
    /// Print a new KEK entry (`ID BASE64KEY`) for a KEK file or Secret.
    NewKek,
}

fn load_config(cli: &Cli) -> Result<Config> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(dir) = &cli.data_dir {
        config.storage.data_dir = dir.clone();
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut config = load_config(&cli)?;
    pika_common::telemetry::init(config.log.format, &config.log.filter);
    match cli.command.unwrap_or(Command::Serve {
        listen: None,
        insecure_dev: false,
    }) {
        Command::Serve { listen, insecure_dev } => {
            if let Some(l) = listen {
                config.server.listen = l;
            }
            config.auth.insecure_dev |= insecure_dev;
            if config.auth.insecure_dev {
                tracing::warn!("authentication is OFF (--insecure-dev); never expose this instance");
            }
            let config_view = config.clone();
            let running = app::start(config).await.context("cannot start the service")?;
            if let Some(key) = &running.bootstrap_admin_key {
                // Never logged; shown on a terminal only (in a pod stdout is the log).
                let path = app::bootstrap_key_path(&config_view);
                if std::io::stdout().is_terminal() {
                    println!("admin api key: {key}");
                }
                println!("admin api key written to {} (shown once)", path.display());
            }
            println!("listening on http://{}", running.addr);
            let stop = running.shutdown_handle();
            tokio::spawn(async move {
                pika_common::shutdown::signal().await;
                tracing::info!("shutting down: draining requests and in-flight jobs");
                let _ = stop.send(true);
            });
            running.wait().await;
        }
        Command::Worker => {
            let running = app::start_role(config, app::Role::Worker)
                .await
                .context("cannot start the worker")?;
            println!("worker health on http://{}", running.addr);
            let stop = running.shutdown_handle();
            tokio::spawn(async move {
                pika_common::shutdown::signal().await;
                tracing::info!("shutting down: finishing in-flight jobs");
                let _ = stop.send(true);
            });
            running.wait().await;
        }
        Command::Probe { what, url } => {
            let base = url.unwrap_or_else(|| format!("http://{}", config.server.listen));
            let path = match what.as_str() {
                "live" => "/health/live",
                "ready" => "/health/ready",
                other => anyhow::bail!("probe: {other:?} is neither live nor ready"),
            };
            let answer = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(2))
                .build()?
                .get(format!("{}{path}", base.trim_end_matches('/')))
                .send()
                .await?;
            if !answer.status().is_success() {
                anyhow::bail!("probe: {path} answered {}", answer.status());
            }
        }
        Command::Import {
            files,
            tenant,
            user,
            force_user,
            dry_run,
            batch,
        } => {
            pika_common::tenancy::check_tenant_id(&tenant).map_err(anyhow::Error::msg)?;
            if let Some(u) = &user {
                pika_common::validate::check_id(u).map_err(|r| anyhow::anyhow!("--user {r}"))?;
            }
            let options = pika_dataplane::transfer::ImportOptions {
                tenant,
                user,
                force_user,
                dry_run,
                batch: batch.clamp(1, 1024),
            };
            cli_transfer::import(&config, cli_transfer::ImportArgs { files, options }).await?;
        }
        Command::Export { tenant, user, out } => {
            pika_common::tenancy::check_tenant_id(&tenant).map_err(anyhow::Error::msg)?;
            for u in &user {
                pika_common::validate::check_id(u).map_err(|r| anyhow::anyhow!("--user {u:?}: {r}"))?;
            }
            cli_transfer::export(&config, &tenant, &user, out).await?;
        }
        Command::Openapi => print!("{}", pika_dataplane::http::openapi::document_json()),
        Command::Migrate => {
            resolve::open_meta(&config).await?;
            println!("migrations applied");
        }
        Command::Reindex => {
            let meta = resolve::open_meta(&config).await?;
            let embedder = resolve::build_embedder(&config)?;
            let n = if resolve::vector_backend(&config)? == resolve::VectorBackend::Embedded {
                let embedded = resolve::open_embedded_db(&config).await?;
                let vectors =
                    SqliteVectorIndex::reset(embedded.pool(), embedder.model_id(), embedder.dimension())
                        .await?;
                reindex::reindex(meta.as_ref(), &vectors, embedder.as_ref()).await?
            } else {
                let vectors = MilvusIndex::new(
                    resolve::milvus_options(&config)?,
                    embedder.model_id(),
                    embedder.dimension(),
                );
                vectors.recreate().await?;
                let n = reindex::reindex(meta.as_ref(), &vectors, embedder.as_ref()).await?;
                for old in vectors.drop_other_models().await? {
                    println!("dropped the old model's collection {old}");
                }
                n
            };
            println!(
                "reindexed {n} memory items (facts and episodes) with {} ({} dims)",
                embedder.model_id(),
                embedder.dimension()
            );
        }
        Command::Keys { action } => {
            let meta = resolve::open_meta(&config).await?;
            keys_command(&config, meta.as_ref(), action).await?;
        }
        Command::Jobs { action } => cli_jobs::run(&config, action).await?,
        Command::Tenants { action } => {
            let meta = resolve::open_meta(&config).await?;
            tenants_command(meta.as_ref(), action).await?;
        }
    }
    Ok(())
}

async fn keys_command(config: &Config, meta: &dyn MetaStore, action: KeysAction) -> Result<()> {
    match action {
        KeysAction::Create {
            name,
            tenant,
            users,
            permissions,
            expires_in_days,
        } => {
            let perms = keys::parse_permissions(&permissions).map_err(anyhow::Error::msg)?;
            if expires_in_days.is_some_and(|d| d <= 0) {
                bail!("--expires-in-days must be positive");
            }
            let spec = keys::KeySpec {
                tenant_id: tenant,
                name,
                permissions: perms,
                users: users.as_deref().map(keys::parse_users),
                expires_at: expires_in_days.map(|d| Utc::now() + Duration::days(d)),
            };
            let key = keys::create(meta, &config.auth.key_env, spec).await?;
            println!("key id:  {}", key.record.key_id);
            println!("api key: {}", key.secret);
            println!("(shown once; store it now)");
        }
        KeysAction::List => {
            println!(
                "{:<22} {:<16} {:<20} {:<24} {:<22} {:<10} USERS",
                "KEY ID", "TENANT", "NAME", "PERMISSIONS", "EXPIRES", "STATE"
            );
            for k in meta.list_keys().await? {
                let perms: Vec<&str> = k.permissions.iter().map(|p| p.as_str()).collect();
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else if k.is_live(Utc::now()) {
                    "active"
                } else {
                    "expired"
                };
                let expires = k
                    .expires_at
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_else(|| "never".into());
                let users = k.users.as_ref().map_or_else(|| "all".into(), |u| u.join(","));
                println!(
                    "{:<22} {:<16} {:<20} {:<24} {:<22} {:<10} {}",
                    k.key_id,
                    k.tenant_id,
                    k.name,
                    perms.join(","),
                    expires,
                    state,
                    users
                );
            }
        }
        KeysAction::Revoke { key_id } => {
            if !meta.revoke_key(&key_id).await? {
                bail!("no key with id {key_id}");
            }
            println!("revoked {key_id}");
        }
        KeysAction::RotateKek { to } => rotate_kek(config, to).await?,
        KeysAction::NewKek => {
            let (_, line) = kek::new_kek_line()?;
            println!("{line}");
        }
    }
    Ok(())
}

/// `keys rotate-kek`: see [`KeysAction::RotateKek`].
async fn rotate_kek(config: &Config, to: Option<String>) -> Result<()> {
    let mut config = config.clone();
    if !config.encryption.enabled {
        bail!("encryption.enabled is off: there are no data keys to rotate");
    }
    match to {
        Some(id) => config.encryption.active_kek = id,
        None => {
            if !config.encryption.keks.is_empty() {
                bail!("the KEKs are inline (encryption.keks): add one there and pass --to ID");
            }
            let path = kek::kek_path(&config.encryption, &config.storage.data_dir);
            if !path.exists() {
                bail!("no KEK file at {}: nothing to rotate", path.display());
            }
            let id = kek::append_kek(&path)?;
            println!("added KEK {id} to {} (now the active one)", path.display());
            config.encryption.active_kek = id;
        }
    }
    let vault = resolve::open_vault(&config).await?.context("encryption is off")?;
    let done = vault.rotate().await?;
    println!(
        "re-wrapped {} data keys under KEK {} ({} were under it already); no data was re-encrypted. \
         Older KEKs can leave the file once every replica has restarted with it.",
        done.rewrapped, done.kek_id, done.already
    );
    Ok(())
}

async fn tenants_command(meta: &dyn MetaStore, action: TenantsAction) -> Result<()> {
    match action {
        TenantsAction::Create {
            tenant_id,
            name,
            require_consent,
            retention_days,
        } => {
            if retention_days.is_some_and(|d| !(1..=36_500).contains(&d)) {
                bail!("--retention-days must be from 1 to 36500");
            }
            let t = keys::create_tenant(meta, &tenant_id, &name, require_consent).await?;
            if let Some(days) = retention_days {
                meta.set_retention_days(&t.tenant_id, days).await?;
            }
            println!("created tenant {} ({})", t.tenant_id, t.name);
        }
        TenantsAction::List => {
            println!(
                "{:<42} {:<30} {:<10} {:<8} CREATED",
                "TENANT", "NAME", "RETENTION", "CONSENT"
            );
            for t in meta.list_tenants().await? {
                let created = t.created_at.format("%Y-%m-%d %H:%M");
                let consent = if t.require_consent { "required" } else { "-" };
                let days = format!("{}d", t.retention_days);
                println!(
                    "{:<42} {:<30} {days:<10} {consent:<8} {created}",
                    t.tenant_id, t.name
                );
            }
        }
    }
    Ok(())
}
