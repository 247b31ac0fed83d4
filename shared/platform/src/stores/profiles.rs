//! The profile check of every transaction that earns or spends: one `ConditionCheck` on the
//! participant's `PARTICIPANT#id`/`PROFILE` item in ParticipantsTable that asserts the
//! participant is registered and active *and* that the region and outlet the write assumed
//! are the profile's. Refused, it hands back the profile as it was (`ALL_OLD`, see
//! [`crate::tx`]), so the caller decides again with the real facts without a read: a write
//! is one round trip whenever the assumption (a warm function's cache) is right.
//!
//! A write that assumes nothing of the profile (a partner's cashback, whose order names its
//! own region) checks the standing alone ([`standing_check`]).
//!
//! `crate::memory::participants::ProfileChecks` is the same check in memory.

use aws_sdk_dynamodb::types::builders::ConditionCheckBuilder;
use aws_sdk_dynamodb::types::ConditionCheck;
use loyalty_domain::ids::{OutletId, ParticipantId, RegionId};
use loyalty_domain::participant::{ProfileFacts, ProfileRefusal};
use loyalty_domain::InfraError;

use crate::dynamo::{key, s, Item, ItemExt};

/// The profile item's key.
pub fn profile_key(participant: &ParticipantId) -> Item {
    key(format!("PARTICIPANT#{participant}"), "PROFILE")
}

/// Registered (the profile exists) and active (no `status`, or `status = active`).
const ACTIVE: &str =
    "attribute_exists(pk) AND (attribute_not_exists(#status) OR #status = :active)";

fn active_check(table: &str, participant: &ParticipantId) -> ConditionCheckBuilder {
    ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(profile_key(participant)))
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":active", s("active"))
}

/// The standing alone: the profile exists and is active. Refused, the participant is not
/// active, whatever the item says.
pub fn standing_check(table: &str, participant: &ParticipantId) -> ConditionCheckBuilder {
    active_check(table, participant).condition_expression(ACTIVE)
}

/// The check, to add to a transaction with the store's "profile" refusal tag: the profile
/// exists, has no `status` or `status = active`, and holds exactly `assumed` (an absent
/// region or outlet asserted absent).
pub fn profile_check(
    table: &str,
    participant: &ParticipantId,
    assumed: &ProfileFacts,
) -> ConditionCheckBuilder {
    let mut condition = String::from(ACTIVE);
    let mut check = active_check(table, participant);
    for (name, attr, value) in [
        (
            "#region",
            "region",
            assumed.region.as_ref().map(RegionId::as_str),
        ),
        (
            "#outlet",
            "outlet_id",
            assumed.outlet.as_ref().map(OutletId::as_str),
        ),
    ] {
        check = check.expression_attribute_names(name, attr);
        match value {
            Some(v) => {
                let placeholder = name.replace('#', ":");
                condition.push_str(&format!(" AND {name} = {placeholder}"));
                check = check.expression_attribute_values(placeholder, s(v));
            }
            None => condition.push_str(&format!(" AND attribute_not_exists({name})")),
        }
    }
    check.condition_expression(condition)
}

/// What a failed [`profile_check`] means, from the profile as it was (`None`: no profile).
pub fn profile_refusal(old: Option<&Item>) -> Result<ProfileRefusal, InfraError> {
    let Some(item) = old.filter(|i| !i.is_empty()) else {
        return Ok(ProfileRefusal::NotActive);
    };
    match profile_facts(item)? {
        Some(facts) => Ok(ProfileRefusal::Differs(facts)),
        None => Ok(ProfileRefusal::NotActive),
    }
}

/// The facts of a profile item; `None` when the participant is not active.
pub fn profile_facts(item: &Item) -> Result<Option<ProfileFacts>, InfraError> {
    if item.opt_string("status").is_some_and(|st| st != "active") {
        return Ok(None);
    }
    let bad =
        |attr: &str, e: String| InfraError::permanent("decode profile", format!("{attr}: {e}"));
    Ok(Some(ProfileFacts {
        region: item
            .opt_string("region")
            .map(|r| RegionId::parse(r).map_err(|e| bad("region", e.to_string())))
            .transpose()?,
        outlet: item
            .opt_string("outlet_id")
            .map(|o| OutletId::parse(o).map_err(|e| bad("outlet_id", e.to_string())))
            .transpose()?,
    }))
}
