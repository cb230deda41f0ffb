//! Intake's own tables: referrals, families, people and who is on which referral.
use crate::domain::matching::{
    HeldPerson, ReferralMatch, ReferralRole, previous_referral_within_window,
};
use crate::matching::Stamp;
use eh_proto::intake::v1::{Child, FamilyMember, PersonRef, Referral};
use eh_store::{Migration, Rows, stmt};
use sea_orm::{ConnectionTrait, DbErr};
use std::collections::{HashMap, HashSet};

/// Intake's tables, then what matching added to them (see `matching.rs`).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        owner: "intake",
        version: 10,
        name: "referrals, families, people",
        sql: "CREATE TABLE families (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            postcode TEXT NULL,
            created_at {ts} NOT NULL
          );
          CREATE TABLE people (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            family_id TEXT NOT NULL REFERENCES families (id),
            kind TEXT NOT NULL,
            given_name TEXT NOT NULL,
            family_name TEXT NOT NULL,
            date_of_birth TEXT NULL,
            expected_date_of_delivery TEXT NULL,
            gender TEXT NULL,
            relationship TEXT NULL,
            parental_responsibility BOOLEAN NULL,
            nhs_number TEXT NULL,
            upn TEXT NULL,
            email TEXT NULL,
            phone TEXT NULL,
            postcode TEXT NULL,
            safe_to_contact BOOLEAN NULL,
            created_at {ts} NOT NULL
          );
          CREATE INDEX people_tenant_family ON people (tenant, family_id);
          CREATE TABLE referrals (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            source_system TEXT NOT NULL,
            source_reference TEXT NOT NULL,
            route TEXT NOT NULL,
            family_id TEXT NOT NULL REFERENCES families (id),
            referrer_name TEXT NOT NULL,
            referrer_agency TEXT NOT NULL,
            referrer_email TEXT NULL,
            significant_harm_risk BOOLEAN NOT NULL,
            consent_obtained BOOLEAN NOT NULL,
            submitted_at TEXT NOT NULL,
            received_at {ts} NOT NULL,
            received_by TEXT NOT NULL,
            document TEXT NOT NULL,
            UNIQUE (tenant, source_system, source_reference)
          );
          CREATE TABLE referral_people (
            referral_id TEXT NOT NULL REFERENCES referrals (id),
            person_id TEXT NOT NULL REFERENCES people (id),
            role TEXT NOT NULL,
            position INTEGER NOT NULL,
            PRIMARY KEY (referral_id, person_id)
          )",
    },
    crate::matching::MIGRATION,
];

/// A stored referral with its people.
#[derive(Debug, Clone)]
pub struct StoredReferral {
    pub id: String,
    pub tenant: String,
    pub family_id: String,
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub referral: Referral,
    pub children: Vec<PersonRef>,
    pub family_members: Vec<PersonRef>,
    /// The family was held before this referral (someone on it was matched to a held person).
    pub known_family: bool,
    /// Another referral of the family was received in the 12 months before this one.
    pub re_referral: bool,
    /// That referral (the most recent one in the window).
    pub previous_referral_id: Option<String>,
}

/// Every referral of a family of `tenant`: (id, received at).
pub async fn family_referrals(
    db: &impl ConnectionTrait,
    tenant: &str,
    family_id: &str,
) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>, DbErr> {
    db.query_all_raw(stmt(
        db.get_database_backend(),
        "SELECT id, received_at FROM referrals WHERE tenant = $1 AND family_id = $2",
        [tenant.into(), family_id.into()],
    ))
    .await?
    .iter()
    .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
    .collect()
}

/// The rows a batch of referrals writes, built in memory as each referral is matched and written
/// at the end by one multi-row `INSERT` per table (see `batch.rs`). `stamp` proves the batch's
/// transaction holds the tenant's people lock; new people carry its version.
pub struct Plan {
    stamp: Stamp,
    families: Rows,
    referrals: Rows,
    people: Rows,
    links: Rows,
    decisions: Rows,
    candidates: Rows,
    /// Families created by this batch.
    new_families: HashSet<String>,
    /// This batch's referrals of each family: (id, received at).
    by_family: HashMap<String, Vec<(String, chrono::DateTime<chrono::Utc>)>>,
}

