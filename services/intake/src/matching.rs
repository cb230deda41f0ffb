//! "Already known?" wired into intake: each tenant's people held in memory in a [`PersonIndex`],
//! kept in step with the database; every match decision, and the candidates a practitioner is
//! to confirm or reject, stored with their scores; and the merge a confirmation makes.
//!
//! ## One index per tenant, correct with several replicas
//! Every writer of a tenant's people — taking a referral, resolving a candidate — first takes
//! the tenant's row in `people_versions` (`UPDATE … SET version = version + 1 RETURNING`, see
//! [`lock_people`]). The row lock serialises those writers across every replica until they
//! commit, and the number it returns ([`Stamp`]) is written on every person row the
//! transaction inserts or changes (`people.version`). Because writers are serialised, versions
//! commit in order: once a transaction holds the lock, every row with a version below its stamp
//! is committed and no more will appear. So, under the lock, the replica's index is brought up
//! to date with one indexed query for `version` between its watermark and the stamp (changes
//! made by any replica, merges included), and then matched against. A replica loads a tenant's
//! index from the table the first time it needs it, before the referral's transaction begins
//! ([`HeldPeople::ensure_loaded`]; or at start with [`HeldPeople::warm`]), outside the lock:
//! see `warm` for why that is still exact. (Should a refresh find no index, it loads one under
//! the lock: correct, only slower.)
//!
//! The lock also closes a race the index alone could not: two replicas taking referrals for the
//! same new family at once would both see nobody held and both create the people. Serialised,
//! the second sees the first's people and attaches. The cost is that one tenant's writers go
//! one at a time; tenants do not wait for one another. So a replica stores every referral of a
//! tenant waiting at once in one batch under one lock (`batch.rs`): the batch matches each
//! referral against the index plus the people the batch itself created so far
//! ([`LockedIndex::insert`]), so two referrals of one new family in one batch still attach to
//! each other.
//!
//! Rows written without a version (by a build older than this migration, during a rolling
//! upgrade) carry version 0 and are only seen by a full load: restart replicas after one.
//!
//! Why not query candidates from the database by blocking keys instead? It would need a key
//! table of about ten rows per person and read a few hundred rows per person matched (thousands
//! for common names at a million people held); the index answers in microseconds and the
//! refresh reads only what changed. The price is memory: about 440 MiB per million people held,
//! per replica, and a first load of a few seconds (`cargo bench -p eh-intake --bench wired`
//! measures both, and matching latency through this path).
use crate::domain::matching::{
    self, FieldMatch, HeldPerson, Identifier, MatchDecision, MatchPolicy, PersonDetails,
    PersonIndex, PersonMatch, ReferralMatch,
};
use eh_proto::intake::v1::{PersonRef, Referral};
use eh_store::{Migration, Rows, stmt};
use sea_orm::{ConnectionTrait, DbErr};
use std::collections::HashMap;
use std::sync::Arc;

