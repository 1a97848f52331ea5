//! How every PIKA process reads its configuration: compiled-in defaults,
//! then an optional TOML file, then `{PREFIX}SECTION__KEY` environment
//! variables (figment). The types themselves refuse unknown keys
//! (`deny_unknown_fields`), so a misspelt setting fails at start-up.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

/// Why a configuration did not load; the message names the file or field.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("config file {0} does not exist")]
    MissingFile(String),
    #[error("{0}")]
    Invalid(String),
}

/// Layers `T::default()`, the file and the environment (`env_prefix`, for
/// example `PIKA__`; sections split on `__`).
pub fn load_layered<T>(file: Option<&Path>, env_prefix: &str) -> Result<T, LoadError>
where
    T: Serialize + DeserializeOwned + Default,
{
    use figment::providers::{Env, Format, Serialized, Toml};
    let mut fig = figment::Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(LoadError::MissingFile(path.display().to_string()));
        }
        fig = fig.merge(Toml::file(path));
    }
    fig = fig.merge(Env::prefixed(env_prefix).split("__"));
    fig.extract().map_err(|e| LoadError::Invalid(e.to_string()))
}
