//! The actors every feature shares: participants, the outlets they sell at, regions.

use loyalty_domain::claim::Claimant;
use loyalty_domain::ids::{OutletId, ParticipantId, RegionId};
use loyalty_domain::participant::ProfileFacts;
use loyalty_domain::zone::{Zone, Zones};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub const REGIONS: [&str; 2] = ["north", "south"];

#[derive(Debug, Clone)]
pub struct Actor {
    pub participant: ParticipantId,
    pub outlet: Option<OutletId>,
    pub region: RegionId,
}

impl Actor {
    /// What their profile says: every simulated participant is registered with these.
    pub fn facts(&self) -> ProfileFacts {
        ProfileFacts {
            region: Some(self.region.clone()),
            outlet: self.outlet.clone(),
        }
    }

    pub fn claimant(&self) -> Claimant {
        Claimant {
            participant: self.participant.clone(),
            outlet: self.outlet.clone(),
            region: Some(self.region.clone()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct World {
    pub actors: Vec<Actor>,
}

impl World {
    /// `participants` people spread over `outlets` outlets (some sell at none).
    pub fn generate(rng: &mut ChaCha8Rng, participants: usize, outlets: usize) -> World {
        let actors = (0..participants)
            .map(|i| Actor {
                participant: ParticipantId::parse(&format!("p-sim-{i:02}")).expect("id"),
                outlet: rng
                    .random_bool(0.8)
                    .then(|| OutletId::parse(&format!("o-sim-{}", rng.random_range(0..outlets))))
                    .map(|o| o.expect("id")),
                region: region(rng),
            })
            .collect();
        World { actors }
    }

    pub fn pick(&self, rng: &mut ChaCha8Rng) -> usize {
        rng.random_range(0..self.actors.len())
    }
}

/// Where the regions count their periods: the programme (and north) in UTC+6, south in
/// UTC−5, so limits and the monthly cap turn at different instants for different actors.
pub fn zones() -> Zones {
    Zones {
        programme: Zone::parse("Asia/Omsk").expect("zone"),
        regions: [(
            RegionId::parse(REGIONS[1]).expect("region"),
            Zone::parse("America/Bogota").expect("zone"),
        )]
        .into(),
    }
}

impl Actor {
    /// The zone this actor's limits and cashback months are counted in.
    pub fn zone(&self) -> Zone {
        zones().for_region(Some(&self.region))
    }
}

/// Mostly north: most claims are from the claimant's own region, some are foreign.
pub fn region(rng: &mut ChaCha8Rng) -> RegionId {
    let name = if rng.random_bool(0.8) {
        REGIONS[0]
    } else {
        REGIONS[1]
    };
    RegionId::parse(name).expect("region")
}