pub const MIGRATION: Migration = Migration {
    owner: "intake",
    version: 20,
    name: "person matching",
    sql: "ALTER TABLE people ADD COLUMN version {bigint} NOT NULL DEFAULT 0;
          ALTER TABLE people ADD COLUMN merged_into TEXT NULL;
          CREATE INDEX people_tenant_version ON people (tenant, version);
          CREATE INDEX people_tenant_id ON people (tenant, id);
          ALTER TABLE families ADD COLUMN merged_into TEXT NULL;
          ALTER TABLE referrals ADD COLUMN known_family BOOLEAN NOT NULL DEFAULT FALSE;
          ALTER TABLE referrals ADD COLUMN re_referral BOOLEAN NOT NULL DEFAULT FALSE;
          ALTER TABLE referrals ADD COLUMN previous_referral_id TEXT NULL;
          CREATE INDEX referrals_tenant_family ON referrals (tenant, family_id);
          CREATE TABLE people_versions (
            tenant TEXT PRIMARY KEY,
            version {bigint} NOT NULL
          );
          CREATE TABLE match_decisions (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            referral_id TEXT NOT NULL REFERENCES referrals (id),
            position INTEGER NOT NULL,
            role TEXT NOT NULL,
            person_id TEXT NOT NULL REFERENCES people (id),
            decision TEXT NOT NULL,
            matched_person_id TEXT NULL,
            identifier TEXT NULL,
            score DOUBLE PRECISION NULL,
            fields TEXT NOT NULL,
            notes TEXT NOT NULL,
            decided_at {ts} NOT NULL
          );
          CREATE INDEX match_decisions_referral ON match_decisions (tenant, referral_id);
          CREATE TABLE match_candidates (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            referral_id TEXT NOT NULL REFERENCES referrals (id),
            new_person_id TEXT NOT NULL REFERENCES people (id),
            existing_person_id TEXT NOT NULL REFERENCES people (id),
            score DOUBLE PRECISION NOT NULL,
            fields TEXT NOT NULL,
            status TEXT NOT NULL,
            reason TEXT NULL,
            decided_by TEXT NULL,
            decided_at {ts} NULL,
            created_at {ts} NOT NULL
          );
          CREATE INDEX match_candidates_tenant_status ON match_candidates (tenant, status, created_at)",
};

/// Proof that a transaction holds its tenant's people lock; the version every person row it
/// inserts or changes carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(i64);

impl Stamp {
    pub fn version(self) -> i64 {
        self.0
    }
}

/// Takes the tenant's people lock for the rest of `txn` (see the module documentation) and
/// returns the stamp for what it writes.
pub async fn lock_people(txn: &impl ConnectionTrait, tenant: &str) -> Result<Stamp, DbErr> {
    let b = txn.get_database_backend();
    let bump = || {
        stmt(
            b,
            "UPDATE people_versions SET version = version + 1 WHERE tenant = $1 RETURNING version",
            [tenant.into()],
        )
    };
    if let Some(r) = txn.query_one_raw(bump()).await? {
        return Ok(Stamp(r.try_get_by_index(0)?));
    }
    txn.execute_raw(stmt(
        b,
        "INSERT INTO people_versions (tenant, version) VALUES ($1, 0) ON CONFLICT (tenant) DO NOTHING",
        [tenant.into()],
    ))
    .await?;
    let r = txn
        .query_one_raw(bump())
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("people_versions row of {tenant}")))?;
    Ok(Stamp(r.try_get_by_index(0)?))
}

/// The last committed version of the tenant's people (0 before any).
async fn committed_version(db: &impl ConnectionTrait, tenant: &str) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT version FROM people_versions WHERE tenant = $1",
            [tenant.into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0))
}

const PERSON_COLUMNS: &str =
    "id, family_id, given_name, family_name, date_of_birth, postcode, nhs_number, upn, merged_into";

