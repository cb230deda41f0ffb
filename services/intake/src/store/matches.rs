//! Match decisions and match candidates, as SQL: the rows a batch writes for every person it
//! matches ([`push_decision`]), what reviewers and practitioners read back, and what a
//! practitioner's answer changes on the candidates.
use crate::domain::matching::{CandidateStatus, FieldMatch, MergePlan, PersonMatch};
use eh_proto::intake::v1::PersonRef;
use eh_store::{Rows, stmt};
use sea_orm::{ConnectionTrait, DbErr};

fn json(v: &impl serde::Serialize) -> Result<String, DbErr> {
    serde_json::to_string(v).map_err(|e| DbErr::Custom(e.to_string()))
}

/// The rows of `match_decisions` a batch writes.
pub fn decision_rows() -> Rows {
    Rows::new(
        "INSERT INTO match_decisions (id, tenant, referral_id, position, role, person_id, decision,
           matched_person_id, identifier, score, fields, notes, decided_at)",
        13,
    )
}

/// The rows of `match_candidates` a batch writes.
pub fn candidate_rows() -> Rows {
    Rows::new(
        "INSERT INTO match_candidates (id, tenant, referral_id, new_person_id, existing_person_id,
           score, fields, status, created_at)",
        9,
    )
}

/// Adds the decision for the person at `position` of a referral (now `person_id`: the held
/// person when attached, else the one just created), with its score and fields; and, in the
/// grey zone, a pending candidate per held person who may be them.
#[allow(clippy::too_many_arguments)]
pub fn push_decision(
    decisions: &mut Rows,
    candidates: &mut Rows,
    tenant: &str,
    referral_id: &str,
    position: i32,
    person_id: &str,
    m: &PersonMatch,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    let e = m.evidence();
    let no_fields: Vec<FieldMatch> = Vec::new();
    decisions.push([
        uuid::Uuid::now_v7().to_string().into(),
        tenant.into(),
        referral_id.into(),
        position.into(),
        m.role.as_str().into(),
        person_id.into(),
        e.decision.into(),
        e.matched_person_id.map(str::to_string).into(),
        e.identifier.map(|i| i.as_str().to_string()).into(),
        e.score.map(|s| s.score).into(),
        json(e.score.map_or(&no_fields, |s| &s.fields))?.into(),
        json(&m.result.notes)?.into(),
        now.into(),
    ]);
    for c in m.candidates() {
        candidates.push([
            uuid::Uuid::now_v7().to_string().into(),
            tenant.into(),
            referral_id.into(),
            person_id.into(),
            c.person_id.clone().into(),
            c.score.score.into(),
            json(&c.score.fields)?.into(),
            CandidateStatus::Pending.as_str().into(),
            now.into(),
        ]);
    }
    Ok(())
}

/// One stored match decision (tests and reviewers).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDecision {
    pub position: i32,
    pub role: String,
    pub person_id: String,
    /// exact | attach | candidates | new
    pub decision: String,
    /// The held person the score is against: the one attached to, the best candidate, or for a
    /// new person the nearest miss (none when nobody shared a blocking key).
    pub matched_person_id: Option<String>,
    /// For `exact`: nhs_number | upn.
    pub identifier: Option<String>,
    pub score: Option<f64>,
    /// Every field compared for that score, with its kind of agreement and points.
    pub fields: Vec<FieldMatch>,
    pub notes: Vec<String>,
}

/// The decisions taken for the people of one referral, in referral order.
pub async fn decisions(
    db: &impl ConnectionTrait,
    tenant: &str,
    referral_id: &str,
) -> Result<Vec<StoredDecision>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            "SELECT position, role, person_id, decision, matched_person_id, identifier, score, fields, notes
             FROM match_decisions WHERE tenant = $1 AND referral_id = $2 ORDER BY position",
            [tenant.into(), referral_id.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let fields: String = r.try_get_by_index(7)?;
            let notes: String = r.try_get_by_index(8)?;
            Ok(StoredDecision {
                position: r.try_get_by_index(0)?,
                role: r.try_get_by_index(1)?,
                person_id: r.try_get_by_index(2)?,
                decision: r.try_get_by_index(3)?,
                matched_person_id: r.try_get_by_index(4)?,
                identifier: r.try_get_by_index(5)?,
                score: r.try_get_by_index(6)?,
                fields: serde_json::from_str(&fields).map_err(|e| DbErr::Custom(e.to_string()))?,
                notes: serde_json::from_str(&notes).map_err(|e| DbErr::Custom(e.to_string()))?,
            })
        })
        .collect()
}

/// A match candidate with both people.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCandidate {
    pub id: String,
    pub tenant: String,
    pub referral_id: String,
    pub new_person: PersonRef,
    pub existing_person: PersonRef,
    pub existing_family_id: String,
    pub score: f64,
    pub fields: Vec<FieldMatch>,
    pub status: CandidateStatus,
    pub reason: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub referral_family_id: String,
}

