//! [`JobQueue`] in memory: the jobs in the order they were sent, for a test to deliver.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use loyalty_domain::batch::{ChunkJob, JobQueue};
use loyalty_domain::InfraError;

#[derive(Debug, Clone, Default)]
pub struct MemoryJobs {
    queue: Arc<Mutex<VecDeque<ChunkJob>>>,
}

impl MemoryJobs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes every job sent so far, oldest first (what consumers would receive).
    pub fn drain(&self) -> Vec<ChunkJob> {
        self.queue.lock().unwrap().drain(..).collect()
    }

    pub fn len(&self) -> usize {
        self.queue.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl JobQueue for MemoryJobs {
    async fn enqueue(&self, jobs: &[ChunkJob]) -> Result<(), InfraError> {
        self.queue.lock().unwrap().extend(jobs.iter().cloned());
        Ok(())
    }
}
