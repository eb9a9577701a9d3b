//! What the gateway tells the control-plane about an authenticated caller: internal
//! headers (the gateway drops any a client sends) and the roles they carry.

/// Prefix of every internal header; the gateway strips all of them from client requests.
pub const INTERNAL_HEADER_PREFIX: &str = "x-switchyard-";
/// The authenticated principal's id.
pub const PRINCIPAL_HEADER: &str = "x-switchyard-principal";
/// The principal's role ([`Role::as_str`]).
pub const ROLE_HEADER: &str = "x-switchyard-role";
/// The principal's apps, comma-separated (app ids never contain commas).
pub const APPS_HEADER: &str = "x-switchyard-apps";
/// Set by the control-plane on the answer to a management request that changed a
/// principal's access (its id): the gateway that forwarded it forgets that principal
/// before answering, so the admin's next request already sees the change. Gateways
/// drop it from what they pass on, like every internal header.
pub const PRINCIPAL_CHANGED_HEADER: &str = "x-switchyard-principal-changed";
/// The shared secret that proves a request to the control-plane comes from a gateway
/// (`control_plane.internal_token` / `gateway.control_plane_token`).
pub const INTERNAL_TOKEN_HEADER: &str = "x-switchyard-internal-token";

/// What a principal may do; the control-plane enforces it. Lowercase on the wire.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including managing principals.
    Admin,
    /// Every app's runs; no principal management.
    Operator,
    /// Start, stop and approve within member apps.
    Developer,
    /// Read member apps' runs.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Developer, Role::Viewer];

    pub fn parse(text: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|role| role.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
