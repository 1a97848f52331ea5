//! Key-encryption keys (KEKs): the few keys from configuration that wrap
//! every child's data key. Only data keys are ever sealed with them, so
//! rotating a KEK re-wraps the keyring and leaves the data as it is.
//!
//! Text form, the same in a file and inline: one KEK per entry, `ID KEY`
//! (file, one per line, `#` comments) or `ID=KEY` (inline, `;`-separated),
//! KEY being 32 bytes in base64. The last entry is the active one unless
//! `encryption.active_kek` names another.

use super::VaultError;
use crate::config::EncryptionConfig;
use pika_common::seal::SecretKey;
use std::path::{Path, PathBuf};

/// Where a ring's KEKs came from: a file can be re-read when a KEK appears
/// (rotation on another replica) and appended to by `keys rotate-kek`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    File(PathBuf),
    Inline,
}

/// The KEKs this process knows, one of them active.
#[derive(Debug)]
pub struct KekRing {
    keks: Vec<(String, SecretKey)>,
    active: usize,
    /// The active KEK was named by configuration (kept when the file is re-read).
    pinned: bool,
    pub source: KekSource,
}

impl KekRing {
    /// Parses the text form; `inline` selects `ID=KEY;...` over lines.
    pub fn parse(text: &str, inline: bool, source: KekSource) -> Result<KekRing, VaultError> {
        let entries: Vec<&str> = if inline {
            text.split(';').collect()
        } else {
            text.lines().collect()
        };
        let mut keks: Vec<(String, SecretKey)> = Vec::new();
        for entry in entries.iter().map(|e| e.trim()) {
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let (id, key) = if inline {
                entry.split_once('=')
            } else {
                entry.split_once(char::is_whitespace)
            }
            .ok_or_else(|| VaultError::Kek("a KEK entry is not `ID KEY`".into()))?;
            let id = id.trim();
            if id.is_empty() || id.contains(':') || id.len() > 64 {
                return Err(VaultError::Kek(format!("invalid KEK id {id:?}")));
            }
            if keks.iter().any(|(k, _)| k == id) {
                return Err(VaultError::Kek(format!("KEK id {id} is listed twice")));
            }
            let key =
                SecretKey::from_base64(key.trim()).map_err(|e| VaultError::Kek(format!("KEK {id}: {e}")))?;
            keks.push((id.to_string(), key));
        }
        if keks.is_empty() {
            return Err(VaultError::Kek("no KEK is configured".into()));
        }
        let active = keks.len() - 1;
        Ok(KekRing {
            keks,
            active,
            pinned: false,
            source,
        })
    }

    /// Loads the ring `config` names (inline KEKs, else the file, created
    /// when missing and `generate_kek` is on), with its active KEK chosen.
    pub fn load(config: &EncryptionConfig, data_dir: &Path) -> Result<KekRing, VaultError> {
        let mut ring = if !config.keks.is_empty() {
            KekRing::parse(config.keks.expose(), true, KekSource::Inline)?
        } else {
            let path = kek_path(config, data_dir);
            if !path.exists() && config.generate_kek {
                match create_kek_file(&path) {
                    Ok(id) => tracing::warn!(
                        path = %path.display(),
                        kek_id = %id,
                        "created a new key-encryption key: back it up apart from the data; \
                         every replica must read this same file"
                    ),
                    // Another process sharing the folder made it first.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(VaultError::Kek(format!("cannot create {}: {e}", path.display()))),
                }
            }
            read_file(&path)?
        };
        if !config.active_kek.is_empty() {
            ring.select(&config.active_kek)?;
            ring.pinned = true;
        }
        Ok(ring)
    }

    /// Makes `id` the active KEK.
    pub fn select(&mut self, id: &str) -> Result<(), VaultError> {
        self.active = self
            .keks
            .iter()
            .position(|(k, _)| k == id)
            .ok_or_else(|| VaultError::Kek(format!("KEK {id} is not configured")))?;
        Ok(())
    }

    pub fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// Pins the active KEK to `id` (as `encryption.active_kek` does).
    pub fn pin(&mut self, id: &str) -> Result<(), VaultError> {
        self.select(id)?;
        self.pinned = true;
        Ok(())
    }

    pub fn active(&self) -> (&str, &SecretKey) {
        let (id, key) = &self.keks[self.active];
        (id, key)
    }

    pub fn get(&self, id: &str) -> Option<&SecretKey> {
        self.keks.iter().find(|(k, _)| k == id).map(|(_, key)| key)
    }