impl Plan {
    pub fn new(stamp: Stamp) -> Self {
        Self {
            stamp,
            families: Rows::new("INSERT INTO families (id, tenant, postcode, created_at)", 4),
            referrals: Rows::new(
                "INSERT INTO referrals (id, tenant, source_system, source_reference, route,
                   family_id, referrer_name, referrer_agency, referrer_email, significant_harm_risk,
                   consent_obtained, submitted_at, received_at, received_by, document,
                   known_family, re_referral, previous_referral_id)",
                18,
            ),
            people: Rows::new(
                "INSERT INTO people (id, tenant, family_id, kind, given_name, family_name,
                   date_of_birth, expected_date_of_delivery, gender, relationship,
                   parental_responsibility, nhs_number, upn, email, phone, postcode,
                   safe_to_contact, created_at, version)",
                19,
            ),
            links: Rows::new(
                "INSERT INTO referral_people (referral_id, person_id, role, position)",
                4,
            ),
            decisions: crate::matching::decision_rows(),
            candidates: crate::matching::candidate_rows(),
            new_families: HashSet::new(),
            by_family: HashMap::new(),
        }
    }

    /// Whether `family_id` is created by this batch (so the database has no referrals of it).
    pub fn is_new_family(&self, family_id: &str) -> bool {
        self.new_families.contains(family_id)
    }

    /// Adds one referral. `matched` says, for each person named, whether they are a held person
    /// (linked, not created again) or new (created in the referral's family); the referral is
    /// filed under the held family when there is one, else under a new family. `held_history`
    /// is that family's referrals already in the database (this batch's are added here). Every
    /// decision is stored with its score and fields (and grey-zone candidates for a
    /// practitioner). Returns the referral as stored and the people it creates, for the index.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        tenant: &str,
        referral: &Referral,
        document: &serde_json::Value,
        actor: &str,
        now: chrono::DateTime<chrono::Utc>,
        matched: &ReferralMatch,
        mut held_history: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    ) -> Result<(StoredReferral, Vec<HeldPerson>), DbErr> {
        let id = uuid::Uuid::now_v7().to_string();
        let source = referral.source.clone().unwrap_or_default();
        let referrer = referral.referrer.clone().unwrap_or_default();
        let postcode = referral.address.as_ref().map(|a| a.postcode.clone());
        let (family_id, known_family) = match &matched.family_id {
            Some(f) => (f.clone(), true),
            None => (uuid::Uuid::now_v7().to_string(), false),
        };
        let previous_referral_id = if known_family {
            held_history.extend(
                self.by_family
                    .get(&family_id)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            previous_referral_within_window(&held_history, now).map(str::to_string)
        } else {
            self.families.push([
                family_id.clone().into(),
                tenant.into(),
                postcode.clone().into(),
                now.into(),
            ]);
            self.new_families.insert(family_id.clone());
            None
        };
        let re_referral = previous_referral_id.is_some();
        self.referrals.push([
            id.clone().into(),
            tenant.into(),
            source.system.clone().into(),
            source.reference.clone().into(),
            referral.route.clone().into(),
            family_id.clone().into(),
            referrer.name.clone().into(),
            referrer.agency.clone().into(),
            referrer.email.clone().into(),
            referral.significant_harm_risk.unwrap_or(false).into(),
            referral
                .consent
                .as_ref()
                .and_then(|c| c.obtained)
                .unwrap_or(false)
                .into(),
            referral.submitted_at.clone().into(),
            now.into(),
            actor.into(),
            document.to_string().into(),
            known_family.into(),
            re_referral.into(),
            previous_referral_id.clone().into(),
        ]);
        self.by_family
            .entry(family_id.clone())
            .or_default()
            .push((id.clone(), now));
        let mut children = Vec::new();
        let mut members = Vec::new();
        let mut created = Vec::new();
        for (position, m) in (0_i32..).zip(&matched.people) {
            let person = match m.role {
                ReferralRole::Child => referral.children.get(m.index).map(|c| {
                    let pc = c.address.as_ref().map(|a| a.postcode.clone());
                    (
                        c.given_name.clone(),
                        c.family_name.clone(),
                        NewPerson::Child(c),
                        pc,
                    )
                }),
                ReferralRole::FamilyMember => referral.family_members.get(m.index).map(|a| {
                    let pc = a.address.as_ref().map(|a| a.postcode.clone());
                    (
                        a.given_name.clone(),
                        a.family_name.clone(),
                        NewPerson::Adult(a),
                        pc,
                    )
                }),
            };
            let Some((given_name, family_name, new, own_postcode)) = person else {
                continue;
            };
            let pid = match m.attached_to() {
                Some((held, _)) => held.to_string(),
                None => {
                    let pid = uuid::Uuid::now_v7().to_string();
                    let pc = own_postcode.or_else(|| postcode.clone());
                    self.person(tenant, &pid, &family_id, &new, pc, now);
                    created.push(HeldPerson {
                        person_id: pid.clone(),
                        family_id: family_id.clone(),
                        details: m.details.clone(),
                    });
                    pid
                }
            };
            self.links.push([
                id.clone().into(),
                pid.clone().into(),
                m.role.as_str().into(),
                position.into(),
            ]);
            crate::matching::push_decision(
                &mut self.decisions,
                &mut self.candidates,
                tenant,
                &id,
                position,
                &pid,
                m,
                now,
            )?;
            let person = PersonRef {
                person_id: pid,
                given_name,
                family_name,
            };
            match m.role {
                ReferralRole::Child => children.push(person),
                ReferralRole::FamilyMember => members.push(person),
            }
        }
        let stored = StoredReferral {
            id,
            tenant: tenant.into(),
            family_id,
            received_at: now,
            referral: referral.clone(),
            children,
            family_members: members,
            known_family,
            re_referral,
            previous_referral_id,
        };
        Ok((stored, created))
    }

    fn person(
        &mut self,
        tenant: &str,
        pid: &str,
        family_id: &str,
        new: &NewPerson<'_>,
        postcode: Option<String>,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let none = || Option::<String>::None.into();
        let (kind, given, family, dob) = match new {
            NewPerson::Child(c) => ("child", &c.given_name, &c.family_name, &c.date_of_birth),
            NewPerson::Adult(a) => ("adult", &a.given_name, &a.family_name, &a.date_of_birth),
        };
        let mut row: Vec<sea_orm::Value> = vec![
            pid.into(),
            tenant.into(),
            family_id.into(),
            kind.into(),
            given.clone().into(),
            family.clone().into(),
            dob.clone().into(),
        ];
        match new {
            // expected_date_of_delivery, gender, relationship, parental_responsibility,
            // nhs_number, upn, email, phone
            NewPerson::Child(c) => row.extend([
                c.expected_date_of_delivery.clone().into(),
                c.gender.clone().into(),
                none(),
                Option::<bool>::None.into(),
                c.nhs_number.clone().into(),
                c.upn.clone().into(),
                none(),
                none(),
            ]),
            NewPerson::Adult(a) => row.extend([
                none(),
                none(),
                a.relationship.clone().into(),
                a.parental_responsibility.into(),
                none(),
                none(),
                a.email.clone().into(),
                a.phone.clone().into(),
            ]),
        }
        let safe: Option<bool> = match new {
            NewPerson::Child(_) => None,
            NewPerson::Adult(a) => a.safe_to_contact,
        };
        row.extend([
            postcode.into(),
            safe.into(),
            now.into(),
            self.stamp.version().into(),
        ]);
        self.people.push(row);
    }

    /// How many referrals the plan stores.
    pub fn referrals(&self) -> usize {
        self.referrals.len()
    }

    /// Writes every row, parents before the rows that refer to them.
    pub async fn write(&self, txn: &impl ConnectionTrait) -> Result<(), DbErr> {
        for rows in [
            &self.families,
            &self.referrals,
            &self.people,
            &self.links,
            &self.decisions,
            &self.candidates,
        ] {
            rows.write(txn).await?;
        }
        Ok(())
    }
}