const CANDIDATE_SELECT: &str = "SELECT c.id, c.tenant, c.referral_id,
       c.new_person_id, n.given_name, n.family_name,
       c.existing_person_id, e.given_name, e.family_name, e.family_id,
       c.score, c.fields, c.status, c.reason, c.decided_by, c.decided_at, c.created_at, r.family_id
     FROM match_candidates c
     JOIN people n ON n.id = c.new_person_id
     JOIN people e ON e.id = c.existing_person_id
     JOIN referrals r ON r.id = c.referral_id";

fn candidate_row(r: &sea_orm::QueryResult) -> Result<StoredCandidate, DbErr> {
    let fields: String = r.try_get_by_index(11)?;
    let status: String = r.try_get_by_index(12)?;
    Ok(StoredCandidate {
        id: r.try_get_by_index(0)?,
        tenant: r.try_get_by_index(1)?,
        referral_id: r.try_get_by_index(2)?,
        new_person: PersonRef {
            person_id: r.try_get_by_index(3)?,
            given_name: r.try_get_by_index(4)?,
            family_name: r.try_get_by_index(5)?,
        },
        existing_person: PersonRef {
            person_id: r.try_get_by_index(6)?,
            given_name: r.try_get_by_index(7)?,
            family_name: r.try_get_by_index(8)?,
        },
        existing_family_id: r.try_get_by_index(9)?,
        score: r.try_get_by_index(10)?,
        fields: serde_json::from_str(&fields).map_err(|e| DbErr::Custom(e.to_string()))?,
        status: CandidateStatus::parse(&status)
            .ok_or_else(|| DbErr::Custom(format!("match candidate status {status:?}")))?,
        reason: r.try_get_by_index(13)?,
        decided_by: r.try_get_by_index(14)?,
        decided_at: r.try_get_by_index(15)?,
        created_at: r.try_get_by_index(16)?,
        referral_family_id: r.try_get_by_index(17)?,
    })
}

/// The tenant's match candidates (of one status, or all), oldest first.
pub async fn candidates(
    db: &impl ConnectionTrait,
    tenant: &str,
    status: Option<CandidateStatus>,
) -> Result<Vec<StoredCandidate>, DbErr> {
    let b = db.get_database_backend();
    let q = match status {
        Some(s) => stmt(
            b,
            &format!(
                "{CANDIDATE_SELECT} WHERE c.tenant = $1 AND c.status = $2 ORDER BY c.created_at, c.id"
            ),
            [tenant.into(), s.as_str().into()],
        ),
        None => stmt(
            b,
            &format!("{CANDIDATE_SELECT} WHERE c.tenant = $1 ORDER BY c.created_at, c.id"),
            [tenant.into()],
        ),
    };
    db.query_all_raw(q)
        .await?
        .iter()
        .map(candidate_row)
        .collect()
}

/// One match candidate of `tenant` (another tenant's id finds nothing).
pub async fn candidate(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> Result<Option<StoredCandidate>, DbErr> {
    db.query_one_raw(stmt(
        db.get_database_backend(),
        &format!("{CANDIDATE_SELECT} WHERE c.tenant = $1 AND c.id = $2"),
        [tenant.into(), id.into()],
    ))
    .await?
    .as_ref()
    .map(candidate_row)
    .transpose()
}

/// Records a practitioner's answer on a candidate of `tenant`: its status, why, who and when.
pub async fn set_status(
    txn: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    status: CandidateStatus,
    reason: &str,
    actor: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        "UPDATE match_candidates SET status = $1, reason = $2, decided_by = $3, decided_at = $4
         WHERE tenant = $5 AND id = $6",
        [
            status.as_str().into(),
            reason.into(),
            actor.into(),
            now.into(),
            tenant.into(),
            id.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// After a merge confirmed by candidate `candidate_id`: later referrals' pending candidates that
/// pointed at the new person now point at the held one; the new person's other pending
/// candidates (and any between the two people) are moot, rejected as superseded for `actor`.
pub async fn merged(
    txn: &impl ConnectionTrait,
    tenant: &str,
    plan: &MergePlan,
    candidate_id: &str,
    actor: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    let b = txn.get_database_backend();
    let (new_id, held) = (plan.new_person.as_str(), plan.held_person.as_str());
    txn.execute_raw(stmt(
        b,
        "UPDATE match_candidates SET existing_person_id = $1
         WHERE tenant = $2 AND existing_person_id = $3 AND status = 'pending' AND new_person_id <> $1",
        [held.into(), tenant.into(), new_id.into()],
    ))
    .await?;
    txn.execute_raw(stmt(
        b,
        "UPDATE match_candidates SET status = 'rejected', reason = $1, decided_by = $2, decided_at = $3
         WHERE tenant = $4 AND status = 'pending' AND id <> $5
           AND (new_person_id = $6 OR (new_person_id = $7 AND existing_person_id = $6))",
        [
            plan.superseded_reason(candidate_id).into(),
            actor.into(),
            now.into(),
            tenant.into(),
            candidate_id.into(),
            new_id.into(),
            held.into(),
        ],
    ))
    .await?;
    Ok(())
}
