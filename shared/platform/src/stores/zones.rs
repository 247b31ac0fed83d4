//! The time zones in ProgrammeTable, `ZONES`/`PROGRAMME` and `ZONES`/`REGION#<id>` (`zone`:
//! the IANA name), read together with one Query. Accrual's settings store writes them
//! ([`super::earning`]); this module only reads, so a function that dates something in them
//! (code orders, claims, actions, cashback) reaches one Query and no settings store.

use aws_sdk_dynamodb::Client;
use loyalty_domain::ids::RegionId;
use loyalty_domain::zone::{Zone, Zones};
use loyalty_domain::InfraError;

use crate::dynamo::{query_all, s, ItemExt};

pub(crate) const ZONES_PK: &str = "ZONES";
pub(crate) const ZONE_REGION: &str = "REGION#";

/// The programme's and the regions' zones. Free-standing so that functions that only read
/// them (actions, cashback, claims, batch orders) need no settings store.
pub async fn read_zones(client: &Client, programme_table: &str) -> Result<Zones, InfraError> {
    let query = client
        .query()
        .table_name(programme_table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", s(ZONES_PK));
    let mut zones = Zones::default();
    for item in query_all(query, "read time zones").await? {
        let zone = Zone::parse(item.string("zone")?)
            .map_err(|e| InfraError::permanent("decode time zone", e.to_string()))?;
        let sk = item.string("sk")?;
        match sk.strip_prefix(ZONE_REGION) {
            None => zones.programme = zone,
            Some(region) => {
                let region = RegionId::parse(region)
                    .map_err(|e| InfraError::permanent("decode time zone", e.to_string()))?;
                zones.regions.insert(region, zone);
            }
        }
    }
    Ok(zones)
}
