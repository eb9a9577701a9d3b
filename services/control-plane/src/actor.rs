//! Who is calling and what they may do (RBAC).
//!
//! The gateway authenticates bearer tokens and forwards the principal to the
//! control-plane, which reads it into an [`Actor`] (see `http::access`). An actor's
//! role and app memberships decide what it sees and changes:
//!
//! | role | runs and apps | start / stop / reply | register apps | principals |
//! |---|---|---|---|---|
//! | admin | all | yes | yes | yes |
//! | operator | all | yes | yes | no |
//! | developer | member apps (+ own app-less runs) | in those | member apps | no |
//! | viewer | member apps (+ own app-less runs) | no | no | no |
//!
//! A run the caller may not see answers 404 `run_not_found`, exactly like a run that
//! does not exist, so run ids do not leak across apps; an action the role does not
//! allow answers 403 `forbidden`.

use switchyard_contracts::AppId;
use switchyard_contracts::auth::Role;

/// Principal id of callers inside the trust boundary that name no principal.
pub(crate) const INTERNAL_PRINCIPAL: &str = "internal";

/// The caller of a request, as the gateway authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Actor {
    /// Who is calling: a registered principal's id, or the name of a built-in caller
    /// (the gateway's `admin` and `anonymous`, [`INTERNAL_PRINCIPAL`]). Stored as the
    /// `created_by` of the runs the caller starts.
    pub(crate) id: String,
    pub(crate) role: Role,
    /// Apps the principal is a member of (only consulted for developers and viewers).
    pub(crate) apps: Vec<AppId>,
}

impl Actor {
    pub(crate) fn internal() -> Self {
        Self {
            id: INTERNAL_PRINCIPAL.to_owned(),
            role: Role::Admin,
            apps: Vec::new(),
        }
    }

    /// Admins and operators see every run and app.
    pub(crate) fn sees_everything(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Operator)
    }

    /// The app filter for listings: `None` = all apps.
    pub(crate) fn app_scope(&self) -> Option<&[AppId]> {
        (!self.sees_everything()).then_some(self.apps.as_slice())
    }

    pub(crate) fn is_member(&self, app_id: &AppId) -> bool {
        self.apps.contains(app_id)
    }

    pub(crate) fn may_see_app(&self, app_id: &AppId) -> bool {
        self.sees_everything() || self.is_member(app_id)
    }

    /// A run of `app_id` started by `created_by`.
    pub(crate) fn may_see_run(&self, app_id: Option<&AppId>, created_by: Option<&str>) -> bool {
        if self.sees_everything() {
            return true;
        }
        match app_id {
            Some(app) => self.is_member(app),
            None => created_by == Some(self.id.as_str()),
        }
    }

    /// Whether the role may change anything at all (start, stop, reply, register).
    pub(crate) fn may_write(&self) -> bool {
        self.role != Role::Viewer
    }
}
