//! ParticipantsTable: profiles, phone claims, outlets, memberships, invitations and regions.
//!
//! Keys (docs/architecture.md): `PARTICIPANT#id`/`PROFILE`, `PHONE#e164`/`PHONE`,
//! `OUTLET#id`/`OUTLET` (on `gsi1` as `ZONE#rep`/`OUTLET#id`), `OUTLET#id`/`MEMBER#participant`,
//! `INVITE#code`/`INVITE`, `REGION#id`/`REGION`; invitation guesses per guesser (caller or
//! source address) and failure window `GUESSES#guesser#window`/`COUNTER` and their locks
//! `GUESSLOCK#guesser`/`LOCK`, both deleted by TTL; passcodes, their counters and phone proofs
//! (`stores/passcodes.rs`): `PASSCODE#e164`/`PASSCODE`, `PASSCODES#limiter#window`/`COUNTER`,
//! `PROOF#subject`/`PHONE#e164`, all deleted by TTL; `SUBJECT#subject`/`LINK` (`participant_id`:
//! the imported member a signed-in subject adopted, which the identity provider puts into its
//! tokens).
//!
//! One account per phone holds under concurrency because the `PHONE#` item is put with
//! `attribute_not_exists(pk)` in the same transaction as the profile.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::builders::{ConditionCheckBuilder, DeleteBuilder, PutBuilder};
use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, ReturnValue, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, Utc};
use loyalty_domain::auth::OutletRole;
use loyalty_domain::fraud::Guesser;
use loyalty_domain::ids::{OutletId, ParticipantId, RegionId};
use loyalty_domain::participant::{
    Adoption, Email, Guess, GuessRefusal, ImportRow, Invitation, InvitationCode, InvitationKind,
    LineError, Membership, Name, Outlet, Page, ParticipantError, ParticipantStore, PhoneChange,
    Profile, Reason, Registration, Source, Standing, StandingChange,
};
use loyalty_domain::passcode::PhoneProof;
use loyalty_domain::phone::PhoneNumber;
use loyalty_domain::InfraError;

use crate::dynamo::{
    batch_get_all, classify, decode_cursor, encode_cursor, key, n, s, Item, ItemExt,
};
use crate::tx::Tx;

/// DynamoDB allows at most 100 items per transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;
/// Used invitations stay readable this long after expiry, for support questions.
const INVITATION_RETENTION_DAYS: i64 = 30;

#[derive(Debug, Clone)]
pub struct DynamoParticipantStore {
    pub(super) client: Client,
    pub(super) table: String,
}

fn participant_pk(id: &ParticipantId) -> String {
    format!("PARTICIPANT#{id}")
}
/// A passcode proof of a phone for a subject, consumed by a registration or a change of phone.
pub(super) fn proof_key(subject: &ParticipantId, phone: &PhoneNumber) -> Item {
    key(proof_pk(subject), phone_pk(phone))
}
fn proof_pk(subject: &ParticipantId) -> String {
    format!("PROOF#{subject}")
}
/// The link of a signed-in subject to the imported member it adopted.
fn link_key(subject: &ParticipantId) -> Item {
    key(format!("SUBJECT#{subject}"), "LINK")
}

/// No profile and no link of this subject: it has not registered or adopted anyone yet.
fn unregistered(table: &str, subject: &ParticipantId) -> [ConditionCheckBuilder; 2] {
    [key(participant_pk(subject), "PROFILE"), link_key(subject)].map(|k| {
        ConditionCheck::builder()
            .table_name(table)
            .set_key(Some(k))
            .condition_expression("attribute_not_exists(pk)")
    })
}

fn phone_pk(phone: &PhoneNumber) -> String {
    format!("PHONE#{}", phone.as_e164())
}
fn outlet_pk(id: &OutletId) -> String {
    format!("OUTLET#{id}")
}
fn zone_pk(zone: &ParticipantId) -> String {
    format!("ZONE#{zone}")
}
fn invite_pk(code: &InvitationCode) -> String {
    format!("INVITE#{}", code.as_str())
}

