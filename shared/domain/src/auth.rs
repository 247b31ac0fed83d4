//! Who is calling, as established by a verified token, and the rules about what they may see.

use crate::ids::{OutletId, ParticipantId, RegionId};
use crate::phone::PhoneNumber;
use crate::{Classified, Kind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Participant,
    Rep,
    Admin,
    /// A machine client (another system of the programme), with its own credentials; what
    /// it may do is its token's scopes.
    Service,
}

impl Role {
    pub fn parse(raw: &str) -> Option<Role> {
        match raw {
            "participant" => Some(Role::Participant),
            "rep" => Some(Role::Rep),
            "admin" => Some(Role::Admin),
            "service" => Some(Role::Service),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Participant => "participant",
            Role::Rep => "rep",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutletRole {
    Owner,
    Seller,
}

impl OutletRole {
    pub fn parse(raw: &str) -> Option<OutletRole> {
        match raw {
            "owner" => Some(OutletRole::Owner),
            "seller" => Some(OutletRole::Seller),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OutletRole::Owner => "owner",
            OutletRole::Seller => "seller",
        }
    }
}

/// The verified identity behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token subject. For participants it is their participant id.
    pub subject: ParticipantId,
    pub role: Role,
    pub outlet: Option<(OutletId, OutletRole)>,
    pub region: Option<RegionId>,
    /// The token's OAuth scopes (the `scope` claim, space-separated); only services' are
    /// consulted.
    pub scopes: Vec<String>,
    /// The phone the identity provider verified (`phone_number` with
    /// `phone_number_verified` true, as Cognito's ID tokens carry them), if any.
    pub verified_phone: Option<PhoneNumber>,
}

/// The scope a service needs to report actions for participants.
pub const REPORT_ACTIONS_SCOPE: &str = "actions:report";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a valid bearer token is required")]
    Unauthenticated,
    #[error("this route is not open to the {0} role")]
    WrongRole(&'static str),
    #[error("you may only act on your own data")]
    NotYours,
}

impl Classified for AuthError {
    fn kind(&self) -> Kind {
        match self {
            AuthError::Unauthenticated => Kind::Unauthenticated,
            AuthError::WrongRole(_) | AuthError::NotYours => Kind::Forbidden,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            AuthError::Unauthenticated => "unauthenticated",
            AuthError::WrongRole(_) => "forbidden",
            AuthError::NotYours => "forbidden",
        }
    }
}

impl Caller {
    pub fn require(&self, allowed: &[Role]) -> Result<(), AuthError> {
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(AuthError::WrongRole(self.role.as_str()))
        }
    }

    /// The participant id of a participant caller; reps and admins are refused.
    pub fn participant(&self) -> Result<&ParticipantId, AuthError> {
        self.require(&[Role::Participant])?;
        Ok(&self.subject)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    pub fn is_owner_of(&self, outlet: &OutletId) -> bool {
        matches!(&self.outlet, Some((o, OutletRole::Owner)) if o == outlet)
    }
}
