//! The rows a batch of referrals writes, built in memory as each referral is matched and
//! written at the end by one multi-row `INSERT` per table (see `handlers::batch`).
use crate::domain::matching::{
    HeldPerson, ReferralMatch, ReferralRole, previous_referral_within_window,
};
use crate::store::matches;
use crate::store::people::Stamp;
use crate::store::referrals::StoredReferral;
use eh_proto::intake::v1::{Child, FamilyMember, PersonRef, Referral};
use eh_store::Rows;
use sea_orm::{ConnectionTrait, DbErr};
use std::collections::{HashMap, HashSet};

/// The rows of one batch. `stamp` proves the batch's
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
    /// Held people a referral of the batch marks unsafe to contact: the flag follows the
    /// person (and is never cleared by a referral).
    unsafe_held: Vec<(String, String)>,
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
                "INSERT INTO referral_people (referral_id, person_id, role, position, tenant)",
                5,
            ),
            decisions: matches::decision_rows(),
            candidates: matches::candidate_rows(),
            new_families: HashSet::new(),
            by_family: HashMap::new(),
            unsafe_held: Vec::new(),
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
                Some((held, _)) => {
                    if let NewPerson::Adult(a) = &new
                        && a.safe_to_contact == Some(false)
                    {
                        self.unsafe_held
                            .push((tenant.to_string(), held.to_string()));
                    }
                    held.to_string()
                }
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
                tenant.into(),
            ]);
            matches::push_decision(
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

    /// Writes every row, parents before the rows that refer to them; then marks the held people
    /// a referral named as unsafe to contact.
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
        crate::store::people::mark_unsafe(txn, self.stamp, &self.unsafe_held).await?;
        Ok(())
    }
}

/// A person a referral names who is not held yet.
enum NewPerson<'a> {
    Child(&'a Child),
    Adult(&'a FamilyMember),
}