fn guesses_key(guesser: &Guesser, window_start: i64) -> Item {
    key(
        format!("GUESSES#{}#{window_start}", guesser.key()),
        "COUNTER",
    )
}
fn guess_lock_key(guesser: &Guesser) -> Item {
    key(format!("GUESSLOCK#{}", guesser.key()), "LOCK")
}

/// Which condition of a counted guess failed: the lock or the counter of the n-th guesser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuessTag {
    Locked(usize),
    Full(usize),
}

fn decode_error(what: &str, detail: impl std::fmt::Display) -> InfraError {
    InfraError::permanent("decode participants item", format!("{what}: {detail}"))
}

fn time(item: &Item, attr: &str) -> Result<DateTime<Utc>, InfraError> {
    DateTime::parse_from_rfc3339(item.string(attr)?)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| decode_error(attr, e))
}

fn participant_id(item: &Item, attr: &str) -> Result<ParticipantId, InfraError> {
    ParticipantId::parse(item.string(attr)?).map_err(|e| decode_error(attr, e))
}

fn outlet_id(item: &Item, attr: &str) -> Result<OutletId, InfraError> {
    OutletId::parse(item.string(attr)?).map_err(|e| decode_error(attr, e))
}

fn region_id(item: &Item, attr: &str) -> Result<RegionId, InfraError> {
    RegionId::parse(item.string(attr)?).map_err(|e| decode_error(attr, e))
}

fn name(item: &Item, attr: &str, max: usize) -> Result<Name, InfraError> {
    Name::parse(item.string(attr)?, max).map_err(|e| decode_error(attr, e))
}

fn outlet_role(item: &Item, attr: &str) -> Result<OutletRole, InfraError> {
    OutletRole::parse(item.string(attr)?).ok_or_else(|| decode_error(attr, "not owner or seller"))
}

fn profile_item(p: &Profile) -> Item {
    let mut item = key(participant_pk(&p.id), "PROFILE");
    item.insert("id".into(), s(p.id.as_str()));
    item.insert("phone".into(), s(p.phone.as_e164()));
    item.insert("name".into(), s(p.name.as_str()));
    item.insert("region".into(), s(p.region.as_str()));
    item.insert("source".into(), s(p.source.as_str()));
    item.insert("created_at".into(), s(p.created_at.to_rfc3339()));
    item.insert("updated_at".into(), s(p.updated_at.to_rfc3339()));
    if let Some(email) = &p.email {
        item.insert("email".into(), s(email.as_str()));
    }
    if let Some(zone) = &p.zone {
        item.insert("zone".into(), s(zone.as_str()));
    }
    if let Some((outlet, role)) = &p.outlet {
        item.insert("outlet_id".into(), s(outlet.as_str()));
        item.insert("outlet_role".into(), s(role.as_str()));
    }
    if let Some(change) = &p.standing {
        item.extend(standing_attributes(change));
    }
    item
}

/// `status` is what earning paths are to check (`attribute_not_exists(#status) OR #status =
/// :active`); the rest says who changed it, when and why.
fn standing_attributes(change: &StandingChange) -> Item {
    HashMap::from([
        ("status".to_string(), s(change.standing.as_str())),
        ("status_reason".to_string(), s(change.reason.as_str())),
        ("status_by".to_string(), s(change.by.as_str())),
        ("status_at".to_string(), s(change.at.to_rfc3339())),
    ])
}

fn decode_standing(item: &Item) -> Result<Option<StandingChange>, InfraError> {
    let Some(status) = item.opt_string("status") else {
        return Ok(None);
    };
    Ok(Some(StandingChange {
        standing: Standing::parse(status).ok_or_else(|| decode_error("status", "unknown"))?,
        reason: Reason::parse(item.string("status_reason")?)
            .map_err(|e| decode_error("status_reason", e))?,
        by: participant_id(item, "status_by")?,
        at: time(item, "status_at")?,
    }))
}

