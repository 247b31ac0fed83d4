//! The participant store in memory: [`MemoryParticipants`] implements [`ParticipantStore`]
//! with the semantics of [`crate::stores::participants::DynamoParticipantStore`], without
//! its AWS types.
//!
//! What it copies from the DynamoDB items and conditions:
//!
//! | DynamoDB                                                      | here                                  |
//! |---------------------------------------------------------------|---------------------------------------|
//! | `PARTICIPANT#id`/`PROFILE`                                    | [`ParticipantsWorld::profiles`]       |
//! | `PHONE#e164`/`PHONE` (one account per phone)                  | [`ParticipantsWorld::phones`]         |
//! | `OUTLET#id`/`OUTLET`, on `gsi1` as `ZONE#rep`/`OUTLET#id`      | [`ParticipantsWorld::outlets`]        |
//! | `OUTLET#id`/`MEMBER#participant`                              | [`ParticipantsWorld::members`]        |
//! | `INVITE#code`/`INVITE` (`used_by`, `used_at`)                 | [`ParticipantsWorld::invitations`]    |
//! | `REGION#id`/`REGION` (`last_invitation_at`)                   | [`ParticipantsWorld::regions`]        |
//! | `GUESSES#guesser#window`/`COUNTER` (`failures`)               | [`ParticipantsWorld::guesses`]        |
//! | `GUESSLOCK#guesser`/`LOCK` (`locked_until`)                   | [`ParticipantsWorld::guess_locks`]    |
//! | `PASSCODE#e164`/`PASSCODE` (`digest`, `challenge`, `tries`)   | [`ParticipantsWorld::passcodes`]      |
//! | `PASSCODES#limiter#window`/`COUNTER` (`requests`)             | [`ParticipantsWorld::passcode_requests`] |
//! | `PROOF#subject`/`PHONE#e164` (`expires_at`)                   | [`ParticipantsWorld::proofs`]         |
//! | `SUBJECT#subject`/`LINK` (`participant_id`)                   | [`ParticipantsWorld::links`]          |
//! | `adopted_by` on an imported member's `PROFILE`                | [`ParticipantsWorld::adopted_by`]     |
//!
//! `register` is one transaction there: invitation `attribute_exists(pk) AND
//! attribute_not_exists(used_by)`, phone and profile `attribute_not_exists(pk)`, a new outlet
//! `attribute_not_exists(pk)` or the joined outlet `attribute_exists(pk)`, the membership put
//! unconditionally, and a recorded phone proof deleted on `attribute_exists(pk) AND expires_at >
//! :now`. Here every condition is checked before anything is written, and the
//! refusal reported when several fail is the one `DynamoParticipantStore` picks: the
//! profile (`AlreadyRegistered`), then the proof (`PhoneNotProven`), then the phone
//! (`PhoneTaken`), then the invitation
//! (`InvitationUsed`), then the outlet (`OutletNotFound`).
//!
//! `adopt` is one transaction there: the member's profile `#source = :import AND phone = :phone
//! AND attribute_not_exists(adopted_by)`, the link `SUBJECT#subject`/`LINK` and the subject's
//! profile `attribute_not_exists(pk)`, a recorded proof deleted while alive; `register` also
//! checks that the subject has no link. Here too: the subject registered or linked
//! (`AlreadyRegistered`), then the proof (`PhoneNotProven`), then the member (`PhoneTaken`).
//!
//! `change_phone` is one transaction there: the profile `attribute_exists(pk) AND phone =
//! :old`, the old phone claim deleted on `participant_id = :p`, the new one put on
//! `attribute_not_exists(pk)`, a recorded proof deleted while alive. Here too: a missing
//! profile (`NotRegistered`), then the proof (`PhoneNotProven`), then the new phone
//! (`PhoneTaken`), then a phone moved meanwhile (a retryable `InfraError`).
//!
//! `count_guess` is one transaction there: per guesser a lock check `attribute_not_exists(pk)
//! OR locked_until <= :now` and a counter `attribute_not_exists(failures) OR failures <
//! :limit`. Here too nothing is counted unless every condition holds, and a lock outranks a
//! full counter.
//!
//! `write_import` is all or nothing per transaction, as there: rows are grouped in order into
//! transactions of at most 100 items (phone and profile, plus a membership), a transaction
//! whose phone or profile exists already writes nothing and names its rows' lines, and the
//! transactions before it stay written. Two items with one key in one transaction are a
//! permanent error (DynamoDB's `ValidationException`).
//!
//! `zone_outlets` pages in outlet-id order (the `gsi1sk` order) and hands out the same
//! cursors as DynamoDB (`crate::dynamo::encode_cursor` of the zone and the last outlet), so
//! a cursor of another zone or a tampered one is `InvalidCursor` here too. A page cut by the
//! limit carries a cursor only if more outlets follow (as the emulator does; DynamoDB itself
//! may hand out a cursor to an empty last page, which callers must accept anyway).
//!
//! Every port call first yields to the executor, as a network round trip would, so futures
//! polled together (`join_all`) interleave between the calls of a use case; each call is
//! then one critical section.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use loyalty_domain::fraud::Guesser;
use loyalty_domain::ids::{OutletId, ParticipantId, RegionId};
use loyalty_domain::participant::{
    Adoption, Guess, GuessRefusal, ImportRow, Invitation, InvitationCode, LineError, Membership,
    Outlet, Page, ParticipantError, ParticipantStore, PhoneChange, Profile, ProfileFacts,
    ProfileRefusal, Registration, Source, StandingChange,
};
use loyalty_domain::passcode::{PhoneProof, StoredPasscode};
use loyalty_domain::phone::PhoneNumber;
use loyalty_domain::InfraError;

