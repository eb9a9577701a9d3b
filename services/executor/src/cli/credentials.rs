//! Credential values for the agent CLIs, and which of them each provider may have.
//!
//! A run command carries only the *names* of the environment variables its provider
//! needs, and only names the operator allowed for that provider
//! (`[executor.credentials.<provider>] env`, see [`ProviderCredentials`]) are honoured.
//! The executor resolves their values here, from its env file (`KEY=value` lines, as
//! written by `scripts/bootstrap-local-provider-env.sh`) and — when
//! `executor.credentials_from_environment` is on — from its own environment, but only
//! for names some provider is allowed: the rest of the executor's environment (its NATS
//! password, tokens, database URL) is never a credential. Values reach the child only
//! through its environment. Every value known here, and every secret-looking variable
//! of the executor's environment, is redacted from whatever the adapters keep (stderr
//! tails, raw protocol lines) before it can reach an event or a log.

use secrecy::{ExposeSecret as _, SecretString};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use switchyard_contracts::ProviderName;

/// What replaces a credential value in redacted text.
pub(crate) const REDACTED: &str = "[redacted]";

/// Values shorter than this are not treated as secrets when redacting: env files also
/// hold flags like `DISABLE_TELEMETRY=1`, and blanking every `1` would destroy the
/// evidence without protecting anything. Real keys are far longer.
pub(crate) const MIN_REDACTED_LEN: usize = 8;

/// Process environment variables whose name contains one of these (upper-cased) are
/// redacted even when no run asked for them.
const SECRET_NAME_MARKERS: &[&str] = &[
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "AUTH",
];

/// Prefix of the platform's own configuration variables: never a provider credential.
pub(crate) const PLATFORM_ENV_PREFIX: &str = "SWITCHYARD_";

/// What the operator allows one provider (`[executor.credentials.<provider>]`): the
/// variables it may be given and the one model endpoint its CLI is pointed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProviderCredentials {
    /// The variable names a run of this provider may name in `credentialEnv`; the first
    /// is what a run naming none gets. Never empty, never a `SWITCHYARD_` name.
    pub env: Vec<String>,
    /// The model API base URL the CLI is pointed at; `None` leaves the CLI's own default.
    pub base_url: Option<String>,
}

impl ProviderCredentials {
    /// The built-in allowance of `provider`: the variables its CLI reads for its key,
    /// and no endpoint of ours. `scripted` takes no credentials.
    pub(crate) fn defaults(provider: ProviderName) -> Self {
        let env: &[&str] = match provider {
            ProviderName::CodexAppServer => &["OPENAI_API_KEY", "CODEX_API_KEY"],
            ProviderName::ClaudeCode => &[
                "ANTHROPIC_API_KEY",
                "ANTHROPIC_AUTH_TOKEN",
                "CLAUDE_CODE_OAUTH_TOKEN",
            ],
            // The keys opencode's built-in providers read, each for its own vendor.
            ProviderName::Opencode => &[
                "OPENAI_API_KEY",
                "ANTHROPIC_API_KEY",
                "OPENROUTER_API_KEY",
                "GEMINI_API_KEY",
                "GOOGLE_GENERATIVE_AI_API_KEY",
                "GROQ_API_KEY",
                "MISTRAL_API_KEY",
                "DEEPSEEK_API_KEY",
                "XAI_API_KEY",
            ],
            ProviderName::Scripted => &[],
        };
        Self {
            env: env.iter().map(|name| (*name).to_owned()).collect(),
            base_url: None,
        }
    }

    /// The names a run asks for: its own list, or else the first allowed name.
    pub(crate) fn names_for(&self, requested: &[String]) -> Vec<String> {
        if requested.is_empty() {
            self.env.iter().take(1).cloned().collect()
        } else {
            requested.to_vec()
        }
    }

    /// The first of `names` this provider may not be given.
    pub(crate) fn refused<'a>(&self, names: &'a [String]) -> Option<&'a String> {
        names.iter().find(|name| !self.env.contains(name))
    }
}

/// Every provider's [`ProviderCredentials`]: the operator's tables over the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialPolicies {
    by_provider: HashMap<ProviderName, ProviderCredentials>,
}

