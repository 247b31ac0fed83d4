//! Typed outbox events: every notification-worthy change, written in the same transaction as
//! the change itself, and the only contract between the features that move points and the
//! notifications that tell participants about it.
//!
//! The wire form is a flat JSON object: `schema_version`, `event_id`, `type`, `occurred_at`
//! and the fields of the variant. `docs/outbox-events.schema.json` documents it as JSON Schema,
//! and a test below keeps the two in step. A change that removes or retypes a field is a new
//! `SCHEMA_VERSION`; adding a variant or an optional field is not.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::earning::Slug;
use crate::ids::{EntryId, ParticipantId};
use crate::Points;

/// The version of the wire form that consumers switch on.
pub const SCHEMA_VERSION: u32 = 1;

/// What happened, with what a message about it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutboxEvent {
    /// A pack code was claimed and its points credited.
    CodeAccepted(CodeClaimed),
    /// A pack code was claimed but its points wait for a reviewer (a fraud flag).
    CodeUnderReview(CodeClaimed),
    /// A reviewer decided a held claim.
    ClaimReviewed {
        participant_id: ParticipantId,
        /// The reviewed entry (the one that was held).
        entry_id: EntryId,
        decision: ReviewVerdict,
        points: Points,
    },
    /// An action or a sell-in line earned points under a rule.
    PointsCredited {
        participant_id: ParticipantId,
        entry_id: EntryId,
        rule_id: Slug,
        points: Points,
    },
    /// A partner order earned cashback, pending until the order is delivered and released.
    CashbackPending {
        participant_id: ParticipantId,
        entry_id: EntryId,
        partner_id: String,
        order_id: String,
        points: Points,
    },
    /// Pending cashback of a delivered order became available.
    CashbackReleased {
        participant_id: ParticipantId,
        entry_id: EntryId,
        partner_id: String,
        order_id: String,
        points: Points,
    },
    /// A challenge was completed and its bonus credited.
    ChallengeCompleted {
        participant_id: ParticipantId,
        entry_id: EntryId,
        challenge_id: Slug,
        points: Points,
    },
}

/// The fields of a claimed code's events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeClaimed {
    pub participant_id: ParticipantId,
    pub entry_id: EntryId,
    pub points: Points,
    pub sku: String,
    pub product_type: String,
    /// The participant's available balance after the claim.
    pub available: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewVerdict {
    Approved,
    Rejected,
}

impl OutboxEvent {
    /// The snake_case name of the variant, as in the wire form's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            OutboxEvent::CodeAccepted(_) => "code_accepted",
            OutboxEvent::CodeUnderReview(_) => "code_under_review",
            OutboxEvent::ClaimReviewed { .. } => "claim_reviewed",
            OutboxEvent::PointsCredited { .. } => "points_credited",
            OutboxEvent::CashbackPending { .. } => "cashback_pending",
            OutboxEvent::CashbackReleased { .. } => "cashback_released",
            OutboxEvent::ChallengeCompleted { .. } => "challenge_completed",
        }
    }

    /// The participant the event is about: the one a notification goes to.
    pub fn participant(&self) -> &ParticipantId {
        match self {
            OutboxEvent::CodeAccepted(c) | OutboxEvent::CodeUnderReview(c) => &c.participant_id,
            OutboxEvent::ClaimReviewed { participant_id, .. }
            | OutboxEvent::PointsCredited { participant_id, .. }
            | OutboxEvent::CashbackPending { participant_id, .. }
            | OutboxEvent::CashbackReleased { participant_id, .. }
            | OutboxEvent::ChallengeCompleted { participant_id, .. } => participant_id,
        }
    }

    /// The ledger entry the event reports. Every event today reports exactly one movement,
    /// so the entry id (itself deterministic) makes the event id deterministic: a retried
    /// transaction writes the same outbox record, and its condition refuses the duplicate.
    fn entry(&self) -> &EntryId {
        match self {
            OutboxEvent::CodeAccepted(c) | OutboxEvent::CodeUnderReview(c) => &c.entry_id,
            OutboxEvent::ClaimReviewed { entry_id, .. }
            | OutboxEvent::PointsCredited { entry_id, .. }
            | OutboxEvent::CashbackPending { entry_id, .. }
            | OutboxEvent::CashbackReleased { entry_id, .. }
            | OutboxEvent::ChallengeCompleted { entry_id, .. } => entry_id,
        }
    }
}

/// An event as it is stored in the outbox and read by its consumers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub schema_version: u32,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: OutboxEvent,
}

