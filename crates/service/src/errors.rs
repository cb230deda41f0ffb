//! How a service says no over gRPC: a request that is wrong is `INVALID_ARGUMENT` with one
//! violation per field (the field and the rule broken, never the value sent), carried both in the
//! message and as `google.rpc.BadRequest` details; a failure of ours is `INTERNAL` with nothing of
//! it told to the caller (the log has it).
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// One field of a request that is wrong, and why (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub reason: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// `INVALID_ARGUMENT`: `what`, then every violation, in the message and as field details.
pub fn invalid(what: &str, violations: &[Violation]) -> Status {
    let mut details = ErrorDetails::new();
    for v in violations {
        details.add_bad_request_violation(v.field.clone(), v.reason.clone());
    }
    let summary: Vec<String> = violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.reason))
        .collect();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{what}: {}", summary.join("; ")),
        details,
    )
}

/// PostgreSQL's refusal of a NUL character in a text value (which no text column can store).
const NUL_REFUSED: &str = "invalid byte sequence for encoding \"UTF8\": 0x00";

/// `INTERNAL`, logged at error as a failure of `service` — except the database's refusal of a
/// NUL character in a text field a service's own checks let through: that is the caller's bad
/// input, `INVALID_ARGUMENT` (the transaction failed, so nothing changed).
pub fn internal(service: &'static str, e: impl std::fmt::Display) -> Status {
    let e = e.to_string();
    if e.contains(NUL_REFUSED) {
        tracing::warn!(
            service,
            "request refused: a text field holds a NUL character"
        );
        return Status::invalid_argument(
            "a text field holds a NUL character, which cannot be stored",
        );
    }
    tracing::error!(service, error = %e, "request failed");
    Status::internal("internal error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_the_database_refused_is_bad_input_anything_else_internal() {
        let s = internal(
            "consent",
            "Execution Error: error returned from database: invalid byte sequence for encoding \"UTF8\": 0x00",
        );
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("NUL"));
        let s = internal("consent", "connection refused");
        assert_eq!(s.code(), Code::Internal);
        assert_eq!(s.message(), "internal error");
    }

    #[test]
    fn every_violation_is_a_field_detail_and_in_the_message() {
        let s = invalid(
            "the request is invalid",
            &[
                Violation::new("a", "is required"),
                Violation::new("b.c", "too long"),
            ],
        );
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(
            s.message(),
            "the request is invalid: a: is required; b.c: too long"
        );
        let fields: Vec<String> = s
            .get_details_bad_request()
            .expect("bad request details")
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["a", "b.c"]);
    }
}