impl Default for CredentialPolicies {
    fn default() -> Self {
        Self {
            by_provider: ProviderName::ALL
                .into_iter()
                .map(|provider| (provider, ProviderCredentials::defaults(provider)))
                .collect(),
        }
    }
}

impl CredentialPolicies {
    /// Replaces `provider`'s allowance.
    pub(crate) fn set(&mut self, provider: ProviderName, credentials: ProviderCredentials) {
        self.by_provider.insert(provider, credentials);
    }

    /// `self` with `provider`'s allowance replaced (tests and tools).
    #[cfg(test)]
    pub(crate) fn with(mut self, provider: ProviderName, credentials: ProviderCredentials) -> Self {
        self.set(provider, credentials);
        self
    }

    pub(crate) fn get(&self, provider: ProviderName) -> ProviderCredentials {
        self.by_provider
            .get(&provider)
            .cloned()
            .unwrap_or_else(|| ProviderCredentials::defaults(provider))
    }

    /// Every name some provider may be given: the only variables of the executor's
    /// environment that can be resolved at all.
    pub(crate) fn all_names(&self) -> BTreeSet<String> {
        self.by_provider
            .values()
            .flat_map(|credentials| credentials.env.iter().cloned())
            .collect()
    }
}

/// Some named credentials have no value; the adapter ends the run `auth_missing`
/// before spawning anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no value configured for {}", names.join(", "))]
pub struct MissingCredentials {
    /// The names without a (non-empty) value, in the order asked.
    pub names: Vec<String>,
}

/// The env file could not be read. Never carries a value from the file.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read the credentials env file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credentials env file {path}, line {line}: {problem}")]
    Syntax {
        path: PathBuf,
        line: usize,
        problem: &'static str,
    },
}

struct Inner {
    /// The variables of the executor's own environment that some provider may be given
    /// (consulted first); nothing else of that environment.
    environment: HashMap<String, SecretString>,
    /// The env file's entries (consulted when the environment has no value).
    file: HashMap<String, SecretString>,
    /// Every value to redact, longest first (so that a value containing another is
    /// replaced whole). Grows when a run resolves a variable of the environment whose
    /// name did not look secret.
    redacted: RwLock<Vec<String>>,
}

