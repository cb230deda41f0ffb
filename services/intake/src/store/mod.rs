//! Intake's own tables, as SQL and nothing else: referrals, families and people
//! ([`referrals`]), the people lock and the people reads and writes matching needs
//! ([`people`]), match decisions and candidates ([`matches`]), the rows a batch writes
//! ([`plan`]), screening decisions ([`screening`]). What to write is decided in `domain`; when,
//! in `handlers`.
pub mod matches;
pub mod people;
pub mod plan;
pub mod referrals;
pub mod rights;
pub mod screening;

pub use people::count_people;
pub use plan::Plan;
pub use referrals::{StoredReferral, count, family_referrals, find_by_sources, get};

use eh_store::Migration;

/// `referral_people` (who a referral names: personal data) is a council's rows like the others,
/// under row-level security: existing rows are given their referral's council. After
/// screening's migrations (intake's versions rise in list order).
pub const RLS_MIGRATIONS: &[Migration] = &[Migration {
    owner: "intake",
    version: 41,
    name: "referral people by council",
    sql: "ALTER TABLE referral_people ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
      UPDATE referral_people SET tenant = COALESCE(
        (SELECT r.tenant FROM referrals r WHERE r.id = referral_people.referral_id), '');
      CREATE INDEX referral_people_tenant ON referral_people (tenant, referral_id)",
}];

/// Intake's tables, then what matching added to them; screening's are [`screening::MIGRATIONS`].
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
    Migration {
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
    },
];