use crate::dynamo::{decode_cursor, encode_cursor, key, ItemExt};

/// DynamoDB allows at most 100 items per transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;

/// The profile items an earning port checks (`crate::stores::profiles::profile_check`), as
/// the claim, action and cashback stores each hold them: registered, active or blocked, and
/// the region and outlet the check compares with the write's assumption.
#[derive(Debug, Clone, Default)]
pub struct ProfileChecks {
    profiles: BTreeMap<ParticipantId, (bool, ProfileFacts)>,
}

impl ProfileChecks {
    /// Registers `participant`, active, with the region and outlet of their profile.
    pub fn register(&mut self, participant: &ParticipantId, facts: ProfileFacts) {
        self.profiles.insert(participant.clone(), (true, facts));
    }

    /// Blocks or unblocks a registered participant (the admin's standing change).
    pub fn set_active(&mut self, participant: &ParticipantId, active: bool) {
        if let Some((a, _)) = self.profiles.get_mut(participant) {
            *a = active;
        }
    }

    pub fn is_active(&self, participant: &ParticipantId) -> bool {
        self.profiles.get(participant).is_some_and(|(a, _)| *a)
    }

    /// The facts of an active participant's profile, as a consistent read returns them.
    pub fn facts(&self, participant: &ParticipantId) -> Option<ProfileFacts> {
        match self.profiles.get(participant) {
            Some((true, facts)) => Some(facts.clone()),
            _ => None,
        }
    }

    /// The check's condition: registered, active, and holding exactly `assumed`.
    pub fn check(
        &self,
        participant: &ParticipantId,
        assumed: &ProfileFacts,
    ) -> Result<(), ProfileRefusal> {
        match self.facts(participant) {
            None => Err(ProfileRefusal::NotActive),
            Some(facts) if facts == *assumed => Ok(()),
            Some(facts) => Err(ProfileRefusal::Differs(facts)),
        }
    }
}

/// An invitation as stored, with when it was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInvitation {
    pub invitation: Invitation,
    pub used_at: Option<DateTime<Utc>>,
}