/// Resolves and redacts credential values. Cheap to clone.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut file: Vec<&String> = self.inner.file.keys().collect();
        file.sort();
        f.debug_struct("Credentials")
            .field("env_file_names", &file)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Credentials from the optional env file and from `environment` (the executor's
    /// process environment), whose values win over the file's — but only for the
    /// names in `from_environment` (empty: the file is the only source). Secret-looking
    /// variables of `environment` are redacted whatever the names.
    pub fn load(
        env_file: Option<&Path>,
        environment: &HashMap<String, String>,
        from_environment: &BTreeSet<String>,
    ) -> Result<Self, CredentialsError> {
        let file = match env_file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
                        path: path.to_owned(),
                        source,
                    })?;
                warn_if_readable_by_others(path);
                parse_env_file(&text).map_err(|(line, problem)| CredentialsError::Syntax {
                    path: path.to_owned(),
                    line,
                    problem,
                })?
            }
            None => Vec::new(),
        };
        let secret_looking = environment
            .iter()
            .filter(|(name, _)| looks_secret(name))
            .map(|(_, value)| value.clone());
        Ok(Self::build(
            environment
                .iter()
                .filter(|(name, _)| from_environment.contains(*name))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            file,
            secret_looking.collect(),
        ))
    }

    /// Credentials from explicit pairs (every value is redacted), for tests and tools.
    #[cfg(test)]
    pub(crate) fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let pairs: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::build(Vec::new(), pairs, Vec::new())
    }

    fn build(
        environment: Vec<(String, String)>,
        file: Vec<(String, String)>,
        also_redacted: Vec<String>,
    ) -> Self {
        let mut redacted: Vec<String> = file
            .iter()
            .map(|(_, v)| v.clone())
            .chain(also_redacted)
            .collect();
        normalize(&mut redacted);
        let secrets = |pairs: Vec<(String, String)>| {
            pairs
                .into_iter()
                .map(|(k, v)| (k, SecretString::from(v)))
                .collect::<HashMap<_, _>>()
        };
        Self {
            inner: Arc::new(Inner {
                environment: secrets(environment),
                file: secrets(file),
                redacted: RwLock::new(redacted),
            }),
        }
    }

    /// Values for the named env vars, from the allowed part of the executor's environment
    /// or its env file. Which names a provider may ask for is checked before, against its
    /// [`ProviderCredentials`].
    /// Err lists the names with no (non-empty) value (→ the adapter ends the run
    /// `auth_missing` BEFORE spawning).
    pub fn resolve(
        &self,
        names: &[String],
    ) -> Result<Vec<(String, SecretString)>, MissingCredentials> {
        let mut found = Vec::with_capacity(names.len());
        let mut missing = Vec::new();
        for name in names {
            match self.value(name) {
                Some(value) => found.push((name.clone(), value.clone())),
                None => missing.push(name.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(MissingCredentials { names: missing });
        }
        // A value handed to a child is a secret whatever its name looked like.
        let mut redacted = self
            .inner
            .redacted
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = redacted.len();
        for (_, value) in &found {
            let value = value.expose_secret();
            if value.chars().count() >= MIN_REDACTED_LEN && !redacted.iter().any(|v| v == value) {
                redacted.push(value.to_owned());
            }
        }
        if redacted.len() != before {
            normalize(&mut redacted);
        }
        Ok(found)
    }

    /// Whether every named variable has a value (for presence and the providers API).
    pub fn is_configured(&self, names: &[String]) -> bool {
        names.iter().all(|name| self.value(name).is_some())
    }

    fn value(&self, name: &str) -> Option<&SecretString> {
        self.inner
            .environment
            .get(name)
            .filter(|v| !v.expose_secret().is_empty())
            .or_else(|| {
                self.inner
                    .file
                    .get(name)
                    .filter(|v| !v.expose_secret().is_empty())
            })
    }

    /// Replaces every known credential value in `text` with `[redacted]`, also where it
    /// appears inside a longer string; adapters run every stderr line / raw line
    /// through it before it goes into an event or evidence.
    pub(crate) fn redact(&self, text: &str) -> String {
        let redacted = self
            .inner
            .redacted
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut text = text.to_owned();
        for value in redacted.iter() {
            if text.contains(value.as_str()) {
                text = text.replace(value.as_str(), REDACTED);
            }
        }
        text
    }
}

/// Keeps only values long enough to be secrets, deduplicated, longest first.
fn normalize(values: &mut Vec<String>) {
    values.retain(|v| v.chars().count() >= MIN_REDACTED_LEN);
    values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    values.dedup();
}

fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_NAME_MARKERS.iter().any(|m| upper.contains(m))
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the credentials env file is readable by other users; chmod 600 it");
    }
}

/// Parses `KEY=value` lines: blank lines and `#` comments are skipped, an `export `
/// prefix is allowed, values may be single-quoted (literal), double-quoted (with `\n`,
/// `\"`, `\\` escapes) or bare (an unquoted ` #` starts a comment). A later line wins.
/// Errors give the 1-based line number and never the line's content.
pub(crate) fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, (usize, &'static str)> {
    let mut entries: Vec<(String, String)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((number, "expected KEY=value"));
        };
        let key = key.trim();
        if !is_name(key) {
            return Err((
                number,
                "the name must be letters, digits and `_`, not starting with a digit",
            ));
        }
        let value = parse_value(value.trim_start()).map_err(|problem| (number, problem))?;
        entries.retain(|(k, _)| k != key);
        entries.push((key.to_owned(), value));
    }
    Ok(entries)
}

pub(crate) fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(value: &str) -> Result<String, &'static str> {
    if let Some(rest) = value.strip_prefix('\'') {
        let end = rest.find('\'').ok_or("unterminated single quote")?;
        return trailing_is_comment(&rest[end + 1..]).map(|()| rest[..end].to_owned());
    }
    if let Some(rest) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return trailing_is_comment(&rest[i + 1..]).map(|()| out),
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, other)) => out.push(other),
                    None => break,
                },
                other => out.push(other),
            }
        }
        return Err("unterminated double quote");
    }
    let bare = match value.find(" #") {
        Some(comment) => &value[..comment],
        None => value,
    };
    Ok(bare.trim_end().to_owned())
}

