//! Each tenant's people held in memory in a [`PersonIndex`], one per tenant and replica, kept
//! in step with the database under the tenant's people lock (`store::people`, which says why
//! that is exact with several replicas).
//!
//! Under the lock, the replica's index is brought up to the lock's stamp — changes made by any
//! replica, merges included — and then matched against. A replica loads a tenant's index from
//! the table the first time it needs it, before the referral's transaction begins
//! ([`HeldPeople::ensure_loaded`]; or at start with [`HeldPeople::warm`]), outside the lock:
//! see `warm` for why that is still exact. (Should a refresh find no index, it loads one under
//! the lock: correct, only slower.)
//!
//! One tenant's writers go one at a time, so a replica stores every referral of a tenant
//! waiting at once in one batch under one lock (`handlers::batch`): the batch matches each
//! referral against the index plus the people the batch itself created so far
//! ([`LockedIndex::insert`]), so two referrals of one new family in one batch still attach to
//! each other.
//!
//! Why not query candidates from the database by blocking keys instead? It would need a key
//! table of about ten rows per person and read a few hundred rows per person matched (thousands
//! for common names at a million people held); the index answers in microseconds and the
//! refresh reads only what changed. The price is memory: about 440 MiB per million people held,
//! per replica, and a first load of a few seconds (`cargo bench -p eh-intake --bench wired`
//! measures both, and matching latency through this path).
use crate::domain::matching::{self, HeldPerson, MatchPolicy, PersonIndex, ReferralMatch};
use crate::store::people::{self, Stamp};
use eh_proto::intake::v1::Referral;
use sea_orm::{ConnectionTrait, DbErr};
use std::collections::HashMap;
use std::sync::Arc;

/// One tenant's index and the version it reflects (`None`: not loaded yet).
#[derive(Default)]
struct TenantPeople {
    index: PersonIndex,
    watermark: Option<i64>,
}

/// The people every tenant holds, one index per tenant, shared by the clones of `Intake` (both
/// doors) and the batches' `Storer` of one replica.
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
        let upto = stamp.version() - 1;
        match held.watermark {
            None => held.index = people::load_all(db, tenant, upto).await?,
            // People were destroyed since this index was brought up to date: it forgets them
            // by loading again (a destruction leaves no row to read a change from).
            Some(w) if stamp.destroyed_at() > w => {
                held.index = people::load_all(db, tenant, upto).await?;
            }
            Some(w) if w < upto => {
                for (p, merged) in people::changed_since(db, tenant, w, upto).await? {
                    if merged {
                        held.index.remove(&p.person_id);
                    } else {
                        held.index.insert(p);
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
        let v = people::committed_version(db, tenant).await?;
        let index = people::load_all(db, tenant, v).await?;
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
