//! Admitting a gRPC call through a service's access table (method → the roles that may call it):
//! a known tenant (INVALID_ARGUMENT otherwise), the caller's own council (PERMISSION_DENIED,
//! audited, for another's), and a person holding one of the method's roles (PERMISSION_DENIED,
//! audited, otherwise — upstream systems and platform services included). A method missing from
//! the table is refused. Every decision is on the audit trail before the call goes on.
use crate::errors::{Violation, invalid};
use eh_auth::{Auditor, Principal};
use tonic::Status;

/// A service's access table: each method and the roles that may call it.
pub type Table = [(&'static str, &'static [&'static str])];

/// The roles of `table` that may call `method` (none for a method not in it).
pub fn roles_for(table: &'static Table, method: &str) -> &'static [&'static str] {
    table
        .iter()
        .find(|(m, _)| *m == method)
        .map_or(&[], |(_, r)| r)
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
/// another council's principal or a caller without one of the method's roles; UNAVAILABLE when the
/// audit trail cannot be written.
pub async fn admit(
    auditor: &Auditor,
    settings: &eh_platform::Settings,
    table: &'static Table,
    call: &Call<'_>,
) -> Result<(), Status> {
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
    auditor
        .check_tenant(p, tenant, method, record, service)
        .await?;
    let roles = roles_for(table, method);
    let allowed = matches!(p, Principal::Person { .. }) && roles.iter().any(|r| p.has_role(r));
    let reason = if allowed {
        "role allowed".to_string()
    } else if roles.is_empty() {
        format!("{method} is not in the access table")
    } else {
        format!("needs one of the roles {}", roles.join(", "))
    };
    auditor
        .decide(p, tenant, method, record, service, allowed, reason)
        .await?;
    if allowed {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "{method} needs one of the roles: {}",
            roles.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &Table = &[("Read", &["practitioner", "team_manager"])];

    #[test]
    fn a_method_has_its_roles_and_one_not_in_the_table_none() {
        assert_eq!(roles_for(TABLE, "Read"), ["practitioner", "team_manager"]);
        assert!(roles_for(TABLE, "Write").is_empty());
    }
}
