//! Passcodes in memory: [`MemoryParticipants`] implements [`Passcodes`] in its own world, so
//! that a registration consumes a proof atomically, as `DynamoParticipantStore` does on one
//! table (`stores/passcodes.rs`). The same conditions: a request counts against every limiter
//! or none (`requests < limit`) and replaces the phone's passcode; a try counts only on a live
//! passcode with fewer than `max_tries` tries; a proof deletes the passcode on its challenge.
//! [`MemorySms`] keeps the messages it was asked to send.

use std::sync::Mutex;

use loyalty_domain::ids::ParticipantId;
use loyalty_domain::passcode::{Issue, Limiter, Passcodes, Proof, SmsSender, StoredPasscode};
use loyalty_domain::phone::PhoneNumber;
use loyalty_domain::InfraError;

use super::participants::{round_trip, PlantedBug};
use super::MemoryParticipants;

impl Passcodes for MemoryParticipants {
    async fn issue(&self, issue: &Issue) -> Result<Result<(), Vec<Limiter>>, InfraError> {
        round_trip().await;
        let mut w = self.world();
        let full: Vec<Limiter> = issue
            .limits
            .iter()
            .filter(|(l, limit, window)| {
                w.passcode_requests
                    .get(&(l.key(), window.start))
                    .copied()
                    .unwrap_or(0)
                    >= *limit
            })
            .map(|(l, _, _)| l.clone())
            .collect();
        if !full.is_empty() {
            return Ok(Err(full));
        }
        for (l, _, window) in &issue.limits {
            *w.passcode_requests
                .entry((l.key(), window.start))
                .or_default() += 1;
        }
        let p = &issue.passcode;
        w.passcodes
            .insert(p.phone.as_e164().to_string(), (p.clone(), 0));
        Ok(Ok(()))
    }

    async fn try_passcode(
        &self,
        phone: &PhoneNumber,
        max_tries: u32,
        now: i64,
    ) -> Result<Option<StoredPasscode>, InfraError> {
        round_trip().await;
        let mut w = self.world();
        Ok(match w.passcodes.get_mut(phone.as_e164()) {
            Some((p, tries)) if p.expires_at > now && *tries < max_tries => {
                if self.bug() != Some(PlantedBug::TriesNotCounted) {
                    *tries += 1;
                }
                Some(p.clone())
            }
            _ => None,
        })
    }

    async fn prove(&self, challenge: &str, proof: &Proof) -> Result<bool, InfraError> {
        round_trip().await;
        let mut w = self.world();
        let e164 = proof.phone.as_e164();
        if w.passcodes
            .get(e164)
            .is_none_or(|(p, _)| p.challenge != challenge)
        {
            return Ok(false);
        }
        w.passcodes.remove(e164);
        w.proofs
            .insert((proof.subject.clone(), e164.to_string()), proof.expires_at);
        Ok(true)
    }
}

impl MemoryParticipants {
    /// The tries counted on the phone's live passcode, if it has one.
    pub fn passcode_tries(&self, phone: &PhoneNumber) -> Option<u32> {
        self.world().passcodes.get(phone.as_e164()).map(|(_, t)| *t)
    }

    /// The phone's passcode as stored (its digest, never the code).
    pub fn stored_passcode(&self, phone: &PhoneNumber) -> Option<StoredPasscode> {
        self.world()
            .passcodes
            .get(phone.as_e164())
            .map(|(p, _)| p.clone())
    }

    /// Until when `subject` may use `phone` as proven, if a proof is stored.
    pub fn proof_until(&self, subject: &ParticipantId, phone: &PhoneNumber) -> Option<i64> {
        self.world()
            .proofs
            .get(&(subject.clone(), phone.as_e164().to_string()))
            .copied()
    }
}

/// Text messages kept instead of sent, for handler tests.
#[derive(Debug, Default)]
pub struct MemorySms {
    sent: Mutex<Vec<(String, String)>>,
}

impl MemorySms {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every message so far as (E.164 number, text), oldest first.
    pub fn sent(&self) -> Vec<(String, String)> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The six digits of the last message to `phone`.
    pub fn last_code_to(&self, phone: &PhoneNumber) -> Option<String> {
        self.sent()
            .iter()
            .rev()
            .find(|(to, _)| to == phone.as_e164())
            .and_then(|(_, text)| six_digits(text))
    }
}

/// The first run of exactly six digits in a message: its passcode.
pub fn six_digits(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .map(str::to_string)
}

impl SmsSender for MemorySms {
    async fn send(&self, phone: &PhoneNumber, text: &str) -> Result<(), InfraError> {
        round_trip().await;
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((phone.as_e164().to_string(), text.to_string()));
        Ok(())
    }
}
