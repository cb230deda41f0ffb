//! Screening decisions as stored: each with the referral and case it is for, the rule version
//! it was taken under, and the whole decision with its reasons.
use crate::domain::screening::ScreeningDecision;
use eh_store::{Migration, stmt};
use sea_orm::{ConnectionTrait, DbErr};

pub const MIGRATIONS: &[Migration] = &[Migration {
    owner: "intake",
    version: 30,
    name: "screening decisions",
    sql: "CREATE TABLE screening_decisions (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            case_id TEXT NOT NULL,
            referral_id TEXT NOT NULL REFERENCES referrals (id),
            outcome TEXT NOT NULL,
            rule_version TEXT NOT NULL,
            decision TEXT NOT NULL,
            decided_at {ts} NOT NULL
          );
          CREATE INDEX screening_decisions_referral ON screening_decisions (tenant, referral_id)",
}];

/// A stored decision, as `GetReferral` and tests read it.
#[derive(Debug, Clone)]
pub struct StoredDecision {
    pub id: String,
    pub case_id: String,
    pub outcome: String,
    pub rule_version: String,
    pub decision: ScreeningDecision,
}

/// The decisions held for one referral of `tenant`, oldest first.
pub async fn decisions(
    db: &impl ConnectionTrait,
    tenant: &str,
    referral_id: &str,
) -> Result<Vec<StoredDecision>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            "SELECT id, case_id, outcome, rule_version, decision FROM screening_decisions
             WHERE tenant = $1 AND referral_id = $2 ORDER BY decided_at, id",
            [tenant.into(), referral_id.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let text: String = r.try_get_by_index(4)?;
            Ok(StoredDecision {
                id: r.try_get_by_index(0)?,
                case_id: r.try_get_by_index(1)?,
                outcome: r.try_get_by_index(2)?,
                rule_version: r.try_get_by_index(3)?,
                decision: serde_json::from_str(&text).map_err(|e| DbErr::Custom(e.to_string()))?,
            })
        })
        .collect()
}

/// Stores the decision taken for referral `referral_id` of `tenant` at casework's request
/// (`case_id`), `document` being the decision as JSON; returns its id.
pub async fn insert(
    txn: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
    referral_id: &str,
    decision: &ScreeningDecision,
    document: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, DbErr> {
    let id = uuid::Uuid::now_v7().to_string();
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        "INSERT INTO screening_decisions (id, tenant, case_id, referral_id, outcome, rule_version, decision, decided_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [
            id.clone().into(),
            tenant.into(),
            case_id.into(),
            referral_id.into(),
            decision.outcome.as_str().into(),
            decision.rule_version.clone().into(),
            document.into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(id)
}
