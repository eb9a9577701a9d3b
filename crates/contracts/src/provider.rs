//! Provider names. A provider is the agent CLI (or the deterministic `scripted` engine)
//! an executor runs for a run.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The providers Switchyard knows. Wire form is the kebab-case canonical name;
/// `codex-cli` is accepted as an alias of `codex-app-server` for old clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderName {
    #[serde(alias = "codex-cli")]
    CodexAppServer,
    ClaudeCode,
    Opencode,
    Scripted,
}

impl ProviderName {
    pub const ALL: [ProviderName; 4] = [
        ProviderName::CodexAppServer,
        ProviderName::ClaudeCode,
        ProviderName::Opencode,
        ProviderName::Scripted,
    ];

    /// Parses a canonical name or an alias.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == name || p.aliases().contains(&name))
    }

    /// The canonical name, used in subjects, responses and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderName::CodexAppServer => "codex-app-server",
            ProviderName::ClaudeCode => "claude-code",
            ProviderName::Opencode => "opencode",
            ProviderName::Scripted => "scripted",
        }
    }

    /// Other names clients may use for this provider.
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            ProviderName::CodexAppServer => &["codex-cli"],
            _ => &[],
        }
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The provider used when neither the request, the profile nor the app names one.
pub const DEFAULT_PROVIDER: ProviderName = ProviderName::CodexAppServer;

/// `providerOptions` keys that would choose where a run's model requests — and the
/// credential they carry — are sent. That endpoint belongs to the executor's operator
/// (`executor.credentials.<provider>.base_url`), so every service refuses these keys
/// wherever they appear: in a start request, an app's runtime defaults, an execution
/// profile or a run command. They are compared ignoring case, `_` and `-`, so that
/// `base_url` or `baseURL` are refused as well instead of being silently ignored.
pub const OPERATOR_ONLY_OPTIONS: &[&str] = &["baseUrl"];

/// The first of `keys` that only the operator may set (see [`OPERATOR_ONLY_OPTIONS`]).
pub fn operator_only_option<'a>(keys: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let folded = |key: &str| -> String {
        key.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    keys.into_iter().find(|key| {
        let key = folded(key);
        OPERATOR_ONLY_OPTIONS
            .iter()
            .any(|refused| folded(refused) == key)
    })
}

/// Why `field` (the caller's path to an operator-only option) is refused, naming where
/// the operator sets the endpoint of `provider` (or of any provider, when unknown).
pub fn operator_only_message(field: &str, provider: Option<ProviderName>) -> String {
    let provider = provider.map_or("<provider>", ProviderName::as_str);
    format!(
        "`{field}` is not allowed: the model endpoint a provider's credentials are sent to \
         is set by the executor's operator in `executor.credentials.{provider}.base_url`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codex_cli_is_an_alias_of_codex_app_server() {
        assert_eq!(
            ProviderName::parse("codex-cli"),
            Some(ProviderName::CodexAppServer)
        );
        let parsed: ProviderName = serde_json::from_str("\"codex-cli\"").unwrap();
        assert_eq!(parsed, ProviderName::CodexAppServer);
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            "\"codex-app-server\""
        );
        assert_eq!(ProviderName::parse("gpt"), None);
    }

    #[test]
    fn endpoint_options_are_refused_in_any_spelling() {
        for key in ["baseUrl", "base_url", "baseURL", "BASE-URL", "BaseUrl"] {
            assert_eq!(
                operator_only_option(["model", key, "sandbox"]),
                Some(key),
                "{key}"
            );
        }
        assert_eq!(operator_only_option(["model", "baseUrlX", "url"]), None);
        let message =
            operator_only_message("providerOptions.baseUrl", Some(ProviderName::ClaudeCode));
        assert!(message.contains("`providerOptions.baseUrl`"), "{message}");
        assert!(
            message.contains("executor.credentials.claude-code.base_url"),
            "{message}"
        );
    }
}
