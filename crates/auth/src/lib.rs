//! Who is calling and what they may touch. Every gRPC request carries a [`Principal`]: a person
//! (a JWT from the tenant's OIDC issuer: RS256/ES256 only, `exp`/`nbf`/`aud`/`iss` checked) or a
//! system (an API key configured for one tenant). Tenant checks refuse one council's principal on
//! another's data, and every decision about a person's data is written to the [`audit`] trail.
pub mod audit;
pub mod demo;
mod jwt;

pub use audit::{AuditEntry, AuditKey, Auditor, Decision};
pub use jwt::{AuthInterceptor, Authenticator};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A practitioner, from an OIDC token.
    Person {
        tenant: String,
        subject: String,
        agency: Option<String>,
        roles: Vec<String>,
    },
    /// An upstream system, from an API key.
    System { tenant: String, name: String },
    /// One of the platform's own services (bus handlers act as these).
    Service { name: String },
}

impl Principal {
    /// The actor string recorded in envelopes and the audit trail.
    pub fn actor(&self) -> String {
        match self {
            Principal::Person { subject, .. } => format!("person:{subject}"),
            Principal::System { name, .. } => format!("system:{name}"),
            Principal::Service { name } => format!("service:{name}"),
        }
    }

    /// The tenant the principal belongs to; services act for any tenant.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Principal::Person { tenant, .. } | Principal::System { tenant, .. } => Some(tenant),
            Principal::Service { .. } => None,
        }
    }

    pub fn role(&self) -> String {
        match self {
            Principal::Person { roles, .. } => roles.join(","),
            Principal::System { .. } => "system".into(),
            Principal::Service { .. } => "service".into(),
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        matches!(self, Principal::Person { roles, .. } if roles.iter().any(|r| r == role))
    }

    /// May this principal act on `tenant`'s data?
    pub fn may_access_tenant(&self, tenant: &str) -> bool {
        match self.tenant() {
            Some(t) => t == tenant,
            None => true,
        }
    }

    /// The tenant a request's database transaction is held to (`eh_store::begin_scoped`): the
    /// principal's own, whatever tenant the request names, so a missed check cannot widen it;
    /// for a platform service, which acts for any tenant, the one it asked for.
    pub fn data_scope<'a>(&'a self, requested: &'a str) -> &'a str {
        self.tenant().unwrap_or(requested)
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no credentials: send `authorization: Bearer <token>` or `x-api-key`")]
    Missing,
    #[error("invalid credentials: {0}")]
    Invalid(String),
    #[error("permission denied: {0}")]
    Denied(String),
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing | AuthError::Invalid(_) => {
                tonic::Status::unauthenticated(e.to_string())
            }
            AuthError::Denied(_) => tonic::Status::permission_denied(e.to_string()),
        }
    }
}

/// The principal the auth interceptor put on a request.
pub fn principal<T>(req: &tonic::Request<T>) -> Result<Principal, tonic::Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| AuthError::Missing.into())
}

#[cfg(test)]
mod scope_tests {
    use super::Principal;

    #[test]
    fn the_data_scope_is_the_principals_own_tenant() {
        let person = Principal::Person {
            tenant: "worcs".into(),
            subject: "s".into(),
            agency: None,
            roles: vec![],
        };
        assert_eq!(person.data_scope("staffs"), "worcs");
        let system = Principal::System {
            tenant: "staffs".into(),
            name: "hub".into(),
        };
        assert_eq!(system.data_scope("worcs"), "staffs");
        let service = Principal::Service {
            name: "casework".into(),
        };
        assert_eq!(service.data_scope("worcs"), "worcs");
    }
}
