//! In-memory implementations of the domain ports, one module per port, mirroring
//! [`crate::stores`] (the DynamoDB ones).
//!
//! Each adapter keeps its world in one `Mutex` of ordered maps: every port call is atomic
//! exactly where the DynamoDB call is (a `TransactWriteItems` becomes one critical section
//! that checks every condition before it writes anything), and iteration order never
//! depends on hashing, so a seeded simulation replays exactly. Besides the port they
//! offer inspection methods (entries, balances, outbox records) for tests and the
//! simulator (`infra/sim`).
//!
//! Where the two adapters disagree, the memory one is wrong: the contract suite in
//! `tests/src/contract/` runs against both.

pub mod actions;
pub mod answers;
pub mod batches;
pub mod cashback;
pub mod challenges;
pub mod claims;
pub mod exports;
pub mod ids;
pub mod jobs;
pub mod ledger;
pub mod metrics;
pub mod participants;
pub mod passcodes;
pub mod reviews;
pub mod sellin;

pub use actions::MemoryActions;
pub use answers::MemoryAnswers;
pub use batches::MemoryBatches;
pub use cashback::MemoryCashback;
pub use challenges::MemoryChallenges;
pub use claims::MemoryClaims;
pub use exports::MemoryExports;
pub use ids::SeededIds;
pub use jobs::MemoryJobs;
pub use ledger::MemoryLedger;
pub use metrics::RecordedMetrics;
pub use participants::MemoryParticipants;
pub use passcodes::MemorySms;
pub use reviews::MemoryReviews;
pub use sellin::MemorySellIn;
