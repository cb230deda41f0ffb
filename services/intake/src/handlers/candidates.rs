//! A practitioner's answer to a match candidate: loaded (the candidate, where both people live
//! now, how the referral is filed), decided (`domain::matching::merge`) and applied
//! (`store::people`, `store::matches`, `store::referrals`), all under the tenant's people lock.
use crate::domain::matching::{self, CandidateStatus, MergeInput, ReferralFiling, Resolution};
use crate::store::matches::{self, StoredCandidate};
use crate::store::people::{self, Stamp};
use crate::store::referrals;
use eh_proto::intake::v1::PeopleMerged;
use sea_orm::{ConnectionTrait, DbErr};

/// Why a candidate could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no match candidate {0}")]
    NotFound(String),
    #[error("match candidate {id} is {status} already")]
    AlreadyResolved { id: String, status: &'static str },
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Confirms or rejects a pending candidate of `tenant` in `txn`, recording who, when and why.
///
/// Confirming merges the new person into the held one (the new record is kept, marked
/// `merged_into`, so ids other services hold still resolve; the referral's links point at the
/// held person; the new person's other pending candidates are rejected as superseded). When the
/// referral had started a family of its own (nobody on it was known), that family joins the
/// held person's: its people and referrals move there (the family row is kept, marked
/// `merged_into`), and those referrals are flagged as of a known family, re-referrals when the
/// held family had another referral in the 12 months before. A referral already filed under a
/// held family stays there: two held families are not merged on one person's say-so. A person
/// unsafe to contact on either record is unsafe on the one kept. Returns the candidate and, for a
/// merge, what to announce (`people_merged`).
pub async fn resolve(
    txn: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    resolution: Resolution,
    reason: &str,
    actor: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(StoredCandidate, Option<PeopleMerged>), ResolveError> {
    let stamp = people::lock_people(txn, tenant).await?;
    let c = matches::candidate(txn, tenant, id)
        .await?
        .ok_or_else(|| ResolveError::NotFound(id.to_string()))?;
    let status = matching::resolved_status(c.status, resolution).map_err(|status| {
        ResolveError::AlreadyResolved {
            id: id.to_string(),
            status: status.as_str(),
        }
    })?;
    let mut merged = None;
    if status == CandidateStatus::Confirmed {
        merged = merge(txn, tenant, &c, stamp, actor, now).await?;
    }
    matches::set_status(txn, tenant, id, status, reason, actor, now).await?;
    let c = matches::candidate(txn, tenant, id)
        .await?
        .ok_or_else(|| ResolveError::NotFound(id.to_string()))?;
    Ok((c, merged))
}

/// A confirmation's merge: where both people live now, then what moves (decided in
/// `domain::matching::merge`), then the writes, all under the lock `stamp` of `txn`.
async fn merge(
    txn: &impl ConnectionTrait,
    tenant: &str,
    c: &StoredCandidate,
    stamp: Stamp,
    actor: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<PeopleMerged>, DbErr> {
    let (held, held_family) =
        people::live_person(txn, tenant, &c.existing_person.person_id).await?;
    let (live_new, _) = people::live_person(txn, tenant, &c.new_person.person_id).await?;
    let input = MergeInput {
        new_person: &c.new_person.person_id,
        live_new_person: &live_new,
        held_person: &held,
        held_family: &held_family,
    };
    if matching::is_merged_already(&input) {
        // Merged already by another route: nothing left to move.
        return Ok(None);
    }
    // Read before the writes below, which leave the referral's own row as it is.
    let (family_id, known_family) = referrals::filing(txn, tenant, &c.referral_id).await?;
    let plan = matching::plan_merge(
        &input,
        &ReferralFiling {
            family_id: &family_id,
            known_family,
        },
    );
    people::merge_person(txn, tenant, &plan, stamp).await?;
    matches::merged(txn, tenant, &plan, &c.id, actor, now).await?;
    let announced = PeopleMerged {
        person_id: plan.held_person.clone(),
        merged_person_id: plan.new_person.clone(),
        family_id: held_family.clone(),
        previous_family_id: plan
            .family
            .as_ref()
            .map(|f| f.from.clone())
            .unwrap_or_default(),
        unsafe_to_contact: people::is_unsafe(txn, tenant, &plan.held_person).await?,
        candidate_id: c.id.clone(),
        at: now.to_rfc3339(),
    };
    let Some(family) = &plan.family else {
        return Ok(Some(announced));
    };
    let moved = referrals::family_referral_ids(txn, tenant, &family.from).await?;
    people::move_family(txn, tenant, family, stamp).await?;
    let history = referrals::family_referrals(txn, tenant, &family.to).await?;
    for (id, previous) in matching::re_referrals_after_move(&moved, &history) {
        referrals::mark_known_family(txn, tenant, &id, previous.as_deref()).await?;
    }
    Ok(Some(announced))
}
