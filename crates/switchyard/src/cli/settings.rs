//! Where the client commands find the gateway and their token. First found wins:
//! `--url` / `--token`, then `SWITCHYARD_URL` / `SWITCHYARD_TOKEN`, then the config file
//! `$XDG_CONFIG_HOME/switchyard/config.toml` (`~/.config/switchyard/config.toml` when
//! XDG_CONFIG_HOME is unset), then `http://127.0.0.1:8080` without a token.
//!
//! The services' own configuration (`switchyard.toml`, `SWITCHYARD_<SECTION>__<KEY>`)
//! is a different thing: it only reads variables with a `__`, so these two never mix.

use secrecy::SecretString;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
pub const URL_ENV: &str = "SWITCHYARD_URL";
pub const TOKEN_ENV: &str = "SWITCHYARD_TOKEN";

/// The connection flags every client command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientArgs {
    /// The gateway's base URL [env: SWITCHYARD_URL] [config: url] [default:
    /// http://127.0.0.1:8080]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// API token sent as a bearer token [env: SWITCHYARD_TOKEN] [config: token]; other
    /// users of the machine can see a flag, not the variable or the file
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

/// The config file's keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    url: Option<String>,
    token: Option<SecretString>,
}

/// Where a setting came from (shown when the gateway cannot be reached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(&'static str),
    File(PathBuf),
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => f.write_str("the command line"),
            Source::Env(name) => write!(f, "${name}"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Default => f.write_str("the default"),
        }
    }
}

/// What a client command connects with.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Without a trailing slash.
    pub url: String,
    pub url_source: Source,
    pub token: Option<SecretString>,
    /// A warning for the user (e.g. a config file with a token others may read).
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "the gateway URL {url:?} (from {source_name}) must start with http:// (this build speaks no TLS: put a TLS-terminating proxy on the client's side)"
    )]
    Url { url: String, source_name: Source },
}

/// The config file's path: `$XDG_CONFIG_HOME/switchyard/config.toml`, else
/// `$HOME/.config/switchyard/config.toml`. XDG_CONFIG_HOME counts only when absolute,
/// as the XDG spec says.
pub fn config_path(env: &HashMap<String, String>) -> Option<PathBuf> {
    let base = env
        .get("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            env.get("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| Path::new(h).join(".config"))
        })?;
    Some(base.join("switchyard").join("config.toml"))
}

/// Resolves the settings from the flags, the environment `env` and the config file.
pub fn resolve(
    args: &ClientArgs,
    env: &HashMap<String, String>,
) -> Result<ClientSettings, SettingsError> {
    let mut warnings = Vec::new();
    let (file, path) = match config_path(env) {
        Some(path) => (read_file(&path, &mut warnings)?, Some(path)),
        None => (None, None),
    };
    let file = file.unwrap_or_default();
    let from_env = |name: &'static str| {
        env.get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let file_source = || Source::File(path.clone().unwrap_or_default());

    let (url, url_source) = if let Some(url) = args.url.clone() {
        (url, Source::Flag)
    } else if let Some(url) = from_env(URL_ENV) {
        (url, Source::Env(URL_ENV))
    } else if let Some(url) = file.url.clone() {
        (url, file_source())
    } else {
        (DEFAULT_URL.to_owned(), Source::Default)
    };
    let url = url.trim().trim_end_matches('/').to_owned();
    if !url.starts_with("http://") {
        return Err(SettingsError::Url {
            url,
            source_name: url_source,
        });
    }

    let token = args
        .token
        .clone()
        .filter(|t| !t.is_empty())
        .or_else(|| from_env(TOKEN_ENV))
        .map(SecretString::from)
        .or(file.token);
    Ok(ClientSettings {
        url,
        url_source,
        token,
        warnings,
    })
}

fn read_file(
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Option<FileSettings>, SettingsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SettingsError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let settings: FileSettings = toml::from_str(&text).map_err(|e| SettingsError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    if settings.token.is_some() && readable_by_others(path) {
        warnings.push(format!(
            "{} holds a token and other users may read it (chmod 600 it)",
            path.display()
        ));
    }
    Ok(Some(settings))
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    struct Setup {
        dir: tempfile::TempDir,
    }

    impl Setup {
        fn new(file: Option<&str>) -> Self {
            let dir = tempfile::tempdir().unwrap();
            if let Some(text) = file {
                let path = dir.path().join("switchyard");
                std::fs::create_dir_all(&path).unwrap();
                std::fs::write(path.join("config.toml"), text).unwrap();
            }
            Self { dir }
        }

        fn env(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
            let mut env: HashMap<String, String> = extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            env.insert(
                "XDG_CONFIG_HOME".to_owned(),
                self.dir.path().display().to_string(),
            );
            env
        }
    }

    fn token(s: &ClientSettings) -> Option<&str> {
        s.token.as_ref().map(|t| t.expose_secret())
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file_which_beats_the_default() {
        let setup = Setup::new(Some("url = \"http://file:1\"\ntoken = \"file-token\"\n"));
        let flags = ClientArgs {
            url: Some("http://flag:1/".into()),
            token: Some("flag-token".into()),
        };
        let env = setup.env(&[(URL_ENV, "http://env:1"), (TOKEN_ENV, "env-token")]);
        let s = resolve(&flags, &env).unwrap();
        assert_eq!(
            (s.url.as_str(), token(&s)),
            ("http://flag:1", Some("flag-token"))
        );
        assert_eq!(s.url_source, Source::Flag);

        let s = resolve(&ClientArgs::default(), &env).unwrap();
        assert_eq!(
            (s.url.as_str(), token(&s)),
            ("http://env:1", Some("env-token"))
        );

        let s = resolve(&ClientArgs::default(), &setup.env(&[(TOKEN_ENV, "")])).unwrap();
        assert_eq!(
            (s.url.as_str(), token(&s)),
            ("http://file:1", Some("file-token"))
        );
        assert!(matches!(s.url_source, Source::File(_)));

        let empty = Setup::new(None);
        let s = resolve(&ClientArgs::default(), &empty.env(&[])).unwrap();
        assert_eq!((s.url.as_str(), token(&s)), (DEFAULT_URL, None));
    }

    #[test]
    fn home_is_used_when_xdg_config_home_is_unset_or_relative() {
        let env: HashMap<String, String> = [("HOME", "/home/u"), ("XDG_CONFIG_HOME", "rel")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            config_path(&env).unwrap(),
            Path::new("/home/u/.config/switchyard/config.toml")
        );
    }

    #[test]
    fn a_bad_file_names_itself_and_the_key() {
        let setup = Setup::new(Some("url = \"http://x\"\ntokn = \"t\"\n"));
        let error = resolve(&ClientArgs::default(), &setup.env(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("config.toml"), "{error}");
        assert!(error.contains("tokn"), "{error}");
    }

    #[test]
    fn a_url_that_is_not_http_is_refused_with_its_source() {
        let setup = Setup::new(None);
        let error = resolve(
            &ClientArgs::default(),
            &setup.env(&[(URL_ENV, "127.0.0.1:8080")]),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("$SWITCHYARD_URL"), "{error}");
    }

    #[cfg(unix)]
    #[test]
    fn a_token_file_others_can_read_is_warned_about() {
        use std::os::unix::fs::PermissionsExt as _;
        let setup = Setup::new(Some("token = \"t\"\n"));
        let path = setup.dir.path().join("switchyard/config.toml");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = resolve(&ClientArgs::default(), &setup.env(&[])).unwrap();
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = resolve(&ClientArgs::default(), &setup.env(&[])).unwrap();
        assert!(s.warnings.is_empty());
    }
}
