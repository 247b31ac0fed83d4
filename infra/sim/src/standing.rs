//! An admin blocks and unblocks participants (the profile's standing, which every earning
//! transaction checks), and the invariant that goes with it: while blocked, a participant
//! gains no points from claims, actions, cashback (pending or released), sell-in lines,
//! challenge bonuses or review approvals.
//!
//! Operations come from their own random stream, so adding them left every other sequence
//! of a seed as it was. A block is written to each store's profiles, as the one profile item
//! in ParticipantsTable is read by every earning transaction; the feature models learn it
//! too, and predict `participant_not_active` for the blocked participant's claims, actions
//! and sell-in lines, `no_cashback` with that reason for their orders, and a source that
//! counts towards no challenge.

use std::collections::BTreeMap;
use std::fmt;

use loyalty_domain::ids::ParticipantId;
use loyalty_domain::ledger::EntryKind;
use loyalty_platform::memory::{
    MemoryActions, MemoryCashback, MemoryChallenges, MemoryClaims, MemorySellIn,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::world::World;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandingOp {
    Block,
    Unblock,
}

impl StandingOp {
    /// Weights per 1,000 steps: two blocks and six unblocks, so that most participants
    /// are active most of the time (budgets still run dry in a short run).
    pub fn generate(rng: &mut ChaCha8Rng) -> Option<StandingOp> {
        match rng.random_range(0..1_000) {
            0..2 => Some(StandingOp::Block),
            2..8 => Some(StandingOp::Unblock),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            StandingOp::Block => "block participant",
            StandingOp::Unblock => "unblock participant",
        }
    }
}

impl fmt::Display for StandingOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// Who is blocked, and how many earning entries they held when blocked.
#[derive(Debug, Default)]
pub struct Standing {
    blocked: BTreeMap<usize, u64>,
}

/// The stores whose earning entries the invariant counts.
pub struct Stores<'a> {
    pub claims: &'a MemoryClaims,
    pub actions: &'a MemoryActions,
    pub cashback: &'a MemoryCashback,
    pub sell_in: &'a MemorySellIn,
    pub challenges: &'a MemoryChallenges,
}

impl Stores<'_> {
    fn set_active(&self, p: &ParticipantId, active: bool) {
        self.claims.set_active(p, active);
        self.actions.set_active(p, active);
        self.cashback.set_active(p, active);
        self.sell_in.ledger().set_active(p, active);
        self.challenges.ledger().set_active(p, active);
    }

    /// Entries by which `p` earned from a claim, an action (a rule's credit, held or not),
    /// an order's cashback (pending, or released: a blocked participant's pending points
    /// stay pending), a sell-in line or a challenge bonus (the sell-in and challenge ledgers
    /// hold nothing else), or an approval of a held claim or credit (it makes the points
    /// spendable). A rejection is not such an entry.
    fn earned(&self, p: &ParticipantId) -> u64 {
        let claims = self.claims.inspect(|w| {
            w.entries.get(p).map_or(0, |es| {
                es.iter()
                    .filter(|e| {
                        matches!(
                            e.kind,
                            EntryKind::CodeClaim
                                | EntryKind::CodeClaimUnderReview
                                | EntryKind::ReviewApproved
                        )
                    })
                    .count()
            })
        });
        let actions = self.actions.inspect(|w| {
            w.entries
                .range(
                    (
                        p.clone(),
                        loyalty_domain::ids::EntryId::parse("-").expect("id"),
                    )..,
                )
                .take_while(|((owner, _), _)| owner == p)
                .filter(|(_, e)| {
                    matches!(e.kind, EntryKind::Accrual | EntryKind::AccrualUnderReview)
                        && e.source.starts_with("rule ")
                        || e.kind == EntryKind::ReviewApproved
                })
                .count()
        });
        let cashback = self.cashback.with_world(|w| {
            w.entries.get(p).map_or(0, |es| {
                es.iter()
                    .filter(|e| {
                        matches!(
                            e.kind,
                            EntryKind::CashbackPending | EntryKind::CashbackReleased
                        )
                    })
                    .count()
            })
        });
        let own = |ledger: &MemoryActions| {
            ledger.inspect(|w| w.entries.keys().filter(|(owner, _)| owner == p).count())
        };
        let lines = own(self.sell_in.ledger());
        let bonuses = own(self.challenges.ledger());
        (claims + actions + cashback + lines + bonuses) as u64
    }
}

/// What a standing operation did to the models: who, and blocked or not.
pub struct Changed {
    pub participant: ParticipantId,
    pub actor: usize,
    pub blocked: bool,
}

impl Standing {
    /// Blocks an active participant or unblocks a blocked one, in every store.
    pub fn apply(
        &mut self,
        op: StandingOp,
        rng: &mut ChaCha8Rng,
        world: &World,
        stores: &Stores<'_>,
    ) -> Option<Changed> {
        let candidates: Vec<usize> = (0..world.actors.len())
            .filter(|a| self.blocked.contains_key(a) == (op == StandingOp::Unblock))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let actor = candidates[rng.random_range(0..candidates.len())];
        let participant = world.actors[actor].participant.clone();
        let blocked = op == StandingOp::Block;
        stores.set_active(&participant, !blocked);
        if blocked {
            self.blocked.insert(actor, stores.earned(&participant));
        } else {
            self.blocked.remove(&actor);
        }
        Some(Changed {
            participant,
            actor,
            blocked,
        })
    }

    /// The invariant: no blocked participant has earned since they were blocked.
    pub fn check(&self, world: &World, stores: &Stores<'_>) -> Result<(), String> {
        for (&actor, &at_block) in &self.blocked {
            let p = &world.actors[actor].participant;
            let now = stores.earned(p);
            if now != at_block {
                return Err(format!(
                    "{p} is blocked but earned: {at_block} earning entries when blocked, {now} now"
                ));
            }
        }
        Ok(())
    }
}