/// Everything the store holds. Tests read it through [`MemoryParticipants::inspect`]; only
/// the port writes it.
#[derive(Debug, Default)]
pub struct ParticipantsWorld {
    pub profiles: BTreeMap<ParticipantId, Profile>,
    /// Owner by E.164 number.
    pub phones: BTreeMap<String, ParticipantId>,
    pub outlets: BTreeMap<OutletId, Outlet>,
    pub members: BTreeMap<(OutletId, ParticipantId), Membership>,
    /// By code.
    pub invitations: BTreeMap<String, StoredInvitation>,
    /// Every region invited into, with the time of its last invitation.
    pub regions: BTreeMap<RegionId, DateTime<Utc>>,
    /// Invitation guesses counted per guesser key ([`Guesser::key`]) per window start.
    pub guesses: BTreeMap<(String, i64), i64>,
    /// Until when (epoch seconds) each guesser key is locked.
    pub guess_locks: BTreeMap<String, i64>,
    /// The live passcode of each E.164 number, with its tries (`memory/passcodes.rs`).
    pub passcodes: BTreeMap<String, (StoredPasscode, u32)>,
    /// Passcode requests per limiter key ([`loyalty_domain::passcode::Limiter::key`]) per window start.
    pub passcode_requests: BTreeMap<(String, i64), u64>,
    /// Until when (epoch seconds) each (subject, E.164 number) is proven.
    pub proofs: BTreeMap<(ParticipantId, String), i64>,
    /// The imported member each signed-in subject adopted.
    pub links: BTreeMap<ParticipantId, ParticipantId>,
    /// Who adopted each adopted imported member (`adopted_by` on the profile item).
    pub adopted_by: BTreeMap<ParticipantId, ParticipantId>,
}

/// Deliberate bugs, so that tests can prove the contract suite or the simulator catches
/// them. Never set outside such tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// `register` skips the phone condition: two accounts can share a phone.
    PhonesNotUnique,
    /// `try_passcode` answers a live passcode without counting the try: a guesser gets
    /// more than `max_tries` (the simulator's passcode invariant must catch it).
    TriesNotCounted,
    /// `register`, `change_phone` and `adopt` leave a recorded proof in place: it can be
    /// used again.
    ProofsNotConsumed,
    /// `count_guess` ignores the guessers' limits: wrong invitation codes are answered past
    /// them and nobody is locked.
    GuessesNotLimited,
}

/// The in-memory participant store. Cheap to create: one per test.
#[derive(Debug, Default)]
pub struct MemoryParticipants {
    world: Mutex<ParticipantsWorld>,
    bug: Option<PlantedBug>,
}

impl MemoryParticipants {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store with a deliberate bug; see [`PlantedBug`].
    pub fn with_planted_bug(bug: PlantedBug) -> Self {
        Self {
            world: Mutex::default(),
            bug: Some(bug),
        }
    }

    pub(super) fn bug(&self) -> Option<PlantedBug> {
        self.bug
    }

    pub(super) fn world(&self) -> MutexGuard<'_, ParticipantsWorld> {
        // A panic while holding the lock (a failed assertion) must not hide the world.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    // --- Inspection --------------------------------------------------------------------

    /// Reads the whole world under the lock, without copying it.
    pub fn inspect<R>(&self, f: impl FnOnce(&ParticipantsWorld) -> R) -> R {
        f(&self.world())
    }

    /// Guesses of `guesser` still counted in the window starting at `window_start`.
    pub fn guesses(&self, guesser: &Guesser, window_start: i64) -> i64 {
        self.world()
            .guesses
            .get(&(guesser.key(), window_start))
            .copied()
            .unwrap_or(0)
    }

    /// Until when `guesser` is locked out of registering, if ever.
    pub fn guess_locked_until(&self, guesser: &Guesser) -> Option<i64> {
        self.world().guess_locks.get(&guesser.key()).copied()
    }

