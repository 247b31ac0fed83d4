//! Participants and outlets: invitations, registration, profiles, outlet membership and the
//! import of an existing member base.
//!
//! A rep invites people into their zone; the invitation decides what the registrant becomes
//! (an individual member, the owner of a new outlet, or a seller of an existing one). The
//! phone number is the identity: one account per phone, enforced by the store in the same
//! transaction that writes the profile.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use crate::auth::{AuthError, Caller, OutletRole, Role};
use crate::fraud::{FraudPolicy, Guesser, Window};
use crate::ids::{OutletId, ParticipantId, RegionId};
use crate::passcode::PhoneProof;
use crate::phone::{CountryCode, PhoneError, PhoneNumber};
use crate::ports::IdSource;
use crate::{redact, Classified, InfraError, Kind};

// ---------------------------------------------------------------- errors

/// One bad line of an import, reported to the admin so they can fix the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    /// 1-based; the header is line 1.
    pub line: u64,
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ParticipantError {
    #[error(transparent)]
    Phone(#[from] PhoneError),
    #[error("name must be 1 to {max} characters without control characters")]
    NameInvalid { max: usize },
    #[error("the e-mail address is not valid")]
    EmailInvalid,
    #[error("invitation kind must be individual, new_outlet or join_outlet")]
    InvitationKindInvalid,
    #[error("a join_outlet invitation needs an outlet_id")]
    OutletIdRequired,
    #[error("{0} is required")]
    Required(&'static str),
    #[error("a new_outlet invitation needs the name of the outlet to create")]
    OutletNameRequired,
    #[error("there is no such invitation")]
    InvitationNotFound,
    #[error("this invitation has already been used")]
    InvitationUsed,
    #[error("this invitation has expired; ask your rep for a new one")]
    InvitationExpired,
    #[error("too many wrong invitation codes; try again later")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("this phone number already belongs to an account")]
    PhoneTaken,
    #[error("prove this phone number first: verify a passcode sent to it (POST /passcodes), or sign in with a verified phone_number")]
    PhoneNotProven,
    #[error("you are already registered")]
    AlreadyRegistered,
    #[error("you are not registered yet")]
    NotRegistered,
    #[error("there is no such outlet")]
    OutletNotFound,
    #[error("this outlet is not in your zone")]
    OutletNotInZone,
    #[error("no member has this phone number")]
    MemberNotFound,
    #[error("a reason of 1 to {max} characters without control characters is required")]
    ReasonInvalid { max: usize },
    #[error("there is no such participant")]
    ParticipantNotFound,
    #[error("nothing to update: send name and/or email")]
    NothingToUpdate,
    #[error("the cursor is not valid for this listing")]
    InvalidCursor,
    #[error("the import has {} bad line(s); nothing was written", errors.len())]
    ImportInvalid { errors: Vec<LineError> },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl Classified for ParticipantError {
    fn kind(&self) -> Kind {
        use ParticipantError::*;
        match self {
            Phone(e) => e.kind(),
            NameInvalid { .. }
            | EmailInvalid
            | InvitationKindInvalid
            | OutletIdRequired
            | Required(_)
            | OutletNameRequired
            | NothingToUpdate
            | ReasonInvalid { .. }
            | InvalidCursor => Kind::BadInput,
            InvitationNotFound | NotRegistered | OutletNotFound | MemberNotFound
            | ParticipantNotFound => Kind::NotFound,
            InvitationUsed | PhoneTaken | AlreadyRegistered => Kind::Conflict,
            InvitationExpired | ImportInvalid { .. } => Kind::Unprocessable,
            OutletNotInZone | PhoneNotProven => Kind::Forbidden,
            TooManyAttempts { retry_after_secs } => Kind::TooManyAttempts {
                retry_after_secs: *retry_after_secs,
            },
            Auth(e) => e.kind(),
            Infra(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        use ParticipantError::*;
        match self {
            Phone(e) => e.code(),
            NameInvalid { .. } => "name_invalid",
            EmailInvalid => "email_invalid",
            InvitationKindInvalid => "invitation_kind_invalid",
            OutletIdRequired => "outlet_id_required",
            Required(_) => "field_required",
            OutletNameRequired => "outlet_name_required",
            InvitationNotFound => "invitation_not_found",
            InvitationUsed => "invitation_used",
            InvitationExpired => "invitation_expired",
            TooManyAttempts { .. } => "too_many_attempts",
            PhoneTaken => "phone_taken",
            PhoneNotProven => "phone_not_proven",
            AlreadyRegistered => "already_registered",
            NotRegistered => "not_registered",
            OutletNotFound => "outlet_not_found",
            OutletNotInZone => "outlet_not_in_zone",
            MemberNotFound => "member_not_found",
            NothingToUpdate => "nothing_to_update",
            ReasonInvalid { .. } => "reason_invalid",
            ParticipantNotFound => "participant_not_found",
            InvalidCursor => "invalid_cursor",
            ImportInvalid { .. } => "import_invalid",
            Auth(e) => e.code(),
            Infra(e) => e.code(),
        }
    }
}

// ---------------------------------------------------------------- small value types

/// A person's or an outlet's display name: trimmed, 1 to `max` characters, printable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub const PERSON_MAX: usize = 100;
    pub const OUTLET_MAX: usize = 120;

    pub fn parse(raw: &str, max: usize) -> Result<Self, ParticipantError> {
        let name = raw.trim();
        let count = name.chars().count();
        if count == 0 || count > max || name.chars().any(char::is_control) {
            return Err(ParticipantError::NameInvalid { max });
        }
        Ok(Self(name.to_string()))
    }

    pub fn person(raw: &str) -> Result<Self, ParticipantError> {
        Self::parse(raw, Self::PERSON_MAX)
    }

    pub fn outlet(raw: &str) -> Result<Self, ParticipantError> {
        Self::parse(raw, Self::OUTLET_MAX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An e-mail address, checked for shape only (delivery is what proves it). The domain part
/// is lower-cased. `Debug` is redacted so that an address never lands in a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ParticipantError> {
        let raw = raw.trim();
        let (local, domain) = raw.rsplit_once('@').ok_or(ParticipantError::EmailInvalid)?;
        let ok = raw.len() <= 254
            && (1..=64).contains(&local.len())
            && !local.contains('@')
            && domain.contains('.')
            && domain.split('.').all(|label| !label.is_empty())
            && raw.chars().all(|c| {
                c.is_ascii_graphic() || (!c.is_ascii() && !c.is_whitespace() && !c.is_control())
            });
        if !ok {
            return Err(ParticipantError::EmailInvalid);
        }
        Ok(Self(format!("{local}@{}", domain.to_ascii_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Email({})", redact::tail(&self.0))
    }
}

/// An invitation code: 8 characters of an alphabet without look-alikes (no 0/O, 1/I/L), so
/// it survives being read out over the phone. Input is forgiving about case, spaces and dashes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct InvitationCode(String);

impl InvitationCode {
    pub const ALPHABET: &'static [u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
    pub const LEN: usize = 8;

    pub fn parse(raw: &str) -> Result<Self, ParticipantError> {
        let code: String = raw
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let ok = code.len() == Self::LEN && code.bytes().all(|b| Self::ALPHABET.contains(&b));
        // A malformed code is reported like an unknown one: nothing to learn by probing.
        ok.then_some(Self(code))
            .ok_or(ParticipantError::InvitationNotFound)
    }

    /// A code derived from a fresh id of an [`IdSource`]: random ids give random codes, and
    /// seeded ids the same codes on every run.
    pub fn from_id(id: &str) -> Self {
        let digest = Sha256::digest(id.as_bytes());
        let code = digest
            .chunks(4)
            .take(Self::LEN)
            .map(|word| {
                let n = u32::from_be_bytes(word.try_into().expect("4 bytes"));
                Self::ALPHABET[(n % Self::ALPHABET.len() as u32) as usize] as char
            })
            .collect();
        Self(code)
    }

    pub fn random() -> Self {
        use rand::Rng;
        let mut rng = rand::rng();
        let code = (0..Self::LEN)
            .map(|_| Self::ALPHABET[rng.random_range(0..Self::ALPHABET.len())] as char)
            .collect();
        Self(code)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Not even a tail of the code: with eight characters, every one shown is a big step for
/// someone guessing it.
impl std::fmt::Debug for InvitationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InvitationCode(redacted)")
    }
}

// ---------------------------------------------------------------- model

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvitationKind {
    Individual,
    /// The registrant becomes the owner of a new outlet they name.
    NewOutlet,
    /// The registrant becomes a seller of this outlet.
    JoinOutlet(OutletId),
}

impl InvitationKind {
    pub fn parse(kind: &str, outlet_id: Option<&str>) -> Result<Self, ParticipantError> {
        match kind {
            "individual" => Ok(Self::Individual),
            "new_outlet" => Ok(Self::NewOutlet),
            "join_outlet" => {
                let raw = outlet_id.ok_or(ParticipantError::OutletIdRequired)?;
                // An id that cannot exist names no outlet.
                OutletId::parse(raw)
                    .map(Self::JoinOutlet)
                    .map_err(|_| ParticipantError::OutletNotFound)
            }
            _ => Err(ParticipantError::InvitationKindInvalid),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Individual => "individual",
            Self::NewOutlet => "new_outlet",
            Self::JoinOutlet(_) => "join_outlet",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub code: InvitationCode,
    pub kind: InvitationKind,
    pub region: RegionId,
    /// The rep whose zone the registrant (and their outlet) joins.
    pub zone: ParticipantId,
    pub created_by: ParticipantId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_by: Option<ParticipantId>,
}

pub const INVITATION_VALIDITY_DAYS: i64 = 14;

/// What a caller asks for; reps get their own region and zone, admins name them (or, for
/// `join_outlet`, take them from the outlet).
#[derive(Debug, Clone)]
pub struct InvitationRequest {
    pub kind: InvitationKind,
    pub region: Option<RegionId>,
    pub zone: Option<ParticipantId>,
}

impl Invitation {
    /// `outlet` is the target of a `join_outlet` invitation, as loaded by the caller.
    pub fn issue(
        caller: &Caller,
        request: InvitationRequest,
        outlet: Option<&Outlet>,
        code: InvitationCode,
        now: DateTime<Utc>,
    ) -> Result<Self, ParticipantError> {
        caller.require(&[Role::Rep, Role::Admin])?;
        let (region, zone) = match (&request.kind, caller.role) {
            (InvitationKind::JoinOutlet(_), role) => {
                let outlet = outlet.ok_or(ParticipantError::OutletNotFound)?;
                if role == Role::Rep && outlet.zone != caller.subject {
                    return Err(ParticipantError::OutletNotInZone);
                }
                (outlet.region.clone(), outlet.zone.clone())
            }
            (_, Role::Rep) => (
                caller
                    .region
                    .clone()
                    .ok_or(ParticipantError::Required("the region claim of the rep"))?,
                caller.subject.clone(),
            ),
            _ => (
                request.region.ok_or(ParticipantError::Required("region"))?,
                request.zone.ok_or(ParticipantError::Required("zone"))?,
            ),
        };
        Ok(Self {
            code,
            kind: request.kind,
            region,
            zone,
            created_by: caller.subject.clone(),
            created_at: now,
            expires_at: now + Duration::days(INVITATION_VALIDITY_DAYS),
            used_by: None,
        })
    }

    /// Whether this invitation may be used now. The store re-checks `used_by` atomically.
    pub fn check_usable(&self, now: DateTime<Utc>) -> Result<(), ParticipantError> {
        if self.used_by.is_some() {
            return Err(ParticipantError::InvitationUsed);
        }
        if now >= self.expires_at {
            return Err(ParticipantError::InvitationExpired);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Registration,
    Import,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Registration => "registration",
            Source::Import => "import",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "registration" => Some(Source::Registration),
            "import" => Some(Source::Import),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub id: ParticipantId,
    pub phone: PhoneNumber,
    pub name: Name,
    pub email: Option<Email>,
    pub region: RegionId,
    /// The rep whose zone the participant belongs to; imported members may have none.
    pub zone: Option<ParticipantId>,
    pub outlet: Option<(OutletId, OutletRole)>,
    pub source: Source,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The last block or unblock by an admin; `None` for a participant never blocked.
    pub standing: Option<StandingChange>,
}

impl Profile {
    /// Whether the participant may earn and spend.
    pub fn is_active(&self) -> bool {
        self.standing
            .as_ref()
            .is_none_or(|c| c.standing == Standing::Active)
    }
}

/// What earning takes from a participant's profile: the region and the outlet the fraud
/// rules count against and time windows are reckoned in. A write that earns or spends
/// assumes them (from a warm function's cache, else the token as a mere hint) and its
/// transaction checks the assumption against the profile, so they cost no read and are never
/// taken from a token on trust.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ProfileFacts {
    /// `None` only for a profile stored without one (every registration writes it).
    pub region: Option<RegionId>,
    pub outlet: Option<OutletId>,
}

impl Profile {
    pub fn facts(&self) -> ProfileFacts {
        ProfileFacts {
            region: Some(self.region.clone()),
            outlet: self.outlet.as_ref().map(|(o, _)| o.clone()),
        }
    }
}

/// Why a profile check in an earning transaction refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileRefusal {
    /// No profile, or an admin blocked the participant: they earn and spend nothing.
    NotActive,
    /// Active, but not as assumed: these are the profile's facts; decide again with them.
    Differs(ProfileFacts),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Active,
    Blocked,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Active => "active",
            Standing::Blocked => "blocked",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(Standing::Active),
            "blocked" => Some(Standing::Blocked),
            _ => None,
        }
    }
}

/// An admin's block or unblock of a participant, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandingChange {
    pub standing: Standing,
    pub reason: Reason,
    pub by: ParticipantId,
    pub at: DateTime<Utc>,
}

/// Why an admin blocked or unblocked someone: trimmed, 1 to 500 printable characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    pub const MAX: usize = 500;

    pub fn parse(raw: &str) -> Result<Self, ParticipantError> {
        let reason = raw.trim();
        let chars = reason.chars().count();
        if chars == 0 || chars > Self::MAX || reason.chars().any(char::is_control) {
            return Err(ParticipantError::ReasonInvalid { max: Self::MAX });
        }
        Ok(Self(reason.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outlet {
    pub id: OutletId,
    pub name: Name,
    pub region: RegionId,
    /// The rep whose zone the outlet is in.
    pub zone: ParticipantId,
    pub owner: ParticipantId,
    pub created_at: DateTime<Utc>,
}

impl Outlet {
    /// The outlet's owner, the rep of its zone and admins may see its members.
    pub fn check_visible_to(&self, caller: &Caller) -> Result<(), AuthError> {
        let visible = match caller.role {
            Role::Admin => true,
            Role::Rep => self.zone == caller.subject,
            Role::Service => false,
            Role::Participant => self.owner == caller.subject || caller.is_owner_of(&self.id),
        };
        visible.then_some(()).ok_or(AuthError::NotYours)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub outlet: OutletId,
    pub participant: ParticipantId,
    pub role: OutletRole,
    pub name: Name,
    pub joined_at: DateTime<Utc>,
}

// ---------------------------------------------------------------- registration

/// A registration form, validated.
#[derive(Debug, Clone)]
pub struct RegistrationForm {
    pub invitation: InvitationCode,
    pub phone: PhoneNumber,
    pub name: Name,
    pub email: Option<Email>,
    pub outlet_name: Option<Name>,
}

impl RegistrationForm {
    pub fn parse(
        invitation: &str,
        phone: &str,
        name: &str,
        email: Option<&str>,
        outlet_name: Option<&str>,
        country: &CountryCode,
    ) -> Result<Self, ParticipantError> {
        Ok(Self {
            invitation: InvitationCode::parse(invitation)?,
            phone: PhoneNumber::parse(phone, country)?,
            name: Name::person(name)?,
            email: email
                .filter(|e| !e.trim().is_empty())
                .map(Email::parse)
                .transpose()?,
            outlet_name: outlet_name.map(Name::outlet).transpose()?,
        })
    }
}

/// Everything one registration writes, in one transaction.
#[derive(Debug, Clone)]
pub struct Registration {
    pub invitation: InvitationCode,
    pub profile: Profile,
    /// Created by a `new_outlet` invitation.
    pub new_outlet: Option<Outlet>,
    pub membership: Option<Membership>,
    /// Why the phone is the caller's; a recorded proof is consumed by the same write.
    pub proof: PhoneProof,
}

impl Registration {
    pub fn plan(
        caller: &Caller,
        form: RegistrationForm,
        invitation: &Invitation,
        new_outlet_id: OutletId,
        now: DateTime<Utc>,
    ) -> Result<Self, ParticipantError> {
        let id = caller.participant()?.clone();
        invitation.check_usable(now)?;
        let (new_outlet, outlet) = match &invitation.kind {
            InvitationKind::Individual => (None, None),
            InvitationKind::NewOutlet => {
                let name = form
                    .outlet_name
                    .clone()
                    .ok_or(ParticipantError::OutletNameRequired)?;
                let outlet = Outlet {
                    id: new_outlet_id.clone(),
                    name,
                    region: invitation.region.clone(),
                    zone: invitation.zone.clone(),
                    owner: id.clone(),
                    created_at: now,
                };
                (Some(outlet), Some((new_outlet_id, OutletRole::Owner)))
            }
            InvitationKind::JoinOutlet(outlet) => {
                (None, Some((outlet.clone(), OutletRole::Seller)))
            }
        };
        let membership = outlet.clone().map(|(outlet, role)| Membership {
            outlet,
            participant: id.clone(),
            role,
            name: form.name.clone(),
            joined_at: now,
        });
        let proof = PhoneProof::for_caller(caller, &form.phone, now);
        let profile = Profile {
            id,
            phone: form.phone,
            name: form.name,
            email: form.email,
            region: invitation.region.clone(),
            zone: Some(invitation.zone.clone()),
            outlet,
            source: Source::Registration,
            created_at: now,
            updated_at: now,
            standing: None,
        };
        Ok(Self {
            invitation: form.invitation,
            profile,
            new_outlet,
            membership,
            proof,
        })
    }
}

// ---------------------------------------------------------------- profile update

/// A partial update of a profile. The phone is the identity and is not changed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileChanges {
    pub name: Option<Name>,
    /// `Some(None)` removes the address.
    pub email: Option<Option<Email>>,
}

impl ProfileChanges {
    /// An empty `email` string removes the address.
    pub fn parse(name: Option<&str>, email: Option<&str>) -> Result<Self, ParticipantError> {
        if name.is_none() && email.is_none() {
            return Err(ParticipantError::NothingToUpdate);
        }
        Ok(Self {
            name: name.map(Name::person).transpose()?,
            email: email
                .map(|e| {
                    if e.trim().is_empty() {
                        Ok(None)
                    } else {
                        Email::parse(e).map(Some)
                    }
                })
                .transpose()?,
        })
    }

    pub fn apply(&self, profile: &mut Profile, now: DateTime<Utc>) {
        if let Some(name) = &self.name {
            profile.name = name.clone();
        }
        if let Some(email) = &self.email {
            profile.email = email.clone();
        }
        profile.updated_at = now;
    }
}

// ---------------------------------------------------------------- change of phone

/// A participant's move to another phone: the profile as it will be, the phone it leaves and
/// why the new one is theirs. One write moves the phone claim and consumes a recorded proof.
#[derive(Debug, Clone)]
pub struct PhoneChange {
    pub profile: Profile,
    pub old: PhoneNumber,
    pub proof: PhoneProof,
}

// ---------------------------------------------------------------- import

/// The id of an imported member, derived from the phone so that a re-import finds it again.
pub fn imported_id(phone: &PhoneNumber) -> ParticipantId {
    let digest = Sha256::digest(phone.as_e164().as_bytes());
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    ParticipantId::parse(&format!("m-{hex}")).expect("m- and hex digits form a valid id")
}

/// A signed-in subject taking over the imported member who holds its proven phone: the
/// subject is linked to the member (`participant_id` in its tokens from then on), and the
/// member keeps its profile, outlet, balance and history.
#[derive(Debug, Clone)]
pub struct Adoption {
    pub subject: ParticipantId,
    pub member: ParticipantId,
    pub phone: PhoneNumber,
    pub proof: PhoneProof,
    pub at: DateTime<Utc>,
}

/// One valid line of an import file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    pub line: u64,
    pub phone: PhoneNumber,
    pub name: Name,
    pub email: Option<Email>,
    pub region: RegionId,
    pub outlet: Option<(OutletId, OutletRole)>,
}

impl ImportRow {
    pub fn id(&self) -> ParticipantId {
        imported_id(&self.phone)
    }

    pub fn profile(&self, now: DateTime<Utc>) -> Profile {
        Profile {
            id: self.id(),
            phone: self.phone.clone(),
            name: self.name.clone(),
            email: self.email.clone(),
            region: self.region.clone(),
            zone: None,
            outlet: self.outlet.clone(),
            source: Source::Import,
            created_at: now,
            updated_at: now,
            standing: None,
        }
    }

    pub fn membership(&self, now: DateTime<Utc>) -> Option<Membership> {
        self.outlet.clone().map(|(outlet, role)| Membership {
            outlet,
            participant: self.id(),
            role,
            name: self.name.clone(),
            joined_at: now,
        })
    }
}

pub const IMPORT_MAX_ROWS: usize = 5_000;
const IMPORT_COLUMNS: [&str; 6] = [
    "phone",
    "name",
    "email",
    "outlet_id",
    "outlet_role",
    "region",
];
const IMPORT_REQUIRED: [&str; 3] = ["phone", "name", "region"];

fn line_error(line: u64, error: &ParticipantError) -> LineError {
    LineError {
        line,
        code: error.code(),
        message: error.to_string(),
    }
}

fn invalid(errors: Vec<LineError>) -> ParticipantError {
    ParticipantError::ImportInvalid { errors }
}

/// Parses and validates a member CSV (header row; columns in any order). Every bad line is
/// reported with its number and reason; if any line is bad, no row is returned at all.
pub fn parse_import(text: &str, country: &CountryCode) -> Result<Vec<ImportRow>, ParticipantError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h
            .iter()
            .map(|c| c.trim_start_matches('\u{feff}').to_ascii_lowercase())
            .collect(),
        Err(e) => {
            return Err(invalid(vec![LineError {
                line: 1,
                code: "csv_malformed",
                message: e.to_string(),
            }]))
        }
    };
    let mut errors = Vec::new();
    for column in &header {
        if !IMPORT_COLUMNS.contains(&column.as_str()) {
            let message = format!(
                "unknown column {column:?}; expected {}",
                IMPORT_COLUMNS.join(", ")
            );
            errors.push(LineError {
                line: 1,
                code: "unknown_column",
                message,
            });
        }
    }
    for required in IMPORT_REQUIRED {
        if !header.iter().any(|c| c == required) {
            errors.push(LineError {
                line: 1,
                code: "missing_column",
                message: format!("column {required} is required"),
            });
        }
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let index: HashMap<&str, usize> = header
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();

    let mut rows = Vec::new();
    let mut first_line_of_phone: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(LineError {
                    line,
                    code: "csv_malformed",
                    message: e.to_string(),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != header.len() {
            let message = format!("expected {} fields, found {}", header.len(), record.len());
            errors.push(LineError {
                line,
                code: "wrong_field_count",
                message,
            });
            continue;
        }
        let field = |name: &str| {
            index
                .get(name)
                .map(|&i| &record[i])
                .filter(|v| !v.is_empty())
        };

        let phone = PhoneNumber::parse(field("phone").unwrap_or(""), country)
            .map_err(ParticipantError::from);
        let name = Name::person(field("name").unwrap_or(""));
        let email = field("email").map(Email::parse).transpose();
        let region = field("region")
            .ok_or(ParticipantError::Required("region"))
            .and_then(|r| {
                RegionId::parse(r).map_err(|_| ParticipantError::Required("a valid region"))
            });
        let outlet = match (field("outlet_id"), field("outlet_role")) {
            (None, None) => Ok(None),
            (Some(id), Some(role)) => match (OutletId::parse(id), OutletRole::parse(role)) {
                (Ok(id), Some(role)) => Ok(Some((id, role))),
                (Err(_), _) => Err(ParticipantError::OutletNotFound),
                (_, None) => Err(ParticipantError::Required("outlet_role (owner or seller)")),
            },
            (Some(_), None) => Err(ParticipantError::Required("outlet_role (owner or seller)")),
            (None, Some(_)) => Err(ParticipantError::OutletIdRequired),
        };
        match (phone, name, email, region, outlet) {
            (Ok(phone), Ok(name), Ok(email), Ok(region), Ok(outlet)) => {
                if let Some(first) = first_line_of_phone.get(phone.as_e164()) {
                    errors.push(LineError {
                        line,
                        code: "duplicate_phone",
                        message: format!("the same phone number is already on line {first}"),
                    });
                    continue;
                }
                first_line_of_phone.insert(phone.as_e164().to_string(), line);
                rows.push(ImportRow {
                    line,
                    phone,
                    name,
                    email,
                    region,
                    outlet,
                });
            }
            (phone, name, email, region, outlet) => {
                for e in [
                    phone.err(),
                    name.err(),
                    email.err(),
                    region.err(),
                    outlet.err(),
                ]
                .into_iter()
                .flatten()
                {
                    errors.push(line_error(line, &e));
                }
            }
        }
    }
    if rows.len() + errors.len() > IMPORT_MAX_ROWS {
        let message = format!("at most {IMPORT_MAX_ROWS} members per import; split the file");
        return Err(invalid(vec![LineError {
            line: 1,
            code: "import_too_large",
            message,
        }]));
    }
    if rows.is_empty() && errors.is_empty() {
        errors.push(LineError {
            line: 1,
            code: "import_empty",
            message: "the file has a header but no members".into(),
        });
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(invalid(errors))
    }
}

/// What an import will do once the current state is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportPlan {
    pub create: Vec<ImportRow>,
    pub unchanged: usize,
}

/// Decides per row: a phone already held by the same imported member is left alone (so a
/// re-import is a no-op), a phone held by anyone else is a conflict, and a row naming an
/// unknown outlet is refused. Any refusal refuses the whole import.
pub fn plan_import(
    rows: Vec<ImportRow>,
    phone_owners: &HashMap<String, ParticipantId>,
    known_outlets: &HashSet<OutletId>,
) -> Result<ImportPlan, ParticipantError> {
    let mut errors = Vec::new();
    let mut create = Vec::new();
    let mut unchanged = 0;
    for row in rows {
        if let Some((outlet, _)) = &row.outlet {
            if !known_outlets.contains(outlet) {
                errors.push(line_error(row.line, &ParticipantError::OutletNotFound));
                continue;
            }
        }
        match phone_owners.get(row.phone.as_e164()) {
            None => create.push(row),
            Some(owner) if *owner == row.id() => unchanged += 1,
            Some(_) => errors.push(line_error(row.line, &ParticipantError::PhoneTaken)),
        }
    }
    if errors.is_empty() {
        Ok(ImportPlan { create, unchanged })
    } else {
        Err(invalid(errors))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    pub created: usize,
    pub unchanged: usize,
}

// ---------------------------------------------------------------- port

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Persistence of participants, outlets and invitations.
pub trait ParticipantStore: Send + Sync {
    /// `false` if an invitation with this code exists already (the caller draws another).
    fn put_invitation(
        &self,
        invitation: &Invitation,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;
    fn invitation(
        &self,
        code: &InvitationCode,
    ) -> impl Future<Output = Result<Option<Invitation>, InfraError>> + Send;
    fn outlet(
        &self,
        id: &OutletId,
    ) -> impl Future<Output = Result<Option<Outlet>, InfraError>> + Send;
    fn profile(
        &self,
        id: &ParticipantId,
    ) -> impl Future<Output = Result<Option<Profile>, InfraError>> + Send;
    /// Writes the profile, the phone claim, the outlet and membership and consumes the
    /// invitation and a recorded phone proof, all or nothing. Outcomes, in this precedence:
    /// `AlreadyRegistered` (a profile, or a link to an adopted imported member), `PhoneNotProven` (no live proof of this subject and phone; before
    /// `PhoneTaken`, so that an unproven phone learns nothing about its owner), `PhoneTaken`,
    /// `InvitationUsed`, `OutletNotFound`.
    fn register(
        &self,
        registration: &Registration,
    ) -> impl Future<Output = Result<(), ParticipantError>> + Send;
    /// Writes the name, e-mail and update time of a profile (and the name on its membership),
    /// nothing else: a block written meanwhile stays. `NotRegistered` if it is gone.
    fn save_profile(
        &self,
        profile: &Profile,
    ) -> impl Future<Output = Result<(), ParticipantError>> + Send;
    fn members(
        &self,
        outlet: &OutletId,
    ) -> impl Future<Output = Result<Vec<Membership>, InfraError>> + Send;
    /// `InvalidCursor` for a cursor that this zone's listing did not hand out.
    fn zone_outlets(
        &self,
        zone: &ParticipantId,
        cursor: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<Outlet>, ParticipantError>> + Send;
    fn phone_owners(
        &self,
        phones: &[&PhoneNumber],
    ) -> impl Future<Output = Result<HashMap<String, ParticipantId>, InfraError>> + Send;
    /// Writes new imported members. A phone taken meanwhile is an `ImportInvalid` line.
    fn write_import(
        &self,
        rows: &[ImportRow],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), ParticipantError>> + Send;
    /// Moves the profile to the change's phone: the profile's phone (still `old`), the old
    /// phone claim deleted, the new one claimed, a recorded proof consumed, all or nothing.
    /// Outcomes, in this precedence: `NotRegistered`, `PhoneNotProven`, `PhoneTaken`; a phone
    /// changed meanwhile by another request is a retryable `Infra`.
    fn change_phone(
        &self,
        change: &PhoneChange,
    ) -> impl Future<Output = Result<(), ParticipantError>> + Send;
    /// Whether `subject` holds a proof of `phone` alive at `now` (read before anything is said
    /// about the phone's owner; the write that uses the proof checks it again).
    fn has_proof(
        &self,
        subject: &ParticipantId,
        phone: &PhoneNumber,
        now: i64,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;
    /// Links the subject to the imported member and consumes a recorded proof, all or nothing.
    /// Outcomes, in this precedence: `AlreadyRegistered` (the subject has a profile or a link),
    /// `PhoneNotProven`, `PhoneTaken` (the member was adopted already, or no longer holds the
    /// phone as an imported member).
    fn adopt(
        &self,
        adoption: &Adoption,
    ) -> impl Future<Output = Result<(), ParticipantError>> + Send;
    /// Records an admin's block or unblock on the profile. `ParticipantNotFound` if there is
    /// no profile.
    fn set_standing(
        &self,
        id: &ParticipantId,
        change: &StandingChange,
    ) -> impl Future<Output = Result<(), ParticipantError>> + Send;
    /// Counts one invitation guess for every guesser in the guess's window, all or nothing:
    /// refused with `Locked` if one of them is locked (that outranks a full counter), with
    /// `LimitReached` naming the guessers whose counters are at their limit.
    fn count_guess(
        &self,
        guess: &Guess,
    ) -> impl Future<Output = Result<Result<(), GuessRefusal>, InfraError>> + Send;
    /// Takes back a counted guess that turned out not to be a wrong code.
    fn forgive_guess(&self, guess: &Guess) -> impl Future<Output = Result<(), InfraError>> + Send;
    /// Refuses every guess of `guesser` until `until` (epoch seconds).
    fn lock_guesser(
        &self,
        guesser: &Guesser,
        until: i64,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// One attempt at an invitation code, counted before the code is looked up, so that N
/// concurrent wrong guesses cannot get more than the limit answered: a guess is a failure
/// unless it is forgiven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guess {
    /// Each guesser with its limit in the window.
    pub guessers: Vec<(Guesser, u64)>,
    pub window: Window,
    pub now: DateTime<Utc>,
}

impl Guess {
    pub fn new(
        policy: &FraudPolicy,
        caller: &ParticipantId,
        source: Option<&str>,
        now: DateTime<Utc>,
    ) -> Self {
        let mut guessers = vec![Guesser::Caller(caller.clone())];
        if let Some(source) = source.filter(|s| !s.is_empty()) {
            guessers.push(Guesser::Source(source.to_string()));
        }
        Self {
            guessers: guessers
                .into_iter()
                .map(|g| {
                    let limit = policy.guess_limit(&g);
                    (g, limit)
                })
                .collect(),
            window: policy.failure_window(now),
            now,
        }
    }
}

/// Why a guess was not counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuessRefusal {
    /// The latest lock among the guessers.
    Locked { until: i64 },
    /// These guessers have used up their window.
    LimitReached(Vec<Guesser>),
    /// Another write touched the counters at the same moment; retry.
    Contended,
}

/// Attempts at counting a guess before giving up under contention.
const GUESS_ATTEMPTS: usize = 6;

/// Counts the guess, or says how long the guessers must wait (locking those that have just
/// reached their limit).
async fn count_guess<S: ParticipantStore>(
    store: &S,
    policy: &FraudPolicy,
    guess: &Guess,
) -> Result<(), ParticipantError> {
    let now = guess.now.timestamp();
    for _ in 0..GUESS_ATTEMPTS {
        match store.count_guess(guess).await? {
            Ok(()) => return Ok(()),
            Err(GuessRefusal::Locked { until }) => {
                return Err(ParticipantError::TooManyAttempts {
                    retry_after_secs: (until - now).max(1) as u64,
                })
            }
            Err(GuessRefusal::LimitReached(guessers)) => {
                let until = now + policy.lock_secs;
                for guesser in &guessers {
                    store.lock_guesser(guesser, until).await?;
                }
                return Err(ParticipantError::TooManyAttempts {
                    retry_after_secs: policy.lock_secs.max(1) as u64,
                });
            }
            Err(GuessRefusal::Contended) => {}
        }
    }
    Err(InfraError::retryable("count guess", "too much contention on the guess counters").into())
}

impl ParticipantError {
    /// Whether this answer says the code was wrong, so the guess stays counted.
    pub fn is_wrong_code(&self) -> bool {
        matches!(
            self,
            ParticipantError::InvitationNotFound
                | ParticipantError::InvitationUsed
                | ParticipantError::InvitationExpired
        )
    }
}

// ---------------------------------------------------------------- operations

/// Issues an invitation with a fresh code, drawn from `ids`.
pub async fn invite<S: ParticipantStore, I: IdSource + ?Sized>(
    store: &S,
    caller: &Caller,
    request: InvitationRequest,
    ids: &I,
    now: DateTime<Utc>,
) -> Result<Invitation, ParticipantError> {
    caller.require(&[Role::Rep, Role::Admin])?;
    let outlet = match &request.kind {
        InvitationKind::JoinOutlet(id) => store.outlet(id).await?,
        _ => None,
    };
    // 31^8 codes make a collision rare; a few draws make it negligible.
    for _ in 0..5 {
        let code = InvitationCode::from_id(&ids.new_id("invitation"));
        let invitation = Invitation::issue(caller, request.clone(), outlet.as_ref(), code, now)?;
        if store.put_invitation(&invitation).await? {
            return Ok(invitation);
        }
    }
    Err(InfraError::retryable("put invitation", "could not draw an unused invitation code").into())
}

/// Registers the caller with an invitation. Every attempt is counted against the caller and
/// the request's `source` before the code is looked up; a locked guesser is refused
/// `TooManyAttempts` even with a right code. Only wrong codes stay counted.
pub async fn register<S: ParticipantStore>(
    store: &S,
    policy: &FraudPolicy,
    caller: &Caller,
    source: Option<&str>,
    form: RegistrationForm,
    new_outlet_id: OutletId,
    now: DateTime<Utc>,
) -> Result<Profile, ParticipantError> {
    let subject = caller.participant()?;
    let guess = Guess::new(policy, subject, source, now);
    count_guess(store, policy, &guess).await?;
    let outcome = async {
        let invitation = store
            .invitation(&form.invitation)
            .await?
            .ok_or(ParticipantError::InvitationNotFound)?;
        let registration = Registration::plan(caller, form, &invitation, new_outlet_id, now)?;
        store.register(&registration).await?;
        Ok(registration.profile)
    }
    .await;
    if !outcome.as_ref().is_err_and(ParticipantError::is_wrong_code) {
        // A guess left counted after a right code only makes the limit stricter, so the
        // registration's answer outranks a failure here (the adapter logs it).
        let _ = store.forgive_guess(&guess).await;
    }
    outcome
}

pub async fn my_profile<S: ParticipantStore>(
    store: &S,
    caller: &Caller,
) -> Result<Profile, ParticipantError> {
    let id = caller.participant()?;
    store
        .profile(id)
        .await?
        .ok_or(ParticipantError::NotRegistered)
}

pub async fn update_profile<S: ParticipantStore>(
    store: &S,
    caller: &Caller,
    changes: ProfileChanges,
    now: DateTime<Utc>,
) -> Result<Profile, ParticipantError> {
    let mut profile = my_profile(store, caller).await?;
    changes.apply(&mut profile, now);
    store.save_profile(&profile).await?;
    Ok(profile)
}

/// Moves the caller to another phone, proven like a registration's (the token's verified
/// phone or a passcode proof of this subject). The same phone again changes nothing.
pub async fn change_phone<S: ParticipantStore>(
    store: &S,
    caller: &Caller,
    phone: PhoneNumber,
    now: DateTime<Utc>,
) -> Result<Profile, ParticipantError> {
    let mut profile = my_profile(store, caller).await?;
    if profile.phone == phone {
        return Ok(profile);
    }
    let proof = PhoneProof::for_caller(caller, &phone, now);
    let old = std::mem::replace(&mut profile.phone, phone);
    profile.updated_at = now;
    store
        .change_phone(&PhoneChange {
            profile: profile.clone(),
            old,
            proof,
        })
        .await?;
    Ok(profile)
}

/// The caller takes over the imported member who holds `phone`, once the phone is proven (the
/// token's verified phone or a passcode proof of this subject); answers the member's profile.
/// An unproven phone learns nothing about its owner; a proven one learns whether an imported
/// member awaits it (`MemberNotFound`) or the phone is someone else's (`PhoneTaken`).
pub async fn adopt_imported<S: ParticipantStore>(
    store: &S,
    caller: &Caller,
    phone: PhoneNumber,
    now: DateTime<Utc>,
) -> Result<Profile, ParticipantError> {
    let subject = caller.participant()?.clone();
    let proof = PhoneProof::for_caller(caller, &phone, now);
    if let PhoneProof::Recorded { now } = proof {
        if !store.has_proof(&subject, &phone, now).await? {
            return Err(ParticipantError::PhoneNotProven);
        }
    }
    let owners = store.phone_owners(&[&phone]).await?;
    let member = owners
        .get(phone.as_e164())
        .ok_or(ParticipantError::MemberNotFound)?;
    if member == &subject {
        return Err(ParticipantError::AlreadyRegistered);
    }
    let profile = store
        .profile(member)
        .await?
        .ok_or(ParticipantError::MemberNotFound)?;
    if profile.source != Source::Import {
        return Err(ParticipantError::PhoneTaken);
    }
    store
        .adopt(&Adoption {
            subject,
            member: profile.id.clone(),
            phone,
            proof,
            at: now,
        })
        .await?;
    Ok(profile)
}

pub async fn outlet_members<S: ParticipantStore>(
    store: &S,
    caller: &Caller,
    outlet: &OutletId,
) -> Result<Vec<Membership>, ParticipantError> {
    match store.outlet(outlet).await? {
        Some(o) => o.check_visible_to(caller)?,
        // Only admins learn that an outlet does not exist; others cannot probe ids.
        None if caller.role == Role::Admin => return Err(ParticipantError::OutletNotFound),
        None => return Err(AuthError::NotYours.into()),
    }
    Ok(store.members(outlet).await?)
}

pub async fn zone_outlets<S: ParticipantStore>(
    store: &S,
    caller: &Caller,
    cursor: Option<&str>,
    limit: u32,
) -> Result<Page<Outlet>, ParticipantError> {
    caller.require(&[Role::Rep])?;
    store
        .zone_outlets(&caller.subject, cursor, limit.clamp(1, 100))
        .await
}

/// An admin blocks (`Standing::Blocked`) or unblocks a participant; answers the profile as
/// it now is.
pub async fn change_standing<S: ParticipantStore>(
    store: &S,
    caller: &Caller,
    id: &ParticipantId,
    standing: Standing,
    reason: Reason,
    now: DateTime<Utc>,
) -> Result<Profile, ParticipantError> {
    caller.require(&[Role::Admin])?;
    let change = StandingChange {
        standing,
        reason,
        by: caller.subject.clone(),
        at: now,
    };
    store.set_standing(id, &change).await?;
    store
        .profile(id)
        .await?
        .ok_or(ParticipantError::ParticipantNotFound)
}

pub async fn find_by_phone<S: ParticipantStore>(
    store: &S,
    caller: &Caller,
    phone: &PhoneNumber,
) -> Result<Profile, ParticipantError> {
    caller.require(&[Role::Admin])?;
    let owners = store.phone_owners(&[phone]).await?;
    let id = owners
        .get(phone.as_e164())
        .ok_or(ParticipantError::MemberNotFound)?;
    store
        .profile(id)
        .await?
        .ok_or(ParticipantError::MemberNotFound)
}

pub async fn import_members<S: ParticipantStore>(
    store: &S,
    caller: &Caller,
    rows: Vec<ImportRow>,
    now: DateTime<Utc>,
) -> Result<ImportSummary, ParticipantError> {
    caller.require(&[Role::Admin])?;
    let phones: Vec<&PhoneNumber> = rows.iter().map(|r| &r.phone).collect();
    let owners = store.phone_owners(&phones).await?;
    let wanted: HashSet<&OutletId> = rows
        .iter()
        .filter_map(|r| r.outlet.as_ref().map(|(o, _)| o))
        .collect();
    let mut known = HashSet::new();
    for id in wanted {
        if store.outlet(id).await?.is_some() {
            known.insert(id.clone());
        }
    }
    let plan = plan_import(rows, &owners, &known)?;
    store.write_import(&plan.create, now).await?;
    Ok(ImportSummary {
        created: plan.create.len(),
        unchanged: plan.unchanged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uk() -> CountryCode {
        CountryCode::parse("44").unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn caller(subject: &str, role: Role, region: Option<&str>) -> Caller {
        Caller {
            subject: ParticipantId::parse(subject).unwrap(),
            role,
            outlet: None,
            region: region.map(|r| RegionId::parse(r).unwrap()),
            scopes: Vec::new(),
            verified_phone: None,
        }
    }

    fn outlet(id: &str, zone: &str, owner: &str) -> Outlet {
        Outlet {
            id: OutletId::parse(id).unwrap(),
            name: Name::outlet("Corner Shop").unwrap(),
            region: RegionId::parse("north").unwrap(),
            zone: ParticipantId::parse(zone).unwrap(),
            owner: ParticipantId::parse(owner).unwrap(),
            created_at: now(),
        }
    }

    fn request(kind: InvitationKind) -> InvitationRequest {
        InvitationRequest {
            kind,
            region: None,
            zone: None,
        }
    }

    fn code() -> InvitationCode {
        InvitationCode::parse("ABCD2345").unwrap()
    }

    fn form(outlet_name: Option<&str>) -> RegistrationForm {
        RegistrationForm::parse(
            "abcd-2345",
            "07700 900123",
            "Ann Lee",
            Some("Ann@Example.COM"),
            outlet_name,
            &uk(),
        )
        .unwrap()
    }

    #[test]
    fn invitation_codes_are_eight_unambiguous_characters_typed_forgivingly() {
        for _ in 0..200 {
            let c = InvitationCode::random();
            assert_eq!(c.as_str().len(), 8);
            assert!(
                !c.as_str().contains(['0', 'O', '1', 'I', 'L']),
                "{}",
                c.as_str()
            );
            assert_eq!(
                InvitationCode::parse(&c.as_str().to_lowercase()).unwrap(),
                c
            );
        }
        assert_eq!(
            InvitationCode::parse("abcd 2345").unwrap().as_str(),
            "ABCD2345"
        );
        assert!(InvitationCode::parse("ABCD0345").is_err());
        assert!(InvitationCode::parse("ABC").is_err());
        assert_eq!(format!("{:?}", code()), "InvitationCode(redacted)");
        let form = format!("{:?}", form(Some("Corner Shop")));
        assert!(!form.contains("2345") && !form.contains("ABCD"), "{form}");
    }

    #[test]
    fn codes_derived_from_ids_are_valid_stable_and_distinct() {
        let a = InvitationCode::from_id("invitation-1");
        assert_eq!(a, InvitationCode::from_id("invitation-1"));
        assert_eq!(InvitationCode::parse(a.as_str()).unwrap(), a);
        let distinct: HashSet<String> = (0..1000)
            .map(|i| {
                InvitationCode::from_id(&format!("invitation-{i}"))
                    .as_str()
                    .to_string()
            })
            .collect();
        assert_eq!(distinct.len(), 1000);
    }

    #[test]
    fn a_rep_invites_into_their_own_region_and_zone_for_fourteen_days() {
        let rep = caller("rep-1", Role::Rep, Some("north"));
        let inv = Invitation::issue(
            &rep,
            request(InvitationKind::NewOutlet),
            None,
            code(),
            now(),
        )
        .unwrap();
        assert_eq!(inv.region.as_str(), "north");
        assert_eq!(inv.zone.as_str(), "rep-1");
        assert_eq!(inv.expires_at - inv.created_at, Duration::days(14));
        assert_eq!(inv.used_by, None);
    }

    #[test]
    fn a_rep_cannot_invite_sellers_into_an_outlet_of_another_zone() {
        let rep = caller("rep-1", Role::Rep, Some("north"));
        let theirs = outlet("o-2", "rep-2", "p-9");
        let kind = InvitationKind::JoinOutlet(theirs.id.clone());
        let err = Invitation::issue(&rep, request(kind.clone()), Some(&theirs), code(), now())
            .unwrap_err();
        assert_eq!(err.code(), "outlet_not_in_zone");
        let err = Invitation::issue(&rep, request(kind), None, code(), now()).unwrap_err();
        assert_eq!(err.code(), "outlet_not_found");
    }

    #[test]
    fn an_admin_invitation_names_region_and_zone_or_takes_them_from_the_outlet() {
        let admin = caller("admin-1", Role::Admin, None);
        let err = Invitation::issue(
            &admin,
            request(InvitationKind::Individual),
            None,
            code(),
            now(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "field_required");
        let target = outlet("o-2", "rep-2", "p-9");
        let kind = InvitationKind::JoinOutlet(target.id.clone());
        let inv = Invitation::issue(&admin, request(kind), Some(&target), code(), now()).unwrap();
        assert_eq!(inv.zone.as_str(), "rep-2");
    }

    #[test]
    fn participants_cannot_invite() {
        let p = caller("p-1", Role::Participant, Some("north"));
        let err = Invitation::issue(&p, request(InvitationKind::Individual), None, code(), now())
            .unwrap_err();
        assert_eq!(err.code(), "forbidden");
    }

    #[test]
    fn an_invitation_is_usable_once_and_until_it_expires() {
        let rep = caller("rep-1", Role::Rep, Some("north"));
        let mut inv = Invitation::issue(
            &rep,
            request(InvitationKind::Individual),
            None,
            code(),
            now(),
        )
        .unwrap();
        assert!(inv.check_usable(now() + Duration::days(13)).is_ok());
        assert_eq!(
            inv.check_usable(now() + Duration::days(14))
                .unwrap_err()
                .code(),
            "invitation_expired"
        );
        inv.used_by = Some(ParticipantId::parse("p-1").unwrap());
        assert_eq!(
            inv.check_usable(now()).unwrap_err().code(),
            "invitation_used"
        );
    }

    #[test]
    fn a_new_outlet_registration_makes_the_registrant_its_owner() {
        let rep = caller("rep-1", Role::Rep, Some("north"));
        let inv = Invitation::issue(
            &rep,
            request(InvitationKind::NewOutlet),
            None,
            code(),
            now(),
        )
        .unwrap();
        let me = caller("p-1", Role::Participant, None);
        let reg = Registration::plan(
            &me,
            form(Some("Corner Shop")),
            &inv,
            OutletId::parse("o-1").unwrap(),
            now(),
        )
        .unwrap();
        let outlet = reg.new_outlet.unwrap();
        assert_eq!(outlet.owner.as_str(), "p-1");
        assert_eq!(outlet.zone.as_str(), "rep-1");
        assert_eq!(
            reg.profile.outlet,
            Some((outlet.id.clone(), OutletRole::Owner))
        );
        assert_eq!(reg.membership.unwrap().role, OutletRole::Owner);
        assert_eq!(reg.profile.phone.as_e164(), "+447700900123");
        assert_eq!(reg.profile.email.unwrap().as_str(), "Ann@example.com");
    }

    #[test]
    fn a_new_outlet_registration_needs_an_outlet_name() {
        let rep = caller("rep-1", Role::Rep, Some("north"));
        let inv = Invitation::issue(
            &rep,
            request(InvitationKind::NewOutlet),
            None,
            code(),
            now(),
        )
        .unwrap();
        let me = caller("p-1", Role::Participant, None);
        let err = Registration::plan(
            &me,
            form(None),
            &inv,
            OutletId::parse("o-1").unwrap(),
            now(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "outlet_name_required");
    }

    #[test]
    fn a_join_outlet_registration_makes_a_seller_and_creates_no_outlet() {
        let rep = caller("rep-1", Role::Rep, Some("north"));
        let target = outlet("o-7", "rep-1", "p-0");
        let kind = InvitationKind::JoinOutlet(target.id.clone());
        let inv = Invitation::issue(&rep, request(kind), Some(&target), code(), now()).unwrap();
        let me = caller("p-2", Role::Participant, None);
        let reg = Registration::plan(
            &me,
            form(None),
            &inv,
            OutletId::parse("o-unused").unwrap(),
            now(),
        )
        .unwrap();
        assert!(reg.new_outlet.is_none());
        assert_eq!(reg.profile.outlet, Some((target.id, OutletRole::Seller)));
    }

    #[test]
    fn only_participants_register() {
        let rep = caller("rep-1", Role::Rep, Some("north"));
        let inv = Invitation::issue(
            &rep,
            request(InvitationKind::Individual),
            None,
            code(),
            now(),
        )
        .unwrap();
        let err = Registration::plan(
            &rep,
            form(None),
            &inv,
            OutletId::parse("o-1").unwrap(),
            now(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "forbidden");
    }

    #[test]
    fn registration_fields_are_validated_with_their_own_codes() {
        let parse = |phone, name, email: Option<&str>| {
            RegistrationForm::parse("ABCD2345", phone, name, email, None, &uk())
                .map(|_| ())
                .map_err(|e| e.code())
        };
        assert_eq!(parse("12", "Ann", None), Err("phone_invalid"));
        assert_eq!(parse("07700900123", "  ", None), Err("name_invalid"));
        assert_eq!(
            parse("07700900123", "Ann", Some("ann@nowhere")),
            Err("email_invalid")
        );
        assert_eq!(parse("07700900123", "Ann", Some("")), Ok(()));
    }

    #[test]
    fn emails_are_checked_for_shape_and_never_debug_printed_whole() {
        assert!(Email::parse("a.b+c@shop.co.uk").is_ok());
        for bad in ["", "a@", "@b.com", "a b@c.com", "a@b..com", "a@b"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(!format!("{:?}", Email::parse("secret@shop.com").unwrap()).contains("secret"));
    }

    #[test]
    fn a_profile_update_changes_name_and_email_but_needs_at_least_one() {
        assert_eq!(
            ProfileChanges::parse(None, None).unwrap_err().code(),
            "nothing_to_update"
        );
        let changes = ProfileChanges::parse(Some(" Ann B "), Some("")).unwrap();
        assert_eq!(changes.name.as_ref().unwrap().as_str(), "Ann B");
        assert_eq!(changes.email, Some(None));
        assert_eq!(
            ProfileChanges::parse(Some("x".repeat(101).as_str()), None)
                .unwrap_err()
                .code(),
            "name_invalid"
        );
    }

    #[test]
    fn an_outlet_is_visible_to_its_owner_its_rep_and_admins_only() {
        let o = outlet("o-1", "rep-1", "p-1");
        assert!(o
            .check_visible_to(&caller("p-1", Role::Participant, None))
            .is_ok());
        assert!(o
            .check_visible_to(&caller("rep-1", Role::Rep, None))
            .is_ok());
        assert!(o
            .check_visible_to(&caller("admin", Role::Admin, None))
            .is_ok());
        assert!(o
            .check_visible_to(&caller("p-2", Role::Participant, None))
            .is_err());
        assert!(o
            .check_visible_to(&caller("rep-2", Role::Rep, None))
            .is_err());
        let mut seller = caller("p-3", Role::Participant, None);
        seller.outlet = Some((o.id.clone(), OutletRole::Seller));
        assert!(o.check_visible_to(&seller).is_err());
    }

    #[test]
    fn imported_ids_are_derived_from_the_phone() {
        let a = PhoneNumber::parse("+447700900123", &uk()).unwrap();
        let b = PhoneNumber::parse("07700 900123", &uk()).unwrap();
        let c = PhoneNumber::parse("07700 900124", &uk()).unwrap();
        assert_eq!(imported_id(&a), imported_id(&b));
        assert_ne!(imported_id(&a), imported_id(&c));
        assert_eq!(imported_id(&a).as_str().len(), 22);
        assert!(imported_id(&a).as_str().starts_with("m-"));
    }

    #[test]
    fn a_valid_import_parses_every_row_with_its_line_number_in_any_column_order() {
        let csv = "name,phone,region,email,outlet_id,outlet_role\n\
                   Ann,07700 900123,north,ann@shop.com,o-1,owner\n\
                   \"Lee, Bo\",+33 6 12 34 56 78,south,,,\n";
        let rows = parse_import(csv, &uk()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].line, rows[0].phone.as_e164()),
            (2, "+447700900123")
        );
        assert_eq!(
            rows[0].outlet,
            Some((OutletId::parse("o-1").unwrap(), OutletRole::Owner))
        );
        assert_eq!((rows[1].line, rows[1].name.as_str()), (3, "Lee, Bo"));
        assert_eq!(rows[1].email, None);
        assert_eq!(rows[1].outlet, None);
    }

    #[test]
    fn every_bad_import_line_is_reported_with_its_number_and_nothing_is_kept() {
        let csv = "phone,name,region,outlet_id,outlet_role\n\
                   07700 900123,Ann,north,,\n\
                   12,Bo,north,,\n\
                   07700 900124,,north,o-1,boss\n\
                   07700-900-123,Ann again,north,,\n\
                   07700 900125,Cy,north\n";
        let err = parse_import(csv, &uk()).unwrap_err();
        let ParticipantError::ImportInvalid { errors } = &err else {
            panic!("{err:?}")
        };
        let found: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.code)).collect();
        assert_eq!(
            found,
            vec![
                (3, "phone_invalid"),
                (4, "name_invalid"),
                (4, "field_required"),
                (5, "duplicate_phone"),
                (6, "wrong_field_count"),
            ]
        );
        assert_eq!(err.code(), "import_invalid");
        assert_eq!(err.kind(), Kind::Unprocessable);
    }

    #[test]
    fn an_import_header_must_name_the_required_columns_and_no_unknown_ones() {
        let err = parse_import("phone,nickname\n07700900123,x\n", &uk()).unwrap_err();
        let ParticipantError::ImportInvalid { errors } = err else {
            panic!()
        };
        let codes: Vec<&str> = errors.iter().map(|e| e.code).collect();
        assert_eq!(
            codes,
            vec!["unknown_column", "missing_column", "missing_column"]
        );
        assert!(errors.iter().all(|e| e.line == 1));
    }

    #[test]
    fn an_import_without_members_is_refused() {
        let err = parse_import("phone,name,region\n", &uk()).unwrap_err();
        let ParticipantError::ImportInvalid { errors } = err else {
            panic!()
        };
        assert_eq!(errors[0].code, "import_empty");
    }

    #[test]
    fn planning_an_import_skips_known_members_and_refuses_phones_of_others() {
        let csv = "phone,name,region,outlet_id,outlet_role\n07700900123,Ann,north,,\n07700900124,Bo,north,o-1,seller\n07700900125,Cy,north,,\n";
        let rows = parse_import(csv, &uk()).unwrap();
        let outlets = HashSet::from([OutletId::parse("o-1").unwrap()]);
        let mut owners = HashMap::from([(rows[0].phone.as_e164().to_string(), rows[0].id())]);
        let plan = plan_import(rows.clone(), &owners, &outlets).unwrap();
        assert_eq!(plan.unchanged, 1);
        assert_eq!(
            plan.create.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![3, 4]
        );

        owners.insert(
            rows[2].phone.as_e164().to_string(),
            ParticipantId::parse("p-someone").unwrap(),
        );
        let err = plan_import(rows.clone(), &owners, &HashSet::new()).unwrap_err();
        let ParticipantError::ImportInvalid { errors } = err else {
            panic!()
        };
        let found: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.code)).collect();
        assert_eq!(found, vec![(3, "outlet_not_found"), (4, "phone_taken")]);
    }
}