    pub fn ids(&self) -> Vec<&str> {
        self.keks.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// `encryption.kek_file`, or `kek.keys` in the data folder.
pub fn kek_path(config: &EncryptionConfig, data_dir: &Path) -> PathBuf {
    if config.kek_file.as_os_str().is_empty() {
        data_dir.join("kek.keys")
    } else {
        config.kek_file.clone()
    }
}

/// Reads a KEK file.
pub fn read_file(path: &Path) -> Result<KekRing, VaultError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        VaultError::Kek(format!(
            "cannot read the KEK file {}: {e} (set encryption.kek_file or encryption.keks)",
            path.display()
        ))
    })?;
    KekRing::parse(&text, false, KekSource::File(path.to_path_buf()))
}

/// A new KEK entry: `(id, "ID KEY")`.
pub fn new_kek_line() -> Result<(String, String), VaultError> {
    let key = SecretKey::generate()?;
    let suffix = SecretKey::generate()?;
    let id = format!(
        "kek-{}-{}",
        chrono::Utc::now().format("%Y%m%d"),
        hex::encode(&suffix.as_bytes()[..4])
    );
    let line = format!("{id} {}", key.to_base64());
    Ok((id, line))
}

/// Creates a KEK file with one new KEK (never overwrites; mode 0600).
fn create_kek_file(path: &Path) -> std::io::Result<String> {
    let (id, line) = new_kek_line().map_err(std::io::Error::other)?;
    let text = format!(
        "# PIKA key-encryption keys: `ID BASE64KEY` per line, the last one active.\n\
         # Losing this file loses every sealed memory. Keep a copy apart from the data.\n{line}"
    );
    crate::app::write_secret_file(path, &text)?;
    Ok(id)
}

/// Appends a new KEK to the file (it becomes the active one); its id.
pub fn append_kek(path: &Path) -> Result<String, VaultError> {
    use std::io::Write;
    let (id, line) = new_kek_line()?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| VaultError::Kek(format!("cannot append to {}: {e}", path.display())))?;
    writeln!(file, "{line}")
        .and_then(|_| file.sync_all())
        .map_err(|e| VaultError::Kek(format!("cannot append to {}: {e}", path.display())))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_entry_is_active_unless_one_is_selected() {
        let (a, la) = new_kek_line().expect("test value");
        let (b, lb) = new_kek_line().expect("test value");
        let mut ring =
            KekRing::parse(&format!("# c\n{la}\n\n{lb}\n"), false, KekSource::Inline).expect("test value");
        assert_eq!(ring.active().0, b);
        assert!(ring.get(&a).is_some());
        ring.select(&a).expect("test value");
        assert_eq!(ring.active().0, a);
        assert!(ring.select("nope").is_err());
    }

    #[test]
    fn inline_form_and_bad_entries() {
        let key = SecretKey::generate().expect("test value").to_base64();
        let ring =
            KekRing::parse(&format!("one={key};two={key}"), true, KekSource::Inline).expect("test value");
        assert_eq!(ring.ids(), vec!["one", "two"]);
        assert!(KekRing::parse("", false, KekSource::Inline).is_err());
        assert!(KekRing::parse("only-an-id", false, KekSource::Inline).is_err());
        assert!(KekRing::parse("id c2hvcnQ", false, KekSource::Inline).is_err());
        assert!(KekRing::parse(&format!("a:b {key}"), false, KekSource::Inline).is_err());
        assert!(KekRing::parse(&format!("a {key}\na {key}"), false, KekSource::Inline).is_err());
    }

    #[test]
    fn a_missing_file_is_created_once_and_appended_to() {
        let dir = tempfile::tempdir().expect("test value");
        let config = EncryptionConfig::default();
        let first = KekRing::load(&config, dir.path()).expect("test value");
        let again = KekRing::load(&config, dir.path()).expect("test value");
        assert_eq!(first.ids(), again.ids());
        let path = kek_path(&config, dir.path());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).expect("test value").permissions().mode() & 0o777,
                0o600
            );
        }
        let id = append_kek(&path).expect("test value");
        let ring = read_file(&path).expect("test value");
        assert_eq!(ring.active().0, id);
        assert_eq!(ring.ids().len(), 2);
        let off = EncryptionConfig {
            generate_kek: false,
            ..EncryptionConfig::default()
        };
        let empty = tempfile::tempdir().expect("test value");
        assert!(KekRing::load(&off, empty.path()).is_err());
    }
}