    /// The owner of a phone number.
    pub fn phone_owner(&self, phone: &PhoneNumber) -> Option<ParticipantId> {
        self.world().phones.get(phone.as_e164()).cloned()
    }

    pub fn stored_profile(&self, id: &ParticipantId) -> Option<Profile> {
        self.world().profiles.get(id).cloned()
    }

    pub fn stored_invitation(&self, code: &InvitationCode) -> Option<StoredInvitation> {
        self.world().invitations.get(code.as_str()).cloned()
    }

    /// An outlet's memberships in participant-id order.
    pub fn memberships(&self, outlet: &OutletId) -> Vec<Membership> {
        self.world()
            .members
            .range((outlet.clone(), min_participant())..)
            .take_while(|((o, _), _)| o == outlet)
            .map(|(_, m)| m.clone())
            .collect()
    }

    pub fn profile_count(&self) -> usize {
        self.world().profiles.len()
    }
}

/// The smallest participant id, to start a range over one outlet's members.
fn min_participant() -> ParticipantId {
    // '-' is the smallest byte an id may hold.
    ParticipantId::parse("-").expect("a valid id")
}

fn zone_key(zone: &ParticipantId) -> String {
    format!("ZONE#{zone}")
}

/// Where a cursor resumes: after this outlet. `None` if the cursor is not this zone's.
fn resume_after(zone: &ParticipantId, cursor: &str) -> Option<String> {
    let flat = decode_cursor(cursor, &zone_key(zone), &["pk", "sk"])?;
    let sk = flat.opt_string("sk")?;
    sk.strip_prefix("OUTLET#").map(str::to_string)
}

pub(super) async fn round_trip() {
    tokio::task::yield_now().await;
}

impl ParticipantStore for MemoryParticipants {
    async fn put_invitation(&self, invitation: &Invitation) -> Result<bool, InfraError> {
        round_trip().await;
        let mut w = self.world();
        // The region registry is updated first and unconditionally, as there.
        w.regions
            .insert(invitation.region.clone(), invitation.created_at);
        if w.invitations.contains_key(invitation.code.as_str()) {
            return Ok(false);
        }
        // The stored item carries no `used_by`: a new invitation is unused.
        let stored = StoredInvitation {
            invitation: Invitation {
                used_by: None,
                ..invitation.clone()
            },
            used_at: None,
        };
        w.invitations
            .insert(invitation.code.as_str().to_string(), stored);
        Ok(true)
    }

    async fn invitation(&self, code: &InvitationCode) -> Result<Option<Invitation>, InfraError> {
        round_trip().await;
        Ok(self
            .world()
            .invitations
            .get(code.as_str())
            .map(|s| s.invitation.clone()))
    }

    async fn outlet(&self, id: &OutletId) -> Result<Option<Outlet>, InfraError> {
        round_trip().await;
        Ok(self.world().outlets.get(id).cloned())
    }

    async fn profile(&self, id: &ParticipantId) -> Result<Option<Profile>, InfraError> {
        round_trip().await;
        Ok(self.world().profiles.get(id).cloned())
    }