fn decode_profile(item: &Item) -> Result<Profile, InfraError> {
    let outlet = match item.opt_string("outlet_id") {
        Some(_) => Some((
            outlet_id(item, "outlet_id")?,
            outlet_role(item, "outlet_role")?,
        )),
        None => None,
    };
    Ok(Profile {
        id: participant_id(item, "id")?,
        phone: PhoneNumber::from_e164(item.string("phone")?)
            .map_err(|e| decode_error("phone", e))?,
        name: name(item, "name", Name::PERSON_MAX)?,
        email: item
            .opt_string("email")
            .map(Email::parse)
            .transpose()
            .map_err(|e| decode_error("email", e))?,
        region: region_id(item, "region")?,
        zone: item
            .opt_string("zone")
            .map(|_| participant_id(item, "zone"))
            .transpose()?,
        outlet,
        source: Source::parse(item.string("source")?)
            .ok_or_else(|| decode_error("source", "unknown"))?,
        created_at: time(item, "created_at")?,
        updated_at: time(item, "updated_at")?,
        standing: decode_standing(item)?,
    })
}

fn phone_item(phone: &PhoneNumber, owner: &ParticipantId) -> Item {
    let mut item = key(phone_pk(phone), "PHONE");
    item.insert("participant_id".into(), s(owner.as_str()));
    item
}

fn outlet_item(o: &Outlet) -> Item {
    let mut item = key(outlet_pk(&o.id), "OUTLET");
    item.insert("gsi1pk".into(), s(zone_pk(&o.zone)));
    item.insert("gsi1sk".into(), s(outlet_pk(&o.id)));
    item.insert("id".into(), s(o.id.as_str()));
    item.insert("name".into(), s(o.name.as_str()));
    item.insert("region".into(), s(o.region.as_str()));
    item.insert("zone".into(), s(o.zone.as_str()));
    item.insert("owner".into(), s(o.owner.as_str()));
    item.insert("created_at".into(), s(o.created_at.to_rfc3339()));
    item
}

fn decode_outlet(item: &Item) -> Result<Outlet, InfraError> {
    Ok(Outlet {
        id: outlet_id(item, "id")?,
        name: name(item, "name", Name::OUTLET_MAX)?,
        region: region_id(item, "region")?,
        zone: participant_id(item, "zone")?,
        owner: participant_id(item, "owner")?,
        created_at: time(item, "created_at")?,
    })
}

fn member_item(m: &Membership) -> Item {
    let mut item = key(outlet_pk(&m.outlet), format!("MEMBER#{}", m.participant));
    item.insert("outlet_id".into(), s(m.outlet.as_str()));
    item.insert("participant_id".into(), s(m.participant.as_str()));
    item.insert("role".into(), s(m.role.as_str()));
    item.insert("name".into(), s(m.name.as_str()));
    item.insert("joined_at".into(), s(m.joined_at.to_rfc3339()));
    item
}

fn decode_member(item: &Item) -> Result<Membership, InfraError> {
    Ok(Membership {
        outlet: outlet_id(item, "outlet_id")?,
        participant: participant_id(item, "participant_id")?,
        role: outlet_role(item, "role")?,
        name: name(item, "name", Name::PERSON_MAX)?,
        joined_at: time(item, "joined_at")?,
    })
}

fn invitation_item(i: &Invitation) -> Item {
    let mut item = key(invite_pk(&i.code), "INVITE");
    item.insert("kind".into(), s(i.kind.as_str()));
    if let InvitationKind::JoinOutlet(outlet) = &i.kind {
        item.insert("outlet_id".into(), s(outlet.as_str()));
    }
    item.insert("region".into(), s(i.region.as_str()));
    item.insert("zone".into(), s(i.zone.as_str()));
    item.insert("created_by".into(), s(i.created_by.as_str()));
    item.insert("created_at".into(), s(i.created_at.to_rfc3339()));
    item.insert("expires_at".into(), s(i.expires_at.to_rfc3339()));
    let ttl = (i.expires_at + Duration::days(INVITATION_RETENTION_DAYS)).timestamp();
    item.insert("ttl".into(), crate::dynamo::n(ttl));
    item
}