fn trailing_is_comment(rest: &str) -> Result<(), &'static str> {
    let rest = rest.trim();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(())
    } else {
        Err("unexpected text after the closing quote")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
# written by bootstrap-local-provider-env.sh
ALPHA_API_KEY=sk-plain-0123456789
export BETA_API_KEY="sk-ant-\"quoted\"-value"
  export   OPENROUTER_API_KEY = 'single # not a comment'
BARE_WITH_COMMENT=value-with-comment   # trailing comment
EMPTY=
DISABLE_TELEMETRY=1
ALPHA_API_KEY=sk-later-line-wins-42
"#;

    #[test]
    fn env_files_parse_quotes_comments_and_export() {
        let entries: HashMap<String, String> =
            parse_env_file(SAMPLE).unwrap().into_iter().collect();
        assert_eq!(entries["ALPHA_API_KEY"], "sk-later-line-wins-42");
        assert_eq!(entries["BETA_API_KEY"], "sk-ant-\"quoted\"-value");
        assert_eq!(entries["OPENROUTER_API_KEY"], "single # not a comment");
        assert_eq!(entries["BARE_WITH_COMMENT"], "value-with-comment");
        assert_eq!(entries["EMPTY"], "");
        assert_eq!(entries["DISABLE_TELEMETRY"], "1");
        assert_eq!(entries.len(), 6);
    }

    #[test]
    fn syntax_errors_name_the_line_and_never_the_value() {
        assert_eq!(
            parse_env_file("A=1\nno-equals-sign-secret\n")
                .unwrap_err()
                .0,
            2
        );
        assert_eq!(parse_env_file("1BAD=x").unwrap_err().0, 1);
        assert_eq!(parse_env_file("K=\"open-secret").unwrap_err().0, 1);
        assert_eq!(parse_env_file("K='a' trailing").unwrap_err().0, 1);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        std::fs::write(&path, "OK=1\nBROKEN sk-secret-in-bad-line\n").unwrap();
        let error = Credentials::load(Some(&path), &HashMap::new(), &BTreeSet::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 2"), "{error}");
        assert!(!error.contains("sk-secret"), "{error}");
    }

    #[test]
    fn the_environment_wins_over_the_file_and_missing_names_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        std::fs::write(&path, SAMPLE).unwrap();
        let environment = HashMap::from([
            ("ALPHA_API_KEY".to_owned(), "sk-from-environment".to_owned()),
            ("EMPTY_IN_ENV".to_owned(), String::new()),
        ]);
        let allowed = names(&["ALPHA_API_KEY", "EMPTY_IN_ENV", "GEMINI_API_KEY"]);
        let credentials = Credentials::load(Some(&path), &environment, &allowed).unwrap();
        let resolved = credentials
            .resolve(&["ALPHA_API_KEY".into(), "BETA_API_KEY".into()])
            .unwrap();
        assert_eq!(resolved[0].0, "ALPHA_API_KEY");
        assert_eq!(resolved[0].1.expose_secret(), "sk-from-environment");
        assert_eq!(resolved[1].1.expose_secret(), "sk-ant-\"quoted\"-value");

        let missing = credentials
            .resolve(&[
                "GEMINI_API_KEY".into(),
                "ALPHA_API_KEY".into(),
                "EMPTY".into(),
                "EMPTY_IN_ENV".into(),
            ])
            .unwrap_err();
        assert_eq!(
            missing.names,
            vec!["GEMINI_API_KEY", "EMPTY", "EMPTY_IN_ENV"]
        );
        assert!(missing.to_string().contains("GEMINI_API_KEY, EMPTY"));
        assert!(credentials.is_configured(&["BETA_API_KEY".into()]));
        assert!(!credentials.is_configured(&["EMPTY".into()]));
        assert!(!format!("{credentials:?}").contains("sk-"));
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn only_allowed_names_are_resolved_from_the_environment() {
        let environment = HashMap::from([
            (
                "OPENAI_API_KEY".to_owned(),
                "sk-allowed-environment".to_owned(),
            ),
            (
                "SWITCHYARD_GATEWAY__ADMIN_TOKEN".to_owned(),
                "admin-token-of-the-platform".to_owned(),
            ),
            (
                "SWITCHYARD_DATABASE__URL".to_owned(),
                "postgres://u:pw-of-the-db@db/x".to_owned(),
            ),
        ]);
        let credentials =
            Credentials::load(None, &environment, &names(&["OPENAI_API_KEY"])).unwrap();
        assert_eq!(
            credentials.resolve(&["OPENAI_API_KEY".into()]).unwrap()[0]
                .1
                .expose_secret(),
            "sk-allowed-environment"
        );
        for name in [
            "SWITCHYARD_GATEWAY__ADMIN_TOKEN",
            "SWITCHYARD_DATABASE__URL",
        ] {
            assert_eq!(
                credentials.resolve(&[name.into()]).unwrap_err().names,
                vec![name]
            );
        }
        // The platform's secret-looking variables are still redacted.
        assert_eq!(
            credentials.redact("token admin-token-of-the-platform"),
            "token [redacted]"
        );
        // Off: the environment is no source at all.
        let credentials = Credentials::load(None, &environment, &BTreeSet::new()).unwrap();
        assert!(!credentials.is_configured(&["OPENAI_API_KEY".into()]));
    }

    #[test]
    fn the_defaults_allow_each_provider_its_own_key_variables_only() {
        let policies = CredentialPolicies::default();
        let claude = policies.get(ProviderName::ClaudeCode);
        assert_eq!(claude.env[0], "ANTHROPIC_API_KEY");
        assert_eq!(claude.base_url, None);
        assert_eq!(claude.names_for(&[]), vec!["ANTHROPIC_API_KEY"]);
        assert_eq!(
            claude.refused(&["ANTHROPIC_API_KEY".into(), "OPENAI_API_KEY".into()]),
            Some(&"OPENAI_API_KEY".to_owned())
        );
        assert_eq!(
            policies.get(ProviderName::CodexAppServer).names_for(&[]),
            vec!["OPENAI_API_KEY"]
        );
        assert!(policies.get(ProviderName::Scripted).env.is_empty());
        assert!(
            policies
                .all_names()
                .iter()
                .all(|name| !name.starts_with(PLATFORM_ENV_PREFIX))
        );
    }

    #[test]
    fn every_value_is_redacted_even_inside_longer_strings() {
        let environment = HashMap::from([
            ("MY_API_TOKEN".to_owned(), "tok-environment-123".to_owned()),
            ("HOME".to_owned(), "/root/home-directory".to_owned()),
            ("PLAIN_NAME".to_owned(), "plain-but-resolved".to_owned()),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        std::fs::write(
            &path,
            "A=sk-abcdefgh\nB=sk-abcdefgh-longer\nFLAG=1\nURL=http://127.0.0.1:9/v1\n",
        )
        .unwrap();
        let credentials =
            Credentials::load(Some(&path), &environment, &names(&["PLAIN_NAME"])).unwrap();
        let line = "auth failed for Bearer sk-abcdefgh-longer and xsk-abcdefghx; token=tok-environment-123 at http://127.0.0.1:9/v1 in /root/home-directory (1)";
        assert_eq!(
            credentials.redact(line),
            "auth failed for Bearer [redacted] and x[redacted]x; token=[redacted] at [redacted] in /root/home-directory (1)"
        );
        // A variable of the environment becomes a secret once a run resolves it.
        assert_eq!(
            credentials.redact("v=plain-but-resolved"),
            "v=plain-but-resolved"
        );
        credentials.resolve(&["PLAIN_NAME".into()]).unwrap();
        assert_eq!(credentials.redact("v=plain-but-resolved"), "v=[redacted]");

        let pairs = Credentials::from_pairs([("K", "secret-value-1")]);
        assert_eq!(pairs.redact("[secret-value-1]"), "[[redacted]]");
    }
}