impl Envelope {
    pub fn new(event: OutboxEvent, occurred_at: DateTime<Utc>) -> Self {
        // A review decides an entry that a claim already reported, so its id is kept apart
        // by the event's kind, never by the entry alone.
        let event_id = format!("{}-{}", event.kind(), event.entry());
        Self {
            schema_version: SCHEMA_VERSION,
            event_id,
            occurred_at,
            event,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an envelope always serialises")
    }

    pub fn from_json(raw: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn at() -> DateTime<Utc> {
        "2026-11-11T10:00:00Z".parse().unwrap()
    }

    /// One sample of every variant; the `match` makes adding a variant without a sample a
    /// compile error, so the schema test below covers every event.
    fn samples() -> Vec<OutboxEvent> {
        let p = ParticipantId::parse("p-1").unwrap();
        let e = EntryId::parse("e-1").unwrap();
        let claimed = CodeClaimed {
            participant_id: p.clone(),
            entry_id: e.clone(),
            points: Points(50),
            sku: "COLA-05".into(),
            product_type: "pack".into(),
            available: 150,
        };
        let all = vec![
            OutboxEvent::CodeAccepted(claimed.clone()),
            OutboxEvent::CodeUnderReview(claimed),
            OutboxEvent::ClaimReviewed {
                participant_id: p.clone(),
                entry_id: e.clone(),
                decision: ReviewVerdict::Approved,
                points: Points(50),
            },
            OutboxEvent::PointsCredited {
                participant_id: p.clone(),
                entry_id: e.clone(),
                rule_id: Slug::parse("welcome").unwrap(),
                points: Points(10),
            },
            OutboxEvent::CashbackPending {
                participant_id: p.clone(),
                entry_id: e.clone(),
                partner_id: "acme".into(),
                order_id: "o-1".into(),
                points: Points(30),
            },
            OutboxEvent::CashbackReleased {
                participant_id: p.clone(),
                entry_id: e.clone(),
                partner_id: "acme".into(),
                order_id: "o-1".into(),
                points: Points(30),
            },
            OutboxEvent::ChallengeCompleted {
                participant_id: p,
                entry_id: e,
                challenge_id: Slug::parse("spring").unwrap(),
                points: Points(100),
            },
        ];
        for event in &all {
            match event {
                OutboxEvent::CodeAccepted(_)
                | OutboxEvent::CodeUnderReview(_)
                | OutboxEvent::ClaimReviewed { .. }
                | OutboxEvent::PointsCredited { .. }
                | OutboxEvent::CashbackPending { .. }
                | OutboxEvent::CashbackReleased { .. }
                | OutboxEvent::ChallengeCompleted { .. } => {}
            }
        }
        all
    }

    #[test]
    fn every_event_round_trips_through_its_wire_form() {
        for event in samples() {
            let envelope = Envelope::new(event, at());
            let back = Envelope::from_json(&envelope.to_json()).unwrap();
            assert_eq!(back, envelope);
        }
    }

    #[test]
    fn the_wire_form_is_flat_with_type_version_and_a_deterministic_id() {
        let event = samples().remove(3);
        let wire: Value =
            serde_json::from_str(&Envelope::new(event.clone(), at()).to_json()).unwrap();
        assert_eq!(wire["type"], "points_credited");
        assert_eq!(wire["schema_version"], SCHEMA_VERSION);
        assert_eq!(wire["event_id"], "points_credited-e-1");
        assert_eq!(wire["points"], 10);
        assert_eq!(wire["occurred_at"], "2026-11-11T10:00:00Z");
        let later = Envelope::new(event, at() + chrono::Duration::hours(1));
        assert_eq!(later.event_id, "points_credited-e-1");
    }

    #[test]
    fn a_review_of_a_claimed_entry_has_its_own_event_id() {
        let all = samples();
        let accepted = Envelope::new(all[0].clone(), at());
        let reviewed = Envelope::new(all[2].clone(), at());
        assert_ne!(accepted.event_id, reviewed.event_id);
    }

    /// The JSON Schema in docs/ is the consumers' contract: every event this code writes
    /// must match it exactly (no undocumented field, no missing required one, the right
    /// JSON types), and it must document no event the code cannot write.
    #[test]
    fn the_documented_json_schema_matches_every_event_written() {
        let schema: Value =
            serde_json::from_str(include_str!("../../../docs/outbox-events.schema.json"))
                .expect("the schema is JSON");
        let variants = schema["oneOf"].as_array().expect("oneOf lists the events");
        let envelope_props = schema["$defs"]["envelope"]["properties"]
            .as_object()
            .expect("the envelope's properties");
        let mut documented: Vec<String> = Vec::new();
        for variant in variants {
            let name = variant["$ref"].as_str().expect("each event is a $ref");
            documented.push(name.trim_start_matches("#/$defs/").to_string());
        }
        let samples = samples();
        let mut written: Vec<String> = samples.iter().map(|e| e.kind().to_string()).collect();
        written.sort();
        let mut sorted = documented.clone();
        sorted.sort();
        assert_eq!(
            sorted, written,
            "documented events differ from the events written"
        );

        for event in samples {
            let wire: Value =
                serde_json::from_str(&Envelope::new(event.clone(), at()).to_json()).unwrap();
            let def = &schema["$defs"][event.kind()];
            let props = def["properties"]
                .as_object()
                .expect("an event's properties");
            assert_eq!(
                def["properties"]["type"]["const"],
                event.kind(),
                "{}: type const",
                event.kind()
            );
            for (field, value) in wire.as_object().unwrap() {
                let spec = props
                    .get(field)
                    .or_else(|| envelope_props.get(field))
                    .unwrap_or_else(|| panic!("{}: field {field} is not documented", event.kind()));
                let ty = spec["type"].as_str().unwrap_or("string");
                let fits = match ty {
                    "string" => value.is_string(),
                    "integer" => value.is_u64(),
                    other => panic!("unexpected schema type {other}"),
                };
                assert!(fits, "{}: field {field} is not a {ty}", event.kind());
            }
            let required = def["required"].as_array().expect("required fields");
            let envelope_required = schema["$defs"]["envelope"]["required"].as_array().unwrap();
            for field in required.iter().chain(envelope_required) {
                let field = field.as_str().unwrap();
                assert!(
                    wire.get(field).is_some(),
                    "{}: required field {field} is not written",
                    event.kind()
                );
            }
            for field in props.keys() {
                assert!(
                    wire.get(field).is_some(),
                    "{}: documented field {field} is never written",
                    event.kind()
                );
            }
        }
    }
}