fn decode_invitation(code: &InvitationCode, item: &Item) -> Result<Invitation, InfraError> {
    let outlet = item
        .opt_string("outlet_id")
        .map(|_| outlet_id(item, "outlet_id"))
        .transpose()?;
    let kind = InvitationKind::parse(item.string("kind")?, outlet.as_ref().map(OutletId::as_str))
        .map_err(|e| decode_error("kind", e))?;
    Ok(Invitation {
        code: code.clone(),
        kind,
        region: region_id(item, "region")?,
        zone: participant_id(item, "zone")?,
        created_by: participant_id(item, "created_by")?,
        created_at: time(item, "created_at")?,
        expires_at: time(item, "expires_at")?,
        used_by: item
            .opt_string("used_by")
            .map(|_| participant_id(item, "used_by"))
            .transpose()?,
    })
}

/// Deletes the proof of the subject's phone if it is alive at `now`.
fn consume_proof(
    table: &str,
    subject: &ParticipantId,
    phone: &PhoneNumber,
    now: i64,
) -> DeleteBuilder {
    Delete::builder()
        .table_name(table)
        .set_key(Some(proof_key(subject, phone)))
        .condition_expression("attribute_exists(pk) AND expires_at > :now")
        .expression_attribute_values(":now", n(now))
}

fn put(table: &str, item: Item) -> PutBuilder {
    Put::builder().table_name(table).set_item(Some(item))
}

fn put_new(table: &str, item: Item) -> PutBuilder {
    put(table, item).condition_expression("attribute_not_exists(pk)")
}

/// What a refused registration or profile change means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParticipantRefusal {
    /// The invitation is missing or used.
    InvitationUsed,
    PhoneTaken,
    /// The profile exists (registering) or does not (saving).
    Profile,
    /// The outlet exists (a new outlet) or does not (joining one).
    Outlet,
    /// A member's membership item is missing.
    Membership,
    /// No live passcode proof of this subject and phone.
    PhoneNotProven,
    /// The phone claim a change of phone leaves is not the participant's (any more).
    OldPhone,
    /// The imported member was adopted already, or no longer holds the phone as imported.
    Adopted,
}

impl DynamoParticipantStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, InfraError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("get participants item", e))?;
        Ok(out.item)
    }
}

