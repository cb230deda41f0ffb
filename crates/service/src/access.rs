//! Admitting a gRPC call through a service's access table: each method and who may call it. A
//! call is admitted in one place ([`admit`], [`admit_then`]): a known tenant (INVALID_ARGUMENT
//! otherwise), the caller's own council (PERMISSION_DENIED, audited, for another's), and a
//! principal the method's row names (PERMISSION_DENIED, audited, otherwise). A method missing from
//! the table is refused. Every decision is on the audit trail (one entry, allowed or denied, under
//! the method's name) before the call goes on — or, for a method that lists records
//! ([`admit_list`]), before its answer goes back, the entry then naming the ids it returned. A condition on the record itself (the case's lead,
//! the offer's organisation, the referral's source system) is the service's to check after
//! admission, and a refusal then is audited too ([`refuse`]).
//!
//! A row lists the roles of the people who may call the method, and may also name a kind of
//! principal with one of the reserved names (never a person's role, whatever a token claims):
//! - [`UPSTREAM_SYSTEM`] (`upstream_system`): any upstream system of the council, authenticated by
//!   its API key (`Principal::System`); what it may see is then narrowed by the service to what it
//!   sent itself.
//! - [`PLATFORM_SERVICE`] (`platform_service`): one of the platform's own services calling on its
//!   own behalf with a service key (`x-eh-service-key`, `Principal::Service`), for any council.
//!   (A service calling for a person — allocation or assessment asking consent's `CheckSharing`
//!   about a provider's view — forwards that person's credential and is admitted as them.)
use crate::errors::{Violation, invalid};
use eh_auth::{Auditor, Principal};
use tonic::Status;