    async fn register(&self, registration: &Registration) -> Result<(), ParticipantError> {
        round_trip().await;
        let profile = &registration.profile;
        let mut w = self.world();

        // Every condition, before anything is written.
        let invitation_usable = w
            .invitations
            .get(registration.invitation.as_str())
            .is_some_and(|s| s.invitation.used_by.is_none());
        let phone_free = !w.phones.contains_key(profile.phone.as_e164())
            || self.bug == Some(PlantedBug::PhonesNotUnique);
        let profile_free =
            !w.profiles.contains_key(&profile.id) && !w.links.contains_key(&profile.id);
        let proof_key = (profile.id.clone(), profile.phone.as_e164().to_string());
        let proven = match registration.proof {
            PhoneProof::Token => true,
            PhoneProof::Recorded { now } => {
                w.proofs.get(&proof_key).is_some_and(|until| *until > now)
            }
        };
        let outlet_ok = match (&registration.new_outlet, &registration.membership) {
            (Some(outlet), _) => !w.outlets.contains_key(&outlet.id),
            (None, Some(membership)) => w.outlets.contains_key(&membership.outlet),
            (None, None) => true,
        };
        if !profile_free {
            return Err(ParticipantError::AlreadyRegistered);
        }
        if !proven {
            return Err(ParticipantError::PhoneNotProven);
        }
        if !phone_free {
            return Err(ParticipantError::PhoneTaken);
        }
        if !invitation_usable {
            return Err(ParticipantError::InvitationUsed);
        }
        if !outlet_ok {
            return Err(ParticipantError::OutletNotFound);
        }

        if matches!(registration.proof, PhoneProof::Recorded { .. })
            && self.bug != Some(PlantedBug::ProofsNotConsumed)
        {
            w.proofs.remove(&proof_key);
        }
        let stored = w
            .invitations
            .get_mut(registration.invitation.as_str())
            .expect("checked above");
        stored.invitation.used_by = Some(profile.id.clone());
        stored.used_at = Some(profile.created_at);
        w.phones
            .insert(profile.phone.as_e164().to_string(), profile.id.clone());
        w.profiles.insert(profile.id.clone(), profile.clone());
        if let Some(outlet) = &registration.new_outlet {
            w.outlets.insert(outlet.id.clone(), outlet.clone());
        }
        if let Some(membership) = &registration.membership {
            w.members.insert(
                (membership.outlet.clone(), membership.participant.clone()),
                membership.clone(),
            );
        }
        Ok(())
    }

    async fn save_profile(&self, profile: &Profile) -> Result<(), ParticipantError> {
        round_trip().await;
        let mut w = self.world();
        if !w.profiles.contains_key(&profile.id) {
            return Err(ParticipantError::NotRegistered);
        }
        let member_key = profile
            .outlet
            .as_ref()
            .map(|(outlet, _)| (outlet.clone(), profile.id.clone()));
        if let Some(k) = &member_key {
            if !w.members.contains_key(k) {
                return Err(InfraError::permanent(
                    "save profile",
                    "membership item missing for a member",
                )
                .into());
            }
        }
        // As there, only the editable fields are written: a block stays.
        let stored = w.profiles.get_mut(&profile.id).expect("checked above");
        stored.name = profile.name.clone();
        stored.email = profile.email.clone();
        stored.updated_at = profile.updated_at;
        if let Some(k) = member_key {
            let member = w.members.get_mut(&k).expect("checked above");
            member.name = profile.name.clone();
        }
        Ok(())
    }

    async fn members(&self, outlet: &OutletId) -> Result<Vec<Membership>, InfraError> {
        round_trip().await;
        Ok(self.memberships(outlet))
    }