/// A person a referral names who is not held yet.
enum NewPerson<'a> {
    Child(&'a Child),
    Adult(&'a FamilyMember),
}

/// The referrals held for any of `sources` ((system, reference) pairs) of `tenant`: the id and
/// when it was received, by source.
pub async fn find_by_sources(
    db: &impl ConnectionTrait,
    tenant: &str,
    sources: &[(String, String)],
) -> Result<HashMap<(String, String), (String, chrono::DateTime<chrono::Utc>)>, DbErr> {
    let mut found = HashMap::new();
    // A chunk's pairs and the tenant stay far below every bound-parameter limit.
    for chunk in sources.chunks(1000) {
        let mut values: Vec<sea_orm::Value> = vec![tenant.into()];
        for (system, reference) in chunk {
            values.push(system.clone().into());
            values.push(reference.clone().into());
        }
        let rows = db
            .query_all_raw(stmt(
                db.get_database_backend(),
                &format!(
                    "SELECT source_system, source_reference, id, received_at FROM referrals
                     WHERE tenant = $1 AND (source_system, source_reference) IN ({})",
                    eh_store::tuples(2, chunk.len(), 2)
                ),
                values,
            ))
            .await?;
        for r in rows {
            found.insert(
                (r.try_get_by_index(0)?, r.try_get_by_index(1)?),
                (r.try_get_by_index(2)?, r.try_get_by_index(3)?),
            );
        }
    }
    Ok(found)
}

/// One referral of `tenant` (another tenant's id finds nothing).
pub async fn get(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> Result<Option<StoredReferral>, DbErr> {
    let b = db.get_database_backend();
    let Some(r) = db
        .query_one_raw(stmt(
            b,
            "SELECT id, tenant, family_id, received_at, document, known_family, re_referral, previous_referral_id
             FROM referrals WHERE tenant = $1 AND id = $2",
            [tenant.into(), id.into()],
        ))
        .await?
    else {
        return Ok(None);
    };
    let document: String = r.try_get_by_index(4)?;
    let referral: Referral =
        serde_json::from_str(&document).map_err(|e| DbErr::Custom(e.to_string()))?;
    let people = db
        .query_all_raw(stmt(
            b,
            "SELECT p.id, p.given_name, p.family_name, rp.role FROM referral_people rp
             JOIN people p ON p.id = rp.person_id WHERE rp.referral_id = $1 ORDER BY rp.position",
            [id.into()],
        ))
        .await?;
    let mut children = Vec::new();
    let mut family_members = Vec::new();
    for p in people {
        let person = PersonRef {
            person_id: p.try_get_by_index(0)?,
            given_name: p.try_get_by_index(1)?,
            family_name: p.try_get_by_index(2)?,
        };
        let role: String = p.try_get_by_index(3)?;
        if role == "child" {
            children.push(person)
        } else {
            family_members.push(person)
        }
    }
    Ok(Some(StoredReferral {
        id: r.try_get_by_index(0)?,
        tenant: r.try_get_by_index(1)?,
        family_id: r.try_get_by_index(2)?,
        received_at: r.try_get_by_index(3)?,
        referral,
        children,
        family_members,
        known_family: r.try_get_by_index(5)?,
        re_referral: r.try_get_by_index(6)?,
        previous_referral_id: r.try_get_by_index(7)?,
    }))
}

/// How many referrals `tenant` holds (tests and the demo).
pub async fn count(db: &impl ConnectionTrait, tenant: &str) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM referrals WHERE tenant = $1",
            [tenant.into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0))
}

/// How many people `tenant` holds (people merged into another record are not counted).
pub async fn count_people(db: &impl ConnectionTrait, tenant: &str) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM people WHERE tenant = $1 AND merged_into IS NULL",
            [tenant.into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0))
}