/// A person row as the index takes it; `true` when merged into another (to be removed).
fn held_person(r: &sea_orm::QueryResult) -> Result<(HeldPerson, bool), DbErr> {
    let dob: Option<String> = r.try_get_by_index(4)?;
    let merged: Option<String> = r.try_get_by_index(8)?;
    Ok((
        HeldPerson {
            person_id: r.try_get_by_index(0)?,
            family_id: r.try_get_by_index(1)?,
            details: PersonDetails {
                given_name: r.try_get_by_index(2)?,
                family_name: r.try_get_by_index(3)?,
                date_of_birth: dob
                    .and_then(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
                postcode: r.try_get_by_index(5)?,
                nhs_number: r.try_get_by_index(6)?,
                upn: r.try_get_by_index(7)?,
            },
        },
        merged.is_some(),
    ))
}

/// Rows per page when a tenant's index is loaded whole.
const LOAD_PAGE: i64 = 20_000;

/// Every live person of `tenant` with a version up to `upto`, in pages by id (an index range
/// scan each on `people_tenant_id`; on PostgreSQL that needs the table's statistics, which
/// autovacuum keeps: without any, the planner sorts the whole tenant for every page).
async fn load_all(
    db: &impl ConnectionTrait,
    tenant: &str,
    upto: i64,
) -> Result<PersonIndex, DbErr> {
    let b = db.get_database_backend();
    let mut index = PersonIndex::new();
    let mut after = String::new();
    loop {
        let rows = db
            .query_all_raw(stmt(
                b,
                &format!(
                    "SELECT {PERSON_COLUMNS} FROM people
                     WHERE tenant = $1 AND id > $2 AND version <= $3 AND merged_into IS NULL
                     ORDER BY id LIMIT $4"
                ),
                [
                    tenant.into(),
                    after.clone().into(),
                    upto.into(),
                    LOAD_PAGE.into(),
                ],
            ))
            .await?;
        let full = rows.len() as i64 == LOAD_PAGE;
        for r in &rows {
            let (held, _) = held_person(r)?;
            after.clone_from(&held.person_id);
            index.insert(held);
        }
        if !full {
            return Ok(index);
        }
    }
}

/// One tenant's index and the version it reflects (`None`: not loaded yet).
#[derive(Default)]
struct TenantPeople {
    index: PersonIndex,
    watermark: Option<i64>,
}

/// The people every tenant holds, one index per tenant, shared by the clones of [`Intake`]
/// (both doors) of one replica.
///
/// [`Intake`]: crate::handlers::Intake
#[derive(Clone, Default)]
pub struct HeldPeople {
    tenants: Arc<std::sync::Mutex<HashMap<String, Arc<TenantSlot>>>>,
    policy: Arc<MatchPolicy>,
}

/// Locking order: the tenant's database lock (held by the caller's transaction), then
/// `people`. Nothing waits for a database connection while holding `people` except through the
/// transaction that already holds the database lock, and `loaded` is only awaited before a
/// transaction begins, so SQLite's single connection cannot deadlock with either.
#[derive(Default)]
struct TenantSlot {
    /// Set once this replica has loaded the tenant's people ([`HeldPeople::ensure_loaded`]).
    loaded: tokio::sync::OnceCell<()>,
    people: Arc<tokio::sync::Mutex<TenantPeople>>,
}

/// One tenant's index, refreshed to a lock stamp and held (see [`HeldPeople::lock_index`]).
pub struct LockedIndex {
    held: tokio::sync::OwnedMutexGuard<TenantPeople>,
    policy: Arc<MatchPolicy>,
}

impl LockedIndex {
    /// Matches every person named in `referral` against the people held.
    pub fn match_referral(&self, referral: &Referral) -> ReferralMatch {
        matching::match_referral(&self.held.index, referral, &self.policy)
    }

    /// Adds a person the lock holder's transaction is creating, so the next referral of the same
    /// batch matches them; the caller removes them again should the transaction not commit.
    pub fn insert(&mut self, person: HeldPerson) {
        self.held.index.insert(person);
    }

    pub fn remove(&mut self, person_id: &str) {
        self.held.index.remove(person_id);
    }
}

impl HeldPeople {
    pub fn new(policy: MatchPolicy) -> Self {
        Self {
            tenants: Arc::default(),
            policy: Arc::new(policy),
        }
    }

    pub fn policy(&self) -> &MatchPolicy {
        &self.policy
    }

    fn tenant(&self, tenant: &str) -> Arc<TenantSlot> {
        let mut map = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(tenant.to_string()).or_default().clone()
    }

    /// Brings the tenant's index up to the stamp: loads it whole the first time, then reads only
    /// the people changed since (by any replica).
    async fn refresh(
        db: &impl ConnectionTrait,
        tenant: &str,
        held: &mut TenantPeople,
        stamp: Stamp,
    ) -> Result<(), DbErr> {
        // Committed before the stamp: every version below it (the lock serialises writers).
        let upto = stamp.0 - 1;
        match held.watermark {
            None => held.index = load_all(db, tenant, upto).await?,
            Some(w) if w < upto => {
                let rows = db
                    .query_all_raw(stmt(
                        db.get_database_backend(),
                        &format!(
                            "SELECT {PERSON_COLUMNS} FROM people
                             WHERE tenant = $1 AND version > $2 AND version <= $3
                             ORDER BY version, id"
                        ),
                        [tenant.into(), w.into(), upto.into()],
                    ))
                    .await?;
                for r in &rows {
                    match held_person(r)? {
                        (p, true) => {
                            held.index.remove(&p.person_id);
                        }
                        (p, false) => held.index.insert(p),
                    }
                }
            }
            Some(_) => {}
        }
        held.watermark = Some(upto);
        Ok(())
    }

    /// The tenant's index as of the lock `stamp` of `txn` (which must be the transaction
    /// holding it), held by the caller until dropped. The people the transaction creates carry
    /// the stamp's version, so the next refresh reads them from the database whatever became of
    /// the transaction.
    pub async fn lock_index(
        &self,
        txn: &impl ConnectionTrait,
        tenant: &str,
        stamp: Stamp,
    ) -> Result<LockedIndex, DbErr> {
        let slot = self.tenant(tenant);
        let mut held = slot.people.clone().lock_owned().await;
        Self::refresh(txn, tenant, &mut held, stamp).await?;
        Ok(LockedIndex {
            held,
            policy: self.policy.clone(),
        })
    }

    /// Matches every person named in `referral` against the people `tenant` holds, as of the
    /// lock `stamp` of `txn` (which must be the transaction holding it).
    pub async fn match_referral(
        &self,
        txn: &impl ConnectionTrait,
        tenant: &str,
        referral: &Referral,
        stamp: Stamp,
    ) -> Result<ReferralMatch, DbErr> {
        Ok(self
            .lock_index(txn, tenant, stamp)
            .await?
            .match_referral(referral))
    }

    /// Loads the tenant's index from the database now, without taking the tenant's lock, so
    /// nobody's referrals wait for a large load (a million people take seconds). Exact all the
    /// same: it reads the last committed version `v`, then every person with a version up to
    /// `v`; any of them changed meanwhile now carries a version above `v`, so it is missed here
    /// and read by the next refresh, which starts at `v`. Returns how many people it holds.
    pub async fn warm(&self, db: &impl ConnectionTrait, tenant: &str) -> Result<usize, DbErr> {
        let slot = self.tenant(tenant);
        let n = Self::load(db, tenant, &slot).await?;
        // Loaded, whoever asked.
        let _ = slot.loaded.set(());
        Ok(n)
    }

    /// Loads the tenant's index the first time this replica needs it (see [`Self::warm`]);
    /// afterwards returns at once. Call it before the referral's transaction begins: concurrent
    /// callers wait for the one load, holding no database connection or lock meanwhile.
    pub async fn ensure_loaded(
        &self,
        db: &impl ConnectionTrait,
        tenant: &str,
    ) -> Result<(), DbErr> {
        let slot = self.tenant(tenant);
        slot.loaded
            .get_or_try_init(|| async { Self::load(db, tenant, &slot).await.map(|_| ()) })
            .await?;
        Ok(())
    }

    async fn load(
        db: &impl ConnectionTrait,
        tenant: &str,
        slot: &TenantSlot,
    ) -> Result<usize, DbErr> {
        let v = committed_version(db, tenant).await?;
        let index = load_all(db, tenant, v).await?;
        let mut held = slot.people.lock().await;
        // A refresh under the lock may have got further meanwhile: keep the newer.
        if held.watermark.is_none_or(|w| w < v) {
            held.index = index;
            held.watermark = Some(v);
        }
        Ok(held.index.len())
    }

    /// How many people this replica's index of `tenant` holds (`None`: not loaded).
    pub async fn held(&self, tenant: &str) -> Option<usize> {
        let slot = self.tenant(tenant);
        let held = slot.people.lock().await;
        held.watermark.map(|_| held.index.len())
    }
}

fn decision_name(d: &MatchDecision) -> &'static str {
    match d {
        MatchDecision::Exact { .. } => "exact",
        MatchDecision::Attach { .. } => "attach",
        MatchDecision::Candidates { .. } => "candidates",
        MatchDecision::New => "new",
    }
}

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
    let d = &m.result.decision;
    let (matched, identifier, score): (Option<&str>, Option<Identifier>, Option<_>) = match d {
        MatchDecision::Exact {
            person_id,
            on,
            score,
            ..
        } => (Some(person_id), Some(*on), Some(score)),
        MatchDecision::Attach {
            person_id, score, ..
        } => (Some(person_id), None, Some(score)),
        MatchDecision::Candidates { candidates } => match candidates.first() {
            Some(c) => (Some(&c.person_id), None, Some(&c.score)),
            None => (None, None, None),
        },
        // Nobody close enough: the nearest miss, if any, says why.
        MatchDecision::New => match &m.result.nearest {
            Some(c) => (Some(&c.person_id), None, Some(&c.score)),
            None => (None, None, None),
        },
    };
    let no_fields: Vec<FieldMatch> = Vec::new();
    decisions.push([
        uuid::Uuid::now_v7().to_string().into(),
        tenant.into(),
        referral_id.into(),
        position.into(),
        m.role.as_str().into(),
        person_id.into(),
        decision_name(d).into(),
        matched.map(str::to_string).into(),
        identifier.map(|i| i.as_str().to_string()).into(),
        score.map(|s| s.score).into(),
        json(score.map_or(&no_fields, |s| &s.fields))?.into(),
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
            "pending".into(),
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

/// Where a match candidate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateStatus {
    Pending,
    Confirmed,
    Rejected,
}

impl CandidateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "confirmed" => Some(Self::Confirmed),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// A practitioner's answer to a match candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The same person: merge the new one into the held one.
    Confirm,
    /// Different people: keep them apart.
    Reject,
}

