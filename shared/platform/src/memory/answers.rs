//! [`AnswerStore`] in memory: answers under (caller, key), each live for 24 hours, with
//! [`crate::idempotency::Idempotency`]'s condition (a live answer holds its key; an expired
//! one counts as absent, as after DynamoDB's TTL deletion).

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use loyalty_domain::action::StoredAnswer;
use loyalty_domain::InfraError;

use crate::http::json_content_type;
use crate::idempotency::{Answer, AnswerStore, Keyed};

/// How long an answer holds its key, as in DynamoDB (24 h TTL).
const TTL_SECS: i64 = 24 * 3600;

/// Answers by (scope, key), with the second they expire at.
#[derive(Debug, Default)]
pub struct MemoryAnswers {
    answers: Mutex<BTreeMap<(String, String), (StoredAnswer, i64)>>,
}

impl MemoryAnswers {
    pub fn new() -> Self {
        Self::default()
    }

    fn id(k: &Keyed) -> (String, String) {
        (k.scope().to_string(), k.key.as_str().to_string())
    }

    /// Every answer stored, live or expired: `(scope, key)` → answer.
    pub fn all(&self) -> BTreeMap<(String, String), StoredAnswer> {
        self.answers
            .lock()
            .expect("answers")
            .iter()
            .map(|(id, (a, _))| (id.clone(), a.clone()))
            .collect()
    }
}

impl AnswerStore for MemoryAnswers {
    async fn answered(
        &self,
        k: &Keyed,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredAnswer>, InfraError> {
        Ok(self
            .answers
            .lock()
            .expect("answers")
            .get(&Self::id(k))
            .filter(|(_, ttl)| *ttl > now.timestamp())
            .map(|(a, _)| a.clone()))
    }

    async fn remember_answer(
        &self,
        k: &Keyed,
        answer: &Answer,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Option<StoredAnswer>>, InfraError> {
        let mut answers = self.answers.lock().expect("answers");
        let id = Self::id(k);
        if let Some((stored, ttl)) = answers.get(&id) {
            if *ttl > now.timestamp() {
                return Ok(Err(Some(stored.clone())));
            }
        }
        let stored = StoredAnswer {
            fingerprint: k.fingerprint().to_string(),
            status: answer.status.as_u16(),
            body: answer.body.to_string(),
            content_type: Some(json_content_type(answer.status).to_string()),
        };
        answers.insert(id, (stored, now.timestamp() + TTL_SECS));
        Ok(Ok(()))
    }
}
