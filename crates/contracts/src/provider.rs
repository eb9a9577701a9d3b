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
}