impl Resolution {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confirm" => Some(Self::Confirm),
            "reject" => Some(Self::Reject),
            _ => None,
        }
    }
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

/// The person `id` is now: itself, or whoever it was merged into (followed a few steps).
async fn live_person(
    txn: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> Result<(String, String), DbErr> {
    let mut id = id.to_string();
    for _ in 0..16 {
        let r = txn
            .query_one_raw(stmt(
                txn.get_database_backend(),
                "SELECT family_id, merged_into FROM people WHERE tenant = $1 AND id = $2",
                [tenant.into(), id.clone().into()],
            ))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("person {id}")))?;
        let family: String = r.try_get_by_index(0)?;
        match r.try_get_by_index::<Option<String>>(1)? {
            Some(next) => id = next,
            None => return Ok((id, family)),
        }
    }
    Err(DbErr::Custom(format!("person {id}: merged too many times")))
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
/// held family stays there: two held families are not merged on one person's say-so.
pub async fn resolve(
    txn: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    resolution: Resolution,
    reason: &str,
    actor: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<StoredCandidate, ResolveError> {
    let b = txn.get_database_backend();
    let stamp = lock_people(txn, tenant).await?;
    let c = candidate(txn, tenant, id)
        .await?
        .ok_or_else(|| ResolveError::NotFound(id.to_string()))?;
    if c.status != CandidateStatus::Pending {
        return Err(ResolveError::AlreadyResolved {
            id: id.to_string(),
            status: c.status.as_str(),
        });
    }
    let status = match resolution {
        Resolution::Reject => CandidateStatus::Rejected,
        Resolution::Confirm => {
            merge(txn, tenant, &c, stamp, actor, now).await?;
            CandidateStatus::Confirmed
        }
    };
    txn.execute_raw(stmt(
        b,
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
    candidate(txn, tenant, id)
        .await?
        .ok_or_else(|| ResolveError::NotFound(id.to_string()))
}

async fn merge(
    txn: &impl ConnectionTrait,
    tenant: &str,
    c: &StoredCandidate,
    stamp: Stamp,
    actor: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    let b = txn.get_database_backend();
    let v = stamp.version();
    let new_id = c.new_person.person_id.as_str();
    let (held, held_family) = live_person(txn, tenant, &c.existing_person.person_id).await?;
    let (live_new, _) = live_person(txn, tenant, new_id).await?;
    if live_new == held {
        // Merged already by another route: nothing left to move.
        return Ok(());
    }
    let exec =
        |sql: &'static str, values: Vec<sea_orm::Value>| txn.execute_raw(stmt(b, sql, values));
    exec(
        "UPDATE people SET merged_into = $1, version = $2 WHERE tenant = $3 AND id = $4",
        vec![held.clone().into(), v.into(), tenant.into(), new_id.into()],
    )
    .await?;
    // A referral naming both keeps one link, to the held person.
    exec(
        "DELETE FROM referral_people WHERE person_id = $1
           AND referral_id IN (SELECT referral_id FROM referral_people WHERE person_id = $2)",
        vec![new_id.into(), held.clone().into()],
    )
    .await?;
    exec(
        "UPDATE referral_people SET person_id = $1 WHERE person_id = $2",
        vec![held.clone().into(), new_id.into()],
    )
    .await?;
    // Later referrals' candidates that pointed at the new person now point at the held one;
    // the new person's other candidates are moot.
    exec(
        "UPDATE match_candidates SET existing_person_id = $1
         WHERE tenant = $2 AND existing_person_id = $3 AND status = 'pending' AND new_person_id <> $1",
        vec![held.clone().into(), tenant.into(), new_id.into()],
    )
    .await?;
    exec(
        "UPDATE match_candidates SET status = 'rejected', reason = $1, decided_by = $2, decided_at = $3
         WHERE tenant = $4 AND status = 'pending' AND id <> $5
           AND (new_person_id = $6 OR (new_person_id = $7 AND existing_person_id = $6))",
        vec![
            format!("superseded: {new_id} was merged into {held} (candidate {})", c.id).into(),
            actor.into(),
            now.into(),
            tenant.into(),
            c.id.clone().into(),
            new_id.into(),
            held.clone().into(),
        ],
    )
    .await?;

    let r = txn
        .query_one_raw(stmt(
            b,
            "SELECT family_id, known_family FROM referrals WHERE tenant = $1 AND id = $2",
            [tenant.into(), c.referral_id.clone().into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("referral {}", c.referral_id)))?;
    let from: String = r.try_get_by_index(0)?;
    let known: bool = r.try_get_by_index(1)?;
    if known || from == held_family {
        return Ok(());
    }
    let moved = txn
        .query_all_raw(stmt(
            b,
            "SELECT id FROM referrals WHERE tenant = $1 AND family_id = $2",
            [tenant.into(), from.clone().into()],
        ))
        .await?
        .iter()
        .map(|r| r.try_get_by_index::<String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    exec(
        "UPDATE people SET family_id = $1, version = $2 WHERE tenant = $3 AND family_id = $4",
        vec![
            held_family.clone().into(),
            v.into(),
            tenant.into(),
            from.clone().into(),
        ],
    )
    .await?;
    exec(
        "UPDATE referrals SET family_id = $1 WHERE tenant = $2 AND family_id = $3",
        vec![
            held_family.clone().into(),
            tenant.into(),
            from.clone().into(),
        ],
    )
    .await?;
    exec(
        "UPDATE families SET merged_into = $1 WHERE tenant = $2 AND id = $3",
        vec![held_family.clone().into(), tenant.into(), from.into()],
    )
    .await?;
    let history = crate::store::family_referrals(txn, tenant, &held_family).await?;
    for id in moved {
        let Some(at) = history.iter().find(|(r, _)| *r == id).map(|(_, t)| *t) else {
            continue;
        };
        let others: Vec<_> = history.iter().filter(|(r, _)| *r != id).cloned().collect();
        let previous = matching::previous_referral_within_window(&others, at);
        exec(
            "UPDATE referrals SET known_family = TRUE, re_referral = $1, previous_referral_id = $2
             WHERE tenant = $3 AND id = $4",
            vec![
                previous.is_some().into(),
                previous.map(str::to_string).into(),
                tenant.into(),
                id.into(),
            ],
        )
        .await?;
    }
    Ok(())
}