/// A service's access table: each method and the roles (and reserved principal kinds) that may
/// call it.
pub type Table = [(&'static str, &'static [&'static str])];

/// A row entry admitting any upstream system (API key) of the council.
pub const UPSTREAM_SYSTEM: &str = "upstream_system";
/// A row entry admitting the platform's own services (service key).
pub const PLATFORM_SERVICE: &str = "platform_service";
/// The entries of a row that name a kind of principal, not a person's role.
pub const RESERVED: &[&str] = &[UPSTREAM_SYSTEM, PLATFORM_SERVICE];

/// The roles of `table` that may call `method` (none for a method not in it).
pub fn roles_for(table: &'static Table, method: &str) -> &'static [&'static str] {
    table
        .iter()
        .find(|(m, _)| *m == method)
        .map_or(&[], |(_, r)| r)
}

/// Does a row naming `entries` admit `p` (its council aside)? A person by one of the roles it
/// holds (a reserved name never counts as a person's role), an upstream system by
/// [`UPSTREAM_SYSTEM`], a platform service by [`PLATFORM_SERVICE`].
pub fn allows(entries: &[&str], p: &Principal) -> bool {
    match p {
        Principal::Person { .. } => entries
            .iter()
            .any(|r| !RESERVED.contains(r) && p.has_role(r)),
        Principal::System { .. } => entries.contains(&UPSTREAM_SYSTEM),
        Principal::Service { .. } => entries.contains(&PLATFORM_SERVICE),
    }
}

/// Every person's role `tables` name (reserved names left out), sorted, each once.
pub fn roles_named(tables: &[&'static Table]) -> Vec<&'static str> {
    let mut roles: Vec<&'static str> = tables
        .iter()
        .flat_map(|t| t.iter())
        .flat_map(|(_, r)| r.iter().copied())
        .filter(|r| !RESERVED.contains(r))
        .collect();
    roles.sort_unstable();
    roles.dedup();
    roles
}

/// One call to admit: who, on which council's data, which method and record, for which service.
pub struct Call<'a> {
    pub principal: &'a Principal,
    pub tenant: &'a str,
    pub method: &'a str,
    pub record: &'a str,
    /// The service deciding (the audit entry's purpose).
    pub service: &'a str,
}

/// Admits `call` by `table`, auditing the decision.
///
/// # Errors
/// INVALID_ARGUMENT for a tenant the platform does not have; PERMISSION_DENIED (audited) for
/// another council's principal or a caller the method's row does not name; UNAVAILABLE when the
/// audit trail cannot be written.
pub async fn admit(
    auditor: &Auditor,
    settings: &eh_platform::Settings,
    table: &'static Table,
    call: &Call<'_>,
) -> Result<(), Status> {
    admit_then(auditor, settings, table, call, async { Ok(()) }).await
}

/// As [`admit`]; when admitted, `then` runs while the admission's audit entry is written, and its
/// answer is returned once that entry is committed (never when it cannot be: the call is then
/// UNAVAILABLE). A refused call never polls `then`: the refusal is decided first, audited and
/// answered.
///
/// # Errors
/// As [`admit`], and whatever `then` answers.
pub async fn admit_then<T>(
    auditor: &Auditor,
    settings: &eh_platform::Settings,
    table: &'static Table,
    call: &Call<'_>,
    then: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let reason = admission(auditor, settings, table, call).await?;
    let Call {
        principal: p,
        tenant,
        method,
        record,
        service,
    } = *call;
    let (audited, answer) = tokio::join!(
        auditor.decide(p, tenant, method, record, service, true, reason.into()),
        then
    );
    audited?;
    answer
}

/// Most record ids one audit entry names ([`admit_list`]); more are counted.
pub const MAX_RETURNED_IDS: usize = 1000;

/// `ids` as an audit entry names them: `returned N: a,b,c` (at most [`MAX_RETURNED_IDS`], the
/// rest counted).
pub fn returned(ids: &[String]) -> String {
    let shown = ids.len().min(MAX_RETURNED_IDS);
    let mut out = format!("returned {}", ids.len());
    if shown > 0 {
        out.push_str(": ");
        out.push_str(&ids[..shown].join(","));
    }
    if ids.len() > shown {
        out.push_str(&format!(" (and {} more)", ids.len() - shown));
    }
    out
}

/// As [`admit`] for a method that lists records: when admitted, `list` runs first and the
/// admission's one audit entry then names the ids of the records it returned (`ids` of its answer:
/// ids only, never names), or that it failed; the answer is returned once that entry is committed
/// (never when it cannot be: the call is then UNAVAILABLE). A refused call never polls `list`.
///
/// # Errors
/// As [`admit`], and whatever `list` answers.
pub async fn admit_list<T>(
    auditor: &Auditor,
    settings: &eh_platform::Settings,
    table: &'static Table,
    call: &Call<'_>,
    list: impl Future<Output = Result<T, Status>>,
    ids: impl FnOnce(&T) -> Vec<String>,
) -> Result<T, Status> {
    let reason = admission(auditor, settings, table, call).await?;
    let answer = list.await;
    let reason = match &answer {
        Ok(listed) => format!("{reason}; {}", returned(&ids(listed))),
        Err(e) => format!("{reason}; returned nothing ({:?})", e.code()),
    };
    let Call {
        principal: p,
        tenant,
        method,
        record,
        service,
    } = *call;
    auditor
        .decide(p, tenant, method, record, service, true, reason)
        .await?;
    answer
}

/// Decides `call`: the reason it is allowed (not yet audited), or its refusal (audited).
async fn admission(
    auditor: &Auditor,
    settings: &eh_platform::Settings,
    table: &'static Table,
    call: &Call<'_>,
) -> Result<&'static str, Status> {
    let Call {
        principal: p,
        tenant,
        method,
        record,
        service,
    } = *call;
    if !eh_platform::config::is_token(tenant) || !settings.tenants.contains_key(tenant) {
        return Err(invalid(
            "unknown tenant",
            &[Violation::new("tenant", "not a tenant of this platform")],
        ));
    }
    if !p.may_access_tenant(tenant) {
        // Audited as denied, and refused.
        auditor
            .check_tenant(p, tenant, method, record, service)
            .await?;
        return Err(Status::permission_denied(format!(
            "not permitted for tenant {tenant}"
        )));
    }
    let entries = roles_for(table, method);
    if allows(entries, p) {
        return Ok(match p {
            Principal::Person { .. } => "same council; a role the access table allows",
            Principal::System { .. } => {
                "an upstream system of the council; the access table allows"
            }
            Principal::Service { .. } => "a platform service; the access table allows",
        });
    }
    let needs = entries.join(", ");
    let reason = if entries.is_empty() {
        format!("{method} is not in the access table")
    } else {
        format!("needs one of {needs}")
    };
    auditor
        .decide(p, tenant, method, record, service, false, reason)
        .await?;
    Err(Status::permission_denied(if entries.is_empty() {
        format!("{method} is not open to any caller")
    } else {
        format!("{method} needs one of: {needs}")
    }))
}

/// Records the refusal of an admitted `call` on a condition of the record itself (the case's
/// lead, the referral's source system), and returns `answer` to refuse it with — or UNAVAILABLE
/// when the refusal cannot be written to the trail.
pub async fn refuse(auditor: &Auditor, call: &Call<'_>, reason: String, answer: Status) -> Status {
    match auditor
        .decide(
            call.principal,
            call.tenant,
            call.method,
            call.record,
            call.service,
            false,
            reason,
        )
        .await
    {
        Ok(()) => answer,
        Err(unavailable) => unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &Table = &[
        ("Read", &["practitioner", "team_manager", UPSTREAM_SYSTEM]),
        ("Check", &["practitioner", PLATFORM_SERVICE]),
    ];

    fn person(roles: &[&str]) -> Principal {
        Principal::Person {
            tenant: "worcs".into(),
            subject: "s".into(),
            agency: None,
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn a_method_has_its_roles_and_one_not_in_the_table_none() {
        assert_eq!(
            roles_for(TABLE, "Read"),
            ["practitioner", "team_manager", UPSTREAM_SYSTEM]
        );
        assert!(roles_for(TABLE, "Write").is_empty());
    }

    #[test]
    fn each_kind_of_principal_is_admitted_only_by_its_own_entries() {
        let system = Principal::System {
            tenant: "worcs".into(),
            name: "hub".into(),
        };
        let service = Principal::Service {
            name: "allocation".into(),
        };
        assert!(allows(roles_for(TABLE, "Read"), &person(&["team_manager"])));
        assert!(!allows(
            roles_for(TABLE, "Check"),
            &person(&["team_manager"])
        ));
        assert!(allows(roles_for(TABLE, "Read"), &system));
        assert!(!allows(roles_for(TABLE, "Check"), &system));
        assert!(allows(roles_for(TABLE, "Check"), &service));
        assert!(!allows(roles_for(TABLE, "Read"), &service));
        assert!(!allows(
            roles_for(TABLE, "Write"),
            &person(&["team_manager"])
        ));
        // A token claiming a reserved name as a role is still a person, admitted by roles only.
        assert!(!allows(
            roles_for(TABLE, "Read"),
            &person(&[UPSTREAM_SYSTEM, PLATFORM_SERVICE])
        ));
        assert!(!allows(
            roles_for(TABLE, "Check"),
            &person(&[PLATFORM_SERVICE])
        ));
    }

    #[test]
    fn a_list_names_the_ids_it_returned_up_to_a_bound() {
        assert_eq!(returned(&[]), "returned 0");
        assert_eq!(
            returned(&["case:a".into(), "case:b".into()]),
            "returned 2: case:a,case:b"
        );
        let many: Vec<String> = (0..MAX_RETURNED_IDS + 3).map(|i| format!("r{i}")).collect();
        let text = returned(&many);
        assert!(text.starts_with(&format!("returned {}: r0,r1,", MAX_RETURNED_IDS + 3)));
        assert!(text.ends_with(" (and 3 more)"), "{text}");
        assert!(!text.contains(&format!("r{MAX_RETURNED_IDS},")));
    }

    #[test]
    fn the_roles_named_leave_out_the_reserved_names() {
        assert_eq!(roles_named(&[TABLE]), ["practitioner", "team_manager"]);
    }
}
