//! The exports bucket in memory: [`ExportStore`] and [`ExportLinks`] over a map of
//! objects. Links are `memory://<key>?expires=<unix seconds>`: they name the object and
//! when the link ends, as a presigned URL does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use loyalty_domain::batch::{ExportLink, ExportLinks, ExportStore};
use loyalty_domain::InfraError;

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub content_type: String,
    pub body: Vec<u8>,
}

#[derive(Debug, Default)]
struct ExportsWorld {
    objects: BTreeMap<String, StoredObject>,
    /// Puts to refuse (as a throttled S3 would, retryable) before accepting again.
    refuse: u32,
}

#[derive(Debug, Clone, Default)]
pub struct MemoryExports {
    world: Arc<Mutex<ExportsWorld>>,
}

impl MemoryExports {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` puts fail with a retryable error: how a test makes a job fail on
    /// infrastructure.
    pub fn refuse_next_puts(&self, n: u32) {
        self.world.lock().unwrap().refuse = n;
    }

    pub fn object(&self, key: &str) -> Option<StoredObject> {
        self.world.lock().unwrap().objects.get(key).cloned()
    }

    /// Every key, in order.
    pub fn keys(&self) -> Vec<String> {
        self.world.lock().unwrap().objects.keys().cloned().collect()
    }
}

impl ExportStore for MemoryExports {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), InfraError> {
        let mut w = self.world.lock().unwrap();
        if w.refuse > 0 {
            w.refuse -= 1;
            return Err(InfraError::retryable("export to S3", "SlowDown (HTTP 503)"));
        }
        w.objects.insert(
            key.to_string(),
            StoredObject {
                content_type: content_type.to_string(),
                body,
            },
        );
        Ok(())
    }
}

impl ExportLinks for MemoryExports {
    async fn link(
        &self,
        key: &str,
        now: DateTime<Utc>,
        valid_for: chrono::Duration,
    ) -> Result<ExportLink, InfraError> {
        let expires_at = now + valid_for;
        Ok(ExportLink {
            url: format!("memory://{key}?expires={}", expires_at.timestamp()),
            expires_at,
        })
    }
}