    async fn zone_outlets(
        &self,
        zone: &ParticipantId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Outlet>, ParticipantError> {
        round_trip().await;
        let after = match cursor {
            None => None,
            Some(c) => Some(resume_after(zone, c).ok_or(ParticipantError::InvalidCursor)?),
        };
        let w = self.world();
        // The index is ordered by `OUTLET#id`, i.e. by the id's string.
        let in_zone = w.outlets.values().filter(|o| &o.zone == zone);
        let mut rest = in_zone.filter(|o| match &after {
            None => true,
            Some(after) => o.id.as_str() > after.as_str(),
        });
        let items: Vec<Outlet> = rest.by_ref().take(limit as usize).cloned().collect();
        let next_cursor = match (items.last(), rest.next()) {
            (Some(last), Some(_)) => Some(encode_cursor(&key(
                zone_key(zone),
                format!("OUTLET#{}", last.id),
            ))),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    async fn phone_owners(
        &self,
        phones: &[&PhoneNumber],
    ) -> Result<HashMap<String, ParticipantId>, InfraError> {
        round_trip().await;
        let w = self.world();
        Ok(phones
            .iter()
            .filter_map(|p| {
                w.phones
                    .get(p.as_e164())
                    .map(|owner| (p.as_e164().to_string(), owner.clone()))
            })
            .collect())
    }

    async fn write_import(
        &self,
        rows: &[ImportRow],
        now: DateTime<Utc>,
    ) -> Result<(), ParticipantError> {
        round_trip().await;
        let mut w = self.world();
        let mut start = 0;
        while start < rows.len() {
            // One transaction: as many rows as fit in 100 items.
            let mut items = 0;
            let mut end = start;
            while end < rows.len() {
                let needed = 2 + usize::from(rows[end].outlet.is_some());
                if items + needed > MAX_TRANSACTION_ITEMS {
                    break;
                }
                items += needed;
                end += 1;
            }
            let chunk = &rows[start..end];

            let mut phones = BTreeSet::new();
            let mut ids = BTreeSet::new();
            for row in chunk {
                if !phones.insert(row.phone.as_e164()) || !ids.insert(row.id()) {
                    return Err(InfraError::permanent(
                        "transact participants",
                        "two items of one transaction have the same key",
                    )
                    .into());
                }
            }
            let mut bad: Vec<u64> = chunk
                .iter()
                .filter(|row| {
                    w.phones.contains_key(row.phone.as_e164()) || w.profiles.contains_key(&row.id())
                })
                .map(|row| row.line)
                .collect();
            if !bad.is_empty() {
                bad.sort_unstable();
                bad.dedup();
                let errors = bad
                    .into_iter()
                    .map(|line| LineError {
                        line,
                        code: "phone_taken",
                        message: ParticipantError::PhoneTaken.to_string(),
                    })
                    .collect();
                return Err(ParticipantError::ImportInvalid { errors });
            }
            for row in chunk {
                let profile = row.profile(now);
                w.phones
                    .insert(row.phone.as_e164().to_string(), profile.id.clone());
                if let Some(membership) = row.membership(now) {
                    w.members.insert(
                        (membership.outlet.clone(), membership.participant.clone()),
                        membership,
                    );
                }
                w.profiles.insert(profile.id.clone(), profile);
            }
            start = end;
        }
        Ok(())
    }

    async fn change_phone(&self, change: &PhoneChange) -> Result<(), ParticipantError> {
        round_trip().await;
        let profile = &change.profile;
        let mut w = self.world();
        let stored_phone = match w.profiles.get(&profile.id) {
            None => return Err(ParticipantError::NotRegistered),
            Some(stored) => stored.phone.clone(),
        };
        let proof_key = (profile.id.clone(), profile.phone.as_e164().to_string());
        let proven = match change.proof {
            PhoneProof::Token => true,
            PhoneProof::Recorded { now } => {
                w.proofs.get(&proof_key).is_some_and(|until| *until > now)
            }
        };
        if !proven {
            return Err(ParticipantError::PhoneNotProven);
        }
        if w.phones.contains_key(profile.phone.as_e164()) {
            return Err(ParticipantError::PhoneTaken);
        }
        let old_claimed = w.phones.get(change.old.as_e164()) == Some(&profile.id);
        if stored_phone != change.old || !old_claimed {
            return Err(
                InfraError::retryable("change phone", "the phone changed meanwhile").into(),
            );
        }
        if matches!(change.proof, PhoneProof::Recorded { .. })
            && self.bug != Some(PlantedBug::ProofsNotConsumed)
        {
            w.proofs.remove(&proof_key);
        }
        w.phones.remove(change.old.as_e164());
        w.phones
            .insert(profile.phone.as_e164().to_string(), profile.id.clone());
        let stored = w.profiles.get_mut(&profile.id).expect("checked above");
        stored.phone = profile.phone.clone();
        stored.updated_at = profile.updated_at;
        Ok(())
    }

    async fn has_proof(
        &self,
        subject: &ParticipantId,
        phone: &PhoneNumber,
        now: i64,
    ) -> Result<bool, InfraError> {
        round_trip().await;
        Ok(self
            .world()
            .proofs
            .get(&(subject.clone(), phone.as_e164().to_string()))
            .is_some_and(|until| *until > now))
    }

    async fn adopt(&self, adoption: &Adoption) -> Result<(), ParticipantError> {
        round_trip().await;
        let mut w = self.world();
        let subject = &adoption.subject;
        if w.profiles.contains_key(subject) || w.links.contains_key(subject) {
            return Err(ParticipantError::AlreadyRegistered);
        }
        let proof_key = (subject.clone(), adoption.phone.as_e164().to_string());
        let proven = match adoption.proof {
            PhoneProof::Token => true,
            PhoneProof::Recorded { now } => {
                w.proofs.get(&proof_key).is_some_and(|until| *until > now)
            }
        };
        if !proven {
            return Err(ParticipantError::PhoneNotProven);
        }
        let adoptable = w
            .profiles
            .get(&adoption.member)
            .is_some_and(|p| p.source == Source::Import && p.phone == adoption.phone)
            && !w.adopted_by.contains_key(&adoption.member);
        if !adoptable {
            return Err(ParticipantError::PhoneTaken);
        }
        if matches!(adoption.proof, PhoneProof::Recorded { .. })
            && self.bug != Some(PlantedBug::ProofsNotConsumed)
        {
            w.proofs.remove(&proof_key);
        }
        w.links.insert(subject.clone(), adoption.member.clone());
        w.adopted_by
            .insert(adoption.member.clone(), subject.clone());
        Ok(())
    }

    async fn set_standing(
        &self,
        id: &ParticipantId,
        change: &StandingChange,
    ) -> Result<(), ParticipantError> {
        round_trip().await;
        let mut w = self.world();
        let profile = w
            .profiles
            .get_mut(id)
            .ok_or(ParticipantError::ParticipantNotFound)?;
        profile.standing = Some(change.clone());
        Ok(())
    }

    async fn count_guess(&self, guess: &Guess) -> Result<Result<(), GuessRefusal>, InfraError> {
        round_trip().await;
        let mut w = self.world();
        let now = guess.now.timestamp();
        let locked = guess
            .guessers
            .iter()
            .filter_map(|(g, _)| w.guess_locks.get(&g.key()).copied())
            .filter(|until| *until > now)
            .max();
        if let Some(until) = locked {
            return Ok(Err(GuessRefusal::Locked { until }));
        }
        let full: Vec<Guesser> = guess
            .guessers
            .iter()
            .filter(|(g, limit)| {
                let n = w
                    .guesses
                    .get(&(g.key(), guess.window.start))
                    .copied()
                    .unwrap_or(0);
                n >= *limit as i64 && self.bug != Some(PlantedBug::GuessesNotLimited)
            })
            .map(|(g, _)| g.clone())
            .collect();
        if !full.is_empty() {
            return Ok(Err(GuessRefusal::LimitReached(full)));
        }
        for (g, _) in &guess.guessers {
            *w.guesses.entry((g.key(), guess.window.start)).or_default() += 1;
        }
        Ok(Ok(()))
    }

    async fn forgive_guess(&self, guess: &Guess) -> Result<(), InfraError> {
        round_trip().await;
        let mut w = self.world();
        // As there: a counter that is gone is not recreated.
        for (g, _) in &guess.guessers {
            if let Some(n) = w.guesses.get_mut(&(g.key(), guess.window.start)) {
                *n -= 1;
            }
        }
        Ok(())
    }

    async fn lock_guesser(&self, guesser: &Guesser, until: i64) -> Result<(), InfraError> {
        round_trip().await;
        self.world().guess_locks.insert(guesser.key(), until);
        Ok(())
    }
}
