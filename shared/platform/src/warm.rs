//! What a warm function remembers per participant between requests: the last balance it
//! saw, the facts of their profile. Each value is only an assumption that the next write's
//! conditions check, so a stale one costs one refused write, never a wrong answer.

use std::collections::HashMap;
use std::sync::Mutex;

use loyalty_domain::ids::ParticipantId;

/// A bounded map from participant to the last `V` seen.
pub struct ParticipantCache<V>(Mutex<HashMap<ParticipantId, V>>);

impl<V> Default for ParticipantCache<V> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<V: Clone> ParticipantCache<V> {
    /// Bounded so a long-lived function cannot grow without limit; when full it starts over,
    /// which costs at most one extra write per participant.
    const CAPACITY: usize = 50_000;

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ParticipantId, V>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, p: &ParticipantId) -> Option<V> {
        self.map().get(p).cloned()
    }

    pub fn put(&self, p: ParticipantId, value: V) {
        let mut map = self.map();
        if map.len() >= Self::CAPACITY {
            map.clear();
        }
        map.insert(p, value);
    }

    pub fn forget(&self, p: &ParticipantId) {
        self.map().remove(p);
    }
}