impl ParticipantStore for DynamoParticipantStore {
    async fn put_invitation(&self, invitation: &Invitation) -> Result<bool, InfraError> {
        // The region registry: every region a rep invites into becomes known.
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("REGION#{}", invitation.region), "REGION")))
            .update_expression("SET region_id = :r, last_invitation_at = :t")
            .expression_attribute_values(":r", s(invitation.region.as_str()))
            .expression_attribute_values(":t", s(invitation.created_at.to_rfc3339()))
            .send()
            .await
            .map_err(|e| classify("put region", e))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(invitation_item(invitation)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => Ok(false),
                _ => Err(classify("put invitation", err)),
            },
        }
    }

    async fn invitation(&self, code: &InvitationCode) -> Result<Option<Invitation>, InfraError> {
        self.get(invite_pk(code), "INVITE")
            .await?
            .map(|item| decode_invitation(code, &item))
            .transpose()
    }

    async fn outlet(&self, id: &OutletId) -> Result<Option<Outlet>, InfraError> {
        self.get(outlet_pk(id), "OUTLET")
            .await?
            .map(|item| decode_outlet(&item))
            .transpose()
    }

    async fn profile(&self, id: &ParticipantId) -> Result<Option<Profile>, InfraError> {
        self.get(participant_pk(id), "PROFILE")
            .await?
            .map(|item| decode_profile(&item))
            .transpose()
    }

    async fn register(&self, registration: &Registration) -> Result<(), ParticipantError> {
        let profile = &registration.profile;
        use ParticipantRefusal as R;
        let consume = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(invite_pk(&registration.invitation), "INVITE")))
            .update_expression("SET used_by = :p, used_at = :t")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(used_by)")
            .expression_attribute_values(":p", s(profile.id.as_str()))
            .expression_attribute_values(":t", s(profile.created_at.to_rfc3339()));
        let mut tx = Tx::new();
        tx.update(consume, R::InvitationUsed)?;
        tx.put(
            put_new(&self.table, phone_item(&profile.phone, &profile.id)),
            R::PhoneTaken,
        )?;
        tx.put(put_new(&self.table, profile_item(profile)), R::Profile)?;
        let [_, no_link] = unregistered(&self.table, &profile.id);
        tx.check(no_link, R::Profile)?;
        match (&registration.new_outlet, &registration.membership) {
            (Some(outlet), _) => {
                tx.put(put_new(&self.table, outlet_item(outlet)), R::Outlet)?;
            }
            (None, Some(membership)) => {
                let check = ConditionCheck::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(outlet_pk(&membership.outlet), "OUTLET")))
                    .condition_expression("attribute_exists(pk)");
                tx.check(check, R::Outlet)?;
            }
            (None, None) => {}
        }
        if let Some(membership) = &registration.membership {
            tx.put_always(put(&self.table, member_item(membership)))?;
        }
        if let PhoneProof::Recorded { now } = registration.proof {
            tx.delete(
                consume_proof(&self.table, &profile.id, &profile.phone, now),
                R::PhoneNotProven,
            )?;
        }
        match tx.commit(&self.client, "transact participants").await? {
            Ok(()) => Ok(()),
            // The same subject registering again is the likeliest cause when several fail.
            Err(refused) if refused.contains(&R::Profile) => {
                Err(ParticipantError::AlreadyRegistered)
            }
            // Before the phone's owner: an unproven phone learns nothing about it.
            Err(refused) if refused.contains(&R::PhoneNotProven) => {
                Err(ParticipantError::PhoneNotProven)
            }
            Err(refused) if refused.contains(&R::PhoneTaken) => Err(ParticipantError::PhoneTaken),
            Err(refused) if refused.contains(&R::InvitationUsed) => {
                Err(ParticipantError::InvitationUsed)
            }
            Err(refused) if refused.contains(&R::Outlet) => Err(ParticipantError::OutletNotFound),
            Err(refused) => Err(InfraError::permanent(
                "register",
                format!("unexpected refusal: {}", refused.describe()),
            )
            .into()),
        }
    }

    async fn save_profile(&self, profile: &Profile) -> Result<(), ParticipantError> {
        // An update of the editable fields, never a put of the whole item: a put would undo
        // a block written between this request's read and its write.
        let fields = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(participant_pk(&profile.id), "PROFILE")))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#n", "name")
            .expression_attribute_values(":n", s(profile.name.as_str()))
            .expression_attribute_values(":u", s(profile.updated_at.to_rfc3339()));
        let fields = match &profile.email {
            Some(email) => fields
                .update_expression("SET #n = :n, updated_at = :u, email = :e")
                .expression_attribute_values(":e", s(email.as_str())),
            None => fields.update_expression("SET #n = :n, updated_at = :u REMOVE email"),
        };
        let mut tx = Tx::new();
        tx.update(fields, ParticipantRefusal::Profile)?;
        if let Some((outlet, _)) = &profile.outlet {
            // The outlet's member list shows names without reading every profile.
            let rename = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(
                    outlet_pk(outlet),
                    format!("MEMBER#{}", profile.id),
                )))
                .update_expression("SET #n = :n")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_names("#n", "name")
                .expression_attribute_values(":n", s(profile.name.as_str()));
            tx.update(rename, ParticipantRefusal::Membership)?;
        }
        match tx.commit(&self.client, "transact participants").await? {
            Ok(()) => Ok(()),
            Err(refused) if refused.contains(&ParticipantRefusal::Profile) => {
                Err(ParticipantError::NotRegistered)
            }
            Err(_) => Err(InfraError::permanent(
                "save profile",
                "membership item missing for a member",
            )
            .into()),
        }
    }

    async fn members(&self, outlet: &OutletId) -> Result<Vec<Membership>, InfraError> {
        let mut members = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :member)")
                .expression_attribute_values(":pk", s(outlet_pk(outlet)))
                .expression_attribute_values(":member", s("MEMBER#"))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("query outlet members", e))?;
            for item in out.items() {
                members.push(decode_member(item)?);
            }
            match out.last_evaluated_key {
                Some(last) => start = Some(last),
                None => return Ok(members),
            }
        }
    }

    async fn zone_outlets(
        &self,
        zone: &ParticipantId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Outlet>, ParticipantError> {
        let zone_key = zone_pk(zone);
        // The cursor is the last (zone, outlet) pair in the index, checked against this zone
        // by `decode_cursor`; the table key follows from it.
        let start = match cursor {
            None => None,
            Some(c) => {
                let flat = decode_cursor(c, &zone_key, &["pk", "sk"])
                    .ok_or(ParticipantError::InvalidCursor)?;
                let outlet_key = flat
                    .opt_string("sk")
                    .ok_or(ParticipantError::InvalidCursor)?
                    .to_string();
                if !outlet_key.starts_with("OUTLET#") {
                    return Err(ParticipantError::InvalidCursor);
                }
                let mut start = key(outlet_key.clone(), "OUTLET");
                start.insert("gsi1pk".into(), s(zone_key.clone()));
                start.insert("gsi1sk".into(), s(outlet_key));
                Some(start)
            }
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :z")
            .expression_attribute_values(":z", s(zone_key.clone()))
            .set_exclusive_start_key(start)
            .limit(limit as i32)
            .send()
            .await
            .map_err(|e| classify("query zone outlets", e))?;
        let items = out
            .items()
            .iter()
            .map(decode_outlet)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = match out.last_evaluated_key() {
            Some(last) => {
                let sk = last
                    .opt_string("gsi1sk")
                    .ok_or_else(|| decode_error("gsi1sk", "missing in cursor"))?;
                Some(encode_cursor(&key(zone_key, sk)))
            }
            None => None,
        };
        Ok(Page { items, next_cursor })
    }

    async fn phone_owners(
        &self,
        phones: &[&PhoneNumber],
    ) -> Result<HashMap<String, ParticipantId>, InfraError> {
        let unique: HashSet<&str> = phones.iter().map(|p| p.as_e164()).collect();
        let unique: Vec<&str> = unique.into_iter().collect();
        let keys = unique
            .iter()
            .map(|e164| key(format!("PHONE#{e164}"), "PHONE"))
            .collect();
        let mut owners = HashMap::new();
        for item in batch_get_all(&self.client, &self.table, keys, "batch get phones").await? {
            let e164 = item.string("pk")?.trim_start_matches("PHONE#").to_string();
            owners.insert(e164, participant_id(&item, "participant_id")?);
        }
        Ok(owners)
    }

    async fn write_import(
        &self,
        rows: &[ImportRow],
        now: DateTime<Utc>,
    ) -> Result<(), ParticipantError> {
        let mut start = 0;
        while start < rows.len() {
            // Each conditional item is tagged with the line of its row, to report a conflict.
            let mut tx: Tx<u64> = Tx::new();
            let mut end = start;
            while end < rows.len() {
                let row = &rows[end];
                let membership = row.membership(now);
                let needed = 2 + usize::from(membership.is_some());
                if tx.len() + needed > MAX_TRANSACTION_ITEMS {
                    break;
                }
                let profile = row.profile(now);
                tx.put(
                    put_new(&self.table, phone_item(&row.phone, &profile.id)),
                    row.line,
                )?;
                tx.put(put_new(&self.table, profile_item(&profile)), row.line)?;
                if let Some(membership) = membership {
                    tx.put_always(put(&self.table, member_item(&membership)))?;
                }
                end += 1;
            }
            if let Err(refused) = tx.commit(&self.client, "transact participants").await? {
                // Someone took these phones between our check and this write.
                let mut bad: Vec<u64> = refused.tags().copied().collect();
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
            start = end;
        }
        Ok(())
    }
    async fn change_phone(&self, change: &PhoneChange) -> Result<(), ParticipantError> {
        use ParticipantRefusal as R;
        let profile = &change.profile;
        let mut tx = Tx::new();
        let moved = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(participant_pk(&profile.id), "PROFILE")))
            .update_expression("SET phone = :new, updated_at = :u")
            .condition_expression("attribute_exists(pk) AND phone = :old")
            .expression_attribute_values(":new", s(profile.phone.as_e164()))
            .expression_attribute_values(":old", s(change.old.as_e164()))
            .expression_attribute_values(":u", s(profile.updated_at.to_rfc3339()));
        tx.update(moved, R::Profile)?;
        let release = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(phone_pk(&change.old), "PHONE")))
            .condition_expression("participant_id = :p")
            .expression_attribute_values(":p", s(profile.id.as_str()));
        tx.delete(release, R::OldPhone)?;
        tx.put(
            put_new(&self.table, phone_item(&profile.phone, &profile.id)),
            R::PhoneTaken,
        )?;
        if let PhoneProof::Recorded { now } = change.proof {
            tx.delete(
                consume_proof(&self.table, &profile.id, &profile.phone, now),
                R::PhoneNotProven,
            )?;
        }
        let refused = match tx.commit(&self.client, "change phone").await? {
            Ok(()) => return Ok(()),
            Err(refused) => refused,
        };
        if refused.contains(&R::Profile) && refused.get(&R::Profile).is_none() {
            return Err(ParticipantError::NotRegistered);
        }
        if refused.contains(&R::PhoneNotProven) {
            return Err(ParticipantError::PhoneNotProven);
        }
        if refused.contains(&R::PhoneTaken) {
            return Err(ParticipantError::PhoneTaken);
        }
        // The profile or its phone claim moved since the profile was read: read it again.
        Err(InfraError::retryable(
            "change phone",
            format!("the phone changed meanwhile: {}", refused.describe()),
        )
        .into())
    }

    async fn has_proof(
        &self,
        subject: &ParticipantId,
        phone: &PhoneNumber,
        now: i64,
    ) -> Result<bool, InfraError> {
        Ok(match self.get(proof_pk(subject), &phone_pk(phone)).await? {
            Some(item) => item.signed("expires_at")? > now,
            None => false,
        })
    }

    async fn adopt(&self, adoption: &Adoption) -> Result<(), ParticipantError> {
        use ParticipantRefusal as R;
        let mut tx = Tx::new();
        let member = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(participant_pk(&adoption.member), "PROFILE")))
            .update_expression("SET adopted_by = :s, adopted_at = :t")
            .condition_expression(
                "attribute_exists(pk) AND #source = :import AND phone = :phone AND attribute_not_exists(adopted_by)",
            )
            .expression_attribute_names("#source", "source")
            .expression_attribute_values(":s", s(adoption.subject.as_str()))
            .expression_attribute_values(":t", s(adoption.at.to_rfc3339()))
            .expression_attribute_values(":import", s(Source::Import.as_str()))
            .expression_attribute_values(":phone", s(adoption.phone.as_e164()));
        tx.update(member, R::Adopted)?;
        let mut link = link_key(&adoption.subject);
        link.insert("participant_id".into(), s(adoption.member.as_str()));
        link.insert("linked_at".into(), s(adoption.at.to_rfc3339()));
        tx.put(put_new(&self.table, link), R::Profile)?;
        let [no_profile, _] = unregistered(&self.table, &adoption.subject);
        tx.check(no_profile, R::Profile)?;
        if let PhoneProof::Recorded { now } = adoption.proof {
            let proof = consume_proof(&self.table, &adoption.subject, &adoption.phone, now);
            tx.delete(proof, R::PhoneNotProven)?;
        }
        match tx.commit(&self.client, "adopt imported member").await? {
            Ok(()) => Ok(()),
            Err(refused) if refused.contains(&R::Profile) => {
                Err(ParticipantError::AlreadyRegistered)
            }
            Err(refused) if refused.contains(&R::PhoneNotProven) => {
                Err(ParticipantError::PhoneNotProven)
            }
            Err(_) => Err(ParticipantError::PhoneTaken),
        }
    }

    async fn set_standing(
        &self,
        id: &ParticipantId,
        change: &StandingChange,
    ) -> Result<(), ParticipantError> {
        let attributes = standing_attributes(change);
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(participant_pk(id), "PROFILE")))
            .update_expression(
                "SET #status = :status, status_reason = :reason, status_by = :by, status_at = :at",
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status");
        for (name, attr) in [
            (":status", "status"),
            (":reason", "status_reason"),
            (":by", "status_by"),
            (":at", "status_at"),
        ] {
            update = update.expression_attribute_values(name, attributes[attr].clone());
        }
        match update.send().await {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => {
                    Err(ParticipantError::ParticipantNotFound)
                }
                _ => Err(classify("set standing", err).into()),
            },
        }
    }

    async fn count_guess(&self, guess: &Guess) -> Result<Result<(), GuessRefusal>, InfraError> {
        let now = guess.now.timestamp();
        let mut tx = Tx::new();
        for (i, (guesser, limit)) in guess.guessers.iter().enumerate() {
            let lock = ConditionCheck::builder()
                .table_name(&self.table)
                .set_key(Some(guess_lock_key(guesser)))
                .condition_expression("attribute_not_exists(pk) OR locked_until <= :now")
                .expression_attribute_values(":now", n(now));
            tx.check(lock, GuessTag::Locked(i))?;
            let count = Update::builder()
                .table_name(&self.table)
                .set_key(Some(guesses_key(guesser, guess.window.start)))
                .update_expression("ADD failures :one SET #ttl = :ttl")
                .condition_expression("attribute_not_exists(failures) OR failures < :limit")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":limit", n(*limit))
                .expression_attribute_values(":ttl", n(guess.window.end + 3600));
            tx.update(count, GuessTag::Full(i))?;
        }
        let refused = match tx
            .commit_reporting_conflicts(&self.client, "count guess")
            .await?
        {
            Ok(()) => return Ok(Ok(())),
            Err(refused) => refused,
        };
        let mut locked_until = None;
        let mut full = Vec::new();
        for (i, (guesser, _)) in guess.guessers.iter().enumerate() {
            if let Some(item) = refused.get(&GuessTag::Locked(i)) {
                let until = item.signed("locked_until")?;
                locked_until = locked_until.max(Some(until));
            } else if refused.contains(&GuessTag::Locked(i)) {
                return Err(decode_error("guess lock", "refused without an item"));
            }
            if refused.contains(&GuessTag::Full(i)) {
                full.push(guesser.clone());
            }
        }
        Ok(Err(match (locked_until, full.is_empty()) {
            (Some(until), _) => GuessRefusal::Locked { until },
            (None, false) => GuessRefusal::LimitReached(full),
            (None, true) if refused.is_conflict() => GuessRefusal::Contended,
            (None, true) => {
                return Err(InfraError::permanent(
                    "count guess",
                    format!("unexpected refusal: {}", refused.describe()),
                ))
            }
        }))
    }

    async fn forgive_guess(&self, guess: &Guess) -> Result<(), InfraError> {
        for (guesser, _) in &guess.guessers {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(guesses_key(guesser, guess.window.start)))
                .update_expression("ADD failures :minus_one")
                // Never recreate a counter that TTL has deleted.
                .condition_expression("attribute_exists(failures)")
                .expression_attribute_values(":minus_one", n(-1))
                .return_values(ReturnValue::None)
                .send()
                .await;
            match result {
                Ok(_) => {}
                Err(err) => match err.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(_)) => {}
                    _ => {
                        let e = classify("forgive guess", err);
                        tracing::warn!(error = %e, "a right invitation guess stayed counted");
                        return Err(e);
                    }
                },
            }
        }
        Ok(())
    }

    async fn lock_guesser(&self, guesser: &Guesser, until: i64) -> Result<(), InfraError> {
        let mut item = guess_lock_key(guesser);
        item.insert("locked_until".into(), n(until));
        item.insert("ttl".into(), n(until + 24 * 3600));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify("lock guesser", e))?;
        tracing::warn!(guesser = %guesser.key(), until, "registration locked after wrong invitation codes");
        Ok(())
    }
}
